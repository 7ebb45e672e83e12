"""The ``ws`` SDK: handler registration and connection management calls."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidConnectionError, WebSocketError
from ..protocol.messages import MAX_MESSAGE_BYTES, encode_outgoing
from .bridge import Bridge, bridge

logger = logging.getLogger("ampt_sandbox.sdk")

EVENTS = ("connected", "disconnected", "message")
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0
CONNECTION_ID_LENGTH = 16


def check_timeout(timeout: Any, what: str) -> float:
    """Return a handler timeout in seconds, lowered to 60 s as the cloud does."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout for {what} must be a number of seconds, got {timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout for {what} must be more than 0 seconds, got {timeout!r}")
    if timeout > MAX_TIMEOUT:
        logger.warning(
            "Timeout of %s s for %s is above the maximum; using %s s", timeout, what, MAX_TIMEOUT
        )
        return MAX_TIMEOUT
    return float(timeout)


def check_async_handler(handler: Any, what: str) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(
            f"handler for {what} must be an 'async def' function, got {handler!r}"
        )


@dataclass(frozen=True, slots=True)
class ConnectionMeta:
    """Handshake details, given to the ``connected`` handler only."""

    connected_at: int  # epoch milliseconds
    query_string_parameters: dict[str, str] | None
    headers: dict[str, str] = field(default_factory=dict)


class SocketConnection:
    """A WebSocket connection, as handlers receive it."""

    __slots__ = ("connection_id", "meta")

    def __init__(self, connection_id: str, meta: ConnectionMeta | None = None) -> None:
        self.connection_id = connection_id
        self.meta = meta

    @classmethod
    def for_id(cls, connection_id: str) -> SocketConnection:
        """Build a connection object from a stored connection id."""
        if not isinstance(connection_id, str):
            raise TypeError(f"connection id must be a str, got {connection_id!r}")
        return cls(connection_id)

    async def send(self, data: Any, throw_if_not_connected: bool = True) -> None:
        await ws.send(self.connection_id, data, throw_if_not_connected)

    async def is_connected(self) -> bool:
        return await ws.is_connected(self.connection_id)

    async def close(self) -> None:
        await ws.close(self.connection_id)

    def __repr__(self) -> str:
        return f"SocketConnection({self.connection_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SocketConnection) and other.connection_id == self.connection_id

    def __hash__(self) -> int:
        return hash(self.connection_id)


@dataclass(slots=True)
class Registration:
    handler: Callable[..., Awaitable[Any]]
    timeout: float


def _could_be_connection_id(connection_id: str) -> bool:
    return len(connection_id) == CONNECTION_ID_LENGTH and connection_id.isascii()


class WebSocketApi:
    """The ``ws`` object: ``on`` registers handlers, the rest manage connections."""

    def __init__(self, link: Bridge) -> None:
        self._bridge = link
        self.handlers: dict[str, Registration] = {}

    def on(
        self,
        event: str,
        handler: Callable[..., Awaitable[Any]] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Register the handler of ``event``; without a handler, return a decorator.

        One handler per event: a later registration replaces the earlier one.
        """
        if event not in EVENTS:
            raise ValueError(
                f"Invalid event name: {event!r}; use one of 'connected', 'disconnected', 'message'"
            )
        seconds = check_timeout(timeout, f"ws event {event!r}")

        def register(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            check_async_handler(function, f"ws event {event!r}")
            if event in self.handlers:
                logger.warning(
                    "ws.on(%r) called again: %s replaces %s",
                    event,
                    getattr(function, "__qualname__", function),
                    getattr(self.handlers[event].handler, "__qualname__", "the earlier handler"),
                )
            self.handlers[event] = Registration(function, seconds)
            return function

        if handler is None:
            return register
        register(handler)
        return None

    async def send(self, connection_id: str, data: Any, throw_if_not_connected: bool = True) -> None:
        """Send ``data`` to a connection: a str as it is, anything else as JSON.

        Raises:
            InvalidConnectionError: the connection is not open (unless
                ``throw_if_not_connected`` is false).
            WebSocketError: the payload cannot be sent (too large, binary).
        """
        if not isinstance(connection_id, str):
            raise TypeError(f"connection id must be a str, got {connection_id!r}")
        try:
            payload = encode_outgoing(data)
        except TypeError as exc:
            raise WebSocketError(f"Cannot send message to {connection_id}: {exc}") from exc
        if len(payload) > MAX_MESSAGE_BYTES:
            raise WebSocketError(
                f"Payload too large: the message to {connection_id} is {len(payload)} bytes "
                f"and the maximum is {MAX_MESSAGE_BYTES} bytes (128 KiB); split it into "
                "smaller messages"
            )

        if connection_id in self._bridge.live:
            self._bridge.send_unchecked(connection_id, payload)
            return
        sent = _could_be_connection_id(connection_id) and await self._bridge.send_checked(
            connection_id, payload
        )
        if not sent and throw_if_not_connected:
            raise InvalidConnectionError(connection_id)

    async def is_connected(self, connection_id: str) -> bool:
        """Return whether the gateway has the connection open now."""
        if not isinstance(connection_id, str):
            raise TypeError(f"connection id must be a str, got {connection_id!r}")
        if not _could_be_connection_id(connection_id):
            return False
        return bool(await self._bridge.call("ws.is_connected", {"connection_id": connection_id}))

    async def close(self, connection_ids: str | Iterable[str]) -> None:
        """Close one connection or a list of them; ``disconnected`` then runs for each.

        Raises:
            WebSocketError: one of the ids is not connected (the others are
                closed all the same).
        """
        if isinstance(connection_ids, str):
            ids = [connection_ids]
        elif isinstance(connection_ids, (list, tuple, set, frozenset)):
            ids = list(connection_ids)
        else:
            raise TypeError(
                f"ws.close takes a connection id (str) or a list of them, got {connection_ids!r}"
            )
        for connection_id in ids:
            if not isinstance(connection_id, str):
                raise TypeError(f"connection id must be a str, got {connection_id!r}")
        if not ids:
            return
        await self._bridge.call("ws.close", {"connection_ids": ids})


ws = WebSocketApi(bridge)
