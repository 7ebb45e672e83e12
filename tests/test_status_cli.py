"""status, connections, send, close, pause and resume against a real ``ampt-sandbox dev``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Sandbox
from typer.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ampt_sandbox.cli.main import app
from ampt_sandbox.cli.manage import format_duration, format_status
from ampt_sandbox.gateway.statefile import SandboxState, write_state

runner = CliRunner()

APP = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    await connection.send({"echo": message})

@ws.on("disconnected")
async def disconnected(connection, reason):
    print("DISCONNECTED", connection.connection_id, "|", reason)
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("status")
    app_path = root / "app.py"
    app_path.write_text(textwrap.dedent(APP))
    running = Sandbox(["dev", str(app_path), "--port", "0", "--data-dir", str(root / "data")], cwd=root)
    running.data_dir = root / "data"
    try:
        running.wait_url()
        yield running
    finally:
        running.stop()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def connection_ids(data_dir: Path) -> set[str]:
    result = invoke("connections", "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    return {row["connection_id"] for row in json.loads(result.stdout)["connections"]}


async def connect_and_identify(sandbox: Sandbox, path: str = "/"):
    before = connection_ids(sandbox.data_dir)
    websocket = await connect(sandbox.url + path)
    (connection_id,) = connection_ids(sandbox.data_dir) - before
    return websocket, connection_id


def token_of(data_dir: Path) -> str:
    return json.loads((data_dir / "sandbox.json").read_text())["token"]


# status


def test_status_text(sandbox: Sandbox) -> None:
    result = invoke("status", "--data-dir", str(sandbox.data_dir))
    assert result.exit_code == 0, result.output
    assert f"pid          {sandbox.process.pid}" in result.stdout
    assert sandbox.url in result.stdout
    assert "state        active" in result.stdout
    assert "sandbox: burst 10, rate 10 messages/s" in result.stdout
    assert token_of(sandbox.data_dir) not in result.output


def test_status_json(sandbox: Sandbox) -> None:
    result = invoke("status", "--json", "--data-dir", str(sandbox.data_dir))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["running"] is True
    assert body["pid"] == sandbox.process.pid
    assert body["url"] == sandbox.url
    assert body["state"] == "active"
    assert "token" not in body


async def test_status_counts_messages(sandbox: Sandbox) -> None:
    before = json.loads(invoke("status", "--json", "--data-dir", str(sandbox.data_dir)).stdout)
    async with connect(sandbox.url) as websocket:
        await websocket.send("one")
        await asyncio.wait_for(websocket.recv(), 10)
        body = json.loads(invoke("status", "--json", "--data-dir", str(sandbox.data_dir)).stdout)
    assert body["connections"] == before["connections"] + 1
    assert body["messages_received"] == before["messages_received"] + 1
    assert body["messages_sent"] == before["messages_sent"] + 1


def test_status_without_sandbox_exits_1(tmp_path: Path) -> None:
    result = invoke("status", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no sandbox runs" in result.stderr
    assert "no state file" in result.stderr


def test_status_json_without_sandbox(tmp_path: Path) -> None:
    result = invoke("status", "--json", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 1
    body = json.loads(result.stdout)
    assert body["running"] is False
    assert body["stale"] is False


def test_status_with_invalid_state_file(tmp_path: Path) -> None:
    (tmp_path / "sandbox.json").write_text("{not json")
    result = invoke("status", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "not a valid state file" in result.stderr


# connections, send, close


async def test_connections_lists_client(sandbox: Sandbox) -> None:
    websocket, connection_id = await connect_and_identify(sandbox, "/?name=ann&room=blue")
    async with websocket:
        result = invoke("connections", "--data-dir", str(sandbox.data_dir))
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split()[:3] == ["CONNECTION", "ID", "CONNECTED"]
        row = next(row for row in rows if row.startswith(connection_id))
        assert row.endswith("name=ann&room=blue")


def test_connections_empty(tmp_path: Path, run_sandbox) -> None:
    sandbox = run_sandbox(APP, data_dir=tmp_path / "empty")
    result = invoke("connections", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "No live connections.\n"
    sandbox.stop()


@pytest.mark.parametrize("message", ['{"a": 1}', "plain words", "ünïcödé ✓", "-1"])
async def test_send_delivers_text_unchanged(sandbox: Sandbox, message: str) -> None:
    websocket, connection_id = await connect_and_identify(sandbox)
    async with websocket:
        result = invoke("send", connection_id, message, "--data-dir", str(sandbox.data_dir))
        assert result.exit_code == 0, result.output
        assert result.stdout == f"Sent {len(message.encode())} bytes to {connection_id}.\n"
        assert await asyncio.wait_for(websocket.recv(), 10) == message


@pytest.mark.parametrize("command", ["send", "close"])
@pytest.mark.parametrize("connection_id", ["", " "], ids=["empty", "blank"])
def test_empty_connection_id_rejected(sandbox: Sandbox, command: str, connection_id: str) -> None:
    args = [command, connection_id, *(["hello"] if command == "send" else []), "--data-dir", str(sandbox.data_dir)]
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "connection id is empty" in lines[0]
    assert "405" not in lines[0]


@pytest.mark.parametrize("command", ["send", "close"])
@pytest.mark.parametrize("connection_id", ["Tm9TdWNoSWQ=", "-m9TdWNoSWQ=", "--9TdWNoSWQ="])
def test_unknown_connection_exits_1(sandbox: Sandbox, command: str, connection_id: str) -> None:
    args = [command, connection_id, *(["hello"] if command == "send" else []), "--data-dir", str(sandbox.data_dir)]
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"Connection {connection_id} is not connected" in lines[0]
    assert "ampt-sandbox connections" in lines[0]


async def test_close_ends_connection(sandbox: Sandbox) -> None:
    websocket, connection_id = await connect_and_identify(sandbox)
    result = invoke("close", connection_id, "--data-dir", str(sandbox.data_dir))
    assert result.exit_code == 0, result.output
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(websocket.recv(), 10)
    assert websocket.close_code == 1000
    line = await sandbox.expect(rf"DISCONNECTED {connection_id} ")
    assert "closed through the management API" in line
    assert connection_id not in connection_ids(sandbox.data_dir)


# pause, resume


async def test_pause_and_resume(sandbox: Sandbox) -> None:
    result = invoke("pause", "--data-dir", str(sandbox.data_dir))
    try:
        assert result.exit_code == 0, result.output
        assert "HTTP 403" in result.stdout
        with pytest.raises(InvalidStatus) as caught:
            async with connect(sandbox.url):
                pass
        assert caught.value.response.status_code == 403
        status = json.loads(invoke("status", "--json", "--data-dir", str(sandbox.data_dir)).stdout)
        assert status["state"] == "paused"
    finally:
        result = invoke("resume", "--data-dir", str(sandbox.data_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Resumed: new connections are accepted.\n"
    async with connect(sandbox.url) as websocket:
        await websocket.send("again")
        assert json.loads(await asyncio.wait_for(websocket.recv(), 10)) == {"echo": "again"}


@pytest.mark.parametrize("command", ["connections", "pause", "resume"])
def test_commands_without_sandbox_exit_1(tmp_path: Path, command: str) -> None:
    result = invoke(command, "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1


# The state file over the life of dev.


def test_stale_state_after_kill_9(tmp_path: Path, run_sandbox) -> None:
    data_dir = tmp_path / "data"
    first = run_sandbox(APP, data_dir=data_dir)
    token = token_of(data_dir)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    result = invoke("status", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "stale" in result.stderr
    assert str(first.process.pid) in result.stderr
    assert token not in result.output

    result = invoke("status", "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["stale"] is True
    assert body["state_file"]["pid"] == first.process.pid
    assert token not in result.output

    for command in (["connections"], ["send", "abc", "hi"], ["close", "abc"], ["pause"]):
        result = invoke(*command, "--data-dir", str(data_dir))
        assert result.exit_code == 1
        assert "stale" in result.stderr
        assert token not in result.output

    # The next dev replaces the stale file instead of refusing to start.
    second = run_sandbox(APP, data_dir=data_dir)
    assert "Replacing a stale state file" in second.output
    assert json.loads((data_dir / "sandbox.json").read_text())["pid"] == second.process.pid
    assert token not in second.output


def test_second_dev_refused(tmp_path: Path, run_sandbox) -> None:
    data_dir = tmp_path / "data"
    first = run_sandbox(APP, data_dir=data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "dev", str(first.app_path), "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"process {first.process.pid}" in lines[0]
    assert first.url in lines[0]
    assert first.process.poll() is None


def test_state_file_removed_on_clean_exit(tmp_path: Path, run_sandbox) -> None:
    data_dir = tmp_path / "data"
    sandbox = run_sandbox(APP, data_dir=data_dir)
    assert (data_dir / "sandbox.json").exists()
    assert sandbox.stop(signal.SIGTERM) == 0
    assert not (data_dir / "sandbox.json").exists()
    result = invoke("status", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "no state file" in result.stderr


# The token in tracebacks.

CRASHING_COMMAND = """
import http.client, sys
from ampt_sandbox.cli import main

