#!/usr/bin/env bash
# Checks template.yaml and samconfig.toml without AWS credentials or network:
#   1. cfn-lint (must be clean: any error or warning fails)
#   2. cfn-lint with the cfn-lint-serverless rules, if that plugin is installed
#   3. tests/template/test_template.py: wiring, IAM, and the SSM reconciler loop run against
#      scripted worker answers
#   3b. tests/template/test_least_privilege.py: each function's role allows exactly the IAM
#      actions its crate's SDK calls need (mapping: tests/template/iam_actions.json)
#   3c. tests/template/test_stackset.py: tools/stackset.py turns the template into a StackSet
#      template without the SAM transform, with Lambda code from a bucket per Region
#   4. cfn-guard policy rules (tests/template/guard/*.guard) and their tests, if cfn-guard is
#      installed (make lint installs it; make test uses it only when already cached)
#   5. sam validate --lint, if the SAM CLI is installed
#
# Usage: tests/template/check.sh [VENV]
#   VENV defaults to $ATREST_TPL_VENV, then <repo>/.venv. Create one with:
#     python3 -m venv .venv
#     .venv/bin/pip install cfn-lint==1.58.0 cfn-lint-serverless==0.3.6 aws-sam-cli==1.170.0
#   (aws-sam-cli and cfn-lint-serverless are optional; cfn-lint is required.)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${1:-${ATREST_TPL_VENV:-$repo/.venv}}
bin="$venv/bin"
if [[ ! -x "$bin/cfn-lint" ]]; then
  echo "check.sh: no cfn-lint in $venv (pass the venv directory as the first argument)" >&2
  exit 2
fi
cd "$repo"

step() { printf '\n== %s\n' "$*"; }

step "cfn-lint $("$bin/cfn-lint" --version | awk '{print $2}') template.yaml"
"$bin/cfn-lint" template.yaml
echo "clean"

if "$bin/python" -c 'import cfn_lint_serverless' 2>/dev/null; then
  # Ignored checks are listed, with reasons, in the template's cfn-lint metadata.
  step "cfn-lint + cfn-lint-serverless rules, informational findings included"
  "$bin/cfn-lint" -c I -a cfn_lint_serverless.rules -- template.yaml
  echo "clean"
else
  step "cfn-lint-serverless not installed: skipped"
fi

step "structural tests (tests/template/test_template.py)"
"$bin/python" tests/template/test_template.py

step "least privilege: each role allows exactly what its crate calls (tests/template/test_least_privilege.py)"
"$bin/python" tests/template/test_least_privilege.py

step "StackSet rollout: transform-free template with per-Region code (tests/template/test_stackset.py)"
"$bin/python" tests/template/test_stackset.py

# cfn-guard is a crates.io binary that takes ~5-8 minutes to build, so `make test` runs these
# checks only when it is already installed (by `make lint`, into ~/.cache/atrest/tools);
# `make lint` sets ATREST_REQUIRE_GUARD=1 so that there they never silently skip.
guard=${ATREST_CFN_GUARD:-$HOME/.cache/atrest/tools/bin/cfn-guard}
[[ -x "$guard" ]] || guard=$(command -v cfn-guard || true)
if [[ -n "$guard" && -x "$guard" ]]; then
  step "cfn-guard $("$guard" --version | awk '{print $2}'): policy rules (tests/template/guard)"
  # Exit codes: 0 pass, 19 a rule failed. Never pipe its output into head: a broken pipe
  # makes it panic.
  guard_failed=0
  for rules in tests/template/guard/*.guard; do
    "$guard" validate --rules "$rules" --data template.yaml --show-summary fail || guard_failed=1
  done
  [[ $guard_failed == 0 ]] || { echo "check.sh: template.yaml breaks a cfn-guard rule (above)" >&2; exit 1; }
  echo "template.yaml: every rule passes"
  step "cfn-guard test: each rule fails on its bad examples"
  for rules in tests/template/guard/*.guard; do
    "$guard" test --rules-file "$rules" --test-data "${rules%.guard}_tests.yaml" >/dev/null || {
      "$guard" test --rules-file "$rules" --test-data "${rules%.guard}_tests.yaml"
      exit 1
    }
    echo "ok   $(basename "$rules")"
  done
elif [[ "${ATREST_REQUIRE_GUARD:-0}" == 1 ]]; then
  echo "check.sh: cfn-guard not found (ATREST_CFN_GUARD, ~/.cache/atrest/tools/bin, PATH)" >&2
  exit 2
else
  step "cfn-guard not installed: policy rules skipped (make lint installs it)"
fi

if [[ -x "$bin/sam" ]]; then
  step "sam validate --lint"
  # Basic validation only needs a region; no credentials, no network.
  SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
    "$bin/sam" validate --lint --template-file template.yaml
else
  step "SAM CLI not installed: sam validate skipped"
fi
