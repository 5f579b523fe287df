#!/usr/bin/env bash
# All set-up on a fresh machine (Debian, root, only PyPI/Debian/npm reachable). Idempotent and
# quick when nothing changed. Used by `make setup`, and so by `make demo` and `make test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------------------------
need_apt=()
command -v rsync >/dev/null || need_apt+=(rsync)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)  # so ansible-test sanity lints the scripts too
command -v iptables-restore >/dev/null || need_apt+=(iptables)  # the sandbox's NodePorts forwarded in the kernel, as kube-proxy does
command -v mkfs.btrfs >/dev/null || need_apt+=(btrfs-progs)  # the sandbox's copy-on-write volumes (a test, bench/sync --cow-volumes btrfs)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- Python --------------------------------------------------------------------------------------
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
[ -n "$python" ] || { log "Python 3.11 is needed (ansible-core 2.19 runs on it): install python3.11"; exit 1; }
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $python"
  "$python" -m venv .venv
fi
reqs=(requirements.txt requirements-test.txt)
[ -f sandbox/requirements.txt ] && reqs+=(sandbox/requirements.txt)
stamp=.venv/.ferry-requirements
digest="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  log "pip install ${reqs[*]}"
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import kubernetes, ansible, yaml' || { log "pip install failed"; exit 1; }
  echo "$digest" > "$stamp"
fi

# --- the collection under its import name (for tests and bin/ferry) ----------------------------------
mkdir -p .build/collections/ansible_collections/ferry
ln -sfn "$root" .build/collections/ansible_collections/ferry/kube

# --- ansible-test without the internet ------------------------------------------------------------
PYTHON="$root/.venv/bin/python" scripts/ansible-test-offline.sh

# --- what each area needs (servers, peer tools) --------------------------------------------------
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  log "$(basename "$step")"
  bash "$step"
done
log "ready"
