"""The set-up scripts of ``make test`` (``scripts/ensure-*.sh``, ``scripts/venv.sh``) on a fake
machine: a PATH holding only the few tools they use, and fakes of ``id``, ``apt-get``,
``apt-cache``, Node, npm and Redis that record what was asked of them. Package lists start
empty, as on a fresh image, so an install fails unless ``apt-get update`` ran first."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import ROOT

SCRIPTS = ROOT / "scripts"
TOOLS = ("bash", "env", "dirname", "sha1sum", "cut", "touch", "seq", "sleep", "grep")
TOOLS += ("cat", "rm", "mkdir", "cp", "chmod")  # the fakes' own

# What each fake Debian package puts on the PATH.
PROVIDES = {
    "nodejs": "node",
    "npm": "npm",
    "redis-server": "redis-server",
    "redis-tools": "redis-cli",
    "python3-venv": "",
    "chromium": "",
}

FAKES = {
    "id": 'echo "$FAKE_UID"',
    "apt-cache": """
        if [ -f "$STATE/lists" ]; then echo "  Candidate: 1.0"; else echo "  Candidate: (none)"; fi
    """,
    "apt-get": """
        echo "apt-get $*" >> "$STATE/log"
        [ "$DEBIAN_FRONTEND" = noninteractive ] || { echo "E: would ask questions" >&2; exit 1; }
        if [ "$1" = update ]; then touch "$STATE/lists"; rm -f "$STATE/stale"; exit 0; fi
        [ "$1" = install ] && [ "$2" = -y ] || exit 100
        if [ ! -f "$STATE/lists" ] || [ -f "$STATE/stale" ]; then
          echo "E: Unable to locate package" >&2; exit 100
        fi
        shift 3
        for package in "$@"; do
          echo "$package" >> "$STATE/installed"
          case "$package" in
            chromium) touch "$CHROMIUM"; chmod +x "$CHROMIUM" ;;
            python3-venv) touch "$STATE/ensurepip" ;;
          esac
          provided=$(grep "^$package=" "$STATE/provides" | cut -d= -f2)
          [ -z "$provided" ] || cp "$STATE/fakes/$provided" "$FAKEBIN/$provided"
        done
    """,
}

# Installed only by apt-get (or given from the start).
PACKAGED = {
    "node": 'echo "${FAKE_NODE_MAJOR:-20}"',
    "npm": 'echo "npm $*" >> "$STATE/log"',
    "redis-server": 'echo "redis-server $*" >> "$STATE/log"; touch "$STATE/redis-up"',
    "redis-cli": '[ -f "$STATE/redis-up" ]',
    "python": """
        if [ "$2" = "import ensurepip" ]; then [ -f "$STATE/ensurepip" ]; exit; fi
        if [ "$1" = --version ]; then echo "Python 3.11.2"; exit; fi
        if [ "$1 $2" = "-m venv" ]; then
          mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; echo "venv $3" >> "$STATE/log"; exit
        fi
        echo "python $*" >> "$STATE/log"
    """,
}


@dataclass
class Machine:
    root: Path
    bin: Path
    state: Path
    uid: int = 0

    def give(self, *commands: str) -> None:
        """Commands that are there from the start."""
        for command in commands:
            shutil.copy(self.state / "fakes" / command, self.bin / command)

    def run(self, script: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/bash", str(script)],
            env={
                "PATH": str(self.bin),
                "STATE": str(self.state),
                "FAKEBIN": str(self.bin),
                "FAKE_UID": str(self.uid),
                "CHROMIUM": str(self.root / "chromium"),
                "NGINX": str(self.root / "nginx"),
                "NCHAN_MODULE": str(self.root / "ngx_nchan_module.so"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
        )

    def log(self) -> list[str]:
        path = self.state / "log"
        return path.read_text().splitlines() if path.exists() else []

    def apt(self) -> list[str]:
        return [line for line in self.log() if line.startswith("apt-get")]

    def installed(self) -> list[str]:
        path = self.state / "installed"
        return path.read_text().split() if path.exists() else []


def script_of(body: str) -> str:
    return "#!/bin/bash\n" + "\n".join(line.strip() for line in body.strip().splitlines()) + "\n"


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    (state / "fakes").mkdir(parents=True)
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, body in FAKES.items():
        (bin_dir / name).write_text(script_of(body))
        (bin_dir / name).chmod(0o755)
    for name, body in PACKAGED.items():
        (state / "fakes" / name).write_text(script_of(body))
        (state / "fakes" / name).chmod(0o755)
    (state / "provides").write_text("".join(f"{p}={c}\n" for p, c in PROVIDES.items()))
    return Machine(tmp_path, bin_dir, state)


def test_as_root_everything_missing_is_installed_after_a_single_update(machine: Machine) -> None:
    for script in ("ensure-redis.sh", "ensure-node.sh", "ensure-chromium.sh"):
        result = machine.run(SCRIPTS / script)
        assert result.returncode == 0, result.stderr
    assert machine.apt() == [
        "apt-get update -q",
        "apt-get install -y -q redis-server redis-tools",
        "apt-get install -y -q nodejs npm",
        "apt-get install -y -q chromium",
    ]
    assert machine.installed() == ["redis-server", "redis-tools", "nodejs", "npm", "chromium"]
    assert any(line.startswith("redis-server --daemonize yes") for line in machine.log())


def test_only_the_missing_command_s_package_is_installed(machine: Machine) -> None:
    machine.give("node")
    result = machine.run(SCRIPTS / "ensure-node.sh")
    assert result.returncode == 0, result.stderr
    assert machine.installed() == ["npm"]


def test_stale_package_lists_are_updated_once_and_the_install_tried_again(
    machine: Machine,
) -> None:
    (machine.state / "lists").touch()  # lists exist: no update up front
    (machine.state / "stale").touch()  # but name versions the mirror no longer has
    result = machine.run(SCRIPTS / "ensure-chromium.sh")
    assert result.returncode == 0, result.stderr
    assert machine.apt() == [
        "apt-get install -y -q chromium",
        "apt-get update -q",
        "apt-get install -y -q chromium",
    ]


@pytest.mark.parametrize(
    ("script", "packages"),
    [
        ("ensure-redis.sh", "redis-server redis-tools"),
        ("ensure-node.sh", "nodejs npm"),
        ("ensure-node-deps.sh", "nodejs npm"),
        ("ensure-serverless.sh", "nodejs npm"),
        ("ensure-chromium.sh", "chromium"),
        ("ensure-nchan.sh", "nginx-light libnginx-mod-nchan"),
    ],
)
def test_without_root_a_missing_package_fails_saying_what_to_install(
    machine: Machine, script: str, packages: str
) -> None:
    machine.uid = 1000
    result = machine.run(SCRIPTS / script)
    assert result.returncode == 1
    assert f"installing it needs root: apt-get install {packages}" in result.stderr
    assert machine.apt() == []


@pytest.mark.parametrize("uid", [0, 1000])
def test_with_everything_present_they_are_quiet_and_install_nothing(
    machine: Machine, uid: int
) -> None:
    machine.uid = uid
    machine.give("node", "npm", "redis-server", "redis-cli")
    (machine.state / "redis-up").touch()
    (machine.root / "chromium").touch(mode=0o755)
    (machine.root / "nginx").touch(mode=0o755)
    (machine.root / "ngx_nchan_module.so").touch()
    for script in ("ensure-redis.sh", "ensure-node.sh", "ensure-chromium.sh", "ensure-nchan.sh"):
        result = machine.run(SCRIPTS / script)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), script
    assert machine.log() == []


def test_redis_is_started_when_nothing_answers(machine: Machine) -> None:
    machine.give("redis-server", "redis-cli")
    result = machine.run(SCRIPTS / "ensure-redis.sh")
    assert result.returncode == 0, result.stderr
    assert machine.apt() == []
    [started] = machine.log()
    assert started.startswith("redis-server --daemonize yes --bind 127.0.0.1")


def test_a_node_older_than_the_packages_ask_for_is_used_with_a_warning(
    machine: Machine,
) -> None:
    machine.give("node", "npm")
    result = machine.run(SCRIPTS / "ensure-node.sh", FAKE_NODE_MAJOR="18")
    assert result.returncode == 0
    assert "older than the 20 the npm packages ask for" in result.stderr


def test_the_venv_script_installs_python3_venv_when_python_cannot_make_one(
    machine: Machine,
) -> None:
    repo = machine.root / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("venv.sh", "apt-install.sh"):
        shutil.copy(SCRIPTS / script, repo / "scripts" / script)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    machine.give("python")
    result = machine.run(repo / "scripts" / "venv.sh", PYTHON="python")
    assert result.returncode == 0, result.stderr
    assert machine.installed() == ["python3-venv"]
    assert "venv .venv" in machine.log()
    assert list((repo / ".venv").glob(".installed-*"))
    # Once made, nothing more: not even Python is asked.
    before = machine.log()
    again = machine.run(repo / "scripts" / "venv.sh", PYTHON="python")
    assert (again.returncode, again.stderr, machine.log()) == (0, "", before)


def test_the_test_command_runs_every_ensure_script() -> None:
    test_sh = (SCRIPTS / "test.sh").read_text()
    ensured = {p.name for p in SCRIPTS.glob("ensure-*.sh")} - {"ensure-node.sh"}
    assert ensured and all(f"scripts/{name}" in test_sh for name in ensured)
    assert os.access(SCRIPTS / "apt-install.sh", os.X_OK)
