"""``ampt-sandbox connect`` as a process, against a real ``ampt-sandbox dev``."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ampt_sandbox.cli.connect_cmd import (
    check_url,
    check_wait,
    describe_close,
    format_message,
    parse_header,
    valid_text,
)

POKE_APP = """
import json
from ampt_sandbox import ws

@ws.on("connected")
async def connected(connection):
    print("HEADERS", json.dumps(connection.meta.headers, sort_keys=True))
    if (connection.meta.query_string_parameters or {}).get("fail") == "1":
        raise RuntimeError("rejecting this client on purpose")

@ws.on("message")
async def message(connection, message):
    if message == "bye":
        await connection.close()
        return
    await connection.send(message if isinstance(message, str) else json.dumps(message))
"""


class ConnectProcess:
    """A running ``ampt-sandbox connect`` with its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ampt_sandbox", "connect", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"},
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout.put(line.rstrip("\n"))
        self.stdout.put(None)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read_line(self, timeout: float = 10) -> str:
        try:
            line = self.stdout.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout} s; stderr: {self.stderr}") from None
        assert line is not None, f"standard output ended; stderr: {self.stderr}"
        return line

    def end_input(self) -> None:
        self.process.stdin.close()

    def wait(self, timeout: float = 20) -> int:
        code = self.process.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_connect():
    started: list[ConnectProcess] = []

    def start(*args: str) -> ConnectProcess:
        client = ConnectProcess(*args)
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()


@pytest.fixture
def poke(run_sandbox):
    return run_sandbox(POKE_APP)


# Pure helpers.


def test_parse_header() -> None:
    assert parse_header("X-Test: yes") == ("X-Test", "yes")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    with pytest.raises(ValueError, match="Name: value"):
        parse_header("no colon")
    with pytest.raises(ValueError, match="Name: value"):
        parse_header(": value")


def test_check_url() -> None:
    check_url("ws://127.0.0.1:8765/?name=ann")
    check_url("wss://example.invalid/")
    with pytest.raises(ValueError, match="try ws://127.0.0.1:8765/"):
        check_url("http://127.0.0.1:8765/")
    with pytest.raises(ValueError, match="try wss://h/"):
        check_url("https://h/")
    with pytest.raises(ValueError, match="must start with ws://"):
        check_url("127.0.0.1:8765")
    with pytest.raises(ValueError, match="no host"):
        check_url("ws:///path")


def test_format_message() -> None:
    assert format_message('{"a":[1]}', pretty_json=False) == '{"a":[1]}'
    assert format_message('{"a":[1]}', pretty_json=True) == '{\n  "a": [\n    1\n  ]\n}'
    assert format_message("not json", pretty_json=True) == "not json"
    assert format_message('"caf\\u00e9"', pretty_json=True) == '"caf\u00e9"'
    assert format_message(b"\x01\x02", pretty_json=False) == "<binary message, 2 bytes: 01 02>"


def test_describe_close() -> None:
    assert describe_close(1000, "bye") == "Closed with code 1000 (normal closure): bye"
    assert describe_close(1009, "") == "Closed with code 1009 (message too big)"
    assert describe_close(4001, "custom") == "Closed with code 4001 (application-defined): custom"
    assert describe_close(None, "") == "Connection lost without a close frame (1006)"


# Against a sandbox.


def test_sends_lines_prints_replies(poke, start_connect) -> None:
    client = start_connect(poke.url + "/?name=ann", "--wait", "0")
    client.send("hello")
    assert client.read_line() == "hello"
    client.send('{"a": 1}')
    assert client.read_line() == '{"a": 1}'
    client.send("ping")
    assert client.read_line() == "pong"
    client.end_input()
    assert client.wait() == 0
    assert "Connected to " in client.stderr
    assert "Closed with code 1000 (normal closure)" in client.stderr


def test_json_pretty_prints(poke, start_connect) -> None:
    client = start_connect(poke.url, "--json")
    client.send('{"text": "caf\u00e9", "n": [1, 2]}')
    expected = json.dumps({"text": "caf\u00e9", "n": [1, 2]}, indent=2, ensure_ascii=False).splitlines()
    assert [client.read_line() for _ in expected] == expected
    client.send("plain")
    assert client.read_line() == "plain"
    client.end_input()
    assert client.wait() == 0


def test_server_close_shows_code_and_reason(poke, start_connect) -> None:
    client = start_connect(poke.url, "--wait", "-1")
    client.send("bye")
    assert client.wait() == 0
    assert "Closed with code 1000 (normal closure): closed by the app" in client.stderr


def test_abnormal_close_exits_1(run_sandbox, start_connect) -> None:
    sandbox = run_sandbox(POKE_APP, "--max-message-size", "100")
    client = start_connect(sandbox.url, "--wait", "-1")
    client.send("x" * 200)
    assert client.wait() == 1
    assert "Closed with code 1009 (message too big)" in client.stderr


