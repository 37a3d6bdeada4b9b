# The user's commands. Everything installs itself (pinned) on first use.
SHELL := /bin/bash
PY_VERSION ?= 3.11
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
STAGE ?= dev
ARGS ?=

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

.PHONY: help install test synth deploy destroy demo up down status bench bench-smoke image experiment reproduce clean

help:
	@echo "make demo      run the whole system locally (no AWS account), then stop"
	@echo "make up        start the local stack and keep it running (make down stops it)"
	@echo "make test      run every test"
	@echo "make synth     synthesize the CDK app (STAGE=dev|prod)"
	@echo "make deploy    cdk bootstrap + cdk deploy --all into your AWS account (STAGE=dev|prod)"
	@echo "make status    print the decision ledger (local stack, or AWS with AWS_PROFILE set)"
	@echo "make bench     run the benchmarks and rewrite bench/RESULTS.md"
	@echo "make experiment ARGS='--set learning_rate=0.2'   train the production image locally, log it to MLflow"
	@echo "make reproduce MODEL=<package ARN|version|job>  train a registered model again and compare"

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt container/requirements.txt constraints.txt kedro_project/pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==0.13.8"
	@test -x $(PY) || uv venv --quiet --python $(PY_VERSION) $(VENV)
	uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt -c constraints.txt
	uv pip install --quiet --python $(PY) --no-deps -e kedro_project
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: install
	$(PY) -m pytest $(ARGS)

synth: install
	$(CDK) synth --quiet -c stage=$(STAGE) $(ARGS)

deploy: install
	$(CDK) bootstrap -c stage=$(STAGE) $(ARGS)
	$(CDK) deploy --all --require-approval broadening -c stage=$(STAGE) --outputs-file cdk-outputs.json $(ARGS)

destroy: install
	$(CDK) destroy --all -c stage=$(STAGE) $(ARGS)

demo: install
	$(PY) -m local demo -c stage=$(STAGE) $(ARGS)

up: install
	$(PY) -m local up -c stage=$(STAGE) $(ARGS)

down: install
	$(PY) -m local down

status: install
	$(PY) -m local status $(ARGS)

image:
	bash scripts/build_image.sh

bench: install
	$(PY) -m bench $(ARGS)

# The data scientist's workbench (docs/experimenting.md): the production image through the SageMaker SDK's
# ModelTrainer in local-container mode, against the embedded stack (.local/outputs.json) or a deployed one
# (cdk-outputs.json). MLOPS_IMAGE names the image; the ones the stack trains with are built by `make image`.
experiment: install
	$(PY) -m workbench train $(ARGS)

reproduce: install
	@test -n "$(MODEL)" || { echo "make reproduce MODEL=<model package ARN | package version | training job>"; exit 2; }
	$(PY) -m workbench reproduce $(MODEL) $(ARGS)

bench-smoke: install
	$(PY) -m bench --smoke $(ARGS)

clean:
	rm -rf cdk.out .local bench/out .pytest_cache
