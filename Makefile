# The two commands of the README: `make run` (the service on http://127.0.0.1:8000, in-memory
# store) and `make test` (the whole suite). Both set up everything they need by themselves.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint venv

run: venv
	.venv/bin/uvicorn functions.app:app --host $(HOST) --port $(PORT)

test:
	scripts/test.sh

lint: venv
	.venv/bin/ruff check lib functions tests bench
	.venv/bin/ruff format --check lib functions tests bench
	.venv/bin/mypy

venv:
	@scripts/venv.sh
