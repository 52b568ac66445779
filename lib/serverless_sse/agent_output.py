"""Coding-agent output, parsed into typed task events: sans-IO, incremental, resumable.

Feed :class:`AgentOutputParser` raw text in any pieces; it returns the events each piece
completes. It never reads a clock or a socket, and its whole state is a small JSON-able value
(:meth:`~AgentOutputParser.snapshot` / :meth:`~AgentOutputParser.restore`), so the next piece
of a task's output may be parsed by another process: a line or a block split across two posts
is reassembled wherever the second post lands.

The output language (what an agent prints):

- every non-blank line is a ``log`` event (``level`` ``error`` for lines starting ``Error:``,
  ``ERROR``, ``[ERROR]``, ``FATAL`` or ``Traceback (most recent call last):``; ``warn`` for
  ``Warning:``, ``WARN``, ``[WARN]``; ``info`` otherwise). ANSI colour codes are removed and
  lines end at LF, CR or CRLF (a CRLF is a CR line end and an empty line, and empty lines are
  dropped: so a CRLF split between two pieces needs no care);
- ``Starting Phase 2: Build`` (anywhere in a line) → ``phase_update`` ``started``;
  ``Completed Phase 2``, ``Finished Phase 2: Build`` or ``Phase 2 complete`` → ``completed``;
  the first step of a phase → ``in_progress``; starting the next phase, or finishing the task
  successfully, completes a phase left open;
- ``Step 3/10: Compile``, ``Step 3 of 10`` or ``[3/10] Compile`` at the start of a line →
  ``step_update`` ``{step, progress, total}``;
- an ``Error:``-level line also gives an ``error`` event (the task goes on);
- ``[DEPENDENCY_REQUEST]…[/DEPENDENCY_REQUEST]``, ``[USER_QUESTION]…[/USER_QUESTION]`` and
  ``[REVIEW_REQUIRED]…[/REVIEW_REQUIRED]`` blocks (anywhere, over any number of lines) give
  ``dependency_request``, ``user_question`` and ``review_required``. The body is a JSON object,
  or ``key: value`` lines, or plain text (which becomes the ``name`` / ``question`` /
  ``summary``). A block is recognised as soon as its closing marker arrives, even with no line
  end after it: an agent that asks a question then waits for the answer prints no more;
- ``[TASK_COMPLETE] summary`` and ``[TASK_FAILED] reason`` at the start of a line finish the
  task (``complete``; ``error`` then ``complete`` for a failure); later text is ignored.

Cost: every character is scanned a bounded number of times: the unfinished line or block is
kept, and a new piece is searched only from where the last search stopped (less a marker's
length). A line longer than ``max_line`` characters is cut into pieces of that length, and a
block that grows past ``max_block`` without its closing marker is given up and shown as text,
so the state stays small whatever an agent prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "AgentError",
    "AgentEvent",
    "AgentOutputParser",
    "LogLine",
    "PhaseUpdate",
    "RequestBlock",
    "StepUpdate",
    "TaskFinished",
]

Level = Literal["info", "warn", "error"]
PhaseStatus = Literal["started", "in_progress", "completed"]
Outcome = Literal["succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of output (``log``: ``{message, level}``)."""

    message: str
    level: Level = "info"
    type: ClassVar[str] = "log"

    def data(self) -> dict[str, Any]:
        return {"message": self.message, "level": self.level}


@dataclass(frozen=True, slots=True)
class PhaseUpdate:
    """A phase started, is in progress or completed (``phase_update``)."""

    phase: int
    status: PhaseStatus
    name: str
    type: ClassVar[str] = "phase_update"

    def data(self) -> dict[str, Any]:
        return {"phase": self.phase, "status": self.status, "name": self.name}


@dataclass(frozen=True, slots=True)
class StepUpdate:
    """Progress within the work: step ``progress`` of ``total`` (``step_update``)."""

    step: str
    progress: int
    total: int
    type: ClassVar[str] = "step_update"

    def data(self) -> dict[str, Any]:
        return {"step": self.step, "progress": self.progress, "total": self.total}


@dataclass(frozen=True, slots=True)
class RequestBlock:
    """A block asking the user for something: ``dependency_request``, ``user_question`` or
    ``review_required``, with the block's fields (always an ``id``, and the kind's main field:
    ``name``, ``question`` or ``summary``)."""

    type: str
    fields: dict[str, Any]

    def data(self) -> dict[str, Any]:
        return dict(self.fields)


