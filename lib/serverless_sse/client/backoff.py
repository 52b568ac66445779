"""How long to wait before the next attempt: exponential backoff with full jitter, and the
server's ``Retry-After``. Pure functions of their inputs (the random source and the clock are
passed in), so the schedule is tested without sleeping."""

from __future__ import annotations

import datetime
import email.utils
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays after failures: after the n-th failure in a row, a uniformly random delay in
    ``[0, min(maximum, initial * multiplier ** (n - 1))]`` seconds ("full jitter").

    Full jitter spreads clients that failed together (a server restart drops all of them at
    once) over the whole interval instead of bringing them back in synchronised waves; the cap
    keeps a long outage from pushing the next attempt out indefinitely. ``random`` is the jitter
    source: a function returning a float in ``[0, 1)``.
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.maximum >= 0 and self.multiplier >= 1):
            raise ValueError("backoff needs initial >= 0, maximum >= 0 and multiplier >= 1")

    def ceiling(self, failures: int) -> float:
        """The longest delay after ``failures`` failures in a row (``failures`` >= 1)."""
        try:
            grown = self.initial * self.multiplier ** max(0, failures - 1)
        except OverflowError:
            return self.maximum
        return min(self.maximum, grown)

    def delay(self, failures: int) -> float:
        """A random delay, uniform in ``[0, ceiling(failures)]``."""
        return self.random() * self.ceiling(failures)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    ``now`` is the current Unix time (for dates). A date in the past means 0; a value that is
    neither form is ignored (``None``), as RFC 9110 lets a recipient do.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": an HTTP-date is always GMT anyway
        moment = moment.replace(tzinfo=datetime.UTC)
    seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
