"""The DynamoDB store when DynamoDB throttles, fails, or loses answers: retried with backoff,
never written twice, never half written.

The store talks to moto's server through a proxy that injects the faults DynamoDB really
returns (tests/faults.py), so botocore's own retries run as they would against AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from serverless_sse.errors import StoreUnavailable
from serverless_sse.events import NewEvent
from serverless_sse.stores.dynamodb import DynamoDBStore, create_table
from tests.faults import DynamoDBFaults, ScriptedFaults
from tests.servers import MotoServer

REGION = "us-east-1"


@pytest.fixture
def table(moto_server: MotoServer) -> str:
    name = f"sse-faults-{uuid.uuid4().hex[:8]}"
    create_table(name, region=REGION, endpoint_url=moto_server.endpoint_url)
    return name


@pytest.fixture
async def faults(moto_server: MotoServer) -> AsyncIterator[DynamoDBFaults]:
    async with DynamoDBFaults(moto_server.endpoint_url, ScriptedFaults({})) as proxy:
        yield proxy


@pytest.fixture
async def store(table: str, faults: DynamoDBFaults) -> AsyncIterator[DynamoDBStore]:
    store = DynamoDBStore(table, region=REGION, endpoint_url=faults.url, threads=4)
    yield store
    await store.aclose()


@pytest.fixture
async def direct(table: str, moto_server: MotoServer) -> AsyncIterator[DynamoDBStore]:
    """The same table without the proxy: what is really stored."""
    store = DynamoDBStore(table, region=REGION, endpoint_url=moto_server.endpoint_url)
    yield store
    await store.aclose()


def ev(n: int, key: str | None = None) -> NewEvent:
    return NewEvent("message", str(n), key)


async def stored(store: DynamoDBStore, channel: str) -> list[tuple[int, str]]:
    result = await store.read(channel, 0, limit=100)
    return [(e.seq, e.data) for e in result.events]


async def test_a_throttled_write_is_retried_and_stored_once(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    faults.plan = ScriptedFaults({"PutItem": ["throttle", "throttle"]})
    (appended,) = await store.append("c", [ev(1)])
    assert appended.seq == 1
    assert faults.injected["PutItem", "throttle"] == 2
    assert faults.retried["PutItem"] == 2
    assert await stored(direct, "c") == [(1, "1")]


@pytest.mark.parametrize("fault", ["lost_answer", "drop"])
async def test_a_write_that_landed_but_whose_answer_was_lost_is_not_stored_twice(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults, fault: str
) -> None:
    faults.plan = ScriptedFaults({"PutItem": [fault]})
    (first,) = await store.append("c", [ev(1)])
    (second,) = await store.append("c", [ev(2)])
    assert (first.seq, second.seq) == (1, 2)
    assert faults.retried["PutItem"] == 1  # botocore sent it again; the store saw its own item
    assert await stored(direct, "c") == [(1, "1"), (2, "2")]


@pytest.mark.parametrize("fault", ["lost_answer", "drop"])
async def test_a_transaction_that_landed_but_whose_answer_was_lost_is_not_stored_twice(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults, fault: str
) -> None:
    """moto, like other emulators, ignores the transaction's ClientRequestToken: the retry
    finds its own items in the way, and the store must recognise them as its own."""
    faults.plan = ScriptedFaults({"TransactWriteItems": [fault]})
    batch = await store.append("c", [ev(1), ev(2), ev(3)])
    assert [a.seq for a in batch] == [1, 2, 3]
    (after,) = await store.append("c", [ev(4)])
    assert after.seq == 4
    assert faults.retried["TransactWriteItems"] == 1
    assert await stored(direct, "c") == [(n, str(n)) for n in range(1, 5)]


async def test_a_keyed_write_whose_answer_was_lost_answers_with_its_first_sequence(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    faults.plan = ScriptedFaults({"TransactWriteItems": ["lost_answer"]})
    (first,) = await store.append("c", [ev(1, "k1")])
    assert (first.seq, first.duplicate) == (1, False)
    (again,) = await store.append("c", [ev(1, "k1")])
    assert (again.seq, again.duplicate) == (1, True)
    assert await stored(direct, "c") == [(1, "1")]


async def test_a_throttled_transaction_is_retried_after_a_backoff(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    """DynamoDB throttles a transaction by cancelling it (TransactionCanceledException with a
    ThrottlingError reason), which botocore does not retry: the store does."""
    faults.plan = ScriptedFaults({"TransactWriteItems": ["transaction_throttle"] * 2})
    (appended,) = await store.append("c", [ev(1, "k1")])
    assert (appended.seq, appended.duplicate) == (1, False)
    assert faults.injected["TransactWriteItems", "transaction_throttle"] == 2
    assert faults.forwarded["TransactWriteItems"] == 1
    assert await stored(direct, "c") == [(1, "1")]


async def test_throttling_that_does_not_stop_fails_the_publish_and_stores_nothing(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    faults.plan = lambda operation: (
        "transaction_throttle" if operation == "TransactWriteItems" else None
    )
    with pytest.raises(StoreUnavailable):
        await store.append("c", [ev(1), ev(2)])
    assert faults.forwarded["TransactWriteItems"] == 0
    assert faults.injected["TransactWriteItems", "transaction_throttle"] > 1  # it did retry
    assert await stored(direct, "c") == []
    faults.plan = ScriptedFaults({})
    assert [a.seq for a in await store.append("c", [ev(1), ev(2)])] == [1, 2]


async def test_server_errors_on_reads_are_retried(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    await direct.append("c", [ev(1), ev(2)])
    faults.plan = ScriptedFaults({"Query": ["error", "throttle"]})
    assert await stored(store, "c") == [(1, "1"), (2, "2")]
    assert faults.retried["Query"] == 2


async def test_a_landed_transaction_then_throttled_on_its_retry_is_not_stored_twice(
    store: DynamoDBStore, direct: DynamoDBStore, faults: DynamoDBFaults
) -> None:
    """The first attempt lands but its answer is lost; botocore's retry is throttled; the
    store's own retry must be the same write (same token), which then finds itself."""
    faults.plan = ScriptedFaults({"TransactWriteItems": ["lost_answer", "transaction_throttle"]})
    batch = await store.append("c", [ev(1), ev(2)])
    assert [a.seq for a in batch] == [1, 2]
    assert await stored(direct, "c") == [(1, "1"), (2, "2")]