@dataclass(frozen=True, slots=True)
class AgentError:
    """An error the agent reported (``error``: ``{message, fatal}``)."""

    message: str
    fatal: bool = False
    type: ClassVar[str] = "error"

    def data(self) -> dict[str, Any]:
        return {"message": self.message, "fatal": self.fatal}


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """The task is over (``complete``: ``{status, summary}``); always the last event."""

    status: Outcome
    summary: str | None = None
    type: ClassVar[str] = "complete"

    def data(self) -> dict[str, Any]:
        return {"status": self.status, "summary": self.summary}


AgentEvent = LogLine | PhaseUpdate | StepUpdate | RequestBlock | AgentError | TaskFinished

# -- the language ----------------------------------------------------------------------------

_BLOCKS: dict[str, tuple[str, str, str]] = {
    # marker name: (event type, main field, id prefix)
    "DEPENDENCY_REQUEST": ("dependency_request", "name", "dep"),
    "USER_QUESTION": ("user_question", "question", "question"),
    "REVIEW_REQUIRED": ("review_required", "summary", "review"),
}
_OPEN = re.compile(r"\[(" + "|".join(_BLOCKS) + r")\]")
# A marker may straddle the end of what was searched: search again this far back.
_OPEN_OVERLAP = max(len(name) for name in _BLOCKS) + 1
_LINE_END = re.compile(r"[\r\n]")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")

_NUM = r"(\d{1,9})"  # bounded, so int() is cheap and the value fits a JSON number
_PHASE_START = re.compile(r"Starting Phase " + _NUM + r": (.+)")
_PHASE_DONE = re.compile(
    r"(?:Completed|Finished) Phase " + _NUM + r"(?::\s*(.+))?"
    r"|Phase " + _NUM + r"(?::\s*(.+?))?\s+(?:complete|completed|finished|done)\b",
    re.IGNORECASE,
)
_STEP = re.compile(
    r"^(?:[-*>]\s*)?(?i:step)\s+"
    + _NUM
    + r"\s*(?:/|(?i:of))\s*"
    + _NUM
    + r"(?:(?:\s*[:.\-–—]\s*|\s+)(.*))?$"
    r"|^\[" + _NUM + r"\s*/\s*" + _NUM + r"\]\s*(.*)$"
)
# Upper-case words only where a word could start an ordinary sentence ("Error handling ...").
_ERROR = re.compile(
    r"^(?:\[(?i:error|fatal)\]|(?:ERROR|FATAL)\b|(?i:error|fatal)\s*:"
    r"|Traceback \(most recent call last\):)"
)
_WARN = re.compile(r"^(?:\[(?i:warn|warning)\]|WARN(?:ING)?\b|(?i:warning)\s*:)")
_FINISH = re.compile(r"^\s*\[TASK_(COMPLETE|FAILED)\]\s*(.*)$")
_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_ -]{0,40}?)\s*:\s*(.*)$")
_LIST_FIELDS = frozenset({"options", "files", "choices"})


def _clean(line: str) -> str:
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    return line.strip()


def _lines(text: str) -> Iterator[str]:
    for line in re.split(r"\r\n|\r|\n", text):
        cleaned = _clean(line)
        if cleaned:
            yield cleaned


def _block_fields(kind: str, body: str, number: int) -> dict[str, Any]:
    """A block's fields: a JSON object, ``key: value`` lines, or plain text. The kind's main
    field is always there: when the body does not name it, it is the body's text on one line."""
    _, main, prefix = _BLOCKS[kind]
    text = body.strip()
    parsed: Any = None
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict):
        fields = {str(k): v for k, v in parsed.items()}
    else:
        fields = _key_values(text)
    if main not in fields:
        fields[main] = " ".join(_lines(text))
    fields.setdefault("id", f"{prefix}-{number}")
    return fields


def _key_values(text: str) -> dict[str, Any]:
    """``key: value`` lines (keys lower-cased, spaces to ``_``); other lines continue the
    previous value. Empty unless the first line is a field: then it is not plain text."""
    fields: dict[str, Any] = {}
    last: str | None = None
    for line in _lines(text):
        match = _FIELD.match(line)
        if match:
            last = match.group(1).strip().lower().replace(" ", "_").replace("-", "_")
            fields[last] = match.group(2).strip()
        elif last is None:
            return {}
        else:
            fields[last] = f"{fields[last]} {line}".strip()
    for key in _LIST_FIELDS & fields.keys():
        fields[key] = [part.strip() for part in fields[key].split(",") if part.strip()]
    return fields


