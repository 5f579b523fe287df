#!/usr/bin/env bash
# The kubernetes.core collection, a client nobody here wrote, for the sandbox's faithfulness tests.
# Galaxy is out of reach; PyPI's "ansible" package carries the collection: take only that part.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="$root/.build/collections/ansible_collections/kubernetes/core"
[ -f "$target/MANIFEST.json" ] && exit 0
wheels="$root/.build/wheels"
mkdir -p "$wheels"
"$root/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "ansible==12.3.0" 2>&1 | grep -v '^WARNING: Location' || true
"$root/.venv/bin/python" - "$wheels" "$root/.build/collections" <<'PY'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + '/ansible-12.3.0-*.whl'))[-1]
with zipfile.ZipFile(wheel) as archive:
    members = [m for m in archive.namelist() if m.startswith('ansible_collections/kubernetes/core/')]
    archive.extractall(sys.argv[2], members)
print('kubernetes.core extracted from', wheel)
PY
