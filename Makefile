# Ferry's two README commands are `make demo` and `make test`; both do all set-up first.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)/.build/collections:$(CURDIR)/sandbox
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PATH := $(CURDIR)/.venv/bin:$(PATH)
PYTEST_PATHS := $(wildcard tests/unit tests/functional sandbox/tests)

.PHONY: setup demo test sanity pytest integration lint bench bench-transfer bench-pool bench-registry bench-discovery bench-sync clean

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/test.sh

sanity: setup
	scripts/ansible-test.sh sanity --venv --python 3.11

pytest: setup
	$(PY) -m pytest -q $(PYTEST_PATHS)

integration: setup
	@scripts/integration.sh

lint: setup
	.venv/bin/ansible-lint --profile production roles playbooks

bench: bench-transfer bench-pool bench-registry bench-discovery bench-sync

bench-pool: setup
	bench/pool/run.sh

bench-registry: setup
	bench/registry/run.sh

bench-discovery: setup
	bench/discovery/run.sh

bench-sync: setup
	bench/sync/run.sh

clean:
	rm -rf .build tests/output

bench-transfer: setup
	bench/transfer/run.sh
