"""The runtime's link to the gateway, as the SDK objects see it.

The SDK objects (``ws``, ``data``) exist as soon as a user module imports
them, before any channel is open, so they hold this bridge and the runtime
attaches the channel to it once it runs.
"""

from __future__ import annotations

import json
from typing import Any

from ..channel.frames import Frame, Op, Status, encode_frame
from ..channel.transport import Channel
from ..errors import ERROR_TYPES, DataError


class Bridge:
    """Calls from SDK code to the gateway over the channel."""

    def __init__(self) -> None:
        self.channel: Channel | None = None
        # Connections whose handshake completed and that have not closed,
        # according to the OPENED and DISCONNECTED frames received so far. A
        # send to one of them needs no reply; any other id is checked with
        # the gateway.
        self.live: set[str] = set()

    def _require_channel(self) -> Channel:
        if self.channel is None or not self.channel.is_open:
            raise RuntimeError(
                "ampt_sandbox SDK calls work only inside handlers run by 'ampt-sandbox dev'"
            )
        return self.channel

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Send a CALL frame and return its result, raising the error it carries."""
        channel = self._require_channel()
        request_id = channel.next_request_id()
        reply = channel.expect_reply(request_id)
        body = json.dumps({"method": method, "params": params}, separators=(",", ":"))
        channel.write(encode_frame(Op.CALL, body.encode(), request_id=request_id))
        frame = await reply
        return decode_result(frame)

    async def call_data(self, method: str, params: dict[str, Any]) -> Any:
        """Run a data store call in the gateway, which owns the store."""
        return await self.call("data." + method, params)

    def send_unchecked(self, connection_id: str, payload: bytes) -> None:
        """Queue a message for a connection in ``live``, without waiting for a reply."""
        channel = self._require_channel()
        channel.write(encode_frame(Op.SEND, payload, connection_id=connection_id))

    async def send_checked(self, connection_id: str, payload: bytes) -> bool:
        """Send a message and return whether the connection was open."""
        channel = self._require_channel()
        request_id = channel.next_request_id()
        reply = channel.expect_reply(request_id)
        channel.write(
            encode_frame(Op.SEND, payload, request_id=request_id, connection_id=connection_id)
        )
        frame = await reply
        if frame.flags == Status.NOT_CONNECTED:
            return False
        decode_result(frame)
        return True


def decode_result(frame: Frame) -> Any:
    """Return the result of a RESULT frame, or raise the error it carries."""
    body = json.loads(frame.payload) if frame.payload else {}
    if frame.flags == Status.OK:
        return body.get("result")
    error = body.get("error") or {}
    error_type = ERROR_TYPES.get(error.get("type", ""), DataError)
    raise error_type(error.get("message", "the gateway reported an error without a message"))


bridge = Bridge()
