from __future__ import annotations

import pytest

from .scripted import Twin


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Twin:
    """Each client test runs against both twins: they share one core and must agree."""
    value: Twin = request.param
    return value
