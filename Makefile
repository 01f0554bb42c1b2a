# The verbs a person types. Every tool is installed by the project itself into ignored venvs.
#
#   make test      unit + integration tests against a private moto server, template checks
#   make demo      seed an unencrypted estate locally, scan, remediate, scan again
#   make lint      rustfmt, clippy -D warnings, template checks (cfn-lint, sam validate)
#   make package   arm64 Lambda bootstraps with cargo-lambda
#   make deploy    sam build && sam deploy --guided

SHELL := /bin/bash
# The build cache lives outside the checkout so a fresh clone (and CI) reuses it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/atrest/target
VENV ?= $(CURDIR)/.venv
TOOLS_VENV ?= $(CURDIR)/.venv-tools
export ATREST_VENV := $(VENV)
WITH_MOTO := tests/moto/with-moto

.PHONY: build test test-rust test-template demo bench lint fmt clippy package deploy tools clean

build:
	cargo build --workspace --locked

test: test-rust test-template

# with-moto creates the venv (pinned moto + cfn-lint), starts moto on a free loopback port,
# runs the command and stops moto however it ends.
test-rust:
	$(WITH_MOTO) cargo test --workspace --locked

test-template:
	@[ -x $(VENV)/bin/cfn-lint ] || $(WITH_MOTO) true
	tests/template/check.sh $(VENV)
	$(VENV)/bin/python tests/moto/test_atrest_moto.py

demo:
	$(WITH_MOTO) cargo run --quiet --locked -p atrest-cli -- demo

fmt:
	cargo fmt --all

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	tests/template/check.sh $(TOOLS_VENV)

tools: $(TOOLS_VENV)/.stamp
$(TOOLS_VENV)/.stamp: tools/requirements.txt
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r tools/requirements.txt
	touch $@

# cargo-lambda cross-compiles with zig (from PyPI); the arm64 std library is added once.
package: tools
	rustup target add aarch64-unknown-linux-gnu
	PATH=$(TOOLS_VENV)/bin:$$PATH cargo lambda build --release --arm64 --workspace
	@ls -l $(CARGO_TARGET_DIR)/lambda/*/bootstrap

deploy: tools
	PATH=$(TOOLS_VENV)/bin:$$PATH sam build
	PATH=$(TOOLS_VENV)/bin:$$PATH sam deploy --guided

clean:
	rm -rf .venv .venv-tools .moto .aws-sam

# Criterion benchmarks of the rule runtime's own CPU work (no network); reports in
# $(CARGO_TARGET_DIR)/criterion.
bench:
	cargo bench --locked -p atrest-tests --bench runtime
