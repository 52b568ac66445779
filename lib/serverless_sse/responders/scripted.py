"""The built-in responder: deterministic persona answers, no network, streamed in pieces.

The same persona, message and user always get the same answer, so tests and demos are
repeatable; different personas answer differently, each in its style. An answer is a greeting,
a sentence about what was said, and a closing, chosen by a hash of the prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence

from .base import Prompt, Responder

__all__ = ["ScriptedResponder", "split_pieces"]

_OPENINGS: dict[str, Sequence[str]] = {
    "cheerful": ("Hi {user}!", "Oh, hello {user}!", "Hey {user}, great to hear from you!"),
    "thoughtful": ("Hello {user}.", "{user}, that is worth a moment.", "Good point, {user}."),
    "witty": ("Well well, {user}!", "Ah, {user} strikes again!", "{user}, you read my mind."),
    "calm": ("Hello {user}.", "Nice to see you, {user}.", "Thanks for sharing, {user}."),
    "assistant": ("Good question.", "Let me answer that.", "Here is what I can tell you."),
}
_REFLECTIONS: Sequence[str] = (
    'You said "{topic}", and I like where this is going.',
    'About "{topic}": I have been thinking about exactly that.',
    '"{topic}" is a great thing to bring up today.',
    'When you say "{topic}", I want to hear more.',
)
_ASSISTANT_BODY: Sequence[str] = (
    'You asked: "{topic}". The short answer is that it depends on what you need most, '
    "so start small, check the result, and adjust from there.",
    'On "{topic}": break it into steps, do the first one now, '
    "and keep notes so the next step is obvious.",
    'Regarding "{topic}": the simplest approach that works is usually the best one, '
    "and you can refine it once it runs.",
)
_CLOSINGS: dict[str, Sequence[str]] = {
    "cheerful": ("Let's keep chatting!", "This made my day!", "Tell me more!"),
    "thoughtful": ("What do you think?", "I am curious how you see it.", "Let's reflect on it."),
    "witty": ("I'll be here all week.", "No pressure, of course.", "Plot twist pending."),
    "calm": ("Take your time.", "I'm listening.", "All good here."),
    "assistant": ("I hope this helps.", "Ask me if anything is unclear.", "Good luck!"),
}
_PIECE = re.compile(r"\S+\s*")


def split_pieces(text: str) -> list[str]:
    """Words with their following spaces: pieces that join back into ``text``."""
    head = text[: len(text) - len(text.lstrip())]
    pieces = _PIECE.findall(text)
    if head and pieces:
        pieces[0] = head + pieces[0]
    return pieces or ([text] if text else [])


def _topic(message: str, limit: int = 60) -> str:
    words = " ".join(message.split())
    if len(words) <= limit:
        return words
    return words[:limit].rsplit(" ", 1)[0] + "…"


class ScriptedResponder(Responder):
    """Answers as each persona's style dictates; ``piece_seconds`` paces the pieces."""

    name = "persona"

    def __init__(self, *, piece_seconds: float = 0.03) -> None:
        self.piece_seconds = piece_seconds

    def answer(self, prompt: Prompt) -> str:
        """The whole answer to ``prompt`` (what :meth:`stream` sends, joined)."""
        persona = prompt.persona
        key = f"{persona.name}\x00{persona.style}\x00{prompt.user_name}\x00{prompt.message}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        style = persona.style
        user = prompt.user_name.strip() or "there"
        topic = _topic(prompt.message)
        opening = _OPENINGS[style][digest[0] % len(_OPENINGS[style])].format(user=user)
        if style == "assistant":
            middle = _ASSISTANT_BODY[digest[1] % len(_ASSISTANT_BODY)].format(topic=topic)
        else:
            middle = _REFLECTIONS[digest[1] % len(_REFLECTIONS)].format(topic=topic)
        closing = _CLOSINGS[style][digest[2] % len(_CLOSINGS[style])]
        return f"{opening} {middle} {closing}"

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        for index, piece in enumerate(split_pieces(self.answer(prompt))):
            if index and self.piece_seconds:
                await asyncio.sleep(self.piece_seconds)
            yield piece
