"""What a client hands to its caller: one dispatched event."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event"]

_UNPARSED: Any = object()


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as an ``EventSource`` listener would see it.

    ``type`` is the SSE ``event:`` field (``message`` when there was none) or, for a source
    reading the ``envelope`` format, the ``type`` key of the JSON data. ``data`` is the text of
    the ``data:`` lines joined with LF. ``id`` is the last event id at the moment the event was
    dispatched: what a reconnect would send as ``Last-Event-ID``.
    """

    type: str
    data: str
    id: str = ""
    _parsed: Any = field(default=_UNPARSED, repr=False, compare=False)

    def json(self) -> Any:
        """``data`` parsed as JSON (parsed once; an envelope's was already parsed).

        Raises :class:`ValueError` when the data is not JSON (``[DONE]``, for instance).
        """
        if self._parsed is not _UNPARSED:
            return self._parsed
        value = json.loads(self.data)
        object.__setattr__(self, "_parsed", value)
        return value
