"""The built-in responder and the choice of responder by settings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serverless_sse.personas import ASSISTANT, DEFAULT_PERSONAS, Persona
from serverless_sse.responders import Prompt, open_responder, scripted
from serverless_sse.responders.openai import OpenAIResponder
from serverless_sse.responders.scripted import ScriptedResponder, split_pieces
from serverless_sse.settings import Settings

HARU, MINA, JUNO = DEFAULT_PERSONAS


async def pieces_of(responder: ScriptedResponder, prompt: Prompt) -> list[str]:
    return [piece async for piece in responder.stream(prompt)]


async def test_the_same_prompt_always_gets_the_same_answer() -> None:
    first = await pieces_of(ScriptedResponder(piece_seconds=0), Prompt(MINA, "hello", "Kim"))
    again = await pieces_of(ScriptedResponder(piece_seconds=0), Prompt(MINA, "hello", "Kim"))
    assert first == again


async def test_each_persona_answers_in_its_own_words() -> None:
    responder = ScriptedResponder(piece_seconds=0)
    answers = {responder.answer(Prompt(p, "What a day!", "Kim")) for p in DEFAULT_PERSONAS}
    assert len(answers) == len(DEFAULT_PERSONAS)


async def test_an_answer_streams_in_several_pieces_that_join_into_it() -> None:
    responder = ScriptedResponder(piece_seconds=0)
    prompt = Prompt(HARU, "Shall we plan the trip?", "Kim")
    pieces = await pieces_of(responder, prompt)
    assert len(pieces) > 5
    assert all(pieces)
    assert "".join(pieces) == responder.answer(prompt)


async def test_an_answer_speaks_to_the_user_about_what_was_said() -> None:
    answer = ScriptedResponder().answer(Prompt(JUNO, "the weather is lovely", "Kim"))
    assert "Kim" in answer
    assert "the weather is lovely" in answer


async def test_a_long_message_is_quoted_shortened() -> None:
    answer = ScriptedResponder().answer(Prompt(MINA, "word " * 100, "Kim"))
    assert "…" in answer
    assert len(answer) < 300


async def test_the_assistant_answers_questions_at_length() -> None:
    answer = ScriptedResponder().answer(Prompt(ASSISTANT, "How do I learn Rust?"))
    assert "How do I learn Rust?" in answer
    assert len(split_pieces(answer)) > 15


async def test_the_first_piece_comes_at_once_and_the_rest_are_paced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said: list[tuple[str, object]] = []  # what the responder did, in order

    async def sleep(seconds: float) -> None:
        said.append(("sleep", seconds))

    monkeypatch.setattr(scripted, "asyncio", SimpleNamespace(sleep=sleep))
    responder = ScriptedResponder(piece_seconds=0.05)
    prompt = Prompt(HARU, "hi", "Kim")
    async for piece in responder.stream(prompt):
        said.append(("piece", piece))  # noqa: PERF401 - interleaved with the sleeps
    first, *rest = split_pieces(responder.answer(prompt))
    assert rest, "an answer of several pieces"
    paced = [step for piece in rest for step in (("sleep", 0.05), ("piece", piece))]
    assert said == [("piece", first), *paced]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("one two  three", ["one ", "two  ", "three"]),
        ("  lead", ["  lead"]),
        ("", []),
        ("   ", ["   "]),
    ],
)
def test_pieces_join_back_into_the_text(text: str, pieces: list[str]) -> None:
    assert split_pieces(text) == pieces
    assert "".join(split_pieces(text)) == text


def test_the_built_in_responder_is_the_default() -> None:
    responder = open_responder(Settings(responder_piece_seconds=0.5))
    assert isinstance(responder, ScriptedResponder)
    assert responder.piece_seconds == 0.5


def test_the_openai_responder_is_chosen_with_its_endpoint_and_model() -> None:
    settings = Settings(
        responder="openai", openai_base_url="http://127.0.0.1:9/v1/", openai_model="m1"
    )
    responder = open_responder(settings)
    assert isinstance(responder, OpenAIResponder)
    assert responder.name == "openai:m1@http://127.0.0.1:9/v1"


def test_a_persona_without_a_prompt_gets_one_from_its_name_and_style() -> None:
    assert "Mina" in MINA.instructions() and "thoughtful" in MINA.instructions()
    assert Persona(9, "X", "calm", "Be terse.").instructions() == "Be terse."
