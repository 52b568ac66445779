"""A responder backed by any OpenAI-compatible streaming chat-completions endpoint.

``POST {base_url}/chat/completions`` with ``stream: true`` answers with Server-Sent Events:
one ``data: {"choices": [{"delta": {"content": "…"}}]}`` per piece, then ``data: [DONE]``.
That stream is read with this project's own decoder (:mod:`serverless_sse.protocol`), so it is
parsed by exactly the rules our own streams are written by. An answer counts only when the
stream says ``[DONE]``: one that breaks off is a failure, never a silently shortened answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..errors import ResponderFailed
from ..protocol import EventStreamDecoder, ProtocolError, ServerSentEvent
from .base import Prompt, Responder

__all__ = ["OpenAIResponder"]

# An upstream line longer than this is not a chat piece; refusing it bounds our memory.
_MAX_LINE = 1 << 20
_EXCERPT = 300


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:_EXCERPT]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message", text))[:_EXCERPT]
    return text[:_EXCERPT]


class OpenAIResponder(Responder):
    """Streams answers from ``{base_url}/chat/completions`` (``model``, optional API key).

    ``read_timeout`` bounds a silence of the upstream between two chunks; the whole answer is
    bounded by the caller.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        read_timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}@{self.base_url}"
        self._api_key = api_key
        self._timeout = httpx.Timeout(10.0, read=read_timeout)
        self._client = client
        self._owns_client = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    def request_body(self, prompt: Prompt) -> dict[str, Any]:
        """The chat-completions request for ``prompt``."""
        said = f"{prompt.user_name}: {prompt.message}" if prompt.user_name else prompt.message
        return {
            "model": self.model,
            "stream": True,
            "messages": [
                {"role": "system", "content": prompt.persona.instructions()},
                {"role": "user", "content": said},
            ],
        }

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._http().stream(
                "POST", url, json=self.request_body(prompt), headers=headers
            ) as response:
                if response.status_code != 200:
                    detail = _excerpt(await response.aread())
                    raise ResponderFailed(
                        f"the model answered {response.status_code}: {detail}",
                        reason="upstream_status",
                    )
                decoder = EventStreamDecoder(max_line_bytes=_MAX_LINE)
                async for chunk in response.aiter_raw():
                    for item in decoder.feed(chunk):
                        if not isinstance(item, ServerSentEvent):
                            continue
                        if item.data == "[DONE]":
                            return
                        for piece in _pieces(item.data):
                            yield piece
        except httpx.TimeoutException as exc:
            raise ResponderFailed(
                f"the model went silent: {exc!r}", reason="upstream_unreachable"
            ) from None
        except httpx.HTTPError as exc:
            raise ResponderFailed(
                f"the model could not be reached: {exc!r}", reason="upstream_unreachable"
            ) from None
        except ProtocolError as exc:
            raise ResponderFailed(
                f"the model's stream is not valid: {exc}", reason="upstream_invalid"
            ) from None
        raise ResponderFailed(
            "the model's stream ended before [DONE]", reason="upstream_incomplete"
        )

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None


def _pieces(data: str) -> list[str]:
    """The content pieces of one streamed chunk (an error chunk raises)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ResponderFailed(
            f"the model sent a chunk that is not JSON: {data[:_EXCERPT]!r}",
            reason="upstream_invalid",
        ) from None
    if not isinstance(chunk, dict):
        raise ResponderFailed(
            "the model sent a chunk that is not an object", reason="upstream_invalid"
        )
    error = chunk.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ResponderFailed(
            f"the model failed: {str(message)[:_EXCERPT]}", reason="upstream_error"
        )
    pieces = []
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            pieces.append(content)
    return pieces
