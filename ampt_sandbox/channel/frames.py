"""Frame format of the channel between the gateway and a runtime (no I/O).

Every frame is a fixed 28-byte header followed by ``length`` bytes of
payload. All integers are big-endian::

    offset  size  field
    0       1     op            operation code, see ``Op``
    1       1     flags         per-operation bits, 0 when unused
    2       2     reserved      always 0
    4       4     request_id    pairs a request with its reply, 0 when none
    8       4     length        payload size in bytes
    12      16    connection_id ASCII, padded with NUL bytes; all NUL when none

The payload is either raw UTF-8 text (a WebSocket message, unchanged) or a
UTF-8 JSON document, as each operation states. docs/channel.md describes the
whole protocol for runtimes written in other languages.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

HEADER = struct.Struct("!BBHII16s")
HEADER_SIZE = HEADER.size
CONNECTION_ID_SIZE = 16

# A payload larger than this is a protocol error, not a message: WebSocket
# messages are capped far below it, and data items at 400 KB.
MAX_PAYLOAD = 64 * 1024 * 1024


class Op(enum.IntEnum):
    """Operation codes. 0x0_/0x1_ go from runtime to gateway, 0x8_-0xA_ back."""

    # Runtime to gateway.
    READY = 0x01  # JSON {"pid", "sdk", "version"}: interpreter up, SDK imported
    LOADED = 0x02  # JSON {"handlers": {event: timeout_s}, "data_events": [...]}
    LOAD_FAILED = 0x03  # JSON {"error", "traceback", "filename", "lineno"}
    DONE = 0x10  # request_id; flags = Status; JSON {"error", "traceback"} unless OK
    SEND = 0x11  # connection_id; raw text; request_id 0 means no reply wanted
    CALL = 0x12  # request_id; JSON {"method", "params"}
    LOG = 0x13  # JSON {"level", "logger", "message"}

    # Gateway to runtime.
    LOAD = 0x81  # JSON {"app", "connections": [ids]}
    CONNECTED = 0x90  # request_id, connection_id; JSON {"meta": {...}}
    MESSAGE = 0x91  # request_id, connection_id; raw text
    DISCONNECTED = 0x92  # request_id, connection_id; JSON {"reason"}
    OPENED = 0x93  # connection_id: the handshake completed
    CLOSING = 0x95  # connection_id: the gateway is closing it; sends to it now fail
    DATA_EVENT = 0x94  # request_id; JSON {"pattern", "event": {...}}
    RESULT = 0xA0  # request_id; flags = Status; JSON {"result"} or {"error": {...}}
    SHUTDOWN = 0xA1  # finish the invocations in flight, then exit


class Status(enum.IntEnum):
    """Outcome carried in the flags of DONE and RESULT frames."""

    OK = 0
    ERROR = 1
    TIMEOUT = 2
    NOT_CONNECTED = 3


class Frame(NamedTuple):
    op: int
    flags: int
    request_id: int
    connection_id: str
    payload: bytes


class ChannelProtocolError(Exception):
    """The peer sent bytes that are not a valid frame."""


NO_CONNECTION = b"\0" * CONNECTION_ID_SIZE


def encode_frame(
    op: int,
    payload: bytes = b"",
    *,
    request_id: int = 0,
    connection_id: str = "",
    flags: int = 0,
) -> bytes:
    """Encode one frame, header and payload, as bytes."""
    cid = connection_id.encode("ascii") if connection_id else NO_CONNECTION
    if len(cid) > CONNECTION_ID_SIZE:
        raise ValueError(f"connection id {connection_id!r} is longer than 16 bytes")
    return HEADER.pack(op, flags, 0, request_id, len(payload), cid) + payload


class FrameParser:
    """Split a byte stream into frames.

    ``feed`` takes whatever bytes arrived and returns the frames they complete;
    a partial frame stays buffered until the rest arrives.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)

        while end - offset >= HEADER_SIZE:
            op, flags, _reserved, request_id, length, cid = HEADER.unpack_from(buffer, offset)
            if length > MAX_PAYLOAD:
                raise ChannelProtocolError(
                    f"frame payload of {length} bytes is larger than {MAX_PAYLOAD}"
                )
            start = offset + HEADER_SIZE
            if end - start < length:
                break
            try:
                connection_id = cid.rstrip(b"\0").decode("ascii") if cid != NO_CONNECTION else ""
            except UnicodeDecodeError:
                raise ChannelProtocolError(f"connection id {bytes(cid)!r} is not ASCII") from None
            frames.append(Frame(op, flags, request_id, connection_id, bytes(buffer[start : start + length])))
            offset = start + length

        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        """Number of bytes held for a frame that is not complete yet."""
        return len(self._buffer)
