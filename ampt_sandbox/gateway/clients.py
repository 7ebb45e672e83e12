"""WebSocket clients held by the gateway: one record and one writer task each."""

from __future__ import annotations

import asyncio
import base64
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from ..protocol.messages import escape_control


def new_connection_id() -> str:
    """Return a 16-character opaque id shaped like the cloud's (``L0SM9cOFvHcCIhw=``)."""
    return base64.b64encode(os.urandom(11)).decode("ascii").replace("/", "_").replace("+", "-")


def new_request_id() -> str:
    return base64.b64encode(os.urandom(12)).decode("ascii").replace("/", "_").replace("+", "-")


class Client:
    """A connection accepted by the gateway, from handshake to close."""

    __slots__ = (
        "id",
        "websocket",
        "queue",
        "queued_bytes",
        "wake",
        "writer",
        "sending",
        "open",
        "finished",
        "close_reason",
        "connected_at",
        "opened_at",
        "last_activity",
        "messages_in",
        "messages_out",
        "meta",
        "on_closing",
    )

    def __init__(
        self,
        connection_id: str,
        websocket: ServerConnection,
        meta: dict[str, Any],
        now: float,
        on_closing: Callable[[Client], None] | None = None,
    ):
        self.id = connection_id
        self.websocket = websocket
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        # True while the writer task is inside websocket.send().
        self.sending = False
        self.open = False
        self.finished = False
        # Set by the gateway when it closes the connection, so that the
        # disconnected handler learns why.
        self.close_reason: str | None = None
        self.connected_at: int = meta["connected_at"]
        self.opened_at = now
        self.last_activity = now
        self.messages_in = 0
        self.messages_out = 0
        self.meta = meta
        self.on_closing = on_closing

    @property
    def connected(self) -> bool:
        """Whether the connection is open and the gateway has not started closing it."""
        return self.open and self.close_reason is None

    def mark_closing(self, why: str) -> None:
        """Record why the gateway closes this connection; the first reason wins."""
        if self.close_reason is None:
            self.close_reason = why
            if self.on_closing is not None:
                self.on_closing(self)

    def enqueue(self, payload: bytes) -> None:
        """Send ``payload`` as a text frame now if the socket can take it, else queue it."""
        websocket = self.websocket
        if (
            not self.queue
            and not self.sending
            and not websocket.paused
            and websocket.protocol.state is State.OPEN
        ):
            # Fast path: nothing is waiting and the transport is below its
            # high-water mark, so the frame is written at once. Waking the
            # writer task would cost a task switch per message. The calls are
            # those of websockets' own send() (websockets 14 to 17), without
            # its wait for the buffer to drain.
            websocket.protocol.send_text(payload)
            websocket.send_data()
            self.messages_out += 1
            return
        self.queue.append(payload)
        self.queued_bytes += len(payload)
        self.wake.set()

    async def write_forever(self) -> None:
        """Send queued messages in order until the connection closes."""
        websocket = self.websocket
        queue = self.queue
        wake = self.wake
        try:
            while True:
                while queue:
                    payload = queue.popleft()
                    self.queued_bytes -= len(payload)
                    self.messages_out += 1
                    self.sending = True
                    try:
                        await websocket.send(payload, text=True)
                    finally:
                        self.sending = False
                wake.clear()
                await wake.wait()
        except ConnectionClosed:
            return

    def close(self, code: int, reason: str, why: str) -> None:
        """Start closing with ``code`` and ``reason``; ``why`` is what ``disconnected`` gets."""
        self.mark_closing(why)
        asyncio.ensure_future(self.websocket.close(code, reason))


def describe_close(websocket: ServerConnection, close_reason: str | None) -> str:
    """Return the ``reason`` given to ``disconnected``: how the connection ended."""
    if close_reason is not None:
        return close_reason
    protocol = websocket.protocol
    received = protocol.close_rcvd
    sent = protocol.close_sent
    server_first = sent is not None and (received is None or protocol.close_rcvd_then_sent is False)

    if received is None and sent is None:
        return "connection lost without a close frame"
    if server_first and sent is not None:
        if sent.code == CloseCode.INTERNAL_ERROR and "keepalive" in sent.reason:
            return "connection lost: the client did not answer keepalive pings"
        detail = f" ({sent.reason})" if sent.reason else ""
        return f"closed by the gateway with code {int(sent.code)}{detail}"
    assert received is not None
    if received.code == CloseCode.NO_STATUS_RCVD:
        return "client closed the connection without a close code"
    detail = f" ({escape_control(received.reason)})" if received.reason else ""
    return f"client closed the connection with code {int(received.code)}{detail}"
