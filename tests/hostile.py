"""Hostile inputs that tests send to every HTTP surface (uvicorn, Mangum, the raw ASGI app)."""

from __future__ import annotations

# Bodies that broke JSON services before. These must be refused (4xx): nesting past the
# interpreter's recursion limit (in the body and in the data), numbers that overflow floats,
# NaN, a lone surrogate, invalid UTF-8 inside a string.
REFUSED_BODIES = [
    b"[" * 20_000 + b"]" * 20_000,
    b'{"data": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"data": 1e999999}',
    b'{"data": -1e400}',
    b'{"data": NaN}',
    b'{"data": "\\ud800"}',
    b'{"data": "' + b"\xff\xfe" + b'"}',
]
# And these are odd but valid JSON, stored as one whole event: a NUL flood (escaped), an
# integer beyond 64 bits, a repeated key (the last one counts, as Python's json reads it).
ODD_BUT_VALID_BODIES = [
    b'{"data": "' + b"\\u0000" * 500 + b'"}',
    b'{"data": 123456789012345678901234567890}',
    b'{"data": "x", "data": "y"}',
]
KNOWN_BOMBS = REFUSED_BODIES + ODD_BUT_VALID_BODIES

# Channel names as they appear in a request target (percent-encoded where a client would
# encode them): traversal, encoded separators and dots, invalid UTF-8, control characters,
# a header injection attempt, a name over the length limit.
HOSTILE_CHANNEL_PATHS = [
    "a/../b",
    "a/./b",
    "%2e%2e/x",
    "a/%2e%2e/b",
    "a%2fb%2f..%2fc",
    "a//b",
    "%ff%fe",
    "%c0%af",
    "a%00b",
    "a%0d%0aX-Injected:%201",
    "a%09b",
    "%e2%80%a8",
    "x" * 201,
]
