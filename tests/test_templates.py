"""The starter templates, each served by a real ``ampt-sandbox dev``."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_NAMES = ("chat", "echo", "location")


async def receive_json(websocket, timeout: float = 10) -> object:
    return json.loads(await asyncio.wait_for(websocket.recv(), timeout))


async def assert_silent(websocket, timeout: float = 0.3) -> None:
    """Fail if a message arrives within ``timeout`` seconds."""
    try:
        message = await asyncio.wait_for(websocket.recv(), timeout)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"expected no message, got {message!r}")


# Layout.


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_files(name: str) -> None:
    folder = TEMPLATES / name
    source = (folder / "app.py").read_text()
    compile(source, str(folder / "app.py"), "exec")
    assert (folder / "README.md").is_file()
    assert not (folder / "__pycache__").exists()


def test_chat_has_client_page() -> None:
    public = TEMPLATES / "chat" / "public"
    index = (public / "index.html").read_text()
    assert '<script src="chat.js">' in index
    assert (public / "chat.js").is_file()
    assert (public / "style.css").is_file()


# Echo.


async def test_echo_returns_messages(run_sandbox) -> None:
    sandbox = run_sandbox(template="echo")
    async with connect(sandbox.url) as websocket:
        await websocket.send('{"a": [1, 2]}')
        assert await asyncio.wait_for(websocket.recv(), 10) == '{"a":[1,2]}'
        await websocket.send("plain text")
        assert await asyncio.wait_for(websocket.recv(), 10) == "plain text"
        await websocket.send("ping")
        assert await asyncio.wait_for(websocket.recv(), 10) == "pong"


# Location.


async def test_location_reports_position(run_sandbox) -> None:
    sandbox = run_sandbox(template="location")
    async with connect(sandbox.url + "/?name=ann") as websocket:
        before = int(time.time() * 1000)
        await websocket.send('{"lat": 48.85, "long": 2.35}')
        reply = await receive_json(websocket)
        assert reply["name"] == "ann"
        assert reply["lat"] == 48.85
        assert reply["long"] == 2.35
        assert before - 1000 <= reply["at"] <= int(time.time() * 1000) + 1000

        await websocket.send('{"lat": 1}')
        reply = await receive_json(websocket)
        assert "error" in reply


async def test_location_default_name(run_sandbox) -> None:
    sandbox = run_sandbox(template="location")
    async with connect(sandbox.url) as websocket:
        await websocket.send('{"lat": 0, "long": 0}')
        reply = await receive_json(websocket)
        assert reply["name"] == "anonymous"


# Chat. These need the data SDK's labels and get_by_label.


async def test_chat_broadcasts_to_room(run_sandbox) -> None:
    sandbox = run_sandbox(template="chat")
    async with (
        connect(sandbox.url + "/?name=ann&room=blue") as ann,
        connect(sandbox.url + "/?name=bob&room=blue") as bob,
        connect(sandbox.url + "/?name=cy&room=green") as cy,
    ):
        before = int(time.time() * 1000)
        await ann.send(json.dumps({"text": "hello, blue"}))
        for websocket in (ann, bob):
            message = await receive_json(websocket)
            assert set(message) == {"room", "from", "text", "at"}
            assert message["room"] == "blue"
            assert message["from"] == "ann"
            assert message["text"] == "hello, blue"
            assert isinstance(message["at"], int)
            assert before - 1000 <= message["at"] <= int(time.time() * 1000) + 1000
        await assert_silent(cy)

        await cy.send(json.dumps({"text": "hi, green"}))
        message = await receive_json(cy)
        assert message["room"] == "green"
        assert message["from"] == "cy"
        await assert_silent(ann)
        await assert_silent(bob)


async def test_chat_defaults(run_sandbox) -> None:
    sandbox = run_sandbox(template="chat")
    async with connect(sandbox.url) as first, connect(sandbox.url + "/?room=lobby&name=") as second:
        await first.send('{"text": "who am I?"}')
        for websocket in (first, second):
            message = await receive_json(websocket)
            assert message["from"] == "anonymous"
            assert message["room"] == "lobby"


async def test_chat_rejects_bad_messages(run_sandbox) -> None:
    sandbox = run_sandbox(template="chat")
    async with connect(sandbox.url + "/?name=ann") as ann, connect(sandbox.url + "/?name=bob") as bob:
        for bad in ("just text", '{"text": 5}', "[1, 2]", '{"message": "hi"}'):
            await ann.send(bad)
            reply = await receive_json(ann)
            assert "error" in reply, bad
        await assert_silent(bob)


async def test_chat_rejects_unstorable_room(run_sandbox) -> None:
    sandbox = run_sandbox(template="chat")
    with pytest.raises(InvalidStatus) as caught:
        async with connect(sandbox.url + "/?room=a*b"):
            pass
    assert caught.value.response.status_code == 500
    await sandbox.expect(r"invalid room name 'a\*b': it may not contain")


INSPECTING_CHAT_APP = """
import chat
from ampt_sandbox import data, ws

@ws.on("message")
async def message(connection, message):
    if isinstance(message, dict) and "inspect_room" in message:
        page = await data.get_by_label("label1", "room:" + message["inspect_room"])
        await connection.send({"members": page["items"]})
        return
    await chat.message(connection, message)
"""


async def members_of(websocket, room: str) -> list[dict]:
    await websocket.send(json.dumps({"inspect_room": room}))
    reply = await receive_json(websocket)
    return reply["members"]


async def test_chat_members_are_labelled_records(run_sandbox, tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(TEMPLATES / "chat" / "app.py", app_dir / "chat.py")
    sandbox = run_sandbox(INSPECTING_CHAT_APP)

    async with connect(sandbox.url + "/?name=watcher&room=other") as watcher:
        async with connect(sandbox.url + "/?name=ann&room=blue") as ann:
            await ann.send('{"text": "x"}')
            await receive_json(ann)
            members = await members_of(watcher, "blue")
            assert len(members) == 1
            assert members[0]["key"].startswith("connection:")
            assert members[0]["value"]["name"] == "ann"
            assert members[0]["value"]["room"] == "blue"

        # disconnected runs after the socket closed: wait until the record is gone.
        deadline = time.monotonic() + 10
        while await members_of(watcher, "blue"):
            assert time.monotonic() < deadline, "the member record was not removed on disconnect"
            await asyncio.sleep(0.05)

        watchers = await members_of(watcher, "other")
        assert [member["value"]["name"] for member in watchers] == ["watcher"]
