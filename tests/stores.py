"""Store URLs for tests that run against every backend the tree has.

Each entry maps a backend name to a function of a Redis database number (the calling test
module's own) giving the ``SSE_STORE`` URL.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from urllib.parse import urlsplit

REDIS = "127.0.0.1:6379"


STORE_URLS: dict[str, Callable[[int], str]] = {
    "memory": lambda db: "memory://",
    "redis": lambda db: f"redis://{REDIS}/{db}",
}


def flush_redis(url: str) -> None:
    """Empty the one Redis database a test URL names (never FLUSHALL)."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        return
    db = parts.path.strip("/") or "0"
    assert db != "0", "tests never use database 0"
    subprocess.run(
        [
            "redis-cli",
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 6379),
            "-n",
            db,
            "FLUSHDB",
        ],
        check=True,
        capture_output=True,
    )
