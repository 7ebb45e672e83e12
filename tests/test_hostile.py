"""Hostile clients, signals and files against a real ``ampt-sandbox dev``.

Cases that other files cover are not repeated here. test_dev_ws.py sends a
str with a lone surrogate and stops with one handler in flight.
test_fuzz_frames.py sends invalid UTF-8 and close frames without a code.
test_status_cli.py starts a second ``dev`` and one after ``kill -9``, and
test_reload.py deletes the app and saves it by rename, each alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ampt_sandbox.store import DataStore

LOADED = r"Loaded app\.py in \d+ ms"


async def receive_json(websocket, timeout: float = 10.0):
    return json.loads(await asyncio.wait_for(websocket.recv(), timeout))


async def drain_until_closed(websocket, limit: int = 10_000) -> int:
    """Read and drop messages until the connection closes; return how many arrived."""
    for count in range(limit):
        try:
            await asyncio.wait_for(websocket.recv(), 10)
        except ConnectionClosed:
            return count
    raise AssertionError(f"the connection was still open after {limit} messages")


# Lone surrogates in values the app sends.

SURROGATE_APP = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    if message == "value":
        await connection.send({"text": "a\\ud83db", "list": ["\\udc00", "ok"], "\\ud800key": 1})
    elif isinstance(message, dict) and "target" in message:
        await ws.send(message["target"], ["to you \\udfff"])
        await connection.send("sent")
    elif message == "whoami":
        await connection.send(connection.connection_id)
    else:
        await connection.send("still here")
"""


async def test_lone_surrogates_in_values_sent_as_replacement(run_sandbox):
    sandbox = run_sandbox(SURROGATE_APP)
    async with connect(sandbox.url) as first, connect(sandbox.url) as second:
        await first.send("value")
        raw = await asyncio.wait_for(first.recv(), 10)
        assert raw == '{"text":"a\ufffdb","list":["\ufffd","ok"],"\ufffdkey":1}'

        await second.send("whoami")
        second_id = await asyncio.wait_for(second.recv(), 10)
        await first.send(json.dumps({"target": second_id}))
        assert await asyncio.wait_for(first.recv(), 10) == "sent"
        assert await asyncio.wait_for(second.recv(), 10) == '["to you \ufffd"]'

        # Neither the send nor the connections failed.
        await first.send("again")
        assert await asyncio.wait_for(first.recv(), 10) == "still here"
        await second.send("again")
        assert await asyncio.wait_for(second.recv(), 10) == "still here"
    assert "handler failed" not in sandbox.output


# A client that stops reading while others chat.

SEND_QUEUE_LIMIT = 256 * 1024
CHAT_TEXT_CHARS = 30_000  # one frame, under the 32 KiB frame limit


def chat_text(index: int) -> str:
    return f"{index:06d}".ljust(CHAT_TEXT_CHARS, "x")


