"""Resilience at scale, end to end: vanished clients, a thousand clients, crashes.

Each test runs the real ``ampt-sandbox dev`` on 127.0.0.1 and checks that
nothing is lost: no record left behind, no message unanswered, no
acknowledged write missing, no connection dropped by a crash it did not
cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ampt_sandbox.store import DataStore

TOO_MANY_REQUESTS = "Too Many Requests"


@contextlib.contextmanager
def open_file_limit(needed: int) -> Iterator[None]:
    """Raise this process's open-file limit to ``needed`` for the block; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the open-file limit is {hard}, and this test needs {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def connect_all(url: str, count: int, batch: int = 100, **options) -> list[ClientConnection]:
    """Open ``count`` connections, ``batch`` at a time so that the listen backlog never overflows."""
    clients: list[ClientConnection] = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(*(connect(url, **options) for _ in range(start, min(count, start + batch))))
    return clients


def read_store(data_dir: Path, pattern: str) -> list[dict]:
    """Return every item that matches ``pattern``, read from the store on disk."""
    store = DataStore.open(data_dir)
    try:
        items: list[dict] = []
        start = None
        for _ in range(1000):
            page = store.call("get", {"key": pattern, "limit": 1000, "start": start})
            items += page["items"]
            start = page.get("last_key")
            if not start:
                return items
        raise AssertionError(f"more than a million items match {pattern}")
    finally:
        store.close()


# Clients that vanish without a close frame.

KILLED_CLIENTS = """
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url, count):
    clients = [await connect(f"{url}/?name=killed{index}") for index in range(count)]
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_vanished_clients_leave_no_records(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    sandbox = run_sandbox(
        None, "--env", "stage", "--ping-interval", "0.5", "--ping-timeout", "0.5",
        template="location", data_dir=data_dir,
    )
    # 100 clients in a process killed with SIGKILL: its kernel closes their
    # sockets. 100 more go silent, as after a network loss: they stop reading
    # and send no pong for the gateway's pings.
    killed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_CLIENTS, sandbox.url, "100", stdout=asyncio.subprocess.PIPE
    )
    silent: list[ClientConnection] = []
    try:
        assert await asyncio.wait_for(killed.stdout.readline(), 60) == b"ready\n"
        silent = await connect_all(sandbox.url + "/?name=silent", 100, ping_interval=None)
        await sandbox.expect_count(r"Connected \S+ \(\d+ open\)", 200)
        connected_ids = set(re.findall(r"Connected (\S+) \(\d+ open\)", sandbox.output))
        assert len(connected_ids) == 200

        for client in silent:
            client.transport.pause_reading()
        killed.kill()
        await killed.wait()

        await sandbox.expect_count(r"Disconnected \S+: connection lost without a close frame", 100, timeout=60)
        await sandbox.expect_count(
            r"Disconnected \S+: connection lost: the client did not answer keepalive pings", 100, timeout=60
        )
    finally:
        if killed.returncode is None:
            killed.kill()
            await killed.wait()
        for client in silent:
            client.transport.abort()

    disconnected_ids = re.findall(r"Disconnected (\S+): ", sandbox.output)
    assert len(disconnected_ids) == 200
    assert set(disconnected_ids) == connected_ids
    # Stopping waits for disconnected handlers still running.
    assert sandbox.stop() == 0
    assert "handler failed" not in sandbox.output
    assert "handler timed out" not in sandbox.output
    assert read_store(data_dir, "connection:*") == []


# A thousand clients at once under the stage limits.

CLIENTS = 1000
HOLDS_PER_CLIENT = 5  # 1,000 x 5 = the stage burst limit of 5,000
EXTRAS_PER_CLIENT = 3
AFTER_PER_CLIENT = 4

HOLDING_APP = """
import asyncio
from ampt_sandbox import ws

release = asyncio.Event()

@ws.on("message", timeout=60)
async def message(connection, message):
    if isinstance(message, str) and message.startswith("hold"):
        await connection.send({"held": message, "id": connection.connection_id})
        await release.wait()
    await connection.send({"echo": message})

# disconnected handlers run whatever the burst limit, so closing the one
# releasing connection frees every held invocation.
@ws.on("disconnected")
async def disconnected(connection, reason):
    release.set()
