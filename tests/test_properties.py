"""Property-based tests (Hypothesis) of the pure parts: keys, patterns, messages, limits, frames."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ampt_sandbox.channel.frames import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    ChannelProtocolError,
    Frame,
    FrameParser,
    encode_frame,
)
from ampt_sandbox.errors import ValidationError
from ampt_sandbox.limits import ConcurrencyGate, TokenBucket
from ampt_sandbox.protocol.messages import (
    encode_outgoing,
    parse_message,
    replace_lone_surrogates,
)
from ampt_sandbox.store.keys import (
    MAX_COLLECTION_BYTES,
    MAX_KEY_BYTES,
    Key,
    KeyRange,
    is_conditional,
    parse_key,
    parse_query,
    parse_removal_key,
    prefix_range,
    prefix_successor,
)

# Every code point, lone surrogates included: the parsers get whatever a
# handler or a client passes them.
ANY_TEXT = st.text(st.characters(codec=None), max_size=40)
# Characters that keep a name a plain item name: no pattern operator, no
# colon, no surrounding space.
NAME_CHARACTERS = st.characters(
    codec="utf-8", exclude_characters=":|*<> \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"
)
PLAIN_NAMES = st.text(NAME_CHARACTERS, min_size=1, max_size=12).filter(lambda name: name == name.strip())
# A small alphabet for ordering checks, so that names often share prefixes.
ORDERING_ALPHABET = st.sampled_from(["a", "b", "z", "\0", "é", "\U0010ffff", "\U0010fffe"])
ORDERING_NAMES = st.text(ORDERING_ALPHABET, min_size=1, max_size=5)


# Keys and patterns.


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_key_parsers_raise_only_validation_error(raw):
    for parse in (parse_key, parse_query, parse_removal_key):
        try:
            parse(raw)
        except ValidationError as exc:
            assert str(exc).startswith(("Invalid key", "You cannot delete"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.lists(st.text(max_size=3), max_size=2)))
def test_non_string_key_is_validation_error(raw):
    with pytest.raises(ValidationError, match="^Invalid key"):
        parse_key(raw)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_parsed_key_text_parses_to_itself(raw):
    try:
        key = parse_key(raw)
    except ValidationError:
        return
    assert parse_key(key.text) == key
    assert parse_query(key.text) == key


@settings(max_examples=300, deadline=None)
@given(
    collection=PLAIN_NAMES,
    name=PLAIN_NAMES,
    before=st.text(" ", max_size=2),
    after=st.text(" ", max_size=2),
)
def test_spaces_around_parts_are_removed(collection, name, before, after):
    key = parse_key(f"{before}{collection}{after}:{before}{name}{after}")
    assert key == Key(collection, name)
    assert key.text == f"{collection}:{name}"


@settings(max_examples=300, deadline=None)
@given(name=PLAIN_NAMES, rest=st.lists(PLAIN_NAMES, min_size=1, max_size=3))
def test_further_colons_stay_in_the_name(name, rest):
    key = parse_key(":".join(["ns", name, *rest]))
    assert key.collection == "ns"
    assert key.name == ":".join([name, *rest])


@settings(max_examples=200, deadline=None)
@given(st.text(NAME_CHARACTERS, min_size=1, max_size=300).filter(lambda name: name == name.strip()))
def test_key_size_limit_counts_utf8_bytes(name):
    size = len(name.encode("utf-8"))
    for raw, limit in ((f"ns:{name}", MAX_KEY_BYTES), (name, MAX_KEY_BYTES), (f"{name}:x", MAX_COLLECTION_BYTES)):
        if size <= limit:
            parse_key(raw)
        else:
            with pytest.raises(ValidationError, match="Maximum"):
                parse_key(raw)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_removal_rejects_exactly_the_conditionals(raw):
    if is_conditional(raw):
        with pytest.raises(ValidationError, match="You cannot delete items using conditionals"):
            parse_removal_key(raw)
    else:
        try:
            assert parse_removal_key(raw) == parse_key(raw)
        except ValidationError as exc:
            with pytest.raises(ValidationError) as again:
                parse_key(raw)
            assert str(again.value) == str(exc)


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(ORDERING_ALPHABET, max_size=4), names=st.lists(ORDERING_NAMES, max_size=20))
def test_prefix_range_matches_startswith(prefix, names):
    bounds = prefix_range("ns", prefix)
    for name in names:
        assert bounds.matches(name) == name.startswith(prefix)


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(ORDERING_ALPHABET, min_size=1, max_size=4), name=ORDERING_NAMES)
def test_prefix_successor_bounds_the_prefix(prefix, name):
    successor = prefix_successor(prefix)
    if successor is None:
        assert set(prefix) == {"\U0010ffff"}
        return
    assert successor > prefix
    if name.startswith(prefix):
        assert name < successor
    elif name > prefix:
        # A name above the prefix that does not start with it is at or above
        # the successor: nothing sorts between the two.
        assert name >= successor


@settings(max_examples=300, deadline=None)
@given(prefix=PLAIN_NAMES)
def test_star_pattern_is_prefix_range(prefix):
    assert parse_query(f"ns:{prefix}*") == prefix_range("ns", prefix)
    assert parse_query("ns:*") == prefix_range("ns", "")


@settings(max_examples=300, deadline=None)
@given(first=PLAIN_NAMES, last=PLAIN_NAMES, names=st.lists(PLAIN_NAMES, max_size=10))
def test_between_pattern_includes_both_ends(first, last, names):
    bounds = parse_query(f"ns:{first}|{last}")
    assert isinstance(bounds, KeyRange)
    for name in [first, last, *names]:
        assert bounds.matches(name) == (first <= name <= last)


@settings(max_examples=300, deadline=None)
@given(
    operator=st.sampled_from(["<", "<=", ">", ">="]),
    bound=PLAIN_NAMES,
    names=st.lists(PLAIN_NAMES, max_size=10),
)
def test_comparison_patterns_match_like_python(operator, bound, names):
    bounds = parse_query(f"ns: {operator} {bound}")
    compare = {
        "<": lambda name: name < bound,
        "<=": lambda name: name <= bound,
        ">": lambda name: name > bound,
        ">=": lambda name: name >= bound,
    }[operator]
    for name in [bound, *names]:
        assert bounds.matches(name) == compare(name)


@settings(max_examples=200, deadline=None)
@given(before=PLAIN_NAMES, after=PLAIN_NAMES)
def test_star_before_the_end_is_rejected(before, after):
    with pytest.raises(ValidationError, match=r"'\*' is allowed only at the end"):
        parse_query(f"ns:{before}*{after}")


# Incoming messages.

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_text_arrives_as_its_value(value, compact):
    text = json.dumps(value, separators=(",", ":") if compact else None, ensure_ascii=False)
    parsed = parse_message(text)
    assert parsed == value
    assert type(parsed) is type(value)


@settings(max_examples=500, deadline=None)
@given(ANY_TEXT)
def test_any_text_parses_or_stays_text(text):
    parsed = parse_message(text)
    if text == "":
        assert parsed is None
        return
    try:
        expected = json.loads(text, parse_constant=_reject)
    except ValueError:
        assert parsed == text
        return
    assert parsed == expected


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}'])
def test_non_json_constants_stay_text(constant):
    assert parse_message(constant) == constant


def _reject(name: str) -> None:
    raise ValueError(name)


# Outgoing values.


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_outgoing_value_is_compact_utf8_json(value):
    payload = encode_outgoing(value)
    if isinstance(value, str):
        assert payload == value.encode("utf-8")
        return
    assert payload == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert json.loads(payload) == value


@settings(max_examples=500, deadline=None)
@given(st.one_of(ANY_TEXT, st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3), st.lists(ANY_TEXT, max_size=3)))
def test_outgoing_text_with_surrogates_is_valid_utf8(value):
    payload = encode_outgoing(value)
    text = payload.decode("utf-8")
    assert not any("\ud800" <= character <= "\udfff" for character in text)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_lone_surrogates_become_replacement_character(text):
    replaced = replace_lone_surrogates(text)
    replaced.encode("utf-8")
    assert replace_lone_surrogates(replaced) == replaced
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert replaced == text


@settings(max_examples=200, deadline=None)
@given(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), PLAIN_NAMES, PLAIN_NAMES)
def test_lone_surrogate_keeps_its_neighbours(surrogate, before, after):
    assert encode_outgoing(before + surrogate + after) == (before + "\ufffd" + after).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF))
def test_surrogate_pair_becomes_its_character(character):
    high, low = character.encode("utf-16-be")[:2], character.encode("utf-16-be")[2:]
    pair = chr(int.from_bytes(high, "big")) + chr(int.from_bytes(low, "big"))
    assert encode_outgoing(pair) == character.encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.floats() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
))
def test_non_finite_numbers_sent_as_null(value):
    # Wrapped in a list, because a str alone is sent as it is, not as JSON.
    payload = encode_outgoing([value])
    assert json.loads(payload) == [_finite_or_none(value)]


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


# Token bucket and concurrency gate.

STEPS = st.lists(st.floats(min_value=0, max_value=0.5, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=20_000), steps=STEPS)
def test_bucket_never_grants_more_than_capacity_plus_refill(rate, steps):
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    granted = 0
    for step in steps:
        now += step
        granted += bucket.take(now)
        assert 0.0 <= bucket.tokens <= bucket.capacity
        # Capacity at the start plus the refill since; the small slack
        # absorbs float rounding of the refill sums.
        assert granted <= bucket.capacity + rate * now + 1e-6 * (1 + rate * now)


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=20_000), steps=STEPS)
def test_bucket_refuses_only_when_empty(rate, steps):
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    for step in steps:
        now += step
        available = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate)
        assert bucket.take(now) == (available >= 1.0)


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=20_000), steps=STEPS)
def test_bucket_token_due_when_predicted(rate, steps):
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    for step in steps:
        now += step
        bucket.take(now)
    wait = bucket.seconds_until_token(now)
    assert wait >= 0.0
    if wait == 0.0:
        assert bucket.take(now)
    else:
        # Relative slack for the float sum tokens + wait * rate.
        assert bucket.take(now + wait * (1 + 1e-9) + 1e-12)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=1000), backwards=st.floats(min_value=0.001, max_value=100))
def test_bucket_clock_going_back_adds_no_tokens(rate, backwards):
    bucket = TokenBucket(rate, now=1000.0)
    while bucket.take(1000.0):
        pass
    assert not bucket.take(1000.0 - backwards)
    assert bucket.tokens < 1.0


class GateMachine(RuleBasedStateMachine):
    """The gate against a plain counter: enter below the limit, leave what entered."""

    def __init__(self) -> None:
        super().__init__()
        self.limit: int | None = None
        self.gate: ConcurrencyGate | None = None
        self.model = 0

    @precondition(lambda self: self.gate is None)
    @rule(limit=st.none() | st.integers(min_value=0, max_value=5))
    def create(self, limit):
        self.limit = limit
        self.gate = ConcurrencyGate(limit)

    @precondition(lambda self: self.gate is not None)
    @rule()
    def enter(self):
        allowed = self.limit is None or self.model < self.limit
        assert self.gate.try_enter() == allowed
        self.model += allowed

    @precondition(lambda self: self.gate is not None)
    @rule()
    def leave(self):
        if self.model == 0:
            with pytest.raises(RuntimeError):
                self.gate.leave()
            return
        self.gate.leave()
        self.model -= 1

    @invariant()
    def counts_agree(self):
        if self.gate is None:
            return
        assert self.gate.in_flight == self.model
        expected_full = self.limit is not None and self.model >= self.limit
        assert self.gate.full == expected_full


GateMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestGate = GateMachine.TestCase


# Channel frames.

CONNECTION_IDS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=16
)
FRAMES = st.builds(
    Frame,
    op=st.integers(0, 255),
    flags=st.integers(0, 255),
    request_id=st.integers(0, 2**32 - 1),
    connection_id=CONNECTION_IDS,
    payload=st.binary(max_size=200),
)


def _encode(frame: Frame) -> bytes:
    return encode_frame(
        frame.op, frame.payload, request_id=frame.request_id, connection_id=frame.connection_id, flags=frame.flags
    )


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(FRAMES, max_size=10), cuts=st.lists(st.integers(0, 3000), max_size=12))
def test_frames_survive_any_split(frames, cuts):
    stream = b"".join(_encode(frame) for frame in frames)
    positions = sorted({0, len(stream), *(cut for cut in cuts if cut <= len(stream))})
    parser = FrameParser()
    parsed: list[Frame] = []
    for start, end in zip(positions, positions[1:]):
        parsed += parser.feed(stream[start:end])
        assert parser.buffered < HEADER_SIZE + max((len(frame.payload) for frame in frames), default=0)
    assert parsed == frames
    assert parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(FRAMES, min_size=1, max_size=5), cut=st.integers(1, 10_000))
def test_frame_prefix_yields_only_complete_frames(frames, cut):
    encoded = [_encode(frame) for frame in frames]
    stream = b"".join(encoded)
    assume(cut < len(stream))
    complete = 0
    total = 0
    for chunk in encoded:
        if total + len(chunk) > cut:
            break
        total += len(chunk)
        complete += 1
    parser = FrameParser()
    assert parser.feed(stream[:cut]) == frames[:complete]
    assert parser.buffered == cut - total


@st.composite
def noisy_streams(draw) -> bytes:
    """Byte streams of random headers whose length field is often small enough to complete."""
    chunks = []
    for _ in range(draw(st.integers(1, 6))):
        header = bytearray(draw(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE)))
        if draw(st.booleans()):
            header[8:12] = draw(st.integers(0, 64)).to_bytes(4, "big")
        chunks.append(bytes(header) + draw(st.binary(max_size=64)))
    return b"".join(chunks)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400) | noisy_streams())
def test_random_bytes_give_frames_or_protocol_error(data):
    parser = FrameParser()
    try:
        frames = parser.feed(data)
    except ChannelProtocolError:
        return
    consumed = sum(HEADER_SIZE + len(frame.payload) for frame in frames)
    assert consumed + parser.buffered == len(data)
    for frame in frames:
        assert len(frame.payload) <= MAX_PAYLOAD


@settings(max_examples=100, deadline=None)
@given(connection_id=st.binary(min_size=16, max_size=16).filter(lambda raw: any(byte > 0x7F for byte in raw)))
def test_non_ascii_connection_id_is_protocol_error(connection_id):
    header = bytearray(encode_frame(0x11))
    header[12:28] = connection_id
    with pytest.raises(ChannelProtocolError):
        FrameParser().feed(bytes(header))
