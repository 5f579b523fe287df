"""Passthrough transfer vs rsync -z, in one run, on the reference dataset.

    .venv/bin/python bench/transfer/bench.py [--scale 1.0] [--work DIR]

Full sync, then `make_dataset.py mutate`, then the incremental sync, for both tools; caches are
dropped before each timed step where the kernel allows it. rsync runs locally (its sender and
receiver talk over a pipe); Ferry runs a sink and a source agent over mutual TLS on loopback.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import ROOT, dataset, drop_caches, fresh_copy, mutate, timed, tree_bytes  # noqa: E402 pylint: disable=wrong-import-position

AGENT = os.path.join(ROOT, 'agent', 'ferry_agent.py')
sys.path.insert(0, os.path.join(ROOT, '.build', 'collections'))


def ferry_sync(work, source, target, sync_id):
    from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI  # pylint: disable=import-outside-toplevel
    pki = SyncPKI.create('bench')
    dirs = {}
    for role in ('sink', 'source'):
        dirs[role] = os.path.join(work, 'tls-' + role)
        os.makedirs(dirs[role], exist_ok=True)
        for name, text in pki.bundle(role, role, ['127.0.0.1']).items():
            with open(os.path.join(dirs[role], name), 'w', encoding='ascii') as handle:
                handle.write(text)
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.build', 'collections'))
    sink = subprocess.Popen([sys.executable, AGENT, 'sink', '--listen', '127.0.0.1:%d' % port, '--root', target,
                             '--state', os.path.join(work, 'ferry-state'), '--tls', dirs['sink'], '--once'],
                            stdout=subprocess.DEVNULL, env=env)
    seconds, out, _peak = timed([sys.executable, AGENT, 'push', '--root', source, '--to', '127.0.0.1:%d' % port, '--tls', dirs['source'],
                          '--sync-id', sync_id, '--progress-interval', '3600'], env=env)
    sink.wait(60)
    return seconds, json.loads(out.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--work', default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='ferry-bench-')
    original, source = dataset(work, args.scale), os.path.join(work, 'src')  # every run starts from a pristine copy
    for target in ('rsync-dst', 'ferry-dst', 'ferry-state'):
        shutil.rmtree(os.path.join(work, target), ignore_errors=True)
    fresh_copy(original, source)
    os.makedirs(os.path.join(work, 'ferry-dst'))
    size = tree_bytes(source)
    cold = drop_caches()
    rows = []
    # rsync leaves the copy in the page cache; Ferry syncs it to disk before it records the sync as
    # complete. To compare like with like, rsync's step includes a sync too.
    rsync = ['sh', '-c', 'rsync -a -z --delete "$0"/ "$1"/ && sync', source, os.path.join(work, 'rsync-dst')]
    rsync_full = timed(rsync)[0]
    ferry_full, full = ferry_sync(work, source, os.path.join(work, 'ferry-dst'), 'full')
    rows.append(('full sync', rsync_full, ferry_full))
    mutate(source, args.scale)
    rsync_incr = timed(rsync)[0]
    ferry_incr, incr = ferry_sync(work, source, os.path.join(work, 'ferry-dst'), 'incremental')
    rows.append(('incremental sync', rsync_incr, ferry_incr))
    check = subprocess.run(['diff', '-r', '--exclude=.ferry-state', source, os.path.join(work, 'ferry-dst')], capture_output=True, check=False)
    print('dataset: %.2f GiB, scale %s, caches %s' % (size / 2 ** 30, args.scale, 'dropped before each step' if cold else 'warm (no permission)'))
    print('%-18s %12s %12s %18s %14s' % ('step', 'rsync -z+sync', 'ferry', 'ferry/rsync time', 'ferry MB/s'))
    for name, r, f in rows:
        print('%-18s %11.2fs %11.2fs %17.2fx %14.1f' % (name, r, f, f / r, size / f / 2 ** 20 if name == 'full sync' else float('nan')))
    print('ferry bytes sent: full %.1f MiB, incremental %.1f MiB (wire, after zstd: %.1f MiB)'
          % (full['bytes_sent'] / 2 ** 20, incr['bytes_sent'] / 2 ** 20, incr['wire_bytes'] / 2 ** 20))
    print('target identical to source: %s' % ('yes' if check.returncode == 0 else 'NO\n' + check.stdout.decode()[:2000]))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if check.returncode == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
