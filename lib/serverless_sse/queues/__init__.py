"""Job queues behind one interface, chosen by the scheme of a URL (``SSE_QUEUE``).

Backends are imported only when chosen, so a function that never talks to SQS never pays for
importing boto3.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..settings import Settings
from .base import Delivery, Job, JobQueue

__all__ = ["Delivery", "Job", "JobQueue", "open_queue"]


def open_queue(url: str, settings: Settings) -> JobQueue:
    """The queue a URL names: ``memory://``, ``redis://host:port/db?name=…``,
    ``sqs://name?region=…&endpoint_url=…&create=true``."""
    scheme = urlsplit(url).scheme
    visibility = settings.queue_visibility_seconds
    if scheme == "memory":
        from .memory import MemoryQueue

        return MemoryQueue(visibility=visibility)
    if scheme in ("redis", "rediss"):
        from .redis import RedisQueue

        return RedisQueue(url, visibility=visibility)
    if scheme == "sqs":
        from .sqs import SQSQueue

        return SQSQueue(url, visibility=visibility)
    raise ValueError(f"unknown queue URL scheme {scheme!r} in {url!r}")
