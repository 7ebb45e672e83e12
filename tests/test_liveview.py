"""The live view and the log formats of ``dev``: units with a fake gateway, then real terminals."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import fcntl
import pytest
from rich.console import Console
from websockets.asyncio.client import connect

from ampt_sandbox.limits import Limits
from ampt_sandbox.liveview.logs import JsonFormatter, LogBuffer
from ampt_sandbox.liveview.view import LiveView, RateMeter, record_lines

APP = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    if message == "fail":
        raise ValueError("boom on purpose")
    await connection.send(message)
"""

ANSI_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])")
ALT_SCREEN_ON = "\x1b[?1049h"


def make_record(message: str, level: int = logging.INFO, name: str = "ampt_sandbox.gateway") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def fake_gateway(loop: asyncio.AbstractEventLoop) -> SimpleNamespace:
    """Return an object with the gateway attributes that the view reads."""
    client = SimpleNamespace(
        id="Q29ubmVjdGlvbjE=", open=True, opened_at=loop.time() - 65, last_activity=loop.time() - 2,
        messages_in=3, messages_out=4, meta={"query_string_parameters": {"name": "ann"}},
    )
    return SimpleNamespace(
        url="ws://127.0.0.1:8765",
        state="active",
        stopping=False,
        started_at=time.time() - 3725,
        config=SimpleNamespace(app=Path("/tmp/app.py"), env="preview", limits=Limits(burst=50, rate=100)),
        counters=Counter(messages_in=10, messages_out=9, throttled=2, handler_errors=1),
        clients={client.id: client},
        invocations={},
        supervisor=SimpleNamespace(reloads=2),
        loop=loop,
    )


def text_console(width: int = 120, height: int = 40) -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, force_terminal=True, width=width, height=height, color_system=None), output


def render_text(view: LiveView, width: int = 120, height: int = 40) -> str:
    console, output = text_console(width, height)
    console.print(view.render(), height=height)
    return output.getvalue()


# Log formats.


def test_json_formatter_one_object_per_line() -> None:
    record = make_record("The message handler failed for abc: boom\nTraceback (most recent call last):\n  ...", logging.ERROR)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["level"] == "ERROR"
    assert body["logger"] == "ampt_sandbox.gateway"
    assert body["message"].startswith("The message handler failed for abc: boom\nTraceback")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", body["time"])


