# The verbs a person types. Every tool is installed by the project itself into ignored venvs.
#
#   make test      unit + integration tests against a private moto server, template checks
#   make demo      seed an unencrypted estate locally, scan, remediate, scan again
#   make lint      rustfmt, clippy -D warnings, template checks (cfn-lint + serverless rules,
#                  sam validate, checkov, cfn-guard rules and their tests, least-privilege test)
#   make package   arm64 Lambda bootstraps with cargo-lambda (zipped, sizes listed)
#   make deploy    sam build && sam deploy --guided
#   make stackset  a StackSet for many accounts and Regions: the template without the SAM transform,
#                  Lambda code per Region, bucket policies and rollout commands in dist/stackset

SHELL := /bin/bash
# The build cache lives outside the checkout so a fresh clone (and CI) reuses it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/atrest/target
VENV ?= $(CURDIR)/.venv
TOOLS_VENV ?= $(CURDIR)/.venv-tools
# checkov's dependencies clash with the SAM CLI's pins: a venv of its own.
CHECKOV_VENV ?= $(CURDIR)/.venv-checkov
# cfn-guard comes from crates.io and takes 5-8 minutes to build, so it is built once into a cache
# outside the checkout, with its own target dir (no fight over the workspace's build lock).
# `make test` runs the guard rules only when this binary already exists; `make lint` installs it.
GUARD_ROOT ?= $(HOME)/.cache/atrest/tools
CFN_GUARD_VERSION := 3.2.1
export ATREST_CFN_GUARD := $(GUARD_ROOT)/bin/cfn-guard
# Release (and cross) builds get their own target dir: switching profiles and targets in the
# test build cache would evict what `make test` needs.
LAMBDA_TARGET_DIR ?= $(HOME)/.cache/atrest/target-lambda
export ATREST_VENV := $(VENV)
WITH_MOTO := tests/moto/with-moto

.PHONY: build test test-rust test-template demo bench fuzz lint fmt clippy package deploy stackset stackset-args tools guard checkov-tools clean

build:
	cargo build --workspace --locked

test: test-rust test-template

# with-moto creates the venv (pinned moto + cfn-lint), starts moto on a free loopback port,
# runs the command and stops moto however it ends. RELIABILITY_SLOW=1: CI runs every fix
# under the fault sweeps, including the ~2-minute EBS volume swap that a plain `cargo test`
# skips (tests/reliability_fixes.rs, SLOW_SCENARIOS).
test-rust:
	RELIABILITY_SLOW=1 $(WITH_MOTO) cargo test --workspace --locked

test-template:
	@[ -x $(VENV)/bin/cfn-lint ] || $(WITH_MOTO) true
	tests/template/check.sh $(VENV)
	$(VENV)/bin/python tests/moto/test_atrest_moto.py

demo:
	$(WITH_MOTO) cargo run --quiet --locked -p atrest-cli -- demo

fmt:
	cargo fmt --all

lint: tools guard checkov-tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	ATREST_REQUIRE_GUARD=1 tests/template/check.sh $(TOOLS_VENV)
	tests/template/checkov.sh $(CHECKOV_VENV)

tools: $(TOOLS_VENV)/.stamp
$(TOOLS_VENV)/.stamp: tools/requirements.txt
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r tools/requirements.txt
	touch $@

checkov-tools: $(CHECKOV_VENV)/.stamp
$(CHECKOV_VENV)/.stamp: tools/requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r tools/requirements-checkov.txt
	touch $@

guard: $(ATREST_CFN_GUARD)
$(ATREST_CFN_GUARD):
	CARGO_TARGET_DIR=$(GUARD_ROOT)/target cargo install cfn-guard --version $(CFN_GUARD_VERSION) --locked --root $(GUARD_ROOT)
	rm -rf $(GUARD_ROOT)/target