async def test_slow_reader_closed_with_1008_others_unaffected(run_sandbox):
    sandbox = run_sandbox(
        None, "--rate", "0", "--burst", "0", "--max-send-queue", str(SEND_QUEUE_LIMIT), "--log-level", "warning",
        template="chat",
    )
    slow = await connect(sandbox.url + "/?name=slow&room=r", ping_interval=None)
    slow_closed = None
    try:
        slow.transport.pause_reading()
        async with connect(sandbox.url + "/?name=ann&room=r") as ann, connect(sandbox.url + "/?name=bob&room=r") as bob:
            chatters = [ann, bob]
            sent = 0
            # Each message adds about 30 KB to the slow client's queue. The
            # bound covers the kernel's socket buffers of several megabytes
            # on top of the 256 KiB limit.
            for index in range(2000):
                text = chat_text(index)
                await chatters[index % 2].send(json.dumps({"text": text}))
                sent += 1
                for chatter in chatters:
                    received = await receive_json(chatter)
                    assert received["text"] == text
                    assert received["from"] == ("ann", "bob")[index % 2]
                if index % 10 == 0 and sandbox.count(r"Closing \S+ with 1008") == 1:
                    break
            line = await sandbox.expect(r"Closing \S+ with 1008: \d+ bytes queued for it, more than the 262144-byte limit")
            # The slow client reads again, and finds the close frame behind
            # what the kernel buffered: the gateway waits 5 s for its reply.
            slow.transport.resume_reading()
            slow_closed = asyncio.create_task(drain_until_closed(slow))

            # Every chatter keeps receiving after the slow client was closed.
            # These messages would pass the limit again if they were queued
            # for the closing client.
            for index in range(sent, sent + 20):
                text = chat_text(index)
                await chatters[index % 2].send(json.dumps({"text": text}))
                for chatter in chatters:
                    assert (await receive_json(chatter))["text"] == text
        assert int(line.split(": ", 2)[2].split(" ")[0]) > SEND_QUEUE_LIMIT
        assert sandbox.count(r"Closing \S+ with 1008") == 1

        await slow_closed
        assert slow.close_code == 1008
        assert "send queue" in slow.close_reason
    finally:
        if slow_closed is not None:
            slow_closed.cancel()
        slow.transport.abort()


# Handshakes that never finish.

ECHO_WITH_CONNECTED = """
from ampt_sandbox import ws

@ws.on("connected")
async def connected(connection):
    pass

@ws.on("message")
async def message(connection, message):
    await connection.send({"echo": message})
"""


async def test_unfinished_handshakes_dropped_without_using_burst(run_sandbox):
    # The default is 10 s, as in the cloud; 2 s keeps the test short.
    sandbox = run_sandbox(ECHO_WITH_CONNECTED, "--burst", "1", "--rate", "0", "--handshake-timeout", "2")
    port = int(sandbox.url.rsplit(":", 1)[1])

    silent = await asyncio.open_connection("127.0.0.1", port)
    partial = await asyncio.open_connection("127.0.0.1", port)
    partial[1].write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    trickling = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".encode()

    async def trickle() -> None:
        # One byte every 0.2 s: the 80 bytes would take 16 s, far longer than the timeout.
        writer = trickling[1]
        for byte in request:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)

    trickler = asyncio.create_task(trickle())
    try:
        # The pending handshakes take no part of the burst limit of 1.
        for attempt in range(3):
            async with connect(sandbox.url) as ws:
                await ws.send(str(attempt))
                assert await receive_json(ws) == {"echo": attempt}

        for reader, _writer in (silent, partial, trickling):
            try:
                remaining = await asyncio.wait_for(reader.read(), 20)
            except ConnectionResetError:
                remaining = b""
            assert remaining == b""
        await sandbox.expect_count(r"Dropping a handshake that did not complete within 2 s", 3)
        assert "Rejected a connection" not in sandbox.output
    finally:
        trickler.cancel()
        for _reader, writer in (silent, partial, trickling):
            writer.close()


# SIGTERM with handlers in flight.

IN_FLIGHT_APP = """
import asyncio
from ampt_sandbox import ws

@ws.on("message", timeout=60)
async def message(connection, message):
    await connection.send("started")
    await asyncio.sleep(600 if message == "stuck" else 1)
    await connection.send("finished")

@ws.on("disconnected")
async def disconnected(connection, reason):
    await asyncio.sleep(0.2)
    print("DISCONNECTED", connection.connection_id, "|", reason)
"""


