"""Hand-made and fuzzed WebSocket frames against a live ``ampt-sandbox dev``.

The tests write frames on a plain TCP socket after a normal handshake. So
they can send what no WebSocket library would send: invalid UTF-8, unmasked
or reserved-bit frames, lengths that lie, and control frames in the middle
of a fragmented message. Each input gets the outcome that RFC 6455 and the
platform document, and the server keeps serving the next client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import textwrap
from dataclasses import dataclass, field

import pytest
from conftest import Sandbox
from hypothesis import given, settings
from hypothesis import strategies as st

from ampt_sandbox.protocol.messages import encode_outgoing, parse_message

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

KIB = 1024
MAX_FRAME = 32 * KIB
MAX_MESSAGE = 128 * KIB
# Replies to longer messages carry a digest instead of the text, which
# would push the reply over the 128 KiB outgoing limit.
LONG_MESSAGE_CHARS = 2048

APP = f"""
import hashlib
from ampt_sandbox import ws

# Clients that send garbage right after a message may be gone by the time
# the reply is ready; that is no error here.
@ws.on("message")
async def message(connection, message):
    if isinstance(message, str) and len(message) > {LONG_MESSAGE_CHARS}:
        digest = hashlib.sha256(message.encode("utf-8")).hexdigest()
        reply = {{"length": len(message), "sha256": digest}}
    else:
        reply = {{"echo": message}}
    await connection.send(reply, throw_if_not_connected=False)

@ws.on("disconnected")
async def disconnected(connection, reason):
    print("DISCONNECTED", connection.connection_id, "|", reason)
