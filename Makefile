# The two commands of the quickstart: `make up` and `make test`. Each installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test bench lint install clean chromium screenshot bench-transforms bench-compat bench-quality deploy-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/pixpipe up

# --dist loadfile: a module's tests share one worker (and its module-scoped live pixpipe) in
# order. loadgroup's xdist_group marks are ignored under pytest 9.2 (xdist renames node ids,
# which pytest 9.2 no longer reads), which split the dashboard's ordered tests across workers.
test: $(STAMP) chromium deploy-check
	$(BIN)/ruff check pixpipe tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# The deploy recipes against their linters and schemas (all from PyPI, nothing downloaded).
# keda.yaml (a CRD) and nats-values.yaml (Helm values) are checked by tests/test_deploy.py.
deploy-check: $(STAMP)
	$(BIN)/cfn-lint deploy/aws/template.yaml
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/config.yaml deploy/k8s/api.yaml deploy/k8s/worker.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

lint: $(STAMP)
	$(BIN)/ruff check pixpipe tests benchmarks
	$(BIN)/mypy pixpipe

# Imaging peers (benchmarks/run.py), then the pipeline end to end (benchmarks/pipeline.py).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.pipeline

clean:
	rm -rf $(VENV) pixpipe-data .pytest_cache

# The dashboard's browser tests drive Debian's Chromium (Playwright, no browser download).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver)

# docs/dashboard.png, from the browser tests.
screenshot: $(STAMP) chromium
	PIXPIPE_SCREENSHOT=docs/dashboard.png $(BIN)/python -m pytest -q tests/test_dashboard.py

# On-the-fly transforms against thumbor (benchmarks/RESULTS.md, transforms section).
bench-transforms: $(STAMP)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m benchmarks.transforms

# imgproxy's benchmark workload, pixpipe's imgproxy URLs against thumbor (RESULTS.md, compat section).
bench-compat: $(STAMP)
	$(BIN)/python -m benchmarks.compat

# Bytes at equal SSIMULACRA2, pixpipe's encoders against sharp's (RESULTS.md, quality section,
# and benchmarks/quality.png); ssimulacra2 comes from benchmarks/requirements.txt. ~1 h on 2 cores.
bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality

# AWS Lambda zips (build/lambda/, docs/aws.md): manylinux wheels for both architectures, sizes
# printed, this machine's one smoke-tested. LAMBDA_ARCH is the one the template deploys.
LAMBDA_ARCH ?= arm64
LAMBDA_PYTHON ?= 3.12
.PHONY: lambda-package
lambda-package: $(STAMP)
	$(BIN)/python deploy/aws/package.py --default $(LAMBDA_ARCH) --python $(LAMBDA_PYTHON)
