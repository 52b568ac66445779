"""How ``publish -`` cuts its input into batches, against a scripted service."""

from __future__ import annotations

import json

import httpx
import pytest

from serverless_sse.cli.publish import BatchSender, EventMaker
from serverless_sse.client import Publisher, PublishRefused


class Service:
    """Stores batches of at most ``limit`` events; refuses larger ones with ``status``."""

    def __init__(self, limit: int, status: int) -> None:
        self.limit = limit
        self.status = status
        self.sizes: list[int] = []
        self.stored: list[object] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)
        self.sizes.append(len(items))
        if len(items) > self.limit:
            return httpx.Response(self.status, json={"error": "e", "detail": "too many"})
        start = len(self.stored)
        self.stored.extend(item["data"] for item in items)
        events = [{"id": f"c{start + n}", "seq": start + n} for n in range(1, len(items) + 1)]
        return httpx.Response(201, json={"events": events})


def sender(service: Service, size: int) -> BatchSender:
    client = httpx.Client(transport=httpx.MockTransport(service))
    publisher = Publisher("http://test", client=client, max_attempts=1, sleep=lambda s: None)
    return BatchSender(publisher, "c", size)


@pytest.mark.parametrize("status", [413, 429])
def test_a_refused_batch_is_split_and_later_batches_stay_small(status: int) -> None:
    service = Service(limit=3, status=status)
    batches = sender(service, 8)
    events = EventMaker(event_type="message", text=False, items=False)
    batches.send_all(events.from_lines(f"{n}\n" for n in range(1, 12)))
    assert service.stored == list(range(1, 12))  # all of them, once, in order
    assert service.sizes == [8, 4, 2, 2, 2, 2, 2, 1]
    assert (batches.published, batches.last_id) == (11, "c11")


def test_a_single_event_that_is_refused_is_an_error() -> None:
    service = Service(limit=0, status=413)
    with pytest.raises(PublishRefused):
        sender(service, 8).send_all([{"data": 1}])


def test_other_refusals_are_not_split() -> None:
    service = Service(limit=3, status=422)
    with pytest.raises(PublishRefused):
        sender(service, 8).send_all({"data": n} for n in range(8))
    assert service.sizes == [8]


def test_each_line_gets_its_own_idempotency_key_and_each_run_its_own_prefix() -> None:
    first = EventMaker(event_type="t", text=False, items=False)
    second = EventMaker(event_type="t", text=False, items=False)
    a = list(first.from_lines(["1\n", "\n", "2\n"]))
    b = list(second.from_lines(["1\n"]))
    assert [e["data"] for e in a] == [1, 2]
    assert a[0]["idempotency_key"] != a[1]["idempotency_key"]
    assert a[0]["idempotency_key"] != b[0]["idempotency_key"]
    assert a[1]["idempotency_key"].endswith("-3")  # numbered by line, blank lines included


def test_an_item_keeps_its_own_idempotency_key() -> None:
    maker = EventMaker(event_type="t", text=False, items=True)
    [item] = maker.from_lines(['{"type": "a", "data": 1, "idempotency_key": "mine"}'])
    assert item == {"type": "a", "data": 1, "idempotency_key": "mine"}
