#!/usr/bin/env bash
# Registry replication benchmark against skopeo sync (see bench.py). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.d/registry.sh
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
exec .venv/bin/python bench/registry/bench.py "$@"
