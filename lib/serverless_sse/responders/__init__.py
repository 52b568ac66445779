"""Responders: who writes AI answers, behind one interface (``SSE_RESPONDER``).

``persona`` (the default) is the built-in deterministic responder: no network, answers in each
persona's style, streamed in pieces. ``openai`` streams answers from any OpenAI-compatible
chat-completions endpoint (``SSE_OPENAI_BASE_URL``, ``SSE_OPENAI_MODEL``,
``SSE_OPENAI_API_KEY``).
"""

from __future__ import annotations

from ..settings import Settings
from .base import Prompt, Responder

__all__ = ["Prompt", "Responder", "open_responder"]


def open_responder(settings: Settings) -> Responder:
    """The responder the settings name."""
    if settings.responder == "openai":
        from .openai import OpenAIResponder

        key = settings.openai_api_key
        return OpenAIResponder(
            settings.openai_base_url,
            settings.openai_model,
            api_key=key.get_secret_value() if key is not None else None,
            read_timeout=settings.ai_timeout_seconds,
        )
    from .scripted import ScriptedResponder

    return ScriptedResponder(piece_seconds=settings.responder_piece_seconds)