"""


async def receive_json(websocket: ClientConnection, timeout: float = 60.0):
    return json.loads(await asyncio.wait_for(websocket.recv(), timeout))


class PhasedClients:
    """Drive the clients of the thousand-client test through its three phases together."""

    def __init__(self) -> None:
        self.holds_ready = 0
        self.released = asyncio.Event()

    async def release(self, releaser: ClientConnection) -> None:
        """Close the releasing connection once every client has its held invocations in flight."""
        for _ in range(1200):
            if self.holds_ready == CLIENTS:
                break
            await asyncio.sleep(0.1)
        assert self.holds_ready == CLIENTS
        await releaser.close()
        self.released.set()

    async def run(self, client: ClientConnection) -> tuple[int, int]:
        """Drive one client; return phase three's counts of handled and throttled messages."""
        # Phase one: five held invocations each, 5,000 in all: the burst limit.
        for index in range(HOLDS_PER_CLIENT):
            await client.send(f"hold{index}")
        held = [await receive_json(client) for _ in range(HOLDS_PER_CLIENT)]
        assert sorted(reply["held"] for reply in held) == [f"hold{index}" for index in range(HOLDS_PER_CLIENT)]
        connection_id = held[0]["id"]

        # Phase two: the burst limit is reached, so the gateway replies to each
        # message with Too Many Requests, and the handler never receives it.
        for index in range(EXTRAS_PER_CLIENT):
            await client.send(f"extra{index}")
        for _ in range(EXTRAS_PER_CLIENT):
            reply = await receive_json(client)
            assert reply["message"] == TOO_MANY_REQUESTS
            assert reply["connectionId"] == connection_id
            assert reply["requestId"]
        self.holds_ready += 1

        # The releaser's disconnected handler lets the held invocations finish.
        await asyncio.wait_for(self.released.wait(), 120)
        echoes = [await receive_json(client) for _ in range(HOLDS_PER_CLIENT)]
        assert sorted(reply["echo"] for reply in echoes) == [f"hold{index}" for index in range(HOLDS_PER_CLIENT)]

        # Phase three: held invocations may still be finishing, so each
        # message is either handled or throttled, and none goes unanswered.
        for index in range(AFTER_PER_CLIENT):
            await client.send(json.dumps(index))
        handled: list[int] = []
        throttled = 0
        for _ in range(AFTER_PER_CLIENT):
            reply = await receive_json(client)
            if "echo" in reply:
                handled.append(reply["echo"])
            else:
                assert reply["message"] == TOO_MANY_REQUESTS
                throttled += 1
        assert len(set(handled)) == len(handled)
        assert set(handled) <= set(range(AFTER_PER_CLIENT))
        return len(handled), throttled


async def test_thousand_clients_every_message_answered(run_sandbox):
    with open_file_limit(2 * CLIENTS + 512):
        sandbox = run_sandbox(HOLDING_APP, "--env", "stage", "--log-level", "warning")
        clients = await connect_all(sandbox.url, CLIENTS)
        releaser = await connect(sandbox.url)
        phases = PhasedClients()
        try:
            *outcomes, _ = await asyncio.gather(*(phases.run(client) for client in clients), phases.release(releaser))
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
            releaser.transport.abort()

    handled = sum(count for count, _throttled in outcomes)
    throttled = sum(count for _handled, count in outcomes)
    assert handled + throttled == CLIENTS * AFTER_PER_CLIENT
    assert "burst limit reached" in sandbox.output


# The gateway killed with SIGKILL during a stream of writes.

WRITER_APP = """
from ampt_sandbox import ws, data

@ws.on("message")
async def message(connection, message):
    await data.set(message["key"], {"i": message["i"], "pad": "p" * 200})
    await connection.send(str(message["i"]))
"""
WRITERS = 4
SLOTS = 50  # keys per writer, overwritten in turn


