#!/usr/bin/env bash
# Passthrough transfer benchmark against rsync -z (see bench.py). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
exec .venv/bin/python bench/transfer/bench.py "$@"
