#!/usr/bin/env bash
# `make test`: sanity, then pytest (unit, functional, sandbox), then integration targets, then lint.
# Every stage runs even when an earlier one failed, and the summary lists the failures.
set -uo pipefail
source "$(dirname "$0")/env.sh"
failed=()
stage() {
  local name="$1"; shift
  local start=$SECONDS
  printf '\n===== %s =====\n' "$name"
  if "$@"; then
    printf '===== %s: ok (%ss)\n' "$name" $((SECONDS - start))
  else
    printf '===== %s: FAILED (%ss)\n' "$name" $((SECONDS - start))
    failed+=("$name")
  fi
}
paths=()
for p in tests/unit tests/functional sandbox/tests; do [ -d "$p" ] && paths+=("$p"); done

stage sanity scripts/ansible-test.sh sanity --venv --python 3.11
stage pytest .venv/bin/python -m pytest -q -p no:cacheprovider "${paths[@]}"
stage integration scripts/integration.sh
stage ansible-lint .venv/bin/ansible-lint --profile production --offline roles playbooks

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nFAILED stages: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nall stages passed\n'