async def test_sigterm_with_handlers_past_the_grace(run_sandbox):
    sandbox = run_sandbox(IN_FLIGHT_APP, "--rate", "0", "--burst", "0")
    children = subprocess.run(["pgrep", "-P", str(sandbox.process.pid)], capture_output=True, text=True).stdout.split()
    clients = [await connect(sandbox.url) for _ in range(4)]
    try:
        await clients[0].send("stuck")
        for client in clients[1:]:
            await client.send("work")
        for client in clients:
            assert await asyncio.wait_for(client.recv(), 10) == "started"

        sandbox.process.send_signal(signal.SIGTERM)
        for client in clients[1:]:
            assert await asyncio.wait_for(client.recv(), 10) == "finished"
        for client in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), 15)
            assert client.close_code == 1001
    finally:
        for client in clients:
            client.transport.abort()

    # The stuck handler's 60 s timeout does not hold the stop: stop() waits
    # 30 s before it kills the process, which would return -9 here.
    assert await asyncio.to_thread(sandbox.stop) == 0
    assert sandbox.count(r"DISCONNECTED \S+ \| sandbox shut down \(1001\)") == 4
    await sandbox.expect(r"Stopping without waiting for 1 handlers still running after 5 s: message for ")
    for pid in children:
        assert not Path(f"/proc/{pid}").exists()


# An app file deleted, then saved back by rename.

VERSIONED = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    await connection.send({{"version": "{version}", "id": connection.connection_id}})
"""


async def test_deleted_app_saved_back_by_rename(run_sandbox):
    sandbox = run_sandbox(VERSIONED.format(version="v1"), "--rate", "0", "--burst", "0")
    app_path = sandbox.app_path
    async with connect(sandbox.url) as ws:
        await ws.send("q")
        first = await receive_json(ws)
        assert first["version"] == "v1"

        app_path.unlink()
        await sandbox.expect(r"app\.py was deleted .*last loaded code keeps serving")
        await ws.send("q")
        assert (await receive_json(ws))["version"] == "v1"

        # An editor's save: write a temporary file, then rename it over the name.
        temporary = app_path.with_name(".app.py.tmp~")
        temporary.write_text(textwrap.dedent(VERSIONED.format(version="v2")))
        os.replace(temporary, app_path)
        await sandbox.expect_count(LOADED, 2)
        await ws.send("q")
        second = await receive_json(ws)
        assert second["version"] == "v2"
        assert second["id"] == first["id"]


# A second dev on a data directory whose state file was deleted.

WRITER_APP = """
from ampt_sandbox import ws, data

@ws.on("message")
async def message(connection, message):
    await data.set(f"w:{message:06d}", {"n": message})
    await connection.send(str(message))
"""


async def test_second_dev_without_state_file_leaves_store_alone(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    first = run_sandbox(WRITER_APP, "--rate", "0", "--burst", "0", data_dir=data_dir)
    (data_dir / "sandbox.json").unlink()
    async with connect(first.url) as ws:
        for index in range(50):
            await ws.send(str(index))
            assert await asyncio.wait_for(ws.recv(), 10) == str(index)

        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ampt_sandbox", "dev", str(first.app_path), "--port", "0", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert f"in use by process {first.process.pid}" in second.stderr

        for index in range(50, 100):
            await ws.send(str(index))
            assert await asyncio.wait_for(ws.recv(), 10) == str(index)
    assert first.stop() == 0

    store = DataStore.open(data_dir)
    try:
        page = store.call("get", {"key": "w:*", "limit": 1000})
    finally:
        store.close()
    assert [item["value"]["n"] for item in page["items"]] == list(range(100))


# A state file that names a live process which is not a sandbox.


def test_state_file_of_reused_pid_is_replaced(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # After a kill -9 the pid may belong to another process: here the test's own.
    state = {
        "pid": os.getpid(),
        "url": f"ws://127.0.0.1:{closed_port}",
        "admin_url": f"http://127.0.0.1:{closed_port}",
        "token": "left-over-token",
        "started_at": "2024-01-01T00:00:00+00:00",
        "app": str(tmp_path / "app" / "app.py"),
        "data_dir": str(data_dir),
        "version": 1,
    }
    (data_dir / "sandbox.json").write_text(json.dumps(state))
    sandbox = run_sandbox(WRITER_APP, data_dir=data_dir)
    assert "Replacing a stale state file" in sandbox.output
    assert json.loads((data_dir / "sandbox.json").read_text())["pid"] == sandbox.process.pid
