#!/usr/bin/env bash
# Storage pool benchmark against restic (see bench.py). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
exec .venv/bin/python bench/pool/bench.py "$@"
