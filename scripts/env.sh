# shellcheck shell=bash
# Sourced by the scripts: the project's venv, the collection under its import name, the sandbox.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
export PYTHONPATH="$root/.build/collections:$root/sandbox"
export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
export PATH="$root/.venv/bin:$PATH"
