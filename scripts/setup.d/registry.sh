#!/usr/bin/env bash
# Debian's docker-registry (the CNCF distribution registry) and skopeo, so registry_sync is tested
# against real registries on loopback and benchmarked against skopeo sync. Quick when both are there.
set -euo pipefail
need=()
command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
[ ${#need[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "registry: install ${need[*]} (Debian packages) by hand" >&2; exit 1; }
apt-get update -qq >/dev/null
# The package's service is not wanted: the tests start their own instances on free ports.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
command -v docker-registry >/dev/null
command -v skopeo >/dev/null
