"""Servers that several test packages share, started once per session and only when asked for.

Each one runs on free loopback ports and is stopped by process id when the session ends,
whatever happened in between.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

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


# -- running in parallel ---------------------------------------------------------------------
#
# Under pytest-xdist (`--dist loadgroup`, as `make test` runs it) every test module is a group,
# so its module-scoped servers start once. Modules that use the same Redis database must never
# run at once (each flushes its database), so they are joined into one group. The databases a
# module uses are read from its source, and from the helper modules it imports that name them.

_DATABASE = re.compile(r"6379/(\d+)|REDIS_DB\s*=\s*(\d+)")
_HELPER_IMPORT = re.compile(r"^from (tests\.[\w.]+) import", re.MULTILINE)


def _databases(path: Path, seen: set[Path] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    text = path.read_text()
    found = {a or b for a, b in _DATABASE.findall(text)}
    for module in _HELPER_IMPORT.findall(text):
        helper = Path(__file__).parent.parent / (module.replace(".", "/") + ".py")
        if helper.name not in ("stores.py", "servers.py"):  # they name no database of their own
            found |= _databases(helper, seen)
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules = sorted({item.path for item in items})
    group = {module: module.name for module in modules}
    user: dict[str, str] = {}  # database -> the group that uses it
    for module in modules:
        package_conftest = module.parent / "conftest.py"  # fixtures it may take databases from
        databases = _databases(module)
        if package_conftest != Path(__file__):
            databases |= _databases(package_conftest)
        # Sorted: every xdist worker must form the same groups, and a set's order changes with
        # each process's string hashing.
        for database in sorted(databases):
            if database not in user:
                user[database] = group[module]
            elif user[database] != group[module]:
                merged, joined = group[module], user[database]
                for table in (group, user):
                    for key, name in table.items():
                        if name == merged:
                            table[key] = joined  # type: ignore[index]
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group[item.path]))