def test_json_formatter_adds_exception() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        record = logging.LogRecord("ampt_sandbox.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    body = json.loads(JsonFormatter().format(record))
    assert "KeyError: 'missing'" in body["traceback"]


def test_log_buffer_keeps_latest_and_last_error() -> None:
    buffer = LogBuffer(capacity=3)
    for index in range(5):
        buffer.handle(make_record(f"line {index}"))
    buffer.handle(make_record("it broke", logging.ERROR))
    assert [record.getMessage() for record in buffer.records] == ["line 3", "line 4", "it broke"]
    assert buffer.version == 6
    assert buffer.last_error is not None
    assert buffer.last_error.getMessage() == "it broke"


def test_rate_meter_over_one_second() -> None:
    meter = RateMeter()
    assert meter.sample(0.0, 0) == 0.0
    for step in range(1, 21):
        rate = meter.sample(step * 0.1, step * 50)
    assert rate == pytest.approx(500.0)


def test_record_lines_keep_traceback() -> None:
    record = make_record('handler failed\nTraceback (most recent call last):\n  File "app.py", line 3\nValueError: x')
    lines = [line.plain for line in record_lines(record)]
    assert lines[0].endswith("INFO    gateway: handler failed")
    assert lines[-1].strip() == "ValueError: x"
    assert len(lines) == 4


# The view with a fake gateway.


async def test_view_shows_gateway_state() -> None:
    view = LiveView(console=text_console()[0])
    view.gateway = fake_gateway(asyncio.get_running_loop())
    view.buffer.handle(make_record("Message from Q29ubmVjdGlvbjE= (5 bytes): hello"))
    screen = render_text(view)
    assert "ws://127.0.0.1:8765" in screen
    assert "active" in screen
    assert "up 1:02:05" in screen
    assert "preview: burst 50, rate 100 messages/s" in screen
    assert "Connections (1)" in screen
    assert "Q29ubmVjdGlvbjE=" in screen
    assert "name=ann" in screen
    assert "Message from Q29ubmVjdGlvbjE= (5 bytes): hello" in screen
    assert "throttled 2" in screen
    assert "errors 1" in screen


async def test_view_shows_last_error_traceback() -> None:
    view = LiveView(console=text_console()[0])
    view.gateway = fake_gateway(asyncio.get_running_loop())
    view.buffer.handle(make_record(
        "The message handler failed for abc: boom\nTraceback (most recent call last):\n"
        '  File "/tmp/app.py", line 7, in message\n    raise ValueError("boom")\nValueError: boom',
        logging.ERROR, "ampt_sandbox.app",
    ))
    for index in range(60):
        view.buffer.handle(make_record(f"later line {index}"))
    screen = render_text(view)
    # The log has scrolled past the error, but its panel still shows it.
    assert "Last error" in screen
    assert 'File "/tmp/app.py", line 7, in message' in screen
    assert "ValueError: boom" in screen
    assert "later line 59" in screen


async def test_view_tail_fits_height() -> None:
    view = LiveView(console=text_console()[0])
    for index in range(500):
        view.buffer.handle(make_record(f"line number {index}"))
    screen = render_text(view, height=30)
    assert len(screen.splitlines()) <= 30
    assert "line number 499" in screen
    assert "line number 400" not in screen


async def test_redraws_coalesced_under_load() -> None:
    console, _ = text_console()
    view = LiveView(console=console, max_redraws_per_second=10)
    view.start()
    gateway = fake_gateway(asyncio.get_running_loop())
    view.attach(gateway)
    started = time.monotonic()
    try:
        # About 4,000 log records and messages a second for one second.
        while time.monotonic() - started < 1.0:
            for _ in range(40):
                gateway.counters["messages_in"] += 1
                view.buffer.handle(make_record("Message from Q29ubmVjdGlvbjE= (5 bytes): hello"))
            await asyncio.sleep(0.01)
    finally:
        view.stop()
    elapsed = time.monotonic() - started
    # start() and stop() draw once each; the task at most ten times a second.
    assert view.redraws <= 2 + 10 * elapsed + 1
    assert view.redraws >= 5
    assert view.rate_in > 1000


# Real terminals.


class PtySandbox:
    """``ampt-sandbox dev`` whose standard output and error are a pseudo-terminal."""

    def __init__(self, args: list[str], cwd: Path, columns: int = 140, rows: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ampt_sandbox", *args],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"},
        )
        os.close(slave)
        self.master = master
        self.raw = bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            with self._changed:
                self.raw += chunk
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def text(self) -> str:
        with self._changed:
            return ANSI_ESCAPE.sub("", self.raw.decode("utf-8", "replace"))

    def wait_for(self, *needles: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                text = ANSI_ESCAPE.sub("", self.raw.decode("utf-8", "replace"))
                if all(needle in text for needle in needles):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"{needles!r} not all shown within {timeout} s; terminal text:\n{text[-4000:]}")
                self._changed.wait(min(remaining, 0.2))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        os.close(self.master)
        return code


def wait_for_state(data_dir: Path, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads((data_dir / "sandbox.json").read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"no state file in {data_dir} within {timeout} s")


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(APP))
    return path