"""


def expected_reply(text: str) -> bytes:
    """Return the exact reply frame that the app above sends for ``text``."""
    if text == "ping":
        return b"pong"
    value = parse_message(text)
    if isinstance(value, str) and len(value) > LONG_MESSAGE_CHARS:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        return encode_outgoing({"length": len(value), "sha256": digest})
    return encode_outgoing({"echo": value})


class ConnectionEnded(Exception):
    """The server closed the TCP connection."""


def mask_payload(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(payload), "big")


@dataclass
class Received:
    """What a client read: text messages, pong payloads, and the close frame."""

    texts: list[bytes] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    # (code, reason); code is None for a close frame without a code.
    close: tuple[int | None, bytes] | None = None


class RawWebSocket:
    """A client on a blocking socket that writes each frame byte for byte as the test builds it."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 101 "), status_line

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool = True,
        length: int | None = None,
    ) -> None:
        """Write one frame; ``length`` puts another length in the header than the payload's."""
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        size = len(payload) if length is None else length
        mask_bit = 0x80 if masked else 0
        if size < 126:
            header = struct.pack("!BB", first, mask_bit | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, size)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, size)
        if masked:
            key = os.urandom(4)
            header += key
            payload = mask_payload(payload, key)
        self.sock.sendall(header + payload)

    def send_message(self, opcode: int, payload: bytes, cuts: list[int] = (), pings: dict[int, bytes] | None = None) -> None:
        """Send one message split at the byte offsets ``cuts``, with a ping before fragment i for each i in ``pings``."""
        positions = sorted({0, len(payload), *(cut for cut in cuts if 0 < cut < len(payload))})
        fragments = [payload[start:end] for start, end in zip(positions, positions[1:])] or [b""]
        for index, fragment in enumerate(fragments):
            if pings and index in pings:
                self.send_frame(OP_PING, pings[index])
            self.send_frame(
                opcode if index == 0 else OP_CONTINUATION, fragment, fin=index == len(fragments) - 1
            )

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionEnded
        self.buffer += chunk

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        assert not second & 0x80, "the server masked a frame"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return bool(first & 0x80), first & 0x0F, self._read(size)

    def receive(self, texts: int = 0, pongs: int = 0, until_close: bool = False) -> Received:
        """Read until ``texts`` text frames and ``pongs`` pongs arrived, or the close frame when asked."""
        received = Received()
        # Each frame read is one step; the socket timeout bounds each read.
        for _ in range(texts + pongs + 1000):
            if not until_close and len(received.texts) >= texts and len(received.pongs) >= pongs:
                return received
            try:
                fin, opcode, payload = self.read_frame()
            except ConnectionEnded:
                return received
            assert fin, "the server fragmented a reply"
            if opcode == OP_TEXT:
                received.texts.append(payload)
            elif opcode == OP_PONG:
                received.pongs.append(payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                received.close = (code, payload[2:])
                return received
            else:
                raise AssertionError(f"unexpected opcode {opcode:#x} from the server")
        raise AssertionError("the server sent more frames than expected")

    def close_code(self) -> int | None:
        """Read until the server's close frame and return its code (None: no frame before EOF)."""
        received = self.receive(until_close=True)
        assert received.close is not None, "the server ended the connection without a close frame"
        return received.close[0]

    def close_normally(self) -> None:
        self.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        assert self.close_code() == 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz")
    app_path = root / "app.py"
    app_path.write_text(textwrap.dedent(APP))
    running = Sandbox(
        ["dev", str(app_path), "--port", "0", "--data-dir", str(root / "data"), "--rate", "0", "--burst", "0"],
        cwd=root,
    )
    try:
        running.wait_url()
        running.port = int(running.url.rsplit(":", 1)[1])
        yield running
    finally:
        running.stop()


def assert_serving(server: Sandbox) -> None:
    """Check that a new client still gets its message handled."""
    with RawWebSocket(server.port) as client:
        client.send_frame(OP_TEXT, b'{"alive":true}')
        assert client.receive(texts=1).texts == [b'{"echo":{"alive":true}}']
        client.close_normally()


def assert_no_errors_logged(server: Sandbox) -> None:
    for line in server.stderr_lines:
        assert "parser failed" not in line
        assert " ERROR " not in line
        assert "Traceback" not in line


# Valid input: random text, fragmented anywhere, with pings in between.

TEXT_CHARACTERS = st.characters(codec="utf-8")
MESSAGE_TEXTS = st.one_of(
    st.text(TEXT_CHARACTERS, max_size=60),
    st.sampled_from(["ping", "", "null", "NaN", "-Infinity", "1e400", '{"a":[1,2]}', '"s"', "\ufeff1"]),
    st.builds(lambda chunk, count: chunk * count, st.text(TEXT_CHARACTERS, min_size=1, max_size=8), st.integers(1, 4000)),
)


@st.composite
def messages(draw):
    text = draw(MESSAGE_TEXTS)
    payload = text.encode("utf-8")
    # Cuts at any byte, so fragments also split multi-byte characters.
    cuts = draw(st.lists(st.integers(1, max(1, len(payload) - 1)), max_size=4))
    positions = sorted({0, len(payload), *(cut for cut in cuts if 0 < cut < len(payload))})
    # Fragments stay under the frame limit; those tests are below.
    for start, end in zip(positions, positions[1:]):
        if end - start > MAX_FRAME:
            cuts += list(range(start + MAX_FRAME, end, MAX_FRAME))
    pings = draw(st.dictionaries(st.integers(0, len(cuts)), st.binary(max_size=125), max_size=2))
    return text, payload, cuts, pings


@settings(max_examples=150, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=5))
def test_random_text_gets_its_reply(server, batch):
    with RawWebSocket(server.port) as client:
        expected_pongs = []
        for _text, payload, cuts, pings in batch:
            client.send_message(OP_TEXT, payload, cuts, pings)
            positions = sorted({0, len(payload), *(cut for cut in cuts if 0 < cut < len(payload))})
            fragment_count = max(1, len(positions) - 1)
            expected_pongs += [pings[index] for index in sorted(pings) if index < fragment_count]
        received = client.receive(texts=len(batch), pongs=len(expected_pongs))
        assert received.close is None
        assert received.texts == [expected_reply(text) for text, _payload, _cuts, _pings in batch]
        assert received.pongs == expected_pongs
        client.close_normally()


