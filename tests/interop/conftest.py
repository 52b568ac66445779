from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import UvicornServer


@pytest.fixture(scope="package")
def server() -> Iterator[UvicornServer]:
    """The whole service on the in-memory store. ``retry: 250`` keeps each reconnect short;
    every client honours it (the browser's default would be seconds)."""
    with UvicornServer({"SSE_STORE": "memory://", "SSE_RETRY_MS": "250"}) as running:
        yield running