async def connect_when_active(url: str, path: str = "/", timeout: float = 20.0):
    """Connect once the app has loaded; before that, handshakes get 403."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url + path)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_live_view_in_pty(tmp_path: Path, app_file: Path) -> None:
    data_dir = tmp_path / "data"
    terminal = PtySandbox(["dev", str(app_file), "--port", "0", "--data-dir", str(data_dir)], cwd=tmp_path)
    try:
        state = wait_for_state(data_dir)
        websocket = await connect_when_active(state["url"], "/?name=ann")
        async with websocket:
            await websocket.send("hello from the pty test")
            assert await asyncio.wait_for(websocket.recv(), 10) == "hello from the pty test"
            connection_id = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "ampt_sandbox", "connections", "--json", "--data-dir", str(data_dir)],
                    capture_output=True, text=True, timeout=30, check=True,
                ).stdout
            )["connections"][0]["connection_id"]
            await asyncio.to_thread(
                terminal.wait_for, state["url"], connection_id, "name=ann", "(23 bytes): hello from the pty test",
            )

            await websocket.send("fail")
            await asyncio.to_thread(terminal.wait_for, "Last error", "ValueError: boom on purpose", str(app_file))
        assert ALT_SCREEN_ON in terminal.raw.decode("utf-8", "replace")
        # The live view prints no URL line: the header shows the URL.
        assert not re.search(r"^ws://\S+\r?$", terminal.text, flags=re.MULTILINE)
        assert state["token"] not in terminal.text
    finally:
        code = terminal.stop()
    assert code == 0
    assert not (data_dir / "sandbox.json").exists()
    # After the view closes, the end of the log stays on the normal screen.
    assert "Stopped" in terminal.text.rsplit("\x1b[?1049l", 1)[-1]


async def test_no_tui_in_pty_prints_plain_lines(tmp_path: Path, app_file: Path) -> None:
    data_dir = tmp_path / "data"
    terminal = PtySandbox(["dev", str(app_file), "--port", "0", "--data-dir", str(data_dir), "--no-tui"], cwd=tmp_path)
    try:
        state = wait_for_state(data_dir)
        await asyncio.to_thread(terminal.wait_for, state["url"] + "\r\n", "INFO    ampt_sandbox.gateway: Listening on")
        assert ALT_SCREEN_ON not in terminal.raw.decode("utf-8", "replace")
    finally:
        assert terminal.stop() == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
async def test_live_view_in_tmux(tmp_path: Path, app_file: Path) -> None:
    data_dir = tmp_path / "data"
    # A private tmux server, so that the test never touches the user's sessions.
    server = f"ampt-test-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m ampt_sandbox dev {app_file} --port 0 --data-dir {data_dir}"
    subprocess.run(
        ["tmux", "-L", server, "new-session", "-d", "-x", "130", "-y", "40", "-c", str(tmp_path), command],
        check=True, timeout=30, env={**os.environ, "TERM": "xterm-256color"},
    )

    def capture() -> str:
        return subprocess.run(
            ["tmux", "-L", server, "capture-pane", "-p"], capture_output=True, text=True, timeout=30
        ).stdout

    def wait_for_screen(*needles: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = capture()
            if all(needle in screen for needle in needles):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{needles!r} not all on the screen within {timeout} s:\n{screen}")
            time.sleep(0.1)

    try:
        state = wait_for_state(data_dir)
        websocket = await connect_when_active(state["url"], "/?name=bob")
        async with websocket:
            await websocket.send("hello from tmux")
            await asyncio.wait_for(websocket.recv(), 10)
            screen = await asyncio.to_thread(wait_for_screen, state["url"], "Connections (1)", "hello from tmux")
            assert "name=bob" in screen
            assert "active" in screen
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (data_dir / "sandbox.json").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not (data_dir / "sandbox.json").exists()
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=30)


# Log lines when output is not a terminal.


def test_piped_output_has_no_escape_codes(run_sandbox) -> None:
    sandbox = run_sandbox(APP)
    assert "\x1b" not in sandbox.output
    assert re.search(r"INFO    ampt_sandbox.gateway: Listening on ws://", sandbox.output)


async def test_log_format_json(run_sandbox) -> None:
    sandbox = run_sandbox(APP, "--log-format", "json")
    async with connect(sandbox.url) as websocket:
        await websocket.send("json please")
        await asyncio.wait_for(websocket.recv(), 10)
    await sandbox.expect(r"Message from .* json please", stream="stderr")
    assert sandbox.stop() == 0
    records = [json.loads(line) for line in sandbox.stderr_lines]
    assert all(set(record) >= {"time", "level", "logger", "message"} for record in records)
    assert any(record["message"].startswith("Listening on ws://") for record in records)
    assert any("json please" in record["message"] for record in records)
    assert sandbox.stdout_lines == [sandbox.url]
