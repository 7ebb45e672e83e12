"""Token bucket and concurrency gate with an injected clock, no sleeps."""

import pytest

from ampt_sandbox.limits import ConcurrencyGate, Limits, TokenBucket, resolve_limits


def test_bucket_starts_full_then_empties():
    bucket = TokenBucket(rate=10, now=0.0)
    assert all(bucket.take(0.0) for _ in range(10))
    assert not bucket.take(0.0)


def test_bucket_refills_at_rate():
    bucket = TokenBucket(rate=10, now=0.0)
    for _ in range(10):
        bucket.take(0.0)
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


def test_bucket_never_exceeds_capacity():
    bucket = TokenBucket(rate=10, now=0.0)
    taken = sum(bucket.take(1000.0) for _ in range(50))
    assert taken == 10


def test_bucket_sustained_rate():
    bucket = TokenBucket(rate=10, now=0.0)
    # 100 attempts a second for 5 seconds: 10 at start + 10 per second.
    taken = sum(bucket.take(step / 100) for step in range(500))
    assert 58 <= taken <= 60


def test_bucket_seconds_until_token():
    bucket = TokenBucket(rate=4, now=0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.seconds_until_token(0.0) == pytest.approx(0.25)
    assert bucket.seconds_until_token(0.25) == 0.0


def test_gate_limits_in_flight():
    gate = ConcurrencyGate(2)
    assert gate.try_enter()
    assert gate.try_enter()
    assert gate.full
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()


def test_gate_without_limit():
    gate = ConcurrencyGate(None)
    assert all(gate.try_enter() for _ in range(10_000))
    assert not gate.full


def test_gate_leave_more_than_enter_raises():
    with pytest.raises(RuntimeError):
        ConcurrencyGate(1).leave()


@pytest.mark.parametrize(
    ("env", "expected"),
    [("sandbox", Limits(10, 10)), ("preview", Limits(50, 100)), ("stage", Limits(5000, 10000))],
)
def test_environment_limits(env, expected):
    assert resolve_limits(env) == expected


def test_overrides_and_zero_turns_off():
    assert resolve_limits("sandbox", burst=3) == Limits(3, 10)
    assert resolve_limits("sandbox", burst=0, rate=0) == Limits(None, None)


def test_unknown_environment():
    with pytest.raises(ValueError, match="unknown environment type 'prod'"):
        resolve_limits("prod")
