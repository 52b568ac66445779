"""The window each stream gets from the service: jittered ±10 % (``SSE_WINDOW_JITTER``) so
that clients that connected together do not all reconnect together, and never longer than
``SSE_WINDOW_SECONDS``. Statistical, over many windows the service creates; no clock is read."""

from __future__ import annotations

import statistics

import pytest

from serverless_sse.service import Service
from serverless_sse.settings import Settings
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.window import StreamPlan

SAMPLES = 2000
WINDOW = 100.0


def durations(settings: Settings, requested: float | None = None) -> list[float]:
    """The windows of SAMPLES streams, as the service plans them (none of them is run)."""
    service = Service(settings, MemoryStore())
    plan = StreamPlan(positions={}, states={})
    return [
        service.stream(plan, fmt="named", window=requested).window.duration for _ in range(SAMPLES)
    ]


def test_configured_windows_vary_by_up_to_ten_percent_below_the_limit() -> None:
    windows = durations(Settings(window_seconds=WINDOW))
    assert all(0.9 * WINDOW <= w <= WINDOW for w in windows)
    # U(90, 110) capped at 100: half of them land below the limit, spread down to 90.
    below = [w for w in windows if w < WINDOW]
    assert 0.4 < len(below) / SAMPLES < 0.6
    assert min(windows) < 0.91 * WINDOW
    assert len(set(below)) == len(below)  # drawn anew for each stream
    assert statistics.mean(below) == pytest.approx(0.95 * WINDOW, abs=0.5)


def test_a_shortened_window_varies_both_ways_by_up_to_ten_percent() -> None:
    requested = 50.0
    windows = durations(Settings(window_seconds=WINDOW), requested)
    assert all(0.9 * requested <= w <= 1.1 * requested for w in windows)
    assert min(windows) < 0.91 * requested and max(windows) > 1.09 * requested
    assert statistics.mean(windows) == pytest.approx(requested, abs=0.5)
    assert statistics.stdev(windows) == pytest.approx(0.1 * requested / 3**0.5, rel=0.1)


def test_a_longer_window_asked_for_gets_the_configured_one_jittered() -> None:
    windows = durations(Settings(window_seconds=WINDOW), 10 * WINDOW)  # ?window= never lengthens
    assert all(0.9 * WINDOW <= w <= WINDOW for w in windows)
    assert min(windows) < 0.91 * WINDOW


def test_a_shortened_window_near_the_limit_still_never_exceeds_it() -> None:
    windows = durations(Settings(window_seconds=WINDOW), 0.95 * WINDOW)
    assert max(windows) == WINDOW
    assert min(windows) < 0.9 * 0.95 * WINDOW * 1.01


def test_the_jitter_is_a_setting() -> None:
    assert set(durations(Settings(window_seconds=WINDOW, window_jitter=0))) == {WINDOW}
    windows = durations(Settings(window_seconds=WINDOW, window_jitter=0.3))
    assert all(0.7 * WINDOW <= w <= WINDOW for w in windows)
    assert min(windows) < 0.72 * WINDOW


def test_the_jitter_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_WINDOW_JITTER", "0")
    monkeypatch.setenv("SSE_WINDOW_SECONDS", "42")
    assert set(durations(Settings())) == {42.0}
