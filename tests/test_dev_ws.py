"""End-to-end tests of the ws SDK through a real ``ampt-sandbox dev`` process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

OBSERVER_APP = """
import json
from ampt_sandbox import ws, data, SocketConnection, InvalidConnectionError, WebSocketError

@ws.on("connected")
async def connected(connection):
    meta = connection.meta
    print("CONNECTED", connection.connection_id, json.dumps({
        "connected_at": meta.connected_at,
        "query": meta.query_string_parameters,
        "headers": meta.headers,
    }))
    if (meta.query_string_parameters or {}).get("fail") == "1":
        raise RuntimeError("refusing this client")

@ws.on("message")
async def message(connection, message):
    if isinstance(message, dict) and "op" in message:
        op = message["op"]
        if op == "whoami":
            await connection.send({"id": connection.connection_id, "meta": connection.meta})
        elif op == "send_to":
            try:
                await ws.send(message["target"], message["data"], message.get("throw", True))
                await connection.send({"sent": True})
            except InvalidConnectionError as exc:
                await connection.send({"error": "InvalidConnectionError", "text": str(exc)})
        elif op == "is_connected":
            await connection.send({"connected": await ws.is_connected(message["target"])})
        elif op == "close":
            try:
                await ws.close(message["target"])
                await connection.send({"closed": True, "still_connected": await ws.is_connected(message["target"])})
            except WebSocketError as exc:
                await connection.send({"error": type(exc).__name__, "text": str(exc)})
        elif op == "close_self":
            await connection.close()
        elif op == "for_id":
            other = SocketConnection.for_id(message["target"])
            await other.send("hello from " + connection.connection_id)
            await connection.send({"other_connected": await other.is_connected()})
        elif op == "sleep":
            import asyncio
            await asyncio.sleep(message["seconds"])
            await connection.send("woke")
        elif op == "raise":
            raise ValueError("boom in handler")
        elif op == "send_raw":
            await connection.send(message["data"])
        return
    await connection.send({"type": type(message).__name__, "value": message})

@ws.on("disconnected")
async def disconnected(connection, reason):
    print("DISCONNECTED", connection.connection_id, connection.meta, "|", reason)
