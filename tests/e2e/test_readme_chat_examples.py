"""The README's examples for votes/chat/AI and group chat, run against a real server.

They are marked like every checked README example: a ```` ```sh readme-test ```` block runs with
bash (``http://127.0.0.1:8000`` pointed at the test's server), and a ```` ```text
readme-output ```` block right after it lists lines that must appear in its output, in order,
other lines allowed in between; ``…`` stands for any text. This module runs the blocks of the
sections "Votes, chat and AI answers" up to "Layout", in order, on one fresh server, and checks
that every endpoint of those sections has an example.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.routing import Route

from functions import groupchat, realtime
from tests.servers import ROOT, UvicornServer

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
FIRST_SECTION = "## Votes, chat and AI answers"
AFTER_LAST_SECTION = "## Layout"
_FENCE = re.compile(r"^(`{3,})(.*)$")


@dataclass(frozen=True)
class Example:
    line: int
    script: str
    expected: list[str]


def _blocks(lines: list[str], offset: int) -> Iterator[tuple[int, str, str]]:
    n = 0
    while n < len(lines):
        opening = _FENCE.match(lines[n])
        if opening is None:
            n += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        end = n + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        yield offset + n + 1, info, "\n".join(lines[n + 1 : end])
        n = end + 1


def examples() -> list[Example]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(FIRST_SECTION)
    stop = lines.index(AFTER_LAST_SECTION, start)
    blocks = list(_blocks(lines[start:stop], start))
    found = []
    for index, (line, info, body) in enumerate(blocks):
        if info.split() != ["sh", "readme-test"]:
            continue
        expected: list[str] = []
        if index + 1 < len(blocks) and blocks[index + 1][1].split() == ["text", "readme-output"]:
            expected = [x for x in blocks[index + 1][2].splitlines() if x.strip()]
        found.append(Example(line, body, expected))
    return found


def unmatched(expected: list[str], output: str) -> str | None:
    """The first expected line with no match after the previous one's, or ``None``."""
    lines = [line.rstrip() for line in output.splitlines()]
    at = 0
    for wanted in expected:
        regex = re.compile(".*".join(re.escape(p) for p in wanted.strip().split("…")))
        while at < len(lines) and not regex.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return wanted
        at += 1
    return None


EXAMPLES = examples()


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer({"SSE_WINDOW_SECONDS": "8"}) as running:
        yield running


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples need curl")
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"README.md:{e.line}" for e in EXAMPLES])
def test_the_readme_example_works(example: Example, server: UvicornServer) -> None:
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + example.script.replace(README_URL, server.url)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    report = f"README.md:{example.line}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, report
    missing = unmatched(example.expected, done.stdout)
    assert missing is None, f"expected a line like {missing!r}\n{report}"


def test_every_votes_chat_ai_and_group_chat_endpoint_has_an_example() -> None:
    commands = [
        c for e in EXAMPLES for c in e.script.replace("\\\n", " ").splitlines() if "curl" in c
    ]
    for route in [*realtime.routes, *groupchat.routes]:
        assert isinstance(route, Route) and route.methods is not None
        parts = re.split(r"\{[^}]+\}", route.path)
        url = re.compile(
            re.escape(README_URL) + "[^/?' ]+".join(re.escape(p) for p in parts) + r"(?:[?' ]|$)"
        )
        posts = "POST" in route.methods
        assert any(url.search(c) and (("-X POST" in c) == posts) for c in commands), route.path


def test_the_output_matcher_wants_every_line_in_order() -> None:
    output = "alpha 1\nbeta 2\ngamma 3\n"
    assert unmatched(["alpha …", "gamma …"], output) is None
    assert unmatched(["gamma …", "alpha …"], output) == "alpha …"
    assert unmatched(["beta"], output) == "beta"