# cargo-lambda cross-compiles with zig (from PyPI); the arm64 std library is added once.
package: tools
	rustup target add aarch64-unknown-linux-gnu
	PATH=$(TOOLS_VENV)/bin:$$PATH CARGO_TARGET_DIR=$(LAMBDA_TARGET_DIR) \
	  cargo lambda build --release --arm64 --locked --workspace --exclude atrest-cli --exclude atrest-testkit --exclude atrest-automation --output-format zip
	@ls -l $(LAMBDA_TARGET_DIR)/lambda/*/bootstrap.zip

deploy: tools
	PATH=$(TOOLS_VENV)/bin:$$PATH sam build
	PATH=$(TOOLS_VENV)/bin:$$PATH sam deploy --guided

# StackSets with service-managed permissions refuse transforms, and Lambda code must come from a
# bucket in each function's Region: tools/stackset.py translates the template offline (AWS's SAM
# translator) and points every function at <ARTIFACT_BUCKET_PREFIX>-<Region>. README: "Many
# accounts and regions". The first of REGIONS is where the StackSet itself lives.
ARTIFACT_BUCKET_PREFIX ?=
ORG_ID ?=
REGIONS ?= us-east-1
stackset: stackset-args package
	$(TOOLS_VENV)/bin/python tools/stackset.py --artifacts $(LAMBDA_TARGET_DIR)/lambda --out dist/stackset \
	  --bucket-prefix $(ARTIFACT_BUCKET_PREFIX) --org-id $(ORG_ID) $(foreach r,$(REGIONS),--region $(r))
stackset-args:
	@[ -n "$(ARTIFACT_BUCKET_PREFIX)" ] && [ -n "$(ORG_ID)" ] || \
	  { echo "usage: make stackset ARTIFACT_BUCKET_PREFIX=<bucket prefix> ORG_ID=o-... REGIONS='us-east-1 eu-west-1'" >&2; exit 2; }

clean:
	rm -rf .venv .venv-tools .venv-checkov .moto .aws-sam dist

# Criterion benchmarks (no network; reports in $(CARGO_TARGET_DIR)/criterion): the rule
# runtime's own CPU work, and cold starts of real bootstraps against a local Runtime API
# (built first with the bench profile, which cold_start.rs finds beside itself).
BENCH_BOOTSTRAPS := -p rule-s3-bucket-server-side-encryption-enabled -p fix-s3-enable-default-encryption
bench:
	cargo build --locked --profile bench $(BENCH_BOOTSTRAPS)
	cargo bench --locked -p atrest-tests --bench runtime --bench cold_start

# Coverage-guided fuzzing (cargo-fuzz + libFuzzer) of the Config event decoder, configuration
# items through every rule's judge, rule/fix parameters and the bucket-policy reader:
# FUZZ_SECONDS each (default 60). fuzz/ is its own workspace, so `make test` never builds it
# (it runs the same targets briefly under proptest instead). cargo-fuzz is installed once into
# ~/.cache/atrest/cargo-fuzz; libFuzzer's instrumentation flags are nightly-only, which stable
# rustc accepts with RUSTC_BOOTSTRAP=1. New inputs go to ~/.cache/atrest/fuzz-corpus (the seeds
# in fuzz/corpus stay as committed); crashes land in fuzz/artifacts/<target>/ and become
# regression inputs in fuzz/regressions/<target>/, which tests/reliability_inputs.rs replays.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config_event configuration_item rule_parameters bucket_policy
# all-rules adds the EC2/RDS rules and fixes (a long instrumented aws-sdk-ec2 build).
FUZZ_FEATURES ?=
FUZZ_HOME := $(HOME)/.cache/atrest
fuzz:
	@[ -x $(FUZZ_HOME)/cargo-fuzz/bin/cargo-fuzz ] || \
	  CARGO_TARGET_DIR=$(FUZZ_HOME)/cargo-fuzz-build cargo install cargo-fuzz --locked --root $(FUZZ_HOME)/cargo-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_HOME)/fuzz-corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_HOME)/fuzz-target PATH=$(FUZZ_HOME)/cargo-fuzz/bin:$$PATH \
	    cargo fuzz run --fuzz-dir fuzz -s none -O $(if $(FUZZ_FEATURES),--features $(FUZZ_FEATURES)) $$t $(FUZZ_HOME)/fuzz-corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1; \
	done
