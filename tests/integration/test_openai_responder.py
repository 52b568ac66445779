"""The OpenAI-compatible responder against a fake upstream server that the tests start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from serverless_sse.errors import ResponderFailed
from serverless_sse.personas import Persona
from serverless_sse.responders import Prompt
from serverless_sse.responders.openai import OpenAIResponder
from tests.fake_upstream import API_KEY, OK_PIECES
from tests.servers import UvicornServer, free_port

MINA = Persona(2, "Mina", "thoughtful")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with UvicornServer(app="tests.fake_upstream:app") as server:
        yield f"{server.url}/v1"


def responder(base_url: str, model: str, *, api_key: str | None = API_KEY) -> OpenAIResponder:
    return OpenAIResponder(base_url, model, api_key=api_key, read_timeout=5)


async def collect(responder: OpenAIResponder, prompt: Prompt) -> list[str]:
    try:
        return [piece async for piece in responder.stream(prompt)]
    finally:
        await responder.aclose()


async def test_an_answer_arrives_in_the_upstream_pieces(upstream: str) -> None:
    pieces = await collect(responder(upstream, "ok"), Prompt(MINA, "hello"))
    assert pieces == OK_PIECES


async def test_the_request_streams_with_the_persona_as_system_prompt(upstream: str) -> None:
    await collect(responder(upstream, "ok"), Prompt(MINA, "how are you?", "Kim"))
    async with httpx.AsyncClient() as client:
        sent = (await client.get(upstream.removesuffix("/v1") + "/requests")).json()[-1]
    assert sent["stream"] is True
    assert sent["model"] == "ok"
    assert sent["messages"][0] == {"role": "system", "content": MINA.instructions()}
    assert sent["messages"][1] == {"role": "user", "content": "Kim: how are you?"}


async def test_an_answer_ends_at_done(upstream: str) -> None:
    pieces = await collect(responder(upstream, "echo"), Prompt(MINA, "one two three"))
    assert "".join(pieces) == "one two three"


async def test_an_error_status_fails_with_the_upstream_message(upstream: str) -> None:
    with pytest.raises(ResponderFailed) as failed:
        await collect(responder(upstream, "status-error"), Prompt(MINA, "hi"))
    assert failed.value.reason == "upstream_status"
    assert "500" in failed.value.detail
    assert "overloaded" in failed.value.detail


async def test_a_wrong_api_key_fails_with_the_status(upstream: str) -> None:
    with pytest.raises(ResponderFailed) as failed:
        await collect(responder(upstream, "ok", api_key="wrong"), Prompt(MINA, "hi"))
    assert failed.value.reason == "upstream_status"
    assert "401" in failed.value.detail


async def test_an_error_in_the_stream_fails_after_the_pieces_before_it(upstream: str) -> None:
    pieces: list[str] = []
    with pytest.raises(ResponderFailed) as failed:
        async for piece in responder(upstream, "stream-error").stream(Prompt(MINA, "hi")):
            pieces.append(piece)  # noqa: PERF401 - the pieces before the failure matter
    assert pieces == ["Partial"]
    assert failed.value.reason == "upstream_error"
    assert "crashed" in failed.value.detail


async def test_a_stream_that_ends_before_done_fails(upstream: str) -> None:
    with pytest.raises(ResponderFailed) as failed:
        await collect(responder(upstream, "truncated"), Prompt(MINA, "hi"))
    assert failed.value.reason == "upstream_incomplete"


async def test_a_slow_upstream_is_bounded_by_the_caller(upstream: str) -> None:
    pieces: list[str] = []
    slow = responder(upstream, "slow")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            async for piece in slow.stream(Prompt(MINA, "hi")):
                pieces.append(piece)  # noqa: PERF401 - the pieces before the timeout matter
    await slow.aclose()
    assert pieces[0] == "Thinking"


async def test_an_upstream_that_is_not_there_fails_as_unreachable() -> None:
    with pytest.raises(ResponderFailed) as failed:
        await collect(responder(f"http://127.0.0.1:{free_port()}/v1", "ok"), Prompt(MINA, "hi"))
    assert failed.value.reason == "upstream_unreachable"


async def test_the_responder_name_tells_model_and_endpoint_apart(upstream: str) -> None:
    assert responder(upstream, "a").name != responder(upstream, "b").name
    assert responder(upstream, "a").name != responder(upstream + "/x", "a").name
