"""What the DynamoDB store does beyond the contract: threads, writers, polling, expiry, the
table, and its price in calls. In moto's in-process emulation, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from serverless_sse.errors import PayloadTooLarge
from serverless_sse.events import NewEvent
from serverless_sse.stores.dynamodb import DynamoDBStore, create_table, parse_url
from tests.servers import ROOT

TABLE = "sse-unit"
REGION = "us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """Every DynamoDB call a client makes, by operation, and the threads that made them."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.counts: Counter[str] = Counter()
        self.threads: set[str] = set()
        store._db.meta.events.register("before-call.dynamodb", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1
        self.threads.add(threading.current_thread().name)

    def reset(self) -> None:
        self.counts.clear()


def ev(n: int, key: str | None = None) -> NewEvent:
    return NewEvent("message", str(n), key)


@pytest.fixture
def table() -> Iterator[None]:
    with mock_aws():
        create_table(TABLE, region=REGION)
        yield


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(table: None, clock: Clock) -> AsyncIterator[DynamoDBStore]:
    # One thread: moto's in-process backend is not thread-safe.
    store = DynamoDBStore(TABLE, region=REGION, threads=1, retention_seconds=100, clock=clock)
    yield store
    await store.aclose()


@pytest.fixture
def channel() -> str:
    return f"test/{uuid.uuid4().hex}"


# -- the event loop never blocks -------------------------------------------------------------


async def test_boto3_calls_run_on_the_store_s_threads_never_the_event_loop(
    store: DynamoDBStore, channel: str
) -> None:
    calls = Calls(store)
    await store.append(channel, [ev(1)])
    await store.read(channel, 0, limit=10)
    await store.put_value("k", "v")
    assert calls.threads and all(t.startswith("dynamodb") for t in calls.threads)
    assert threading.current_thread().name not in calls.threads


def test_the_service_imports_boto3_only_when_its_store_is_dynamodb() -> None:
    probe = (
        "import sys; from functions.app import app; from serverless_sse.stores import open_store;"
        " from serverless_sse.settings import Settings;"
        " open_store('memory://', Settings()); open_store('redis://127.0.0.1:6379/3', Settings());"
        " print('boto3' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


# -- writing ---------------------------------------------------------------------------------


async def test_a_process_s_concurrent_publishes_never_conflict(
    store: DynamoDBStore, channel: str
) -> None:
    """One writer per channel: 20 publishers cost 20 puts (and the head read once), not
    failed conditional writes and re-reads."""
    await store.append(channel, [ev(0)])
    calls = Calls(store)
    results = await asyncio.gather(*(store.append(channel, [ev(n)]) for n in range(1, 21)))
    assert sorted(r[0].seq for r in results) == list(range(2, 22))
    assert calls.counts["PutItem"] == 20
    assert calls.counts["Query"] <= 1


async def test_writes_of_another_process_are_noticed_and_stepped_over(
    store: DynamoDBStore, table: None, clock: Clock, channel: str
) -> None:
    other = DynamoDBStore(TABLE, region=REGION, threads=1, clock=clock)
    try:

        async def publish(target: DynamoDBStore, tag: str) -> list[int]:
            seqs = []
            for i in range(15):
                (appended,) = await target.append(channel, [NewEvent("m", f'"{tag}{i}"')])
                seqs.append(appended.seq)
            return seqs

        mine, theirs = await asyncio.gather(publish(store, "a"), publish(other, "b"))
        assert sorted(mine + theirs) == list(range(1, 31))
        assert mine == sorted(mine) and theirs == sorted(theirs)
    finally:
        await other.aclose()


async def test_a_batch_too_big_for_one_transaction_is_refused_and_stores_nothing(
    store: DynamoDBStore, channel: str
) -> None:
    with pytest.raises(PayloadTooLarge, match="100"):
        await store.append(channel, [ev(n, key=f"k{n}") for n in range(60)])
    assert (await store.state(channel)).last_seq == 0
    appended = await store.append(channel, [ev(n, key=f"k{n}") for n in range(50)])
    assert [a.seq for a in appended] == list(range(1, 51))


# -- expiry ----------------------------------------------------------------------------------


async def test_a_log_whose_events_all_expired_starts_a_new_epoch_and_keeps_counting(
    store: DynamoDBStore, clock: Clock, channel: str
) -> None:
    """TTL deletes in no order, so the newest event may be gone already: the next append
    cannot trust the old log's head, and says so with a new epoch."""
    (first,) = await store.append(channel, [ev(1)])
    clock.now += 101
    state = await store.state(channel)
    assert (state.epoch, state.first_seq, state.last_seq) == (first.epoch, 2, 1)
    (later,) = await store.append(channel, [ev(2)])
    assert later.seq == 2
    assert later.epoch != first.epoch


async def test_the_first_retained_event_is_found_in_a_few_reads_and_then_remembered(
    store: DynamoDBStore, clock: Clock, channel: str
) -> None:
    start = clock.now
    for n in range(256):  # event n + 1 at start + n
        await store.append(channel, [ev(n)])
        clock.now += 1
    clock.now = start + 100 + 179.5  # events 1..180 are past the retention of 100 s
    calls = Calls(store)
    state = await store.state(channel)
    assert (state.first_seq, state.last_seq) == (181, 256)
    assert calls.counts["Query"] <= 12  # the head, then a binary search: not 180 reads
    calls.reset()
    assert (await store.state(channel)).first_seq == 181
    assert calls.counts["Query"] == 1  # the head only


async def test_events_deleted_by_ttl_in_any_order_are_skipped_like_expired_ones(
    store: DynamoDBStore, clock: Clock, channel: str
) -> None:
    start = clock.now
    for n in range(1, 41):  # event n at start + n - 1
        await store.append(channel, [ev(n)])
        clock.now += 1
    clock.now = start + 100 + 19.5  # events 1..20 are past the retention of 100 s
    client = boto3.client("dynamodb", region_name=REGION)
    for seq in (3, 17, 20, 9):  # what DynamoDB's TTL deleted so far, in its own order
        client.delete_item(TableName=TABLE, Key={"channel": {"S": channel}, "seq": {"N": str(seq)}})
    result = await store.read(channel, 0, limit=100)
    assert [e.seq for e in result.events] == list(range(21, 41))
    assert result.state.first_seq == 21


# -- live reads ------------------------------------------------------------------------------


class VirtualTime:
    """The store's clock of polls and waits, in virtual time: a nap returns at once with the
    clock moved on to its end, or to the first action scheduled within it if that action
    wakes it (as an append through the store does, by the store's own signal). Records when
    the store polled."""

    def __init__(self, store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.polls: list[float] = []
        self._actions: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        self._signals = store._signals
        read_now = store._read_now

        async def polled(*args: Any) -> Any:
            self.polls.append(self.now)
            return await read_now(*args)

        monkeypatch.setattr(store, "_monotonic", lambda: self.now)
        monkeypatch.setattr(store, "_nap", self._nap)
        monkeypatch.setattr(store, "_read_now", polled)

    def at(self, when: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` at ``when`` (during a nap that reaches it)."""
        self._actions.append((when, action))
        self._actions.sort(key=lambda pair: pair[0])

    async def _nap(self, channel: str, seconds: float) -> bool:
        signal = self._signals.setdefault(channel, asyncio.Event())  # as the store's own nap
        end = self.now + seconds
        if self._actions and self._actions[0][0] <= end:
            when, action = self._actions.pop(0)
            self.now = max(self.now, when)
            await action()
            if signal.is_set():
                return True
        self.now = end
        return False

    def gaps(self) -> list[float]:
        return [round(b - a, 6) for a, b in itertools.pairwise(self.polls)]


async def test_idle_polls_back_off_and_speed_up_again_when_events_flow(
    table: None, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoDBStore(TABLE, region=REGION, threads=1, poll_min=0.05, poll_max=0.4)
    other = DynamoDBStore(TABLE, region=REGION, threads=1)  # another process's publishes
    time = VirtualTime(store, monkeypatch)
    try:
        await store.append(channel, [ev(1)])
        calls = Calls(store)
        idle = await store.read(channel, 1, limit=10, wait=2.0)
        assert idle.events == []
        # Idle: the interval doubles up to poll_max, and the wait ends when its time is up
        # (7 polls in 2 s, where polling every poll_min would be 40).
        assert time.gaps() == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
        assert time.polls[-1] <= 2.0 == time.now
        assert calls.counts["Query"] == len(time.polls)

        published = 1

        async def publish_elsewhere() -> None:  # no signal reaches this store's reader
            nonlocal published
            published += 1
            await other.append(channel, [ev(published)])

        time.polls.clear()
        time.at(time.now + 0.1, publish_elsewhere)
        found = await store.read(channel, 1, limit=10, wait=5.0)
        assert [e.seq for e in found.events] == [2]
        assert time.polls == [pytest.approx(1.9 + 0.4)]  # at the idle pace still

        # Events flow: the next poll comes at the fast pace again.
        time.polls.clear()
        time.at(time.now + 0.01, publish_elsewhere)
        found = await store.read(channel, 2, limit=10, wait=5.0)
        assert [e.seq for e in found.events] == [3]
        assert time.polls == [pytest.approx(2.3 + 0.05)]
    finally:
        await store.aclose()
        await other.aclose()


async def test_an_append_through_the_store_wakes_its_waiting_reader_at_once(
    table: None, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoDBStore(TABLE, region=REGION, threads=1, poll_min=0.05, poll_max=0.4)
    time = VirtualTime(store, monkeypatch)
    try:
        await store.append(channel, [ev(1)])
        await store.read(channel, 1, limit=10, wait=2.0)  # idle: polling every 0.4 s now
        time.polls.clear()

        async def publish_here() -> None:
            await store.append(channel, [ev(2)])

        appended_at = time.now + 0.1  # the next poll is due at 1.9 + 0.4 = 2.3
        time.at(appended_at, publish_here)
        found = await store.read(channel, 1, limit=10, wait=5.0)
        assert [e.seq for e in found.events] == [2]
        assert time.polls == [pytest.approx(appended_at)]
    finally:
        await store.aclose()


# -- the table and the URL -------------------------------------------------------------------


def test_create_table_enables_ttl_and_is_idempotent(table: None) -> None:
    assert not create_table(TABLE, region=REGION)
    client = boto3.client("dynamodb", region_name=REGION)
    ttl = client.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "x")
    keys = client.describe_table(TableName=TABLE)["Table"]["KeySchema"]
    assert keys == [
        {"AttributeName": "channel", "KeyType": "HASH"},
        {"AttributeName": "seq", "KeyType": "RANGE"},
    ]


def test_urls_name_a_table_and_known_options() -> None:
    assert parse_url("dynamodb://sse-events") == ("sse-events", {})
    assert parse_url("dynamodb://Events_1?region=eu-west-1&endpoint_url=http://127.0.0.1:8000") == (
        "Events_1",
        {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:8000"},
    )
    for bad in ("dynamodb://", "dynamodb://ab", "dynamodb://t/x", "dynamodb://tab?color=red"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_the_cloudformation_table_is_the_one_create_table_makes(table: None) -> None:
    template = yaml.safe_load((ROOT / "infra" / "dynamodb-table.yml").read_text())
    declared = template["Resources"]["EventsTable"]["Properties"]
    made = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=TABLE)["Table"]
    assert declared["KeySchema"] == made["KeySchema"]
    assert sorted(declared["AttributeDefinitions"], key=str) == sorted(
        made["AttributeDefinitions"], key=str
    )
    assert declared["BillingMode"] == made["BillingModeSummary"]["BillingMode"]
    assert declared["TimeToLiveSpecification"] == {"AttributeName": "x", "Enabled": True}
