"""asyncio side of the channel: one protocol object per end of a socket pair."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Callable

from .frames import ChannelProtocolError, Frame, FrameParser, Status

logger = logging.getLogger("ampt_sandbox.channel")


class Channel(asyncio.Protocol):
    """One end of the channel.

    Incoming bytes are split into frames and handed to ``dispatch`` in one
    call per read. Outgoing frames are queued and written together once per
    event-loop pass, which saves a system call per frame under load.
    """

    def __init__(
        self,
        dispatch: Callable[[list[Frame]], None],
        on_lost: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._on_lost = on_lost
        self._parser = FrameParser()
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.closed = self._loop.create_future()
        self._request_ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Frame]] = {}

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._parser.feed(data)
        except ChannelProtocolError as exc:
            logger.error("Closing the channel: %s", exc)
            self.close()
            return
        if frames:
            self._dispatch(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("channel closed"))
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(exc)
        if self._on_lost is not None:
            self._on_lost(exc)

    # Sending

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, frame: bytes) -> None:
        """Queue an encoded frame; it is written at the end of this loop pass."""
        if self._transport is None:
            return
        self._pending.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if self._transport is not None and pending:
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        if self._transport is not None:
            self._flush()
            self._transport.close()

    # Requests and replies

    def next_request_id(self) -> int:
        # Request ids are 32-bit on the wire; wrapping after 4 billion
        # requests is safe because replies come long before that.
        return next(self._request_ids) & 0xFFFFFFFF or next(self._request_ids)

    def expect_reply(self, request_id: int) -> asyncio.Future[Frame]:
        """Return a future that ``resolve`` completes with the reply frame."""
        future = self._loop.create_future()
        self._waiting[request_id] = future
        return future

    def resolve(self, frame: Frame) -> bool:
        """Complete the future waiting for ``frame.request_id``, if any."""
        future = self._waiting.pop(frame.request_id, None)
        if future is None or future.done():
            return False
        future.set_result(frame)
        return True

    def forget(self, request_id: int) -> None:
        self._waiting.pop(request_id, None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)


async def connect_channel(
    sock: socket.socket,
    dispatch: Callable[[list[Frame]], None],
    on_lost: Callable[[Exception | None], None] | None = None,
) -> Channel:
    """Wrap a connected stream socket in a ``Channel``."""
    loop = asyncio.get_running_loop()
    _transport, channel = await loop.create_unix_connection(
        lambda: Channel(dispatch, on_lost), sock=sock
    )
    return channel


__all__ = ["Channel", "Frame", "Status", "connect_channel"]
