# One entry point for people and CI. `make test` and `make demo` work on a fresh machine:
# every target that needs the virtualenv creates it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# SAM CLI pins its own boto3/jsonschema ranges: it lives in a venv of its own.
SAM_VENV := .venv-sam
SAM      := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
export SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true

.PHONY: venv toolkit-venv sdk-venvs demo local-up test unit static e2e lint build clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The whole loop on this machine: local cloud up, scenario through the real trigger path.
demo: venv
	$(BIN)/python -m refit_cli.demo

# The SageMaker XGBoost image's serving toolkit (sagemaker-containers under Flask 3.1) in a venv of
# its own: it pins flask==1.1.1, which the image overrides, hence --no-deps and a full pin list.
# tests/toolkits run refit's inference.py inside it.
TOOLKIT_VENV := .venv-serving-toolkit
TOOLKIT_REQUIREMENTS := tests/toolkits/serving-toolkit.txt
TOOLKIT_STAMP := $(TOOLKIT_VENV)/.installed

toolkit-venv: $(TOOLKIT_STAMP)

$(TOOLKIT_STAMP): $(TOOLKIT_REQUIREMENTS)
	rm -rf $(TOOLKIT_VENV)
	$(PYTHON) -m venv $(TOOLKIT_VENV)
	$(TOOLKIT_VENV)/bin/pip install --quiet --no-deps -r $(TOOLKIT_REQUIREMENTS)
	# The image's own patch (docker/3.0-5/final/Dockerfile.cpu): no collections.Mapping since 3.10
	sed -i 's/collections\.Mapping/collections.abc.Mapping/g' \
		$(TOOLKIT_VENV)/lib/python*/site-packages/sagemaker_containers/_mapping.py
	touch $@

# The SageMaker Python SDK v2 (the seed's course) and v3 (the current major), each in a venv of
# its own: both are the distribution `sagemaker`, and v3 needs a newer boto3 than the handlers'.
# tests/sdk run their flows against the local cloud.
SDK_STAMPS := .venv-sdk-v2/.installed .venv-sdk-v3/.installed

sdk-venvs: $(SDK_STAMPS)

.venv-sdk-%/.installed: tests/sdk/sdk-%.txt
	rm -rf .venv-sdk-$*
	$(PYTHON) -m venv .venv-sdk-$*
	.venv-sdk-$*/bin/pip install --quiet -r $<
	touch $@

# A local cloud to play with: prints the endpoint URL and how to use it; Ctrl-C stops it.
local-up: venv
	$(BIN)/refit local up

# One worker per core, each test file on one worker (module-scoped local clouds, ordered steps).
test: venv $(TOOLKIT_STAMP) $(SDK_STAMPS)
	$(BIN)/pytest -q -n auto --dist loadfile

unit: venv
	$(BIN)/pytest -q tests/unit tests/training

e2e: venv
	$(BIN)/pytest -q tests/e2e

static: venv
	$(BIN)/pytest -q tests/static

# Benchmarks (not tests): issue 6's figures with targets, < 10 min on 2 cores; the table goes
# to bench/results/latest.md. ARGS='--only 3 --quick' runs a part. The 1,000-file burst
# benchmark is separate: $(BIN)/python -m bench.burst
ARGS ?=
bench: venv
	$(BIN)/python -m bench $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for handler in functions/*/app.py; do $(BIN)/mypy $$handler || exit 1; done

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

# `sam build` needs python3.13 on PATH (the Lambda runtime). With pyenv, 3.13 may be
# installed but inactive; scripts/with-lambda-python puts it on PATH if it can.
build: $(SAM)
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint
	scripts/with-lambda-python $(SAM) build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
