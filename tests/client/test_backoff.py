"""The retry schedule's pure parts: backoff ceilings, full jitter, and Retry-After."""

from __future__ import annotations

import email.utils

import pytest

from serverless_sse.client import Backoff
from serverless_sse.client.backoff import parse_retry_after

NOW = 1_800_000_000.0


def test_the_ceiling_doubles_from_the_initial_delay_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=6.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]


def test_the_ceiling_stays_at_the_maximum_however_many_failures() -> None:
    assert Backoff(maximum=30.0).ceiling(100_000) == 30.0


def test_delays_are_uniform_between_zero_and_the_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.999])
    backoff = Backoff(initial=1.0, multiplier=3.0, maximum=100.0, random=lambda: next(draws))
    assert [backoff.delay(n) for n in (1, 2, 3)] == [0.0, 1.5, 0.999 * 9]


def test_the_default_jitter_spreads_delays_over_the_whole_interval() -> None:
    delays = [Backoff(initial=8.0).delay(1) for _ in range(400)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 2.0 and max(delays) > 6.0


@pytest.mark.parametrize(
    "options", [{"initial": -1.0}, {"maximum": -1.0}, {"multiplier": 0.5}], ids=str
)
def test_a_backoff_that_would_shrink_or_go_negative_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**options)


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 0 ", now=NOW) == 0.0


def test_retry_after_as_an_http_date() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW + 90, usegmt=True), now=NOW) == 90.0


def test_retry_after_in_the_past_means_now() -> None:
    assert parse_retry_after(email.utils.formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "١٢", "Mon, 99 Foo 2026"])
def test_a_retry_after_that_is_neither_form_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None
