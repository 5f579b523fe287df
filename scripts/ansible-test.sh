#!/usr/bin/env bash
# Run ansible-test on a copy of the collection placed where ansible-test insists it must be
# (…/ansible_collections/ferry/kube, not through a symlink). Test infrastructure that is not
# part of the collection (sandbox, benchmarks, demo, the bin/ launcher, which ansible-test would
# take for Python) is left out of the copy.
# Usage: scripts/ansible-test.sh sanity|units|integration [ansible-test args...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.build/ansible-test/ansible_collections/ferry/kube"
mkdir -p "$dest"
# Keep tests/output (ansible-test's caches) between runs; copy only tracked and new files.
rsync -a --delete --delete-excluded --filter 'P /tests/output/' --filter 'P /.git/' \
  --exclude /.git --exclude /.venv --exclude /.build --exclude /sandbox --exclude /bench --exclude /bin --exclude /demo \
  --exclude /tests/output --exclude '__pycache__' --exclude .pytest_cache \
  "$root"/ "$dest"/
# ansible-test treats a git work tree's untracked files specially; give the copy its own index.
if [ ! -d "$dest/.git" ]; then git -C "$dest" init -q; fi
git -C "$dest" add -A >/dev/null 2>&1 || true
PYTHON="$root/.venv/bin/python" "$root/scripts/ansible-test-offline.sh"
cd "$dest"
export PATH="$root/.venv/bin:$PATH"
exec "$root/.venv/bin/ansible-test" "$@"
