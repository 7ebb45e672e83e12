"""Entry point of the runtime child process: ``python -m ampt_sandbox.runtime --fd N``.

The gateway starts this process with one end of a socket pair. The runtime
reports READY once the SDK is imported, imports the app on a LOAD frame,
then runs one asyncio task per invocation until the gateway sends SHUTDOWN
or the channel closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from .. import __version__, data
from ..channel.frames import Frame, Op, Status, encode_frame
from ..channel.transport import Channel, connect_channel
from ..eventloop import install_event_loop_policy
from ..protocol.messages import PING, PONG, parse_message
from .bridge import bridge
from .loader import AppLoadError, format_user_traceback, load_app
from .ws import ConnectionMeta, SocketConnection, ws

logger = logging.getLogger("ampt_sandbox.runtime")

# How often handler deadlines are checked, in seconds: a handler may run
# this much past its timeout before it is cancelled.
SWEEP_INTERVAL = 0.05


class ChannelLogHandler(logging.Handler):
    """Forward log records to the gateway, which owns all output."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            body = {
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
            self.channel.write(encode_frame(Op.LOG, json.dumps(body).encode()))
        except Exception:  # noqa: BLE001 - logging must never raise into user code
            self.handleError(record)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Runtime:
    def __init__(self) -> None:
        self.channel: Channel | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        # Deadlines of the ws handlers running now: (deadline, timeout, event).
        # One periodic sweep cancels the late ones, which costs far less per
        # message than a timer per invocation.
        self.deadlines: dict[asyncio.Task[None], tuple[float, float, str]] = {}
        self.expired: dict[asyncio.Task[None], str] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.stopping = asyncio.Event()

    # Dispatch of incoming frames, one call per read from the channel.

    def dispatch(self, frames: list[Frame]) -> None:
        for frame in frames:
            op = frame.op
            if op == Op.MESSAGE:
                self._start(frame.request_id, self._on_message(frame), "message")
            elif op == Op.RESULT:
                assert self.channel is not None
                self.channel.resolve(frame)
            elif op == Op.OPENED:
                bridge.live.add(frame.connection_id)
            elif op == Op.CLOSING:
                bridge.live.discard(frame.connection_id)
            elif op == Op.CONNECTED:
                self._start(frame.request_id, self._on_connected(frame), "connected")
            elif op == Op.DISCONNECTED:
                bridge.live.discard(frame.connection_id)
                if frame.request_id:
                    self._start(frame.request_id, self._on_disconnected(frame), "disconnected")
            elif op == Op.DATA_EVENT:
                self._start(frame.request_id, self._on_data_event(frame))
            elif op == Op.LOAD:
                self._load(json.loads(frame.payload))
            elif op == Op.SHUTDOWN:
                self.stopping.set()
            else:
                logger.error("Ignoring a channel frame with unknown op %#x", op)

    def _start(self, request_id: int, invocation: Awaitable[None], event: str | None = None) -> None:
        """Run an invocation as a task; ``event`` names the ws handler whose timeout applies."""
        task = asyncio.ensure_future(self._run(request_id, invocation))
        self.tasks.add(task)
        task.add_done_callback(self._forget)
        registration = ws.handlers.get(event) if event is not None else None
        if registration is not None:
            loop = asyncio.get_running_loop()
            self.deadlines[task] = (loop.time() + registration.timeout, registration.timeout, event)
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.deadlines.pop(task, None)

    def _sweep(self) -> None:
        """Cancel the ws handlers past their timeout; runs while any handler runs."""
        loop = asyncio.get_running_loop()
        self._sweeper = None
        now = loop.time()
        for task, (deadline, timeout, event) in list(self.deadlines.items()):
            if now >= deadline:
                del self.deadlines[task]
                self.expired[task] = f"handler for {event} timed out after {timeout:g} s"
                task.cancel()
        if self.deadlines:
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _write(self, frame: bytes) -> None:
        assert self.channel is not None
        self.channel.write(frame)

    async def _run(self, request_id: int, invocation: Awaitable[None]) -> None:
        """Await an invocation and report its outcome with a DONE frame."""
        try:
            await invocation
        except HandlerTimeout as exc:
            self._write(
                encode_frame(Op.DONE, _json({"error": str(exc)}), request_id=request_id, flags=Status.TIMEOUT)
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            reason = self.expired.pop(task, None) if task is not None else None
            if reason is not None:
                frame = encode_frame(Op.DONE, _json({"error": reason}), request_id=request_id, flags=Status.TIMEOUT)
            else:
                frame = encode_frame(Op.DONE, _json({"error": "cancelled"}), request_id=request_id, flags=Status.ERROR)
            self._write(frame)
        except BaseException as exc:  # noqa: BLE001 - user code may raise SystemExit too
            body = {"error": f"{type(exc).__name__}: {exc}", "traceback": format_user_traceback(exc)}
            self._write(encode_frame(Op.DONE, _json(body), request_id=request_id, flags=Status.ERROR))
        else:
            self._write(encode_frame(Op.DONE, request_id=request_id))

    # Loading the app.

    def _load(self, request: dict[str, Any]) -> None:
        bridge.live = set(request.get("connections", ()))
        try:
            load_app(Path(request["app"]))
        except AppLoadError as exc:
            body = {
                "error": exc.summary,
                "traceback": exc.formatted,
                "filename": exc.filename,
                "lineno": exc.lineno,
            }
            self._write(encode_frame(Op.LOAD_FAILED, _json(body)))
            return
        handlers = {event: reg.timeout for event, reg in ws.handlers.items()}
        self._write(
            encode_frame(Op.LOADED, _json({"handlers": handlers, "data_events": data.max_timeout()}))
        )

    # Invocations.

    async def _on_connected(self, frame: Frame) -> None:
        registration = ws.handlers.get("connected")
        if registration is None:
            return
        meta_fields = json.loads(frame.payload)["meta"]
        meta = ConnectionMeta(
            connected_at=meta_fields["connected_at"],
            query_string_parameters=meta_fields.get("query_string_parameters"),
            headers=meta_fields.get("headers") or {},
        )
        await registration.handler(SocketConnection(frame.connection_id, meta))

    async def _on_message(self, frame: Frame) -> None:
        registration = ws.handlers.get("message")
        if registration is None:
            return
        text = frame.payload.decode("utf-8")
        if text == PING:
            bridge.send_unchecked(frame.connection_id, PONG.encode())
            return
        await registration.handler(SocketConnection(frame.connection_id), parse_message(text))

    async def _on_disconnected(self, frame: Frame) -> None:
        registration = ws.handlers.get("disconnected")
        if registration is None:
            return
        reason = json.loads(frame.payload).get("reason")
        await registration.handler(SocketConnection(frame.connection_id), reason)

    async def _on_data_event(self, frame: Frame) -> None:
        event = json.loads(frame.payload)
        handlers = data.handlers_for(event)
        if not handlers:
            return
        argument = data.decode_event(event)
        what = f"data event '{event.get('name')}:{event.get('key')}'"
        # Every matching handler runs, each within its own timeout, at once.
        results = await asyncio.gather(
            *(_with_timeout(handler(argument), timeout, what) for handler, timeout in handlers),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]

    # Life cycle.

    async def serve(self, sock: socket.socket) -> None:
        self.channel = await connect_channel(sock, self.dispatch, lambda exc: self.stopping.set())
        bridge.channel = self.channel
        sdk_logger = logging.getLogger("ampt_sandbox")
        sdk_logger.addHandler(ChannelLogHandler(self.channel))
        sdk_logger.setLevel(logging.INFO)
        sdk_logger.propagate = False

        self._write(
            encode_frame(Op.READY, _json({"pid": os.getpid(), "sdk": "python", "version": __version__}))
        )
        await self.stopping.wait()

        # Let invocations in flight finish; each is bounded by its timeout.
        if self.tasks and self.channel.is_open:
            await asyncio.wait(set(self.tasks), timeout=65)
        self.channel.close()




class HandlerTimeout(Exception):
    pass


async def _with_timeout(call: Awaitable[Any], seconds: float, what: str) -> None:
    timeout = asyncio.timeout(seconds)
    try:
        async with timeout:
            await call
    except TimeoutError:
        if timeout.expired():
            raise HandlerTimeout(f"handler for {what} timed out after {seconds:g} s") from None
        raise


def _die_with_parent() -> None:
    # A runtime stuck in a CPU loop never reads the channel's end of file,
    # so ask Linux to kill it when the gateway dies, even by SIGKILL.
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ampt_sandbox.runtime")
    parser.add_argument("--fd", type=int, required=True, help="inherited channel socket")
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)

    # Ctrl-C reaches the whole process group; the gateway decides when the
    # runtime stops, so the runtime ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if args.parent_pid and os.getppid() != args.parent_pid:
        sys.exit(0)

    sock = socket.socket(fileno=args.fd)
    install_event_loop_policy()
    asyncio.run(Runtime().serve(sock))


