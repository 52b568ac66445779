"""AI personas: who answers in a group chat (and the assistant that answers questions).

A persona is a name, a speaking style, and optionally its own instructions for a model. Rooms
keep their personas (see :mod:`serverless_sse.rooms`); a room used for the first time gets
:data:`DEFAULT_PERSONAS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["ASSISTANT", "DEFAULT_PERSONAS", "STYLES", "Persona", "Style"]

Style = Literal["cheerful", "thoughtful", "witty", "calm", "assistant"]
STYLES: tuple[str, ...] = get_args(Style)


@dataclass(frozen=True, slots=True)
class Persona:
    """One AI member of a room. ``id`` is unique within its room (the seeds' ``personaId``)."""

    id: int
    name: str
    style: Style = "cheerful"
    prompt: str = ""

    def instructions(self) -> str:
        """The system prompt a model gets: the persona's own, or one made from its style."""
        if self.prompt:
            return self.prompt
        if self.style == "assistant":
            return "You are a helpful assistant. Answer clearly and briefly."
        return (
            f"You are {self.name}, a {self.style} AI friend in a group chat. "
            "Answer the user's message in one to three short sentences, in character."
        )

    def to_json(self) -> dict[str, Any]:
        return {"personaId": self.id, "name": self.name, "style": self.style, "prompt": self.prompt}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Persona:
        return cls(int(value["personaId"]), str(value["name"]), value["style"], value["prompt"])


DEFAULT_PERSONAS: tuple[Persona, ...] = (
    Persona(1, "Haru", "cheerful"),
    Persona(2, "Mina", "thoughtful"),
    Persona(3, "Juno", "witty"),
)

ASSISTANT = Persona(0, "Assistant", "assistant")
"""Who answers ``POST /api/ai/chat`` questions."""
