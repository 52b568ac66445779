"""Channel patterns: globs over whole names, matched without backtracking."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from serverless_sse.patterns import matches


def reference(pattern: str, channel: str) -> bool:
    """The meaning of a pattern, as a regular expression (right, but it backtracks)."""
    parts = []
    for piece in re.split(r"(\*\*+|\*|\?)", pattern):
        if piece.startswith("**"):
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        elif piece == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(piece))
    return re.fullmatch("".join(parts), channel, re.DOTALL) is not None


# Small alphabets, so that patterns and names meet often.
patterns = st.text(alphabet="ab/*?", max_size=10)
channels = st.text(alphabet="ab/", max_size=12)


@given(patterns, channels)
def test_matching_agrees_with_the_regular_expression(pattern: str, channel: str) -> None:
    assert matches(channel, [pattern]) is reference(pattern, channel)


@given(st.text(alphabet="ab/.:-_9", max_size=20))
def test_a_pattern_without_wildcards_matches_only_itself(channel: str) -> None:
    assert matches(channel, [channel])
    assert not matches(channel + "x", [channel])


def test_the_empty_pattern_matches_only_the_empty_name() -> None:
    assert matches("", [""]) and not matches("a", [""])


def test_stars_in_a_row_beyond_two_are_one_globstar() -> None:
    assert matches("a/b/c", ["***"]) and matches("a/b/c", ["a/****"])
    assert not matches("a/b", ["a*"])


def test_no_pattern_matches_nothing() -> None:
    assert not matches("a", [])


def test_a_pattern_that_makes_a_regex_backtrack_is_answered_at_once() -> None:
    """As a regular expression, each of these takes longer than the test suite (the time grows
    as the channel's length to the power of the stars); here they are a few thousand steps."""
    channel = "a" * 200
    assert not matches(channel, ["*a" * 12 + "b"])
    assert not matches(channel, ["*?" * 12 + "b"])
    assert not matches(channel, ["**a" * 12 + "b"])
    assert matches(channel, ["*a" * 12])
