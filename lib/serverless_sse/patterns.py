"""Channel patterns: the globs that grants and channel policies are written in.

``*`` matches within one ``/`` segment, ``**`` across segments, ``?`` one character other
than ``/``; anything else matches itself. A pattern covers a channel when it matches the whole
name: ``tasks/*`` covers ``tasks/42`` but not ``tasks/42/log``; ``tasks/**`` covers both.

Matching never backtracks. A glob translated into a regular expression does, and a pattern
such as ``*a*a*a*a*a*a*b`` then takes minutes against a 100-character channel name; patterns
come from tokens and settings, and a grant built from a user's input must not be able to stall
an instance. Here the matcher tracks, for each prefix of the pattern, the set of channel
positions it can end at (a bit set in one integer), one token at a time: the cost is
O(len(pattern) x len(channel)) bit operations on integers of len(channel) bits, whatever the
pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

__all__ = ["matches"]

# Pattern tokens: a wildcard, or a literal character (a one-character str).
_STAR = 0  # *: any run of characters other than "/"
_GLOBSTAR = 1  # **: any run of characters
_ONE = 2  # ?: one character other than "/"
_Token = int | str


@functools.lru_cache(maxsize=1024)
def _tokens(pattern: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            run = len(pattern) - i - len(pattern[i:].lstrip("*"))
            # "**" and any longer run of stars are one "**": the same names, one step.
            tokens.append(_GLOBSTAR if run > 1 else _STAR)
            i += run
            continue
        tokens.append(_ONE if char == "?" else char)
        i += 1
    return tuple(tokens)


def _match(tokens: tuple[_Token, ...], channel: str) -> bool:
    # Bit i of `ends` is set when the tokens read so far can match channel[:i] exactly.
    length = len(channel)
    every = (1 << (length + 1)) - 1
    at: dict[str, int] = {}  # character -> the positions where the channel has it
    for index, char in enumerate(channel):
        at[char] = at.get(char, 0) | (1 << index)
    not_slash = ((1 << length) - 1) & ~at.get("/", 0)
    ends = 1
    for token in tokens:
        if token == _GLOBSTAR:
            lowest = ends & -ends
            ends = every & ~(lowest - 1)  # from the first reachable position on
        elif token == _STAR:
            # Spread each reachable position across the characters after it, up to a "/".
            while True:
                grown = ends | ((ends & not_slash) << 1)
                if grown == ends:
                    break
                ends = grown
        elif token == _ONE:
            ends = (ends & not_slash) << 1
        else:
            assert isinstance(token, str)
            ends = (ends & at.get(token, 0)) << 1
        if not ends:
            return False
    return bool(ends >> length & 1)


def matches(channel: str, patterns: Iterable[str]) -> bool:
    """Whether ``channel`` is covered by any of the glob ``patterns``."""
    return any(_match(_tokens(pattern), channel) for pattern in patterns)
