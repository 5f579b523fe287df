#!/usr/bin/env bash
# Volume sync benchmark (issue #7): passthrough and staged syncs between two sandbox clusters against
# rsync -z and restic (see bench.py). Not part of `make test`. About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v rsync >/dev/null || need+=(rsync)
command -v restic >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
command -v iptables-restore >/dev/null || need+=(iptables)  # the sandbox's NodePorts in the kernel, as on a cluster
case " $* " in
  *" --cow-volumes btrfs "* | *" --cow-volumes=btrfs "*) command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs) ;;
  *" --cow-volumes "*) command -v mkfs.xfs >/dev/null || need+=(xfsprogs) ;;
esac
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
# as scripts/env.sh: the collection under its import name, and the sandbox
PYTHONPATH="$PWD/.build/collections:$PWD/sandbox${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec .venv/bin/python bench/sync/bench.py "$@"
