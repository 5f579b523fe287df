#!/usr/bin/env bash
# Discovery benchmark against kubectl get -A -o json on a sandbox cluster (see bench.py). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
# as scripts/env.sh: the collection under its import name, and the sandbox
PYTHONPATH="$PWD/.build/collections:$PWD/sandbox${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec .venv/bin/python bench/discovery/bench.py "$@"
