#!/usr/bin/env bash
# Azurite, Microsoft's Azure Storage emulator, so the pool's Azure Blob backend is tested against a
# real protocol peer on loopback. It comes from npm and lives under .build, not on the system.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="$root/.build/node"
[ -x "$prefix/node_modules/.bin/azurite-blob" ] && exit 0
command -v npm >/dev/null || { echo "azurite: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error azurite@3
"$prefix/node_modules/.bin/azurite-blob" --version >/dev/null
