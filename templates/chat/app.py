"""Chat rooms: every message goes to each connection in the sender's room, the sender included.

Connect with ws://127.0.0.1:8765/?name=ann&room=lobby (both parameters are
optional; they default to "anonymous" and "lobby") and send {"text": "hi"}.
Each member of the room receives
{"room": "lobby", "from": "ann", "text": "hi", "at": <epoch milliseconds>}.
The page in public/ is a browser client: open http://127.0.0.1:8765/.

Members are stored as connection:<id> records labelled room:<room>, so the
room's members are one get_by_label query away and survive a reload of this
file.
"""

import asyncio
import time

from ampt_sandbox import data, ws

DEFAULT_NAME = "anonymous"
DEFAULT_ROOM = "lobby"
MAX_NAME_CHARS = 64
# The label "room:<room>" is written like a key: at most 256 bytes of UTF-8,
# and the part after "room:" may not contain | or * nor start with < or >.
MAX_ROOM_BYTES = 250
# get_by_label returns at most this many members per page.
PAGE_SIZE = 1000


def member_key(connection_id):
    return f"connection:{connection_id}"


def room_label(room):
    return f"room:{room}"


def check_room(room):
    """Raise ValueError for a room name that cannot be stored in a label."""
    if len(room.encode("utf-8")) > MAX_ROOM_BYTES:
        raise ValueError(
            f"invalid room name {room[:40]!r}...: it is longer than {MAX_ROOM_BYTES} bytes; choose a shorter one"
        )
    if "|" in room or "*" in room or room[0] in "<>":
        raise ValueError(
            f"invalid room name {room!r}: it may not contain '|' or '*' nor start with '<' or '>'; choose another"
        )


@ws.on("connected")
async def connected(connection):
    parameters = connection.meta.query_string_parameters or {}
    name = parameters.get("name", "").strip()[:MAX_NAME_CHARS] or DEFAULT_NAME
    room = parameters.get("room", "").strip() or DEFAULT_ROOM
    # Raising here rejects the handshake with HTTP 500 and logs the reason.
    check_room(room)
    await data.set(
        member_key(connection.connection_id),
        {"name": name, "room": room, "connected_at": connection.meta.connected_at},
        label1=room_label(room),
    )


@ws.on("message")
async def message(connection, message):
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        await connection.send({"error": 'expected a JSON object {"text": "..."}'})
        return
    member = await data.get(member_key(connection.connection_id))
    if member is None:
        await connection.send({"error": "this connection is not in a room; reconnect to join one"})
        return

    outgoing = {
        "room": member["room"],
        "from": member["name"],
        "text": message["text"],
        "at": int(time.time() * 1000),
    }
    member_ids = await room_member_ids(member["room"])
    # A member that left since the query is skipped, not an error.
    await asyncio.gather(
        *(ws.send(member_id, outgoing, throw_if_not_connected=False) for member_id in member_ids)
    )


async def room_member_ids(room):
    """Return the connection ids of a room's members, reading every page."""
    member_ids = []
    start = None
    while True:
        page = await data.get_by_label("label1", room_label(room), limit=PAGE_SIZE, start=start)
        for item in page["items"]:
            member_ids.append(item["key"].removeprefix("connection:"))
        start = page.get("last_key")
        if not start:
            return member_ids


@ws.on("disconnected")
async def disconnected(connection, reason):
    await data.remove(member_key(connection.connection_id))
