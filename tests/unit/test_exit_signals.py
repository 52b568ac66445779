"""Chaining onto the server's exit-signal handler (the server learns first, streams next)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from serverless_sse.exit_signals import on_exit_signal


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_server_s_handler_still_runs_and_the_callback_follows_on_the_loop(
    restore_signals: None,
) -> None:
    seen: list[str] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:
        seen.append(f"server {signum}")

    signal.signal(signal.SIGUSR1, server_handler)
    undo = on_exit_signal(lambda: seen.append("streams"), signals=(signal.SIGUSR1,))
    signal.raise_signal(signal.SIGUSR1)
    await settle()
    assert seen == [f"server {signal.SIGUSR1}", "streams"]
    undo()
    assert signal.getsignal(signal.SIGUSR1) is server_handler


async def test_a_signal_no_server_handles_is_left_as_it_is(restore_signals: None) -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    calls: list[int] = []
    undo = on_exit_signal(lambda: calls.append(1), signals=(signal.SIGUSR2,))
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    signal.raise_signal(signal.SIGUSR2)
    await settle()
    assert calls == []
    undo()


async def test_undo_leaves_a_handler_installed_since_in_place(restore_signals: None) -> None:
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    undo = on_exit_signal(lambda: None, signals=(signal.SIGUSR1,))

    def later(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGUSR1, later)
    undo()
    assert signal.getsignal(signal.SIGUSR1) is later


async def test_outside_the_main_thread_nothing_is_installed(restore_signals: None) -> None:
    def server_handler(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGUSR1, server_handler)
    undo = await asyncio.to_thread(on_exit_signal, lambda: None, signals=(signal.SIGUSR1,))
    assert signal.getsignal(signal.SIGUSR1) is server_handler
    undo()