"""


async def request(websocket, payload: dict) -> object:
    await websocket.send(json.dumps(payload))
    return json.loads(await asyncio.wait_for(websocket.recv(), 10))


@pytest.fixture
def observer(run_sandbox):
    return run_sandbox(OBSERVER_APP, "--rate", "0", "--burst", "0")


async def test_handlers_receive_meta_and_query(observer):
    async with connect(observer.url + "/?name=ann&room=a&room=b", additional_headers={"X-Test": "yes"}) as ws:
        line = await observer.expect(r"CONNECTED ")
        connection_id, meta_json = line.split("CONNECTED ", 1)[1].split(" ", 1)
        meta = json.loads(meta_json)
        assert meta["query"] == {"name": "ann", "room": "b"}
        assert meta["headers"]["X-Test"] == "yes"
        assert isinstance(meta["connected_at"], int)
        assert meta["connected_at"] > 1_600_000_000_000
        reply = await request(ws, {"op": "whoami"})
        assert reply["id"] == connection_id
        assert reply["meta"] is None
        assert "Sec-WebSocket-Protocol" not in (ws.response.headers or {})


async def test_query_is_none_without_query_string(observer):
    async with connect(observer.url):
        line = await observer.expect(r"CONNECTED ")
        meta = json.loads(line.split("CONNECTED ")[1].split(" ", 1)[1])
        assert meta["query"] is None


@pytest.mark.parametrize(
    ("text", "expected_type", "expected_value"),
    [
        ('{"a":1}', "dict", {"a": 1}),
        ("[1,2]", "list", [1, 2]),
        ("123", "int", 123),
        ("1.5", "float", 1.5),
        ("null", "NoneType", None),
        ('"s"', "str", "s"),
        ("true", "bool", True),
        ("not json", "str", "not json"),
        ("", "NoneType", None),
        ("NaN", "str", "NaN"),
        ("Infinity", "str", "Infinity"),
        ("-Infinity", "str", "-Infinity"),
        ("{'a': 1}", "str", "{'a': 1}"),
    ],
)
async def test_incoming_text_parsing(observer, text, expected_type, expected_value):
    async with connect(observer.url) as ws:
        await ws.send(text)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == expected_type
        assert reply["value"] == expected_value


async def test_ping_answered_with_pong(observer):
    async with connect(observer.url) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 10) == "pong"


async def test_no_pong_without_message_handler(run_sandbox):
    sandbox = run_sandbox(
        """
        from ampt_sandbox import ws
        @ws.on("connected")
        async def connected(connection):
            pass
        """
    )
    async with connect(sandbox.url) as ws:
        await ws.send("ping")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


async def test_send_between_connections(observer):
    async with connect(observer.url) as first, connect(observer.url) as second:
        second_id = (await request(second, {"op": "whoami"}))["id"]
        assert await request(first, {"op": "send_to", "target": second_id, "data": {"x": "é"}}) == {"sent": True}
        assert await asyncio.wait_for(second.recv(), 10) == '{"x":"é"}'
        assert await request(first, {"op": "is_connected", "target": second_id}) == {"connected": True}
        reply = await request(first, {"op": "for_id", "target": second_id})
        assert reply == {"other_connected": True}
        assert (await asyncio.wait_for(second.recv(), 10)).startswith("hello from ")


async def test_send_to_unknown_connection(observer):
    async with connect(observer.url) as ws:
        reply = await request(ws, {"op": "send_to", "target": "AAAAAAAAAAAAAAA=", "data": "x"})
        assert reply == {"error": "InvalidConnectionError", "text": "Connection AAAAAAAAAAAAAAA= is not connected"}
        reply = await request(ws, {"op": "send_to", "target": "not-an-id", "data": "x"})
        assert reply["error"] == "InvalidConnectionError"
        reply = await request(ws, {"op": "send_to", "target": "AAAAAAAAAAAAAAA=", "data": "x", "throw": False})
        assert reply == {"sent": True}
        assert await request(ws, {"op": "is_connected", "target": "AAAAAAAAAAAAAAA="}) == {"connected": False}


async def test_close_other_and_unknown(observer):
    async with connect(observer.url) as first, connect(observer.url) as second:
        second_id = (await request(second, {"op": "whoami"}))["id"]
        reply = await request(first, {"op": "close", "target": second_id})
        assert reply == {"closed": True, "still_connected": False}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(second.recv(), 10)
        assert second.close_code == 1000
        assert await request(first, {"op": "is_connected", "target": second_id}) == {"connected": False}
        reply = await request(first, {"op": "send_to", "target": second_id, "data": "late"})
        assert reply["error"] == "InvalidConnectionError"
        await observer.expect(rf"DISCONNECTED {second_id} None \| closed by the app")
        reply = await request(first, {"op": "close", "target": second_id})
        assert reply["error"] == "WebSocketError"
        assert second_id in reply["text"]


async def test_connection_close_self(observer):
    async with connect(observer.url) as ws:
        await ws.send(json.dumps({"op": "close_self"}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_binary_frame_closes_with_1003(observer):
    async with connect(observer.url) as ws:
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1003
    await observer.expect(r"DISCONNECTED .*1003")


async def test_handler_timeout_keeps_connection(run_sandbox):
    sandbox = run_sandbox(
        """
        import asyncio
        from ampt_sandbox import ws
        @ws.on("message", timeout=0.5)
        async def message(connection, message):
            if message == "slow":
                await asyncio.sleep(30)
            await connection.send("fast")
        """
    )
    async with connect(sandbox.url) as ws:
        await ws.send("slow")
        await sandbox.expect(r"message handler timed out .*0\.5 s")
        await ws.send("quick")
        assert await asyncio.wait_for(ws.recv(), 10) == "fast"


async def test_handler_error_logged_with_user_traceback(observer):
    async with connect(observer.url) as ws:
        await ws.send(json.dumps({"op": "raise"}))
        await observer.expect(r"message handler failed for connection .*ValueError: boom in handler")
        await observer.expect(r'File ".*app\.py", line \d+, in message')
        assert await request(ws, {"op": "whoami"})


async def test_connected_error_refuses_handshake_with_500(observer):
    with pytest.raises(InvalidStatus) as info:
        async with connect(observer.url + "/?fail=1"):
            pass
    assert info.value.response.status_code == 500
    await observer.expect(r"connected handler failed .*refusing this client")


async def test_dropped_client_gets_disconnected_call(observer):
    ws = await connect(observer.url)
    connection_id = (await request(ws, {"op": "whoami"}))["id"]
    ws.transport.abort()
    await observer.expect(rf"DISCONNECTED {connection_id} None \| connection lost without a close frame")


async def test_client_close_code_in_reason(observer):
    async with connect(observer.url) as ws:
        connection_id = (await request(ws, {"op": "whoami"}))["id"]
        await ws.close(4000, "bye")
    await observer.expect(rf"DISCONNECTED {connection_id} None \| client closed the connection with code 4000 \(bye\)")


async def test_lone_surrogate_sent_as_replacement(observer):
    async with connect(observer.url) as ws:
        # JSON "\\ud83d" decodes to a lone surrogate in Python.
        await ws.send('{"op": "send_raw", "data": "a\\ud83db"}')
        assert await asyncio.wait_for(ws.recv(), 10) == "a\ufffdb"
        await ws.send('{"op": "send_raw", "data": "\\ud83d\\ude00"}')
        assert await asyncio.wait_for(ws.recv(), 10) == "\U0001F600"


async def test_sigterm_closes_clients_with_1001(observer):
    async with connect(observer.url) as ws:
        connection_id = (await request(ws, {"op": "whoami"}))["id"]
        observer.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)
        assert ws.close_code == 1001
    assert observer.stop() == 0
    assert f"DISCONNECTED {connection_id}" in observer.output


async def test_data_survives_restart(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    first = run_sandbox(template="location", data_dir=data_dir)
    async with connect(first.url + "/?name=ann") as ws:
        await ws.send(json.dumps({"lat": 1.5, "long": 2.5}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["name"] == "ann"
    assert first.stop() == 0

    second = run_sandbox(
        """
        from ampt_sandbox import ws, data
        @ws.on("message")
        async def message(connection, message):
            await connection.send({"location": await data.get("current_location:ann"),
                                   "connections": await data.get("connection:*")})
        """,
        data_dir=data_dir,
    )
    async with connect(second.url) as ws:
        await ws.send("x")
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["location"]["lat"] == 1.5
        assert reply["location"]["long"] == 2.5
        assert reply["connections"]["items"] == []


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_missing_app_file_exits_1(tmp_path):
    result = run_cli("dev", "nope.py", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "app file not found: nope.py" in result.stderr


def test_import_error_without_reload_exits_1(tmp_path):
    (tmp_path / "app.py").write_text("from ampt_sandbox import ws\n\nx = 1 +\n")
    result = run_cli("dev", "app.py", "--port", "0", "--no-reload", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 1
    assert "app.py" in result.stderr
    assert "line 3" in result.stderr or "app.py:3" in result.stderr


def test_busy_port_exits_1(tmp_path):
    (tmp_path / "app.py").write_text("from ampt_sandbox import ws\n")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_cli("dev", "app.py", "--port", str(port), "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


async def test_sigterm_lets_handlers_in_flight_finish(run_sandbox):
    sandbox = run_sandbox(
        """
        import asyncio
        from ampt_sandbox import ws

        @ws.on("message")
        async def message(connection, message):
            await connection.send("started")
            await asyncio.sleep(1)
            await connection.send("finished")

        @ws.on("disconnected")
        async def disconnected(connection, reason):
            print("DISCONNECTED", reason)
        """
    )
    async with connect(sandbox.url) as ws:
        await ws.send("work")
        assert await asyncio.wait_for(ws.recv(), 10) == "started"
        sandbox.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(ws.recv(), 10) == "finished"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1001
    assert sandbox.stop() == 0
    assert "DISCONNECTED sandbox shut down (1001)" in sandbox.output


def test_no_runtime_left_after_stop(run_sandbox):
    sandbox = run_sandbox(
        """
        from ampt_sandbox import ws

        @ws.on("message")
        async def message(connection, message):
            pass
        """
    )
    children = subprocess.run(
        ["pgrep", "-P", str(sandbox.process.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children
    assert sandbox.stop() == 0
    for pid in children:
        assert not _process_exists(int(pid))


def _process_exists(pid: int) -> bool:
    try:
        import os

        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