def test_unsolicited_pong_is_ignored(server):
    with RawWebSocket(server.port) as client:
        client.send_frame(OP_PONG, b"nobody asked")
        client.send_frame(OP_TEXT, b"1")
        assert client.receive(texts=1).texts == [b'{"echo":1}']
        client.close_normally()


@pytest.mark.parametrize(
    ("fragments", "expected_length"),
    [
        ([MAX_FRAME], MAX_FRAME),
        ([MAX_FRAME] * 4, MAX_MESSAGE),
        ([1, MAX_FRAME, MAX_FRAME, MAX_FRAME, MAX_FRAME - 1], MAX_MESSAGE),
    ],
    ids=["frame-at-32-KiB", "message-at-128-KiB", "uneven-fragments-at-128-KiB"],
)
def test_sizes_at_the_limits_accepted(server, fragments, expected_length):
    payload = b"q" * sum(fragments)
    cuts = [sum(fragments[: index + 1]) for index in range(len(fragments) - 1)]
    with RawWebSocket(server.port) as client:
        client.send_message(OP_TEXT, payload, cuts)
        [reply] = client.receive(texts=1).texts
        assert json.loads(reply)["length"] == expected_length
        client.close_normally()


# Input the platform rejects, each with its close code.

INVALID_SEQUENCES = [
    b"\xff",  # never valid in UTF-8
    b"\x80",  # continuation byte without a lead byte
    b"\xc0\xaf",  # overlong encoding of '/'
    b"\xed\xa0\x80",  # a UTF-16 surrogate (U+D800) encoded as UTF-8
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # a three-byte sequence cut short
]


@settings(max_examples=80, deadline=None)
@given(
    prefix=st.text(TEXT_CHARACTERS, max_size=20),
    invalid=st.sampled_from(INVALID_SEQUENCES),
    suffix=st.text(TEXT_CHARACTERS, max_size=20),
    cuts=st.lists(st.integers(1, 80), max_size=3),
)
def test_invalid_utf8_closes_with_1007(server, prefix, invalid, suffix, cuts):
    payload = prefix.encode("utf-8") + invalid + suffix.encode("utf-8")
    with RawWebSocket(server.port) as client:
        client.send_message(OP_TEXT, payload, cuts)
        assert client.close_code() == 1007


def test_invalid_utf8_in_close_reason_closes_with_1007(server):
    with RawWebSocket(server.port) as client:
        client.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye \xff")
        assert client.close_code() == 1007
    assert_serving(server)


@settings(max_examples=20, deadline=None)
@given(payload=st.binary(max_size=300), cuts=st.lists(st.integers(1, 299), max_size=3), texts_before=st.integers(0, 2))
def test_binary_message_closes_with_1003(server, payload, cuts, texts_before):
    with RawWebSocket(server.port) as client:
        for index in range(texts_before):
            client.send_frame(OP_TEXT, str(index).encode())
        client.send_message(OP_BINARY, payload, cuts)
        received = client.receive(until_close=True)
        # Messages before the binary one are still handled; replies may
        # race with the close, so only their content is checked.
        assert set(received.texts) <= {f'{{"echo":{index}}}'.encode() for index in range(texts_before)}
        assert received.close is not None
        assert received.close[0] == 1003


def send_long_continuation(client: RawWebSocket) -> None:
    client.send_frame(OP_TEXT, b"start", fin=False)
    client.send_frame(OP_CONTINUATION, b"y" * (MAX_FRAME + 1))


def send_message_over_limit(client: RawWebSocket) -> None:
    client.send_message(OP_TEXT, b"x" * (MAX_MESSAGE + 1), list(range(MAX_FRAME, MAX_MESSAGE + 1, MAX_FRAME)))


def send_two_starts(client: RawWebSocket) -> None:
    client.send_frame(OP_TEXT, b"a", fin=False)
    client.send_frame(OP_TEXT, b"b")


