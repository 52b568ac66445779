# The two commands of the README: `make run` (the service on http://127.0.0.1:8000, in-memory
# store) and `make test` (the whole suite). Both set up everything they need by themselves.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test chaos lint venv package bench bench-quick

run: venv
	.venv/bin/uvicorn functions.app:app --host $(HOST) --port $(PORT) --no-access-log

test:
	scripts/test.sh

# The chaos suite at full length, with its figures (README "Reliability"); about 20 minutes.
chaos:
	scripts/chaos.sh

lint: venv
	.venv/bin/ruff check lib functions tests bench
	.venv/bin/ruff format --check lib functions tests bench
	.venv/bin/ruff check infra
	.venv/bin/ruff format --check infra
	.venv/bin/mypy

venv:
	@scripts/venv.sh

# The benchmark beside its peers (README "Benchmarks"): about 15 minutes, or about one for the
# quick run. Results in bench/results/; BENCH_ARGS go to bench/run.py (e.g. --readme).
BENCH_ARGS ?=
bench: venv
	@scripts/ensure-redis.sh
	@scripts/ensure-nchan.sh
	.venv/bin/python -m bench.run $(BENCH_ARGS)

bench-quick: venv
	@scripts/ensure-redis.sh
	@scripts/ensure-nchan.sh
	.venv/bin/python -m bench.run --quick $(BENCH_ARGS)

# The deployable service (AWS Lambda, see README "Deploy"): build/package/serverless-sse.zip
# and the CloudFormation template in .serverless/. STAGE=dev and REGION=us-east-1 unless told;
# SLS_ARGS go to `serverless package` (e.g. SLS_ARGS='--param=streamWindowSeconds=840').
STAGE ?= dev
REGION ?= us-east-1
SLS_ARGS ?=
package: venv
	@scripts/ensure-serverless.sh
	.venv/bin/python infra/package.py --stage $(STAGE) --region $(REGION) -- $(SLS_ARGS)
