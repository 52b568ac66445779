"""A queue in Amazon SQS (``sqs://name?region=…&endpoint_url=…&create=true``), via boto3.

SQS gives at-least-once delivery with a visibility timeout natively: a received message is
hidden until deleted (ack) or until its visibility runs out; ``ChangeMessageVisibility`` gives
it back early (release). ``endpoint_url`` points the client at moto or a local emulator;
``create=true`` creates the queue when it does not exist (local runs; a deployment creates it
in its template).

boto3 is blocking, so every call runs in this queue's own small thread pool, never on the
event loop. A long poll holds one of its threads for up to 20 s; the pool is sized for a worker
taking while requests put.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import QueueUnavailable
from .base import Delivery, Job, JobQueue

__all__ = ["SQSQueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_BATCH = 10  # SQS's most messages per send or receive call
_MAX_WAIT = 20  # SQS's longest long poll, in seconds


class SQSQueue(JobQueue):
    scheme = "sqs"

    def __init__(self, url: str, *, visibility: float = 120.0, threads: int = 4) -> None:
        parts = urlsplit(url)
        self.name = parts.netloc or parts.path.lstrip("/")
        if not self.name:
            raise ValueError(f"no queue name in {url!r} (sqs://<name>)")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self._endpoint_url = query.get("endpoint_url") or None
        self._region = query.get("region") or query.get("region_name") or None
        self._create = query.get("create", "").lower() in ("1", "true", "yes")
        self._visibility = max(0, math.ceil(visibility))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqs")
        self._client: Any = None
        self._queue_url: str | None = None
        # boto3's default session is not thread-safe: one client, made once, under a lock.
        self._connecting = threading.Lock()

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, call)
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"sqs queue {self.name!r}: {exc}") from None

    def _connect(self) -> tuple[Any, str]:
        """The client and the queue's URL (made on first use, in a pool thread)."""
        if self._client is not None and self._queue_url is not None:
            return self._client, self._queue_url
        with self._connecting:
            return self._connect_locked()

    def _connect_locked(self) -> tuple[Any, str]:
        if self._client is None:
            config = Config(retries={"max_attempts": 3, "mode": "standard"})
            self._client = boto3.client(
                "sqs", region_name=self._region, endpoint_url=self._endpoint_url, config=config
            )
        if self._queue_url is None:
            client = self._client
            try:
                self._queue_url = client.get_queue_url(QueueName=self.name)["QueueUrl"]
            except client.exceptions.QueueDoesNotExist:
                if not self._create:
                    raise
                self._queue_url = client.create_queue(QueueName=self.name)["QueueUrl"]
        return self._client, self._queue_url

    async def put(self, jobs: Sequence[Job]) -> None:
        for start in range(0, len(jobs), _BATCH):
            chunk = jobs[start : start + _BATCH]
            await self._run(functools.partial(self._send, chunk))

    def _send(self, jobs: Sequence[Job]) -> None:
        client, queue_url = self._connect()
        entries = [{"Id": str(i), "MessageBody": job.to_json()} for i, job in enumerate(jobs)]
        response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            reasons = ", ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise QueueUnavailable(f"sqs queue {self.name!r} refused {len(failed)} jobs: {reasons}")

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        seconds = min(_MAX_WAIT, math.ceil(wait)) if wait > 0 else 0
        return await self._run(functools.partial(self._receive, min(limit, _BATCH), seconds))

    def _receive(self, limit: int, seconds: int) -> list[Delivery]:
        client, queue_url = self._connect()
        response = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=limit,
            WaitTimeSeconds=seconds,
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        out = []
        for message in response.get("Messages") or []:
            receipt = message["ReceiptHandle"]
            try:
                job = Job.from_json(message["Body"])
            except ValueError:
                # Not ours to run, and it would come back forever: drop it, loudly.
                log.warning("sqs queue %s: dropping a message that is not a job", self.name)
                client.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
                continue
            attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            out.append(Delivery(job, receipt, attempt))
        return out

    async def ack(self, delivery: Delivery) -> None:
        def delete() -> None:
            client, queue_url = self._connect()
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=delivery.receipt)

        await self._run(delete)

    async def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        def show() -> None:
            client, queue_url = self._connect()
            client.change_message_visibility(
                QueueUrl=queue_url,
                ReceiptHandle=delivery.receipt,
                VisibilityTimeout=max(0, math.ceil(delay)),
            )

        await self._run(show)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