# -- the parser ------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    text: str = ""  # the unfinished line (or the open block's body so far)
    block: str | None = None  # the open block's marker name
    searched: int = 0  # len(text) already searched without finding what ends it
    phase: int | None = None  # the current phase, while it is not completed
    phase_name: str = ""
    phase_active: bool = False  # an in_progress update was sent for the current phase
    blocks: dict[str, int] = field(default_factory=dict)  # blocks seen, by marker
    finished: Outcome | None = None


class AgentOutputParser:
    """Incremental parser of one task's agent output. Not thread-safe; one per task at a time.

    ``max_line``: longest line kept whole (longer lines are cut into pieces of this length).
    ``max_block``: longest block body waited for (longer ones are shown as text instead).
    """

    def __init__(self, *, max_line: int = 4096, max_block: int = 8192) -> None:
        if max_line < 1 or max_block < 1:
            raise ValueError("max_line and max_block must be positive")
        self.max_line = max_line
        self.max_block = max_block
        self._s = _State()

    # -- state ---------------------------------------------------------------------------

    @property
    def finished(self) -> Outcome | None:
        """``succeeded`` / ``failed`` once the task finished (then ``feed`` ignores text)."""
        return self._s.finished

    @property
    def phase(self) -> dict[str, Any] | None:
        """The current phase (``{phase, name}``) until it completes."""
        s = self._s
        return None if s.phase is None else {"phase": s.phase, "name": s.phase_name}

    def snapshot(self) -> dict[str, Any]:
        """The whole parser state as a JSON-able dict (see :meth:`restore`)."""
        s = self._s
        return {
            "text": s.text,
            "block": s.block,
            "searched": s.searched,
            "phase": s.phase,
            "phase_name": s.phase_name,
            "phase_active": s.phase_active,
            "blocks": dict(s.blocks),
            "finished": s.finished,
        }

    @classmethod
    def restore(
        cls, snapshot: dict[str, Any], *, max_line: int = 4096, max_block: int = 8192
    ) -> AgentOutputParser:
        """A parser that continues exactly where the one that made ``snapshot`` stopped."""
        parser = cls(max_line=max_line, max_block=max_block)
        block = snapshot.get("block")
        if block is not None and block not in _BLOCKS:
            raise ValueError(f"unknown block {block!r} in parser state")
        finished = snapshot.get("finished")
        if finished not in (None, "succeeded", "failed"):
            raise ValueError(f"unknown outcome {finished!r} in parser state")
        text = str(snapshot.get("text", ""))
        parser._s = _State(
            text=text,
            block=block,
            searched=min(int(snapshot.get("searched", 0)), len(text)),
            phase=None if snapshot.get("phase") is None else int(snapshot["phase"]),
            phase_name=str(snapshot.get("phase_name", "")),
            phase_active=bool(snapshot.get("phase_active", False)),
            blocks={str(k): int(v) for k, v in dict(snapshot.get("blocks", {})).items()},
            finished=finished,
        )
        return parser

    # -- input ---------------------------------------------------------------------------

    def feed(self, text: str) -> list[AgentEvent]:
        """Parse the next piece of output; returns the events it completes, in order."""
        s = self._s
        out: list[AgentEvent] = []
        if s.finished is not None or not text:
            return out
        buf = s.text + text
        pos = 0
        searched = s.searched
        while s.finished is None:
            if s.block is not None:
                close = f"[/{s.block}]"
                # Never look further than max_block ahead: a block that does not close in
                # time is given up after O(max_block) work, so input cannot make this quadratic.
                limit = pos + self.max_block + len(close)
                end = buf.find(close, max(pos, searched - len(close) + 1), limit)
                if end >= 0:
                    self._block(buf[pos:end], out)
                    pos = searched = end + len(close)
                    continue
                if len(buf) < limit:
                    searched = len(buf)
                    break
                # What followed the marker was ordinary text after all.
                out.append(
                    LogLine(
                        f"[{s.block}] block not closed within {self.max_block} characters;"
                        " shown as text",
                        "warn",
                    )
                )
                s.block = None
                for line in re.split(r"\r\n|\r|\n", buf[pos : pos + self.max_block]):
                    self._line(line, out)
                    if s.finished is not None:
                        break
                pos = searched = pos + self.max_block
                continue
            # Line mode: the unfinished line ends at a line end, at a block's opening marker,
            # or after max_line characters; each search stops there.
            stop = min(len(buf), pos + self.max_line + 1)
            line_end = _LINE_END.search(buf, max(pos, searched), stop)
            stop = line_end.start() if line_end else stop
            opening = _OPEN.search(buf, max(pos, searched - _OPEN_OVERLAP), stop)
            if opening is not None:
                self._line(buf[pos : opening.start()], out)
                s.block = opening.group(1)
                pos = searched = opening.end()
                continue
            if line_end is not None:
                self._line(buf[pos:stop], out)
                pos = searched = stop + 1
                continue
            if len(buf) - pos > self.max_line:
                self._line(buf[pos : pos + self.max_line], out)
                pos = searched = pos + self.max_line
                continue
            searched = len(buf)
            break
        if s.finished is not None:
            s.text, s.searched, s.block = "", 0, None
        else:
            s.text = buf[pos:]
            s.searched = searched - pos
        return out

    def finish(
        self, outcome: Outcome = "succeeded", summary: str | None = None
    ) -> list[AgentEvent]:
        """The output is over: flush the unfinished line and any open block (as text), then
        end the task. A success completes the open phase; a failure reports an ``error``
        (``fatal``) with ``summary`` as its message. Nothing, if the task already finished."""
        s = self._s
        out: list[AgentEvent] = []
        if s.finished is not None:
            return out
        text, block = s.text, s.block
        s.text, s.searched, s.block = "", 0, None
        if block is not None:
            out.append(LogLine(f"[{block}] block not closed before the task ended", "warn"))
            text = f"[{block}]{text}"
        for line in re.split(r"\r\n|\r|\n", text):
            self._line(line, out)
            if s.finished is not None:
                return out
        self._end(outcome, summary, out)
        return out

    # -- what a piece means --------------------------------------------------------------

    def _line(self, raw: str, out: list[AgentEvent]) -> None:
        line = _clean(raw)
        if not line:
            return
        finish = _FINISH.match(line)
        if finish is not None:
            failed = finish.group(1) == "FAILED"
            out.append(LogLine(line, "error" if failed else "info"))
            self._end("failed" if failed else "succeeded", finish.group(2).strip() or None, out)
            return
        error = _ERROR.match(line) is not None
        level: Level = "error" if error else "warn" if _WARN.match(line) else "info"
        out.append(LogLine(line, level))
        s = self._s
        started = _PHASE_START.search(line)
        if started is not None:
            number, name = int(started.group(1)), started.group(2).strip()
            self._complete_phase(out)
            s.phase, s.phase_name, s.phase_active = number, name, False
            out.append(PhaseUpdate(number, "started", name))
        else:
            done = _PHASE_DONE.search(line)
            if done is not None:
                number = int(done.group(1) or done.group(3))
                name = (done.group(2) or done.group(4) or "").strip()
                if s.phase == number:
                    name = name or s.phase_name
                    s.phase, s.phase_name, s.phase_active = None, "", False
                out.append(PhaseUpdate(number, "completed", name))
        step = _STEP.match(line)
        if step is not None:
            groups = step.groups()
            progress, total, title = (groups[0:3]) if groups[0] is not None else groups[3:6]
            n, of = int(progress or 0), int(total or 0)
            if 0 <= n <= of and of > 0:
                if s.phase is not None and not s.phase_active:
                    s.phase_active = True
                    out.append(PhaseUpdate(s.phase, "in_progress", s.phase_name))
                out.append(StepUpdate((title or "").strip() or f"Step {n}", n, of))
        if error:
            out.append(AgentError(line))

    def _block(self, body: str, out: list[AgentEvent]) -> None:
        s = self._s
        kind = s.block
        assert kind is not None
        s.block = None
        number = s.blocks[kind] = s.blocks.get(kind, 0) + 1
        out.append(RequestBlock(_BLOCKS[kind][0], _block_fields(kind, body, number)))

    def _complete_phase(self, out: list[AgentEvent]) -> None:
        s = self._s
        if s.phase is not None:
            out.append(PhaseUpdate(s.phase, "completed", s.phase_name))
            s.phase, s.phase_name, s.phase_active = None, "", False

    def _end(self, outcome: Outcome, summary: str | None, out: list[AgentEvent]) -> None:
        if outcome == "succeeded":
            self._complete_phase(out)
        else:
            out.append(AgentError(summary or "the task failed", fatal=True))
        self._s.finished = outcome
        out.append(TaskFinished(outcome, summary))
