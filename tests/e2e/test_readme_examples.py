"""The README's curl examples, run: they must keep working, and print what the README says;
and every endpoint of the service has one (the Python client and command-line sections are
run by ``test_readme_client.py``).

Any section may have its examples checked (see the README's "Checked examples"):

    ```sh readme-test
    curl http://127.0.0.1:8000/api/servers/db-01
    ```

    ```text readme-output
    {"server":{"id":"db-01",…},…}
    ```

Every ``sh readme-test`` block runs with bash, in README order, against one real server, with
``http://127.0.0.1:8000`` pointed at it. A ``text readme-output`` block right after it (blank
lines between are fine) lists lines that must appear in the output, in order, other lines
allowed in between; ``…`` stands for any text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.routing import Mount, Route

from functions.app import app
from tests.servers import ROOT, UvicornServer

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
SERVER_ENV = {
    # Shorter than the defaults, so that the examples' streams end sooner; nothing else differs.
    "SSE_WINDOW_SECONDS": "8",
    "SSE_FLEET_INTERVAL_SECONDS": "1",
}
_FENCE = re.compile(r"^(`{3,})(.*)$")


@dataclass(frozen=True)
class Example:
    line: int  # where the block starts in README.md (1-based)
    script: str
    expected: list[str]


def fenced_blocks(text: str) -> Iterator[tuple[int, str, str]]:
    """``(line, info string, body)`` of every fenced block."""
    lines = text.splitlines()
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
        yield n + 1, info, "\n".join(lines[n + 1 : end])
        n = end + 1


def examples(path: Path = README) -> list[Example]:
    found: list[Example] = []
    blocks = list(fenced_blocks(path.read_text(encoding="utf-8")))
    for index, (line, info, body) in enumerate(blocks):
        if info.split() != ["sh", "readme-test"]:
            continue
        expected: list[str] = []
        if index + 1 < len(blocks) and blocks[index + 1][1].split() == ["text", "readme-output"]:
            expected = [x for x in blocks[index + 1][2].splitlines() if x.strip()]
        found.append(Example(line, body, expected))
    return found


def pattern(expected_line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected_line.strip().split("…")))


def unmatched(expected: list[str], output: str) -> str | None:
    """The first expected line with no match after the previous one's, or ``None``."""
    lines = [line.rstrip() for line in output.splitlines()]
    at = 0
    for wanted in expected:
        regex = pattern(wanted)
        while at < len(lines) and not regex.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return wanted
        at += 1
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer(SERVER_ENV) as running:
        yield running


EXAMPLES = examples()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples need curl")
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"README.md:{e.line}" for e in EXAMPLES])
def test_the_readme_example_works(example: Example, server: UvicornServer) -> None:
    script = example.script.replace(README_URL, server.url)
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    report = f"README.md:{example.line}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, report
    missing = unmatched(example.expected, done.stdout)
    assert missing is None, f"expected a line like {missing!r}\n{report}"


def commands(script: str) -> list[str]:
    """The script's commands, continuation lines joined."""
    return script.replace("\\\n", " ").splitlines()


_PARAMETER = re.compile(r"\{([^}:]+)(?::([^}]+))?\}")


def url_pattern(path: str, *, prefix: bool = False) -> re.Pattern[str]:
    """A curl command's URL for a route's path: ``{id}`` stands for one segment, ``{x:path}``
    for one or more; a mount's ``prefix`` for anything under it."""
    regex, at = re.escape(README_URL), 0
    for parameter in _PARAMETER.finditer(path):
        regex += re.escape(path[at : parameter.start()])
        regex += "[^?' ]+" if parameter.group(2) == "path" else "[^/?' ]+"
        at = parameter.end()
    regex += re.escape(path[at:])
    regex += "/[^?' ]+" if prefix else ""
    return re.compile(regex + r"(?:[?' ]|$)")


def endpoints() -> list[tuple[str, re.Pattern[str], bool]]:
    """Every endpoint of the whole service: ``(name, URL pattern, is a POST)``."""
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append((f"GET {route.path}/…", url_pattern(route.path, prefix=True), False))
            continue
        assert isinstance(route, Route) and route.methods is not None, route
        posts = "POST" in route.methods
        found.append((f"{sorted(route.methods)} {route.path}", url_pattern(route.path), posts))
    return found


def test_every_endpoint_has_a_checked_example_with_its_method() -> None:
    every = [c for e in EXAMPLES for c in commands(e.script) if "curl" in c]
    missing = [
        name
        for name, url, posts in endpoints()
        if not any(url.search(c) and (("-X POST" in c) == posts) for c in every)
    ]
    assert missing == []


def test_the_endpoint_check_tells_paths_and_methods_apart() -> None:
    task_output = url_pattern("/api/tasks/{task_id}/output")
    assert task_output.search(f"curl -X POST {README_URL}/api/tasks/demo/output -d x")
    assert not task_output.search(f"curl {README_URL}/api/tasks/demo/output/more")
    channel = url_pattern("/channels/{channel:path}/stream")
    assert channel.search(f"curl -N '{README_URL}/channels/rooms/lobby/stream?window=1'")
    assert url_pattern("/").search(f"curl -s {README_URL}/ | grep title")
    assert not url_pattern("/").search(f"curl {README_URL}/healthz")
    assert url_pattern("/static", prefix=True).search(f"curl {README_URL}/static/js/main.js")


def test_the_output_matcher_wants_every_line_in_order() -> None:
    output = "alpha 1\nbeta 2\ngamma 3\n"
    assert unmatched(["alpha …", "gamma …"], output) is None
    assert unmatched(["gamma …", "alpha …"], output) == "alpha …"
    assert unmatched(["beta"], output) == "beta", "a line must match whole"