def test_rejected_handshake_exits_1(poke, start_connect) -> None:
    client = start_connect(poke.url + "/?fail=1")
    client.end_input()
    assert client.wait() == 1
    assert "rejected the handshake with HTTP 500 Internal Server Error" in client.stderr


def test_extra_headers_reach_app(poke, start_connect) -> None:
    client = start_connect(poke.url, "-H", "X-Test: yes", "--header", "X-Other:  two words ")
    line = poke.wait_for(r"HEADERS \{")
    headers = json.loads(line.split("HEADERS ", 1)[1])
    assert headers["X-Test"] == "yes"
    assert headers["X-Other"] == "two words"
    client.end_input()
    assert client.wait() == 0


def test_interrupt_closes_and_exits_130(poke, start_connect) -> None:
    client = start_connect(poke.url)
    client.send("first")
    assert client.read_line() == "first"
    client.process.send_signal(signal.SIGINT)
    assert client.wait() == 130
    assert "Interrupted" in client.stderr
    poke.wait_for(r"Disconnected \S+: client closed the connection with code 1000 \(client interrupted\)")


def test_unreachable_server_exits_1(start_connect) -> None:
    # A port that was free a moment ago: bind it, note it, close it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = start_connect(f"ws://127.0.0.1:{port}/")
    client.end_input()
    assert client.wait() == 1
    assert "cannot connect to" in client.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:1/"], "must start with ws://"),
        (["ws://127.0.0.1:1/", "-H", "nocolon"], "write it as 'Name: value'"),
    ],
)
def test_invalid_arguments_exit_1(start_connect, args: list[str], message: str) -> None:
    client = start_connect(*args)
    client.end_input()
    assert client.wait() == 1
    assert message in client.stderr


@pytest.mark.parametrize("port", ["99999", "65536", "0", "x"])
def test_check_url_port_out_of_range(port: str) -> None:
    with pytest.raises(ValueError, match="port must be a number from 1 to 65535"):
        check_url(f"ws://127.0.0.1:{port}/")


@pytest.mark.parametrize("wait", [float("nan"), -5.0, -0.5, float("-inf")])
def test_check_wait_rejects(wait: float) -> None:
    with pytest.raises(ValueError, match="invalid --wait"):
        check_wait(wait)


@pytest.mark.parametrize("wait", [0.0, 1.5, -1.0, float("inf")])
def test_check_wait_accepts(wait: float) -> None:
    check_wait(wait)


def test_valid_text_replaces_undecodable_bytes() -> None:
    decoded = b"ab\xff\xfecd".decode("utf-8", "surrogateescape")
    assert valid_text(decoded) == "ab\ufffd\ufffdcd"
    assert valid_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert valid_text("x\ud83dy") == "x?y"


@pytest.mark.parametrize("url", ["ws://127.0.0.1:99999/", "ws://127.0.0.1:0/"])
def test_port_out_of_range_exits_1(start_connect, url: str) -> None:
    client = start_connect(url)
    client.end_input()
    assert client.wait() == 1
    lines = client.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "port must be a number from 1 to 65535" in lines[0]


@pytest.mark.parametrize("wait", ["nan", "-5"])
def test_invalid_wait_exits_1(start_connect, wait: str) -> None:
    client = start_connect("ws://127.0.0.1:1/", "--wait", wait)
    client.end_input()
    assert client.wait() == 1
    assert "invalid --wait" in client.stderr


def test_wss_to_plain_server_names_error(poke, start_connect) -> None:
    client = start_connect(poke.url.replace("ws://", "wss://", 1))
    client.end_input()
    assert client.wait() == 1
    line = client.stderr.strip().splitlines()[-1]
    assert "cannot connect to wss://" in line
    assert ": ;" not in line
    assert "serves ws://, not wss://" in line


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_invalid_utf8_stdin_keeps_going(poke, locale: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "connect", poke.url, "--wait", "-1"],
        input=b"ping\n\xff\xfe\nhello\nbye\n",
        capture_output=True,
        timeout=30,
        env={**os.environ, "LC_ALL": locale, "PYTHONIOENCODING": "", "PYTHONUTF8": "0"},
    )
    stdout = result.stdout.decode("utf-8", "replace").splitlines()
    assert result.returncode == 0, result.stderr
    # An ASCII terminal (the C locale) shows U+FFFD as an escape.
    assert stdout[1] in ("\ufffd\ufffd", "\\ufffd\\ufffd")
    assert stdout[2] == "hello"
    assert b"Traceback" not in result.stderr


def test_stdin_file_works(poke, tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("bye\n")
    with lines.open() as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "ampt_sandbox", "connect", poke.url, "--wait", "-1"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert "closed by the app" in result.stderr
