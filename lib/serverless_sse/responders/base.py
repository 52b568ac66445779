"""The one interface every responder implements: a persona's answer, as a stream of pieces.

A responder turns a :class:`Prompt` (who answers, what was said, by whom) into text, piece by
piece, so that an answer can reach the reader while it is being written (the time to the
first piece matters more than the time to the whole). It raises
:class:`~serverless_sse.errors.ResponderFailed` when it cannot answer; the caller bounds how
long it may take.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..personas import Persona

__all__ = ["Prompt", "Responder"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a responder answers: ``message`` from ``user_name``, answered as ``persona``."""

    persona: Persona
    message: str
    user_name: str = ""


class Responder(ABC):
    """Writes answers. Implementations must be safe for concurrent use from one event loop."""

    #: Who writes the answers (``persona``, ``openai:<model>@<url>``). Cached answers are
    #: keyed by it, so changing the model never serves the old model's answers.
    name: str = ""

    @abstractmethod
    def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer, in pieces (non-empty strings whose concatenation is the answer)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most responders need nothing
        """Release connections."""
