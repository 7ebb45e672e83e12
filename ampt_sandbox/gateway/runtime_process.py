"""The gateway's handle on a runtime child process: start, load, stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..channel.frames import Frame, Op, encode_frame
from ..channel.transport import Channel, connect_channel

logger = logging.getLogger("ampt_sandbox.gateway.runtime")
app_logger = logging.getLogger("ampt_sandbox.app")

# Output of user code is read a line at a time. A longer line is logged in
# parts of this many bytes, and each part is cut to SHOWN_LINE_CHARS characters.
OUTPUT_LINE_LIMIT = 1024 * 1024
SHOWN_LINE_CHARS = 10_000

# How long a runtime may take to start its interpreter and import the SDK.
START_TIMEOUT = 30.0


@dataclass
class LoadResult:
    ok: bool
    handlers: dict[str, float] = field(default_factory=dict)
    # Maximum timeout of the data change handlers in seconds, or 0 without any.
    data_events: float = 0.0
    error: str = ""
    traceback: str = ""
    filename: str | None = None
    lineno: int | None = None


def _quiet_future() -> asyncio.Future[Any]:
    """Return a future whose exception counts as seen even when no one awaits it.

    A runtime that exits fails its pending futures. When it was killed on
    purpose no coroutine awaits them, and asyncio would log the error at exit.
    """
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


class RuntimeExited(Exception):
    """The runtime process ended before it sent the expected frame."""


class RuntimeProcess:
    """One runtime child process and its end of the channel.

    Frames other than READY, LOADED and LOAD_FAILED are passed to
    ``on_frames`` together with this object, which identifies the runtime
    that sent them.
    """

    def __init__(
        self,
        number: int,
        on_frames: Callable[[RuntimeProcess, list[Frame]], None],
        on_exit: Callable[[RuntimeProcess], None],
    ) -> None:
        self.number = number
        self.on_frames = on_frames
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.ready: asyncio.Future[dict[str, Any]] | None = None
        self.loaded: asyncio.Future[LoadResult] | None = None
        self.load_result: LoadResult | None = None
        self.exited = False
        # Set when the supervisor kills this runtime to end its load.
        self.aborted = False
        self._output_tasks: list[asyncio.Task[None]] = []
        self._exit_reported = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        """Start the child process and wait until it has imported the SDK."""
        self.ready = _quiet_future()
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # With -P the runtime finds ampt_sandbox only through sys.path, so
        # name the folder it was loaded from (a source checkout included).
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                # -P: do not put the current folder first on sys.path, so a
                # user's random.py or signal.py cannot replace the standard
                # module that the runtime itself imports (Python 3.11+).
                "-P",
                "-m",
                "ampt_sandbox.runtime",
                "--fd",
                str(child_sock.fileno()),
                "--parent-pid",
                str(os.getpid()),
                pass_fds=(child_sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=OUTPUT_LINE_LIMIT,
            )
        finally:
            child_sock.close()
        self.channel = await connect_channel(parent_sock, self._dispatch, self._channel_lost)
        self._output_tasks = [
            asyncio.create_task(self._forward_output(self.process.stdout, logging.INFO)),
            asyncio.create_task(self._forward_output(self.process.stderr, logging.WARNING)),
        ]
        asyncio.create_task(self._wait_exit())
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT)
        except TimeoutError:
            self.kill()
            raise RuntimeExited(f"runtime did not start within {START_TIMEOUT:g} s") from None
        except asyncio.CancelledError:
            self.kill()
            raise

    async def load(self, app: Path, connections: list[str]) -> LoadResult:
        """Import the app in this runtime; return whether it loaded and its handlers."""
        assert self.channel is not None
        self.loaded = _quiet_future()
        body = json.dumps({"app": str(app), "connections": connections}).encode()
        self.channel.write(encode_frame(Op.LOAD, body))
        result = await self.loaded
        self.load_result = result
        return result

    def write(self, frame: bytes) -> None:
        if self.channel is not None:
            self.channel.write(frame)

    @property
    def alive(self) -> bool:
        return not self.exited and self.channel is not None and self.channel.is_open

    def shutdown(self) -> None:
        """Ask the runtime to finish its invocations in flight and exit."""
        self.write(encode_frame(Op.SHUTDOWN))

    async def stop(self, grace: float) -> None:
        """Stop the runtime: SHUTDOWN, then SIGTERM after ``grace`` s, then SIGKILL."""
        if self.process is None or self.process.returncode is not None:
            return
        self.shutdown()
        for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            if sig is not None and self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), wait)
                return
            except TimeoutError:
                continue

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    # Internals.

    def _dispatch(self, frames: list[Frame]) -> None:
        forward: list[Frame] = []
        for frame in frames:
            if frame.op == Op.READY:
                if self.ready is not None and not self.ready.done():
                    self.ready.set_result(json.loads(frame.payload))
            elif frame.op in (Op.LOADED, Op.LOAD_FAILED):
                self._resolve_load(frame)
            else:
                forward.append(frame)
        if forward:
            self.on_frames(self, forward)

    def _resolve_load(self, frame: Frame) -> None:
        body = json.loads(frame.payload)
        if frame.op == Op.LOADED:
            result = LoadResult(
                ok=True, handlers=body.get("handlers", {}), data_events=float(body.get("data_events") or 0)
            )
        else:
            result = LoadResult(
                ok=False,
                error=body.get("error", ""),
                traceback=body.get("traceback", ""),
                filename=body.get("filename"),
                lineno=body.get("lineno"),
            )
        if self.loaded is not None and not self.loaded.done():
            self.loaded.set_result(result)

    def _channel_lost(self, exc: Exception | None) -> None:
        self.kill_if_stuck_later()

    def kill_if_stuck_later(self) -> None:
        # A runtime whose channel closed can do nothing useful; make sure it
        # ends even if it is stuck in user code.
        asyncio.get_running_loop().call_later(1.0, self.kill)

    async def _wait_exit(self) -> None:
        assert self.process is not None
        await self.process.wait()
        await asyncio.gather(*self._output_tasks, return_exceptions=True)
        self.exited = True
        if self.channel is not None:
            self.channel.close()
        error = RuntimeExited(f"runtime exited with status {self.process.returncode}")
        for future in (self.ready, self.loaded):
            if future is not None and not future.done():
                future.set_exception(error)
        if not self._exit_reported:
            self._exit_reported = True
            self.on_exit(self)

    async def _forward_output(self, stream: asyncio.StreamReader | None, level: int) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial  # the last line, without a newline, at exit
            except asyncio.LimitOverrunError as exc:
                # A line longer than the limit: log what is buffered as one
                # part of it, and read on.
                line = await stream.read(exc.consumed or OUTPUT_LINE_LIMIT)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            if len(text) > SHOWN_LINE_CHARS:
                text = f"{text[:SHOWN_LINE_CHARS]}... ({len(text) - SHOWN_LINE_CHARS} more characters)"
            app_logger.log(level, "%s", text)
