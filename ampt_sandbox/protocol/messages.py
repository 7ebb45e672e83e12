"""Conversion of message text to handler arguments and of values to text (no I/O).

Both directions follow the cloud SDK, which runs on JavaScript: incoming
text goes through ``JSON.parse`` when it parses, and outgoing values through
``JSON.stringify``.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

# The cloud's message limit (API Gateway WebSocket): 128 KiB per message.
MAX_MESSAGE_BYTES = 128 * 1024

PING = "ping"
PONG = "pong"


def _reject_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are Python extensions, not JSON.
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def parse_message(text: str) -> Any:
    """Return the handler argument for an incoming text message.

    JSON text becomes the value it encodes (``123`` is an int), an empty
    message becomes ``None``, and anything else stays the original string.
    """
    if not text:
        return None
    try:
        return _decoder.decode(text)
    except ValueError:
        return text


def _to_json_compatible(value: Any) -> Any:
    # Only called when the fast path failed: mirror JSON.stringify, which
    # writes non-finite numbers as null and dates as ISO strings.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_compatible(item) for item in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(
        f"Object of type {type(value).__name__} is not JSON serializable; "
        "send a str or a value made of dict, list, str, int, float, bool and None"
    )


# Control characters from clients are shown escaped in logs, so a message
# cannot clear the terminal, retitle it or forge log lines.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


def escape_control(text: str) -> str:
    """Return ``text`` with ASCII control characters written as ``\\xNN``."""
    return text.translate(_CONTROL_ESCAPES)


def replace_lone_surrogates(text: str) -> str:
    """Return ``text`` with each unpaired surrogate replaced by U+FFFD.

    A pair of surrogates becomes the character it encodes, as in JavaScript.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def encode_text(text: str) -> bytes:
    """Encode a str as UTF-8, replacing unpaired surrogates instead of failing."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return replace_lone_surrogates(text).encode("utf-8")


def encode_outgoing(data: Any) -> bytes:
    """Return the UTF-8 text frame payload that ``ws.send(id, data)`` sends.

    Raises:
        TypeError: ``data`` is bytes, contains a value JSON cannot encode, or
            is nested beyond Python's recursion limit.
    """
    if isinstance(data, str):
        return encode_text(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            "binary data cannot be sent: the platform supports text frames only; "
            "decode it to str or send a JSON value"
        )
    try:
        try:
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default)
        except ValueError:
            text = json.dumps(
                _to_json_compatible(data), separators=(",", ":"), ensure_ascii=False, default=_default
            )
    except RecursionError:
        raise TypeError(
            "the value is nested too deeply to encode as JSON; send a flatter structure"
        ) from None
    return encode_text(text)
