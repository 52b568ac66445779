"""The agent-output parser: what each kind of output becomes, and that no way of cutting the
output into pieces (or of moving the parser between processes between pieces) changes it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_sse.agent_output import (
    AgentError,
    AgentEvent,
    AgentOutputParser,
    LogLine,
    PhaseUpdate,
    RequestBlock,
    StepUpdate,
    TaskFinished,
)


def parse(text: str, **limits: int) -> list[AgentEvent]:
    return AgentOutputParser(**limits).feed(text)


def of_type(events: list[AgentEvent], event_type: str) -> list[dict[str, Any]]:
    return [e.data() for e in events if e.type == event_type]


# -- lines and levels ----------------------------------------------------------------------


def test_every_non_blank_line_is_a_log_event() -> None:
    events = parse("first line\n\n   \nsecond line\n")
    assert events == [LogLine("first line"), LogLine("second line")]


def test_a_line_without_its_end_waits_for_the_rest() -> None:
    parser = AgentOutputParser()
    assert parser.feed("compiling mod") == []
    assert parser.feed("ule a\n") == [LogLine("compiling module a")]


def test_lf_crlf_and_cr_all_end_lines() -> None:
    assert parse("a\nb\r\nc\rd\n") == [LogLine(x) for x in "abcd"]


def test_a_crlf_split_between_pieces_is_one_line_end() -> None:
    parser = AgentOutputParser()
    assert parser.feed("one\r") == [LogLine("one")]
    assert parser.feed("\ntwo\n") == [LogLine("two")]


def test_ansi_colour_codes_are_removed() -> None:
    assert parse("\x1b[1;32mStarting Phase 1: Setup\x1b[0m\n")[:2] == [
        LogLine("Starting Phase 1: Setup"),
        PhaseUpdate(1, "started", "Setup"),
    ]


def test_error_and_warning_lines_get_their_level() -> None:
    events = parse("Error: disk full\nERROR could not bind\nWarning: slow\n[WARN] retrying\nok\n")
    levels = [(e.message, e.level) for e in events if isinstance(e, LogLine)]
    assert levels == [
        ("Error: disk full", "error"),
        ("ERROR could not bind", "error"),
        ("Warning: slow", "warn"),
        ("[WARN] retrying", "warn"),
        ("ok", "info"),
    ]


def test_an_error_line_also_reports_a_non_fatal_error() -> None:
    events = parse("Traceback (most recent call last):\n")
    assert events == [
        LogLine("Traceback (most recent call last):", "error"),
        AgentError("Traceback (most recent call last):", fatal=False),
    ]


def test_a_sentence_that_starts_with_the_word_error_is_ordinary() -> None:
    assert parse("Error handling was improved\n") == [LogLine("Error handling was improved")]


# -- phases and steps ----------------------------------------------------------------------


def test_starting_a_phase_anywhere_in_a_line_is_a_phase_update() -> None:
    events = parse("==> Starting Phase 2: Build\n")
    assert of_type(events, "phase_update") == [{"phase": 2, "status": "started", "name": "Build"}]


def test_a_phase_completes_when_the_agent_says_so() -> None:
    events = parse("Starting Phase 1: Setup\nCompleted Phase 1\nPhase 3: Deploy done\n")
    assert of_type(events, "phase_update") == [
        {"phase": 1, "status": "started", "name": "Setup"},
        {"phase": 1, "status": "completed", "name": "Setup"},
        {"phase": 3, "status": "completed", "name": "Deploy"},
    ]


def test_starting_the_next_phase_completes_the_open_one_first() -> None:
    events = parse("Starting Phase 1: Setup\nStarting Phase 2: Build\n")
    assert of_type(events, "phase_update") == [
        {"phase": 1, "status": "started", "name": "Setup"},
        {"phase": 1, "status": "completed", "name": "Setup"},
        {"phase": 2, "status": "started", "name": "Build"},
    ]


def test_the_first_step_of_a_phase_puts_it_in_progress_once() -> None:
    events = parse("Starting Phase 1: Setup\nStep 1/2: fetch\nStep 2/2: unpack\n")
    assert of_type(events, "phase_update")[1:] == [
        {"phase": 1, "status": "in_progress", "name": "Setup"}
    ]


def test_each_step_form_is_a_step_update() -> None:
    events = parse("Step 1/3: Install\nstep 2 of 3 - Configure\n[3/3] Test\nStep 4/9\n")
    assert of_type(events, "step_update") == [
        {"step": "Install", "progress": 1, "total": 3},
        {"step": "Configure", "progress": 2, "total": 3},
        {"step": "Test", "progress": 3, "total": 3},
        {"step": "Step 4", "progress": 4, "total": 9},
    ]


def test_impossible_progress_is_only_a_log_line() -> None:
    assert of_type(parse("Step 5/3: what\n[1/0] nothing\n"), "step_update") == []


# -- blocks --------------------------------------------------------------------------------


def test_a_dependency_request_block_with_key_value_lines() -> None:
    text = (
        "[DEPENDENCY_REQUEST]\nname: OPENAI_API_KEY\ntype: api_key\n"
        "description: used by the\n  embedding step\n[/DEPENDENCY_REQUEST]\n"
    )
    assert parse(text) == [
        RequestBlock(
            "dependency_request",
            {
                "name": "OPENAI_API_KEY",
                "type": "api_key",
                "description": "used by the embedding step",
                "id": "dep-1",
            },
        )
    ]


def test_a_block_with_a_json_body_keeps_its_fields() -> None:
    text = '[USER_QUESTION]{"question": "Postgres or SQLite?", "options": ["pg", "sqlite"]}'
    events = parse(text + "[/USER_QUESTION]")
    assert of_type(events, "user_question") == [
        {"question": "Postgres or SQLite?", "options": ["pg", "sqlite"], "id": "question-1"}
    ]


def test_a_plain_text_block_becomes_its_main_field() -> None:
    events = parse("[REVIEW_REQUIRED]\nPlease review\nthe migration\n[/REVIEW_REQUIRED]")
    assert of_type(events, "review_required") == [
        {"summary": "Please review the migration", "id": "review-1"}
    ]


def test_list_fields_of_key_value_blocks_are_split_on_commas() -> None:
    events = parse("[USER_QUESTION]question: Which?\noptions: a, b ,c[/USER_QUESTION]")
    assert of_type(events, "user_question")[0]["options"] == ["a", "b", "c"]


def test_blocks_are_numbered_by_kind() -> None:
    text = "[DEPENDENCY_REQUEST]A[/DEPENDENCY_REQUEST][DEPENDENCY_REQUEST]B[/DEPENDENCY_REQUEST]"
    assert [e["id"] for e in of_type(parse(text), "dependency_request")] == ["dep-1", "dep-2"]


def test_a_block_counts_as_soon_as_it_closes_even_without_a_line_end() -> None:
    # An agent that asks prints nothing more until it is answered.
    parser = AgentOutputParser()
    events = parser.feed("[USER_QUESTION]Deploy now?[/USER_QUESTION]")
    assert of_type(events, "user_question") == [{"question": "Deploy now?", "id": "question-1"}]


def test_text_around_a_block_on_its_line_is_logged() -> None:
    events = parse("Need a key: [DEPENDENCY_REQUEST]KEY[/DEPENDENCY_REQUEST] thanks\n")
    assert [e.type for e in events] == ["log", "dependency_request", "log"]
    assert [e.message for e in events if isinstance(e, LogLine)] == ["Need a key:", "thanks"]


def test_a_block_split_across_pieces_is_reassembled() -> None:
    parser = AgentOutputParser()
    assert parser.feed("[DEPENDENCY_RE") == []
    assert parser.feed("QUEST]name: TOKEN\n[/DEPENDENCY_") == []
    events = parser.feed("REQUEST]\n")
    assert of_type(events, "dependency_request") == [{"name": "TOKEN", "id": "dep-1"}]


def test_a_block_that_never_closes_is_shown_as_text() -> None:
    events = parse("[USER_QUESTION]" + "line\n" * 10, max_block=20)
    assert events[0] == LogLine(
        "[USER_QUESTION] block not closed within 20 characters; shown as text", "warn"
    )
    assert all(isinstance(e, LogLine) for e in events)
    assert "user_question" not in [e.type for e in events]


def test_an_open_block_at_the_end_of_the_task_is_flushed_as_text() -> None:
    parser = AgentOutputParser()
    parser.feed("[DEPENDENCY_REQUEST]\nname: X\n")
    events = parser.finish()
    assert [e.type for e in events] == ["log", "log", "log", "complete"]
    assert [e.message for e in events if isinstance(e, LogLine)] == [
        "[DEPENDENCY_REQUEST] block not closed before the task ended",
        "[DEPENDENCY_REQUEST]",
        "name: X",
    ]


# -- the end of a task ---------------------------------------------------------------------


def test_task_complete_marker_finishes_and_completes_the_open_phase() -> None:
    parser = AgentOutputParser()
    events = parser.feed("Starting Phase 1: Ship\n[TASK_COMPLETE] shipped\nignored\n")
    assert events[-2:] == [
        PhaseUpdate(1, "completed", "Ship"),
        TaskFinished("succeeded", "shipped"),
    ]
    assert parser.finished == "succeeded"
    assert parser.feed("more\n") == []
    assert parser.finish() == []


def test_task_failed_marker_reports_a_fatal_error_then_completes() -> None:
    events = parse("Starting Phase 1: Ship\n[TASK_FAILED] tests are red\n")
    assert events[-3:] == [
        LogLine("[TASK_FAILED] tests are red", "error"),
        AgentError("tests are red", fatal=True),
        TaskFinished("failed", "tests are red"),
    ]


def test_finish_flushes_the_unfinished_line_first() -> None:
    parser = AgentOutputParser()
    parser.feed("Starting Phase 1: Go\nlast words")
    assert parser.finish("succeeded", "done") == [
        LogLine("last words"),
        PhaseUpdate(1, "completed", "Go"),
        TaskFinished("succeeded", "done"),
    ]


def test_finishing_with_a_failure_leaves_the_phase_open() -> None:
    parser = AgentOutputParser()
    parser.feed("Starting Phase 1: Go\n")
    assert parser.finish("failed", "crashed") == [
        AgentError("crashed", fatal=True),
        TaskFinished("failed", "crashed"),
    ]


# -- bounded state -------------------------------------------------------------------------


def test_a_line_longer_than_the_limit_is_cut_into_pieces() -> None:
    events = parse("x" * 25 + "\n", max_line=10)
    assert [e.message for e in events if isinstance(e, LogLine)] == ["x" * 10, "x" * 10, "x" * 5]


def test_the_state_stays_small_whatever_is_fed() -> None:
    parser = AgentOutputParser(max_line=100, max_block=200)
    parser.feed("y" * 100_000)
    assert len(parser.snapshot()["text"]) <= 100
    parser.feed("[REVIEW_REQUIRED]" + "z" * 100_000)
    assert len(parser.snapshot()["text"]) <= 200 + 100


def test_a_flood_of_opening_markers_is_given_up_block_by_block() -> None:
    # Each marker opens a block that never closes: every give-up moves max_block characters on.
    events = parse("[USER_QUESTION]" * 1000, max_block=64)
    warnings = [e for e in events if isinstance(e, LogLine) and e.level == "warn"]
    assert 0 < len(warnings) <= 1000


# -- any chunking, any process -------------------------------------------------------------

_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x1b", exclude_categories=["Cs"]),
    max_size=12,
)
_names = st.text(alphabet="abcdefgh XYZ", min_size=1, max_size=8).map(str.strip).filter(bool)
_numbers = st.integers(min_value=0, max_value=12)
_line_end = st.sampled_from(["\n", "\r\n", "\r"])
_block_kind = st.sampled_from(["DEPENDENCY_REQUEST", "USER_QUESTION", "REVIEW_REQUIRED"])


@st.composite
def _block(draw: st.DrawFn) -> str:
    kind = draw(_block_kind)
    body = draw(
        st.one_of(
            _words,
            st.builds(lambda k, v: f"name: {k}\ntype: {v}\n", _names, _names),
            st.builds(lambda q: json.dumps({"question": q}), _words),
        )
    )
    return f"[{kind}]{body}[/{kind}]"


_line = st.one_of(
    _words,
    st.builds("Starting Phase {}: {}".format, _numbers, _names),
    st.builds("Completed Phase {}".format, _numbers),
    st.builds("Step {}/{}: {}".format, _numbers, _numbers, _names),
    st.builds("[{}/{}] {}".format, _numbers, _numbers, _names),
    st.builds("Error: {}".format, _words),
    st.builds("\x1b[31mWarning: {}\x1b[0m".format, _words),
    _block(),
    st.builds("{} {} {}".format, _words, _block(), _words),
    st.just("[TASK_COMPLETE] all done"),
)
_output = st.lists(st.tuples(_line, _line_end), max_size=25).map(
    lambda parts: "".join(line + end for line, end in parts)
)


def _cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(text[start:point])
        start = point
    pieces.append(text[start:])
    return pieces


def _whole(text: str) -> list[AgentEvent]:
    parser = AgentOutputParser(max_line=64, max_block=256)
    return parser.feed(text) + parser.finish()


@settings(max_examples=300, deadline=None)
@given(_output, st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_chunking_gives_the_same_events(text: str, cuts: list[int]) -> None:
    parser = AgentOutputParser(max_line=64, max_block=256)
    events: list[AgentEvent] = []
    for piece in _cut(text, cuts):
        events.extend(parser.feed(piece))
    events.extend(parser.finish())
    assert events == _whole(text)


@settings(max_examples=200, deadline=None)
@given(_output, st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_moving_the_parser_between_processes_changes_nothing(text: str, cuts: list[int]) -> None:
    events: list[AgentEvent] = []
    state = AgentOutputParser(max_line=64, max_block=256).snapshot()
    for piece in _cut(text, cuts):
        # Each piece is parsed by a "new process" from the state the last one stored as JSON.
        parser = AgentOutputParser.restore(
            json.loads(json.dumps(state)), max_line=64, max_block=256
        )
        events.extend(parser.feed(piece))
        state = parser.snapshot()
    events.extend(AgentOutputParser.restore(state, max_line=64, max_block=256).finish())
    assert events == _whole(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz", min_size=1, max_size=30), max_size=20), _line_end)
def test_plain_lines_come_out_exactly_as_they_went_in(lines: list[str], end: str) -> None:
    events = _whole("".join(line + end for line in lines))
    expected = [line.strip() for line in lines if line.strip()]
    assert [e.message for e in events if isinstance(e, LogLine)] == expected
    assert [e.type for e in events if not isinstance(e, LogLine)] == ["complete"]


def test_a_step_update_carries_the_seed_payload_fields() -> None:
    [step] = [e for e in parse("Step 2/5: Build\n") if isinstance(e, StepUpdate)]
    assert step.data() == {"step": "Build", "progress": 2, "total": 5}
