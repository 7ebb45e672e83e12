"""Channel frame encoding and parsing, without sockets."""

import pytest

from ampt_sandbox.channel.frames import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    ChannelProtocolError,
    FrameParser,
    Op,
    Status,
    encode_frame,
)


def test_header_is_28_bytes():
    assert HEADER_SIZE == 28
    assert len(encode_frame(Op.DONE)) == 28


def test_round_trip_all_fields():
    data = encode_frame(Op.MESSAGE, b'{"a":1}', request_id=7, connection_id="L0SM9cOFvHcCIhw=", flags=Status.TIMEOUT)
    [frame] = FrameParser().feed(data)
    assert frame.op == Op.MESSAGE
    assert frame.flags == Status.TIMEOUT
    assert frame.request_id == 7
    assert frame.connection_id == "L0SM9cOFvHcCIhw="
    assert frame.payload == b'{"a":1}'


def test_no_connection_id_is_empty_string():
    [frame] = FrameParser().feed(encode_frame(Op.READY, b"{}"))
    assert frame.connection_id == ""


def test_byte_by_byte_feed_yields_each_frame_once():
    stream = encode_frame(Op.SEND, b"hello", connection_id="abc") + encode_frame(Op.DONE, request_id=2)
    parser = FrameParser()
    frames = []
    for index in range(len(stream)):
        frames += parser.feed(stream[index : index + 1])
    assert [f.op for f in frames] == [Op.SEND, Op.DONE]
    assert frames[0].payload == b"hello"
    assert parser.buffered == 0


def test_many_frames_in_one_read():
    stream = b"".join(encode_frame(Op.MESSAGE, str(i).encode(), request_id=i) for i in range(100))
    frames = FrameParser().feed(stream)
    assert [f.request_id for f in frames] == list(range(100))


def test_partial_frame_stays_buffered():
    data = encode_frame(Op.MESSAGE, b"x" * 100)
    parser = FrameParser()
    assert parser.feed(data[:50]) == []
    assert parser.buffered == 50
    assert len(parser.feed(data[50:])) == 1


def test_oversized_length_is_protocol_error():
    header = bytearray(encode_frame(Op.MESSAGE))
    header[8:12] = (MAX_PAYLOAD + 1).to_bytes(4, "big")
    with pytest.raises(ChannelProtocolError):
        FrameParser().feed(bytes(header))


def test_connection_id_over_16_bytes_rejected():
    with pytest.raises(ValueError):
        encode_frame(Op.SEND, connection_id="x" * 17)
