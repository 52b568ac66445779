"""``serverless-sse create-table``, against moto: in process (``mock_aws``) and moto's server
(over HTTP, through the installed command, the way the README runs it)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from serverless_sse.cli import main
from serverless_sse.events import NewEvent
from serverless_sse.settings import Settings
from serverless_sse.stores import open_store
from tests.servers import MotoServer, free_port

SCRIPT = Path(sys.executable).parent / "serverless-sse"
REGION = "us-east-1"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def table() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in this process; returns (status, stdout, stderr)."""
    try:
        status = main(["create-table", *args])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def describe(table: str) -> tuple[dict[str, object], dict[str, object]]:
    client = boto3.client("dynamodb", region_name=REGION)
    return (
        dict(client.describe_table(TableName=table)["Table"]),
        dict(client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]),
    )


def test_it_creates_the_store_s_table_and_prints_the_store_url(
    aws: None, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, table, "--region", REGION)
    assert status == 0, err
    assert out == f"dynamodb://{table}?region={REGION}\n"
    assert f"created table {table}" in err
    description, ttl = describe(table)
    assert sorted((k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]) == [  # type: ignore[attr-defined]
        ("channel", "HASH"),
        ("seq", "RANGE"),
    ]
    assert sorted(
        (a["AttributeName"], a["AttributeType"])
        for a in description["AttributeDefinitions"]  # type: ignore[attr-defined]
    ) == [("channel", "S"), ("seq", "N")]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"  # type: ignore[index]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "x")


def test_a_table_that_exists_is_an_error_unless_exist_ok(
    aws: None, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, table, "--region", REGION)[0] == 0
    status, out, err = cli(capsys, table, "--region", REGION)
    assert (status, out) == (1, "")
    assert f"table {table} already exists" in err and "--exist-ok" in err
    status, out, err = cli(capsys, table, "--region", REGION, "--exist-ok")
    assert (status, out) == (0, f"dynamodb://{table}?region={REGION}\n")
    assert "already exists" in err


def test_exist_ok_refuses_a_table_the_store_cannot_use(
    aws: None, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    status, out, err = cli(capsys, table, "--region", REGION, "--exist-ok")
    assert (status, out) == (1, "")
    assert "its keys are id (S, HASH), not channel (S, HASH), seq (N, RANGE)" in err
    assert "TTL is not enabled on the attribute 'x'" in err


def test_a_store_url_names_the_table_and_its_options(
    aws: None, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, f"dynamodb://{table}?region={REGION}")
    assert (status, out) == (0, f"dynamodb://{table}?region={REGION}\n")
    assert describe(table)[0]["TableName"] == table


def test_the_command_creates_a_table_on_moto_s_server_that_the_store_then_uses(
    moto_server: MotoServer, table: str
) -> None:
    endpoint = moto_server.endpoint_url
    result = subprocess.run(
        [str(SCRIPT), "create-table", table, "--region", REGION, "--endpoint-url", endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url == f"dynamodb://{table}?region={REGION}&endpoint_url={endpoint}"

    async def publish_and_read() -> list[object]:
        store = open_store(url, Settings())
        try:
            await store.append("rooms/lobby", [NewEvent("chat", '{"text":"hello"}')])
            read = await store.read("rooms/lobby", 0, limit=10)
            return [(e.seq, e.type, e.data) for e in read.events]
        finally:
            await store.aclose()

    assert asyncio.run(publish_and_read()) == [(1, "chat", '{"text":"hello"}')]


@pytest.mark.parametrize("name", ["ab", "has space", "a/b", "x" * 256])
def test_a_bad_table_name_is_refused_before_any_call(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, name, "--region", REGION)
    assert (status, out) == (2, "")
    assert "is not a DynamoDB table name" in err


def test_an_unreachable_endpoint_is_reported(
    table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    status, out, err = cli(capsys, table, "--region", REGION, "--endpoint-url", endpoint)
    assert (status, out) == (1, "")
    assert f"cannot reach DynamoDB at {endpoint}" in err


def test_without_a_region_it_says_how_to_give_one(
    table: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    status, out, err = cli(capsys, table)
    assert (status, out) == (2, "")
    assert "no AWS region: pass --region" in err


def test_without_credentials_it_says_which_are_needed(
    table: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = f"http://127.0.0.1:{free_port()}"  # never reached: signing fails first
    status, out, err = cli(capsys, table, "--region", REGION, "--endpoint-url", endpoint)
    assert (status, out) == (1, "")
    assert "no AWS credentials" in err
