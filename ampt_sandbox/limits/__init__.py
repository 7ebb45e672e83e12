"""The platform's request limits as pure logic: no I/O, time passed in by the caller.

Semantics the emulator applies (the platform documents only the numbers):

- burst: at most ``burst`` ``connected`` and ``message`` invocations run at
  once, app wide. ``disconnected`` invocations are never limited.
- rate: incoming messages draw one token each from a bucket of capacity
  ``rate``, refilled at ``rate`` tokens per second and full at the start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    burst: int | None  # None: unlimited
    rate: float | None  # messages per second; None: unlimited


# Environment types and their limits: (burst, rate).
ENVIRONMENTS: dict[str, Limits] = {
    "sandbox": Limits(burst=10, rate=10),
    "preview": Limits(burst=50, rate=100),
    "stage": Limits(burst=5000, rate=10000),
}


def resolve_limits(env: str, burst: int | None = None, rate: float | None = None) -> Limits:
    """Return the limits of ``env`` with the given overrides; 0 turns a limit off."""
    try:
        base = ENVIRONMENTS[env]
    except KeyError:
        names = ", ".join(ENVIRONMENTS)
        raise ValueError(f"unknown environment type {env!r}; use one of: {names}") from None
    if burst is not None and burst < 0:
        raise ValueError(f"burst limit must be 0 (off) or more, got {burst}")
    if rate is not None and rate < 0:
        raise ValueError(f"rate limit must be 0 (off) or more, got {rate}")
    return Limits(
        burst=base.burst if burst is None else (burst or None),
        rate=base.rate if rate is None else (rate or None),
    )


class TokenBucket:
    """A token bucket of ``capacity`` tokens refilled at ``rate`` tokens per second.

    The capacity defaults to ``rate``, but to at least one token: a message
    costs a whole token, so a smaller bucket would never let one through.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, now: float, capacity: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(rate, 1.0))
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> bool:
        """Take one token at time ``now`` (seconds); return False when none is left."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def seconds_until_token(self, now: float) -> float:
        """Return how long until a token is available, 0 when one is now."""
        tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class ConcurrencyGate:
    """Count of invocations in flight, against a maximum (None: no maximum)."""

    __slots__ = ("limit", "in_flight")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.limit is not None and self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("ConcurrencyGate.leave() called more often than try_enter()")
        self.in_flight -= 1

    @property
    def full(self) -> bool:
        return self.limit is not None and self.in_flight >= self.limit
