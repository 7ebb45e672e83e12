"""Limits and connection lifetime on real sockets: throttling, 429, 403, close codes."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ECHO = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    await connection.send({"echo": message})

@ws.on("disconnected")
async def disconnected(connection, reason):
    print("DISCONNECTED", connection.connection_id, "|", reason)
"""

GATED = """
import asyncio
from ampt_sandbox import ws

release = asyncio.Event()

@ws.on("message", timeout=30)
async def message(connection, message):
    if message == "hold":
        await connection.send("holding")
        await release.wait()
        await connection.send("released")
    elif message == "release":
        release.set()
        await connection.send("ok")
"""


async def receive_json(websocket, timeout: float = 10.0):
    return json.loads(await asyncio.wait_for(websocket.recv(), timeout))


async def test_rate_limit_answers_every_message(run_sandbox):
    sandbox = run_sandbox(ECHO, "--burst", "0")
    count = 40
    async with connect(sandbox.url) as ws:
        for index in range(count):
            await ws.send(str(index))
        replies = [await receive_json(ws) for _ in range(count)]
    throttled = [reply for reply in replies if reply.get("message") == "Too Many Requests"]
    echoed = [reply for reply in replies if "echo" in reply]
    assert len(throttled) + len(echoed) == count
    assert len(echoed) >= 10
    assert len(throttled) >= 15
    first = throttled[0]
    assert set(first) == {"message", "connectionId", "requestId"}
    await sandbox.expect(r"Throttled a message from .*: rate limit reached")


async def test_rate_limit_keeps_connection_open(run_sandbox):
    sandbox = run_sandbox(ECHO, "--burst", "0", "--rate", "2")
    async with connect(sandbox.url) as ws:
        for index in range(5):
            await ws.send(str(index))
        replies = [await receive_json(ws) for _ in range(5)]
        assert sum("echo" in reply for reply in replies) == 2
        # A second later the bucket has refilled.
        await asyncio.sleep(1.1)
        await ws.send("again")
        assert await receive_json(ws) == {"echo": "again"}


async def test_burst_limit_throttles_messages_and_connections(run_sandbox):
    sandbox = run_sandbox(GATED, "--burst", "2", "--rate", "0")
    async with connect(sandbox.url) as ws:
        await ws.send("hold")
        assert await asyncio.wait_for(ws.recv(), 10) == "holding"
        await ws.send("hold")
        assert await asyncio.wait_for(ws.recv(), 10) == "holding"
        await ws.send("hold")
        reply = await receive_json(ws)
        assert reply["message"] == "Too Many Requests"

        with pytest.raises(InvalidStatus) as info:
            async with connect(sandbox.url):
                pass
        response = info.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"

    sandbox_log = await sandbox.expect(r"Rejected a connection: burst limit of 2")
    assert sandbox_log


async def test_inactive_sandbox_answers_403_then_loads_fix(run_sandbox):
    sandbox = run_sandbox("from ampt_sandbox import ws\nraise RuntimeError('broken at import')\n", wait=False)
    await sandbox.expect(r"Failed to load app\.py .*broken at import")
    port_line = await sandbox.expect(r"Listening on ws://")
    url = port_line.split("Listening on ")[1]
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    assert info.value.response.status_code == 403
    assert b"app failed to import" in info.value.response.body

    sandbox.app_path.write_text(ECHO)
    await sandbox.expect(r"^ws://", stream="stdout")
    async with connect(url) as ws:
        await ws.send("hi")
        assert await receive_json(ws) == {"echo": "hi"}


async def test_message_over_128_kib_closes_with_1009(run_sandbox):
    sandbox = run_sandbox(ECHO)
    async with connect(sandbox.url, max_size=None) as ws:
        await ws.send("x" * (128 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009


async def test_frame_over_32_kib_closes_with_1009(run_sandbox):
    sandbox = run_sandbox(ECHO)
    async with connect(sandbox.url) as ws:
        await ws.send("y" * (40 * 1024))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009
    await sandbox.expect(r"DISCONNECTED .*1009.*frame of 40960 bytes")


async def test_fragmented_message_under_limits_accepted(run_sandbox):
    sandbox = run_sandbox(ECHO)
    async with connect(sandbox.url, max_size=None) as ws:
        fragments = ["z" * (30 * 1024) for _ in range(3)]
        await ws.send(iter(fragments))
        reply = await receive_json(ws)
        assert len(reply["echo"]) == 90 * 1024


async def test_invalid_utf8_closes_with_1007(run_sandbox):
    sandbox = run_sandbox(ECHO)
    async with connect(sandbox.url) as ws:
        await ws.send(b"\xff\xfe", text=True)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1007


async def test_idle_connection_closes_with_1001(run_sandbox):
    sandbox = run_sandbox(ECHO, "--idle-timeout", "0.5")
    async with connect(sandbox.url) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001
    await sandbox.expect(r"DISCONNECTED .*idle for more than 0\.5 s")


async def test_connection_age_limit_closes_with_1001(run_sandbox):
    sandbox = run_sandbox(ECHO, "--max-connection-age", "1")
    async with connect(sandbox.url) as ws:
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.send("keep busy")
                await asyncio.wait_for(ws.recv(), 10)
                await asyncio.sleep(0.1)
        assert ws.close_code == 1001
    await sandbox.expect(r"DISCONNECTED .*open for more than 1 s")


async def test_unresponsive_client_found_by_keepalive(run_sandbox):
    sandbox = run_sandbox(ECHO, "--ping-interval", "0.3", "--ping-timeout", "0.3")
    ws = await connect(sandbox.url, ping_interval=None)
    # Stop reading, so the client sends no pong for the gateway's pings.
    ws.transport.pause_reading()
    try:
        await sandbox.expect(r"DISCONNECTED .*did not answer keepalive pings")
    finally:
        ws.transport.abort()


async def test_subprotocol_never_selected(run_sandbox):
    sandbox = run_sandbox(ECHO)
    async with connect(sandbox.url, subprotocols=["chat"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