async def test_gateway_sigkill_keeps_acknowledged_writes(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    first = run_sandbox(WRITER_APP, "--rate", "0", "--burst", "0", "--log-level", "warning", data_dir=data_dir)
    journal = data_dir / "data.jsonl"
    first_inode = journal.stat().st_ino
    acknowledged = [dict() for _ in range(WRITERS)]
    compacted = asyncio.Event()

    async def write(writer: int, client: ClientConnection) -> None:
        # One write at a time, so that a key's acknowledged value is the
        # last one written before it.
        for index in range(100_000):
            key = f"w{writer}:{index % SLOTS:03d}"
            try:
                await client.send(json.dumps({"key": key, "i": index}))
                reply = await asyncio.wait_for(client.recv(), 10)
            except ConnectionClosed:
                return
            assert reply == str(index)
            acknowledged[writer][key] = index

    clients = [await connect(first.url) for _ in range(WRITERS)]
    writers = [asyncio.create_task(write(number, client)) for number, client in enumerate(clients)]
    try:
        # Overwrites make the journal compact itself, by a rename onto a new
        # file; the kill comes after at least one compaction, during more writes.
        for _ in range(1200):
            if journal.stat().st_ino != first_inode:
                compacted.set()
                break
            await asyncio.sleep(0.05)
        assert compacted.is_set(), "the journal never compacted during the writes"
        acknowledged_before_kill = sum(len(keys) for keys in acknowledged)
        await asyncio.sleep(0.3)
        first.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*writers), 30)
    finally:
        for task in writers:
            task.cancel()
        for client in clients:
            client.transport.abort()
    assert first.stop() == -signal.SIGKILL
    assert acknowledged_before_kill == WRITERS * SLOTS

    # The next dev opens the store and serves, replacing the stale state file.
    second = run_sandbox(WRITER_APP, "--rate", "0", "--burst", "0", data_dir=data_dir)
    assert "Replacing a stale state file" in second.output
    async with connect(second.url) as client:
        await client.send(json.dumps({"key": "after:restart", "i": 1}))
        assert await asyncio.wait_for(client.recv(), 10) == "1"
    assert second.stop() == 0

    stored = {item["key"]: item["value"]["i"] for item in read_store(data_dir, "w0:*")}
    for writer in range(1, WRITERS):
        stored.update({item["key"]: item["value"]["i"] for item in read_store(data_dir, f"w{writer}:*")})
    for writer in range(WRITERS):
        for key, index in acknowledged[writer].items():
            # The write in flight at the kill may have landed too, one lap later.
            assert stored[key] in (index, index + SLOTS), key


# The runtime killed while invocations run.

RUNTIME_APP = """
import asyncio, os
from ampt_sandbox import ws, data

@ws.on("connected")
async def connected(connection):
    await data.set(f"connection:{connection.connection_id}", {"at": connection.meta.connected_at})

@ws.on("message", timeout=30)
async def message(connection, message):
    if message == "hold":
        await connection.send({"holding": os.getpid()})
        await asyncio.sleep(30)
    elif isinstance(message, dict) and "to" in message:
        await ws.send(message["to"], {"from": connection.connection_id})
        await connection.send({"sent": await ws.is_connected(message["to"])})
    else:
        record = await data.get(f"connection:{connection.connection_id}")
        await connection.send({"pid": os.getpid(), "id": connection.connection_id, "record": record is not None,
                               "message": message})

@ws.on("disconnected")
async def disconnected(connection, reason):
    await data.remove(f"connection:{connection.connection_id}")
    print("DISCONNECTED", connection.connection_id, os.getpid(), "|", reason)
"""


