"""Exceptions raised to user code, shared by the runtime and the gateway.

The tree::

    Exception
    ├── WebSocketError            a management call (send, close) failed
    │   └── InvalidConnectionError  the connection id is not connected
    └── DataError                 a data call failed (item exists, not numeric, ...)
        └── ValidationError       the input was invalid (status_code 400)

Messages begin with the cloud's own text so that a search for the cloud's
error finds the emulator's too.
"""

from __future__ import annotations


class WebSocketError(Exception):
    """A WebSocket management call failed."""


class InvalidConnectionError(WebSocketError):
    """The connection id passed to a management call is not connected."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"Connection {connection_id} is not connected")
        self.connection_id = connection_id


class DataError(Exception):
    """A data store call failed."""

    status_code = 500


class ValidationError(DataError):
    """A data store call was given invalid input."""

    status_code = 400


# Names that cross the channel: the gateway sends an error's class name and
# the runtime raises the matching class.
ERROR_TYPES: dict[str, type[Exception]] = {
    "WebSocketError": WebSocketError,
    "DataError": DataError,
    "ValidationError": ValidationError,
}
