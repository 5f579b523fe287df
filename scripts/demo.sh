#!/usr/bin/env bash
# `make demo`: Ferry's main job on local sandbox clusters (or on real ones: set
# FERRY_SOURCE_KUBECONFIG and FERRY_DR_KUBECONFIG to admin kubeconfigs).
set -euo pipefail
source "$(dirname "$0")/env.sh"
export FERRY_DEMO_DIR="${FERRY_DEMO_DIR:-$root/.build/demo}"
mkdir -p "$FERRY_DEMO_DIR"
started=""
if [ -z "${FERRY_SOURCE_KUBECONFIG:-}" ] || [ -z "${FERRY_DR_KUBECONFIG:-}" ]; then
  state="$FERRY_DEMO_DIR/sandbox"
  .venv/bin/python -m ferry_sandbox down --state-dir "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
  echo "== starting sandbox clusters (source, dr) in $state"
  .venv/bin/python -m ferry_sandbox up --detach --state-dir "$state" --cluster source --cluster dr
  export FERRY_SOURCE_KUBECONFIG="$state/source/kubeconfig" FERRY_DR_KUBECONFIG="$state/dr/kubeconfig"
  started="$state"
fi
stop() {
  if [ -n "$started" ] && [ -z "${FERRY_DEMO_KEEP:-}" ]; then
    .venv/bin/python -m ferry_sandbox down --state-dir "$started" >/dev/null
  elif [ -n "$started" ]; then
    echo "== clusters kept running (FERRY_DEMO_KEEP): stop them with: PYTHONPATH=sandbox .venv/bin/python -m ferry_sandbox down --state-dir $started"
  fi
}
trap stop EXIT
ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-}" .venv/bin/ansible-playbook demo/demo.yml "$@"
