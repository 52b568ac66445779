"""Servers that several test packages share, started once per session and only when asked for.

Each one runs on free loopback ports and is stopped by process id when the session ends,
whatever happened in between.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import MotoServer, RedisClusterServers

# Fake credentials for moto (in-process and server): boto3 refuses to sign without any.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-node Redis Cluster of this session's own."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's DynamoDB over HTTP, like AWS's endpoint."""
    with MotoServer() as server:
        yield server