def fail_inside_request(self, *args, **kwargs):
    raise RuntimeError("simulated failure inside a command")

http.client.HTTPConnection.request = fail_inside_request
main.app.pretty_exceptions_show_locals = sys.argv[1] == "show-locals"
sys.argv = ["ampt-sandbox", "status", "--data-dir", sys.argv[2]]
main.main()
"""


def run_crashing_command(data_dir: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CRASHING_COMMAND, mode, str(data_dir)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )


def test_crash_traceback_hides_token(tmp_path: Path) -> None:
    token = "token-that-must-stay-secret-1234"
    # A state file that names a live process (this one), so that the command
    # gets as far as sending the request with the token.
    write_state(tmp_path, SandboxState(
        pid=os.getpid(), url="ws://127.0.0.1:9", admin_url="http://127.0.0.1:9", token=token,
        started_at="2024-01-01T00:00:00.000+00:00", app="app.py", data_dir=str(tmp_path),
    ))

    result = run_crashing_command(tmp_path, "default")
    assert result.returncode == 1
    assert "simulated failure inside a command" in result.stderr
    assert token not in result.stdout + result.stderr

    # The same crash with locals shown does print the token, so the check
    # above would catch a regression.
    control = run_crashing_command(tmp_path, "show-locals")
    assert "simulated failure inside a command" in control.stderr
    assert token in control.stderr


# The text form.


def test_format_status_inactive_and_unlimited() -> None:
    body = {
        "running": True, "pid": 42, "url": "ws://127.0.0.1:8765", "admin_url": "http://127.0.0.1:9000",
        "app": "/srv/app.py", "data_dir": "/srv/.ampt", "environment": "stage",
        "limits": {"burst": None, "rate": None}, "state": "inactive",
        "inactive_reason": "the app failed to import: SyntaxError", "started_at": "2024-01-01T00:00:00.000+00:00",
        "uptime_seconds": 3725.5, "connections": 0, "connections_total": 4, "connections_rejected": 3,
        "connections_rejected_by_status": {"403": 2, "429": 0, "500": 1}, "messages_received": 9,
        "messages_sent": 8, "messages_throttled": 0, "invocations_in_flight": 0, "handler_errors": 1,
        "handler_timeouts": 2, "reloads": 1, "restarts": 0,
        "last_load": {"reason": "file change", "ok": False, "error": "SyntaxError", "at": "2024-01-01T01:00:00.000+00:00"},
        "data_items": None,
    }
    text = format_status(body)
    assert text.splitlines()[0] == "Sandbox running in /srv/.ampt"
    assert "  environment  stage: no burst limit, no rate limit" in text
    assert "  state        inactive (the app failed to import: SyntaxError)" in text
    assert "  uptime       1h 02m 05s" in text
    assert "  connections  0 live, 4 in total, 3 rejected (403: 2, 500: 1)" in text
    assert "  handlers     1 error, 2 timeouts, 0 in flight" in text
    assert "last load: failed: SyntaxError (file change, 2024-01-01T01:00:00.000+00:00)" in text
    assert "  data items   unknown" in text


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.4, "0s"), (59.9, "59s"), (61, "1m 01s"), (3600, "1h 00m 00s"), (90061, "1d 1h 01m")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected
