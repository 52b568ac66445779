"""What AI answers have in common: the answer cache, and writing an answer with a responder
under a deadline.

The cache keeps whole answers in the store's values, keyed by who writes them (the
responder's name), who answers (the persona), and what was said: the same question is not
computed twice while its answer is cached (``SSE_ANSWER_CACHE_SECONDS``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

from .errors import ResponderFailed
from .responders.base import Prompt, Responder
from .stores.base import EventStore

__all__ = ["AnswerCache", "pieces_of"]

log = logging.getLogger(__name__)


class AnswerCache:
    """Whole answers by key, for ``ttl`` seconds (0 turns the cache off)."""

    def __init__(self, store: EventStore, *, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    @staticmethod
    def key(responder: Responder, prompt: Prompt, *scope: str) -> str:
        """The key of ``prompt``'s answer by ``responder``, within ``scope`` (e.g. a room)."""
        persona = prompt.persona
        parts = (
            responder.name,
            *scope,
            str(persona.id),
            persona.name,
            persona.style,
            persona.prompt,
            prompt.user_name,
            prompt.message,
        )
        digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()
        return f"answer/{digest}"

    async def get(self, key: str) -> str | None:
        if self.ttl <= 0:
            return None
        return await self.store.get_value(key)

    async def put(self, key: str, text: str) -> None:
        if self.ttl > 0:
            await self.store.put_value(key, text, ttl=self.ttl)


async def pieces_of(responder: Responder, prompt: Prompt) -> AsyncIterator[str]:
    """The responder's pieces; anything it raises becomes :class:`ResponderFailed`.

    A responder is code we may not control (a plug-in): a crash in it is reported as that
    persona's failure, not taken for an outage of ours.
    """
    try:
        async for piece in responder.stream(prompt):
            yield piece
    except ResponderFailed:
        raise
    except Exception as exc:
        log.exception("responder %s crashed", responder.name)
        raise ResponderFailed(
            f"the responder crashed: {exc!r}", reason="responder_crashed"
        ) from exc
