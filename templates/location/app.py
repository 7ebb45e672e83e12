"""Location tracking: each client reports where it is, the store keeps the latest.

Connect with ws://127.0.0.1:8765/?name=ann and send {"lat": 48.85, "long": 2.35}.
"""

import time

from ampt_sandbox import data, ws


@ws.on("connected")
async def connected(connection):
    parameters = connection.meta.query_string_parameters or {}
    name = parameters.get("name", "anonymous")
    await data.set(
        f"connection:{connection.connection_id}",
        {"name": name, "connected_at": connection.meta.connected_at},
    )


@ws.on("message")
async def message(connection, message):
    if not isinstance(message, dict) or "lat" not in message or "long" not in message:
        await connection.send({"error": 'expected {"lat": <number>, "long": <number>}'})
        return
    record = await data.get(f"connection:{connection.connection_id}") or {}
    name = record.get("name", "anonymous")
    location = {"lat": message["lat"], "long": message["long"], "at": int(time.time() * 1000)}
    await data.set(f"current_location:{name}", location)
    await connection.send({"name": name, **location})


@ws.on("disconnected")
async def disconnected(connection, reason):
    await data.remove(f"connection:{connection.connection_id}")
