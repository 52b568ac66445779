"""The chaos suite's summary: the figures every scenario reported, after the test run (run in
one process, as ``make chaos`` does; under pytest-xdist the workers keep their own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.harness import LONG, REPORT
from tests.servers import RedisServer


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis of the scenario's own, keeping nothing on disk."""
    with RedisServer() as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.section(f"chaos figures ({'full length' if LONG else 'short versions'})")
    for scenario, figures in REPORT:
        terminalreporter.write_line(scenario)
        for name, value in figures.items():
            if name == "samples":
                terminalreporter.write_line(f"    samples ({len(value)}):")
                for row in value:
                    terminalreporter.write_line(f"        {row}")
            else:
                terminalreporter.write_line(f"    {name}: {value}")
