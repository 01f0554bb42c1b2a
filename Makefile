# The verbs a person types. Every tool is installed by the project itself into ignored venvs.
#
#   make test      unit + integration tests against a private moto server, template checks
#   make demo      seed an unencrypted estate locally, scan, remediate, scan again
#   make lint      rustfmt, clippy -D warnings, template checks (cfn-lint + serverless rules,
#                  sam validate, checkov, cfn-guard rules and their tests, least-privilege test)
#   make package   arm64 Lambda bootstraps with cargo-lambda (zipped, sizes listed)
#   make template  regenerate template.yaml from crates/atrest-template/skeleton/*.yaml, every
#                  rule's and fix's spec and its crates/<crate>/deploy.yaml (a test fails when stale)
#   make deploy    sam build && sam deploy --guided
#   make stackset  a StackSet for many accounts and Regions: the template without the SAM transform,
#                  Lambda code per Region, bucket policies and rollout commands in dist/stackset
#   make smoke     REAL AWS, a sandbox account only: make smoke ACCOUNT_ID=<12 digits> deploys the
#                  stack, remediates one throwaway resource per cheap fix from the console path,
#                  checks each, deletes everything. Never part of test, lint or CI.

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

.PHONY: browser build template test test-rust test-template demo bench bench-s3 fuzz lint fmt clippy package deploy stackset stackset-args tools guard checkov-tools clean smoke smoke-args

build:
	cargo build --workspace --locked

# template.yaml is generated and committed (sam and every reader see a plain template);
# crates/atrest-template/tests/fresh.rs fails when it is stale.
template:
	cargo run --quiet --locked -p atrest-cli -- template --write

test: test-rust test-template

# with-moto creates the venv (pinned moto + cfn-lint), starts moto on a free loopback port,
# runs the command and stops moto however it ends. RELIABILITY_SLOW=1: CI runs every fix
# under the fault sweeps, including the ~2-minute EBS volume swap that a plain `cargo test`
# skips (tests/reliability_fixes.rs, SLOW_SCENARIOS).
test-rust: browser
	RELIABILITY_SLOW=1 $(WITH_MOTO) cargo test --workspace --locked

# Debian's Chromium, for the test that opens `atrest scan --format html` in a real headless
# browser (crates/atrest-cli/tests/cli.rs). Debian's apt is reachable from CI.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (HTML report test)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

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
	  cargo lambda build --release --arm64 --locked --workspace --exclude atrest-cli --exclude atrest-testkit --exclude atrest-automation --exclude atrest-catalog --output-format zip
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

# The smoke test talks to REAL AWS (README: "Smoke test in a sandbox account"). `atrest smoke`
# refuses any account but ACCOUNT_ID, and is asked before anything is built or deployed. The stack
# is deployed with its own rule prefix, SSE-KMS required of buckets (every bucket already has
# SSE-S3, so that is what a fresh bucket lacks) and no automatic remediation (the smoke test
# presses Remediate itself). `atrest smoke` deletes what it created; the trap runs its cleanup for
# the run id again (a no-op after a complete run; what an interrupted run left otherwise) and
# deletes the stack, however the run ends. CONFIG_RECORDER=true when the Region has no Config recorder yet
# (its delivery bucket is kept when the stack is deleted).
ACCOUNT_ID ?=
REGION ?= us-east-1
STACK ?= atrest-smoke
SMOKE_PREFIX ?= atrest-smoke-
ALERT_EMAIL ?=
CONFIG_RECORDER ?= false
SMOKE_OVERRIDES = RuleNamePrefix=$(SMOKE_PREFIX) S3RequiredAlgorithm=aws:kms S3RemediationSSEAlgorithm=aws:kms \
  S3AutomaticRemediation=false EbsAutomaticRemediation=false EbsDefaultEncryptionAutomaticRemediation=false \
  RdsAutomaticRemediation=false RemediationDryRun=false CreateConfigRecorder=$(CONFIG_RECORDER) \
  $(if $(ALERT_EMAIL),AlertEmail=$(ALERT_EMAIL))
SMOKE_ATREST := $(CARGO_TARGET_DIR)/debug/atrest
smoke: smoke-args tools
	cargo build --locked -p atrest-cli
	AWS_REGION=$(REGION) $(SMOKE_ATREST) smoke --account-id $(ACCOUNT_ID) --check-account-only
	set -uo pipefail; export PATH=$(TOOLS_VENV)/bin:$$PATH AWS_REGION=$(REGION); \
	run_id=$$(date +%s)-$$(od -An -N4 -tx4 /dev/urandom | tr -d ' '); \
	trap 'rc=$$?; $(SMOKE_ATREST) smoke --cleanup --account-id $(ACCOUNT_ID) --run-id $$run_id >/dev/null || rc=1; \
	  sam delete --no-prompts --stack-name $(STACK) --region $(REGION) || \
	  { echo "smoke: sam delete of stack $(STACK) did not succeed; if the stack exists, see the README (Troubleshooting: deleting the stack)" >&2; rc=1; }; exit $$rc' EXIT; \
	sam build && \
	sam deploy --stack-name $(STACK) --region $(REGION) --resolve-s3 --no-confirm-changeset \
	  --no-fail-on-empty-changeset --parameter-overrides $(SMOKE_OVERRIDES) && \
	$(SMOKE_ATREST) smoke --account-id $(ACCOUNT_ID) --rule-name-prefix $(SMOKE_PREFIX) --run-id $$run_id
smoke-args:
	@[[ "$(ACCOUNT_ID)" =~ ^[0-9]{12}$$ ]] || \
	  { echo "usage: make smoke ACCOUNT_ID=<the sandbox account's 12-digit id> [REGION=us-east-1] [STACK=atrest-smoke] [ALERT_EMAIL=you@example.com] [CONFIG_RECORDER=true]" >&2; exit 2; }

clean:
	rm -rf .venv .venv-tools .venv-checkov .moto .aws-sam dist

# Criterion benchmarks (no network; reports in $(CARGO_TARGET_DIR)/criterion): the rule
# runtime's own CPU work, and cold starts of real bootstraps against a local Runtime API
# (built first with the bench profile, which cold_start.rs finds beside itself).
BENCH_BOOTSTRAPS := -p rule-s3-bucket-server-side-encryption-enabled -p fix-s3-enable-default-encryption
# Re-encrypting existing objects on the stand-in: `aws s3 cp --recursive --sse AES256` against
# `atrest remediate s3-encrypt-existing-objects` (objects/s, requests per object). Needs `aws`.
bench-s3:
	N=$${N:-2000} benches/s3_reencrypt.sh

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