async def test_runtime_sigkill_keeps_connections_open(run_sandbox):
    sandbox = run_sandbox(RUNTIME_APP, "--rate", "0", "--burst", "0")
    clients = [await connect(sandbox.url) for _ in range(3)]
    try:
        ids = []
        for client in clients:
            await client.send('"who"')
            ids.append((await receive_json(client, 10))["id"])
        for client in clients:
            await client.send("hold")
        pids = {(await receive_json(client, 10))["holding"] for client in clients}
        assert len(pids) == 1
        old_pid = pids.pop()

        os.kill(old_pid, signal.SIGKILL)
        for connection_id in ids:
            await sandbox.expect(
                rf"The message invocation for {re.escape(connection_id)} failed: runtime \d+ exited \(status -9\)"
            )
        await sandbox.expect(r"Runtime \d+ exited with status -9; invocations lost: 3; restarting")

        # Messages that arrive once the gateway has seen the exit wait for the
        # next runtime. (Those that reach it before are sent to the dead
        # runtime, and are lost and logged like the three above.)
        for index, client in enumerate(clients):
            await client.send(json.dumps(index))
        await sandbox.expect(r"Loaded app\.py in \d+ ms \(restart after a runtime exit\)")

        for index, client in enumerate(clients):
            reply = await receive_json(client, 20)
            assert reply["message"] == index
            assert reply["pid"] != old_pid
            assert reply["id"] == ids[index]
            assert reply["record"] is True

        # The new runtime received the list of open connections when it loaded.
        await clients[0].send(json.dumps({"to": ids[1]}))
        assert await receive_json(clients[1], 10) == {"from": ids[0]}
        assert await receive_json(clients[0], 10) == {"sent": True}
        await clients[2].close()
        await sandbox.expect(rf"DISCONNECTED {re.escape(ids[2])} \d+ \| client closed the connection with code 1000")
    finally:
        for client in clients:
            client.transport.abort()


# The data commands while the sandbox serves traffic.


def data_command(data_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "data", *args, "--data-dir", str(data_dir)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


async def test_data_commands_during_traffic_lose_nothing(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    sandbox = run_sandbox(WRITER_APP, "--rate", "0", "--burst", "0", "--log-level", "warning", data_dir=data_dir)
    acknowledged: set[str] = set()
    stop_writing = asyncio.Event()

    async def write(writer: int, client: ClientConnection) -> None:
        for index in range(1_000_000):
            if stop_writing.is_set():
                return
            key = f"w{writer}:{index:06d}"
            await client.send(json.dumps({"key": key, "i": index}))
            assert await asyncio.wait_for(client.recv(), 10) == str(index)
            acknowledged.add(key)

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(data_command, data_dir, tmp_path, *args)
        assert result.returncode == 0, result.stderr
        return result

    clients = [await connect(sandbox.url) for _ in range(WRITERS)]
    writers = [asyncio.create_task(write(number, client)) for number, client in enumerate(clients)]
    try:
        for round_number in range(3):
            seed = tmp_path / f"seed{round_number}.json"
            seed.write_text(json.dumps([{"key": f"imp{round_number}:{index:03d}", "value": index} for index in range(200)]))
            imported = await run("import", str(seed))
            assert "Imported 200 items" in imported.stdout

            # Every write acknowledged before the export starts is in it.
            before_export = set(acknowledged)
            await run("export", str(tmp_path / f"export{round_number}.json"))
            exported = json.loads((tmp_path / f"export{round_number}.json").read_text())
            exported_keys = {entry["key"] for entry in exported}
            assert before_export <= exported_keys
            assert {f"imp{round_number}:{index:03d}" for index in range(200)} <= exported_keys

            before_get = {key for key in acknowledged if key.startswith("w0:")}
            page = json.loads((await run("get", "w0:*", "--limit", "1000", "--reverse")).stdout)
            newest = {item["key"] for item in page["items"]}
            assert max(before_get) in newest

            assert json.loads((await run("remove", f"imp{round_number}:000")).stdout) is True
        assert all(not task.done() for task in writers), "a writer stopped during the data commands"
    finally:
        stop_writing.set()
        await asyncio.wait_for(asyncio.gather(*writers, return_exceptions=True), 30)
        for client in clients:
            await client.close()
    for task in writers:
        assert task.exception() is None
    assert sandbox.stop() == 0

    # The journal is whole: one JSON document per line, the last one ended.
    journal = (data_dir / "data.jsonl").read_bytes()
    assert journal.endswith(b"\n")
    for line in journal.splitlines():
        json.loads(line)
    stored = {item["key"] for writer in range(WRITERS) for item in read_store(data_dir, f"w{writer}:*")}
    assert acknowledged <= stored
    for round_number in range(3):
        imported = {item["key"] for item in read_store(data_dir, f"imp{round_number}:*")}
        assert len(imported) == 199
        assert f"imp{round_number}:000" not in imported
