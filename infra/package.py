"""Package the service for AWS Lambda (``make package``).

    .venv/bin/python infra/package.py [--stage dev] [--region us-east-1] [--out .serverless]
                                     [-- <more serverless options, e.g. --param="k=v">]

1. Dependencies: the project's runtime dependencies (``pyproject.toml``) installed by pip for
   the Lambda runtime (CPython 3.13 on x86_64 Linux, binary wheels only) into
   ``build/deps/<key>/``, and kept there while the list stays the same.
2. Bytecode: when a Python 3.13 is at hand, everything is compiled ahead of time (unchecked
   hash-based ``.pyc``: a deployed function's code never changes, and Lambda cannot write
   ``__pycache__``), so a cold start does not compile what it imports. Without one, the
   package works the same and its cold starts compile.
3. The artifact ``build/package/serverless-sse.zip``: the library at its root (where the
   runtime's ``sys.path`` finds it), ``functions/``, ``infra/lambda/run.sh`` and the
   dependencies; no tests. The same inputs give the same bytes (sorted entries, fixed
   times), so an unchanged service uploads nothing new.
4. ``serverless package`` (the framework pinned in ``package.json``, see
   ``scripts/ensure-serverless.sh``), which compiles the CloudFormation template into
   ``--out``. It needs no AWS account: ``serverless.yml`` reads the credentials from SSM only
   when CloudFormation deploys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
ARTIFACT = BUILD / "package" / "serverless-sse.zip"

PYTHON_VERSION = "3.13"  # serverless.yml: runtime python3.13
ABI = "cp313"
# Lambda's python3.13 runs on Amazon Linux 2023 (glibc 2.34): manylinux2014 and 2_28 wheels.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

# The function package, as (source, name in the package); the library goes to the root.
CODE = (
    (ROOT / "lib" / "serverless_sse", "serverless_sse"),
    (ROOT / "functions", "functions"),
    (ROOT / "infra" / "lambda" / "run.sh", "infra/lambda/run.sh"),
)
SKIPPED = {"__pycache__", ".mypy_cache", ".pytest_cache"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def requirements() -> list[str]:
    """The runtime dependencies, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def lambda_python() -> str | None:
    """A Python of the runtime's version to compile bytecode with, or None: ``LAMBDA_PYTHON``,
    else ``python3.13`` on the PATH, else one that pyenv installed."""
    named = os.environ.get("LAMBDA_PYTHON")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [named] if named else []
    candidates += [shutil.which(f"python{PYTHON_VERSION}")]
    candidates += [str(p) for p in sorted(pyenv.glob(f"{PYTHON_VERSION}.*/bin/python3"))]
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if found.stdout.strip() == PYTHON_VERSION:
            return candidate
    return None


def compile_bytecode(python: str, directory: Path) -> None:
    # Some packages carry files for other Pythons that do not compile: they are never imported,
    # so compileall's complaints about them are not errors here.
    options = ["-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    command = [python, "-m", "compileall", *options, str(directory)]
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL)


def dependencies(python: str | None) -> Path:
    """The dependencies installed for the runtime (built once per list, platform and mode)."""
    wanted = requirements()
    key = hashlib.sha256(
        json.dumps([wanted, PYTHON_VERSION, PLATFORMS, python is not None]).encode()
    ).hexdigest()[:16]
    target = BUILD / "deps" / key
    if (target / ".complete").exists():
        return target
    staging = target.with_name(key + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    print(f"installing {len(wanted)} dependencies for python{PYTHON_VERSION}", file=sys.stderr)
    runtime = ["--implementation", "cp", "--python-version", PYTHON_VERSION, "--abi", ABI]
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        *("--no-compile", "--only-binary=:all:", *platforms, *runtime),
        *("--target", str(staging), *wanted),
    ]
    installed = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    # This machine's pip configuration names local indexes that may not exist: drop that noise.
    noise = "WARNING: Location 'file:"
    sys.stderr.writelines(
        line for line in installed.stderr.splitlines(keepends=True) if not line.startswith(noise)
    )
    installed.check_returncode()
    shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts for this machine
    if python is not None:
        compile_bytecode(python, staging)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def code(python: str | None) -> Path:
    """The service's own code, laid out as in the package (and compiled, if it can be)."""
    staging = BUILD / "code"
    shutil.rmtree(staging, ignore_errors=True)
    for source, name in CODE:
        destination = staging / name
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*SKIPPED, "*.pyc"))
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    if python is not None:
        compile_bytecode(python, staging)
    return staging


def files(directory: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != ".complete":
            yield path, path.relative_to(directory).as_posix()


def write_zip(destination: Path, *directories: Path) -> tuple[int, int]:
    """Zip ``directories``' files (merged at the root) reproducibly; (files, bytes unzipped)."""
    entries = sorted((name, path) for directory in directories for path, name in files(directory))
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".tmp")
    total = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            executable = os.access(path, os.X_OK) and name.endswith(".sh")
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            total += len(data)
            archive.writestr(info, data)
    partial.replace(destination)
    return len(entries), total


def framework_package(stage: str, region: str, out: Path, options: list[str]) -> None:
    serverless = ROOT / "node_modules" / ".bin" / "serverless"
    if not serverless.exists():
        raise SystemExit("the Serverless Framework is missing: run scripts/ensure-serverless.sh")
    env = {
        **os.environ,
        # No update checks, notifications or telemetry: packaging talks to nothing.
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
    }
    command = [str(serverless), "package", "--stage", stage, "--region", region]
    subprocess.run([*command, "--package", str(out), *options], cwd=ROOT, env=env, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--out", type=Path, default=ROOT / ".serverless")
    parser.add_argument(
        "--step",
        choices=["all", "artifact", "template"],
        default="all",
        help="artifact: build the zip only (the step that downloads); template: only run "
        "the framework on the zip built before (the step that must need no network)",
    )
    parser.add_argument("framework_options", nargs="*", help="passed to serverless package")
    args = parser.parse_args(argv)
    if args.step in ("all", "artifact"):
        python = lambda_python()
        if python is None:
            print(f"no python{PYTHON_VERSION} here: packaging without bytecode", file=sys.stderr)
        count, size = write_zip(ARTIFACT, dependencies(python), code(python))
        print(
            f"{ARTIFACT.relative_to(ROOT)}: {count} files, {size / 1e6:.1f} MB unzipped, "
            f"{ARTIFACT.stat().st_size / 1e6:.1f} MB zipped",
            file=sys.stderr,
        )
    if args.step in ("all", "template"):
        if not ARTIFACT.exists():
            raise SystemExit(f"{ARTIFACT.relative_to(ROOT)} is missing: build it first")
        framework_package(args.stage, args.region, args.out, args.framework_options)


if __name__ == "__main__":
    main()