def send_close_inside_message(client: RawWebSocket) -> None:
    client.send_frame(OP_TEXT, b"a", fin=False)
    client.send_frame(OP_CLOSE, struct.pack("!H", 1000))


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda client: client.send_frame(OP_TEXT, b"x" * (MAX_FRAME + 1)), id="frame-over-32-KiB"),
        pytest.param(send_long_continuation, id="continuation-frame-over-32-KiB"),
        pytest.param(send_message_over_limit, id="message-over-128-KiB-in-fragments"),
        # The length in the header is enough: the server closes before the payload arrives.
        pytest.param(lambda client: client.send_frame(OP_TEXT, b"", length=200 * KIB), id="length-header-200-KiB"),
        pytest.param(lambda client: client.send_frame(OP_TEXT, b"", length=(1 << 63) + 5), id="length-header-2-to-63"),
    ],
)
def test_oversize_closes_with_1009(server, send):
    with RawWebSocket(server.port) as client:
        send(client)
        assert client.close_code() == 1009


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda client: client.send_frame(OP_TEXT, b"hi", masked=False), id="unmasked"),
        *(
            pytest.param(lambda client, rsv=rsv: client.send_frame(OP_TEXT, b"hi", rsv=rsv), id=f"rsv-{rsv}")
            for rsv in (1, 2, 4, 7)
        ),
        *(
            pytest.param(lambda client, opcode=opcode: client.send_frame(opcode, b"hi"), id=f"opcode-{opcode:#x}")
            for opcode in (0x3, 0x7, 0xB, 0xF)
        ),
        pytest.param(lambda client: client.send_frame(OP_CONTINUATION, b"hi"), id="continuation-first"),
        pytest.param(send_two_starts, id="new-message-inside-fragmented-one"),
        pytest.param(lambda client: client.send_frame(OP_PING, b"p" * 126), id="ping-over-125-bytes"),
        pytest.param(lambda client: client.send_frame(OP_PING, b"p", fin=False), id="fragmented-ping"),
        pytest.param(lambda client: client.send_frame(OP_CLOSE, b"\x03"), id="close-payload-of-1-byte"),
        *(
            pytest.param(
                lambda client, code=code: client.send_frame(OP_CLOSE, struct.pack("!H", code)), id=f"close-code-{code}"
            )
            for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)
        ),
        pytest.param(send_close_inside_message, id="close-inside-fragmented-message"),
    ],
)
def test_protocol_violation_closes_with_1002(server, send):
    with RawWebSocket(server.port) as client:
        send(client)
        assert client.close_code() == 1002


# Close codes a server may send: its own rejections, or the code of a close
# frame that the random bytes happened to form, echoed.
ACCEPTABLE_CLOSE_CODES = {None, *range(1000, 1004), *range(1007, 1015), *range(3000, 5000)}


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_bytes_never_break_the_server(server, garbage):
    with RawWebSocket(server.port) as client:
        client.sock.sendall(garbage)
        # End of input: the server either closes because of what it read,
        # or waits for a frame to complete and then reads the end of stream.
        client.sock.shutdown(socket.SHUT_WR)
        received = client.receive(until_close=True)
    if received.close is not None:
        assert received.close[0] in ACCEPTABLE_CLOSE_CODES
    assert_serving(server)


# Closing.


def test_close_without_code_echoed_and_reported(server):
    with RawWebSocket(server.port) as client:
        client.send_frame(OP_TEXT, b'"who"')
        assert client.receive(texts=1).texts == [b'{"echo":"who"}']
        client.send_frame(OP_CLOSE, b"")
        received = client.receive(until_close=True)
    # The server echoes the empty close frame, as RFC 6455 section 5.5.1 allows.
    assert received.close == (None, b"")
    server.wait_for(r"DISCONNECTED \S+ \| client closed the connection without a close code")


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_valid_close_code_echoed(server, code):
    with RawWebSocket(server.port) as client:
        client.send_frame(OP_CLOSE, struct.pack("!H", code) + b"done")
        assert client.receive(until_close=True).close == (code, b"done")
    server.wait_for(rf"DISCONNECTED \S+ \| client closed the connection with code {code} \(done\)")


def test_server_serves_after_fuzzing(server):
    assert server.process.poll() is None
    assert_serving(server)
    assert_no_errors_logged(server)
