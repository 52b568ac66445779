#!/usr/bin/env bash
# Create .venv and install the project with its dev extras, once per pyproject.toml version.
# Idempotent and quiet when nothing changed, so `make run` and `make test` can always call it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  # Debian's python3 makes venvs only with its python3-venv package (ensurepip).
  if ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
    scripts/apt-install.sh "Python's venv module ($PY -m venv)" python3-venv
  fi
  echo "creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
fi
# This machine's pip config names extra local indexes that may not exist: drop that noise.
quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet -e '.[dev]'
rm -f .venv/.installed-*
touch "$stamp"
