"""Storage pool vs restic, in one run, on the reference dataset.

    .venv/bin/python bench/pool/bench.py [--scale 1] [--reps 3] [--memory-scale 4] [--work DIR]

For each repetition, with fresh repositories: full backup of a pristine copy of the dataset,
``make_dataset.py mutate``, incremental backup, then a restore of the latest point into an empty
directory, for both tools; the tools take turns going first. Caches are dropped before each timed
step where the kernel allows it. Both restore into a new ext4 file system (a loop device, when run as
root), as a restore into a new volume would: on the work directory's file system the benchmark's own
deletions (the previous copies and restores, seconds before) made whichever tool restored first pay
for them, since ext4 skips inodes freed in the last minute when it allocates new ones. A restore is
timed until its data is on disk: Ferry's ends with ``syncfs``, restic's is followed by ``sync``. Figures are
medians over the repetitions; ratios compare the medians. Then Ferry's peak memory for a full
backup at ``--scale`` and at ``--memory-scale``.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import ROOT, can_mount_loops, dataset, drop_caches, fresh_copy, mount_loop, mutate, timed, tree_bytes, unmount_loop  # noqa: E402 pylint: disable=wrong-import-position

FERRY = os.path.join(ROOT, 'bin', 'ferry')
PASSPHRASE = 'bench-passphrase'


def ferry_steps(work, source, restore_to):
    pool = os.path.join(work, 'ferry-pool')
    shutil.rmtree(pool, ignore_errors=True)
    env = dict(os.environ, FERRY_POOL_PASSPHRASE=PASSPHRASE)
    subprocess.run([FERRY, 'pool', 'init', pool, '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
    return {
        'full': lambda: timed([FERRY, 'pool', 'backup', pool, source, '-q'], env),
        'incremental': lambda: timed([FERRY, 'pool', 'backup', pool, source, '-q'], env),
        'restore': lambda: timed([FERRY, 'pool', 'restore', pool, 'latest', restore_to, '-q'], env),
        'size': lambda: tree_bytes(pool),
    }


def restic_steps(work, source, restore_to):
    repo = os.path.join(work, 'restic-repo')
    shutil.rmtree(repo, ignore_errors=True)
    env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=os.path.join(work, 'restic-cache'))
    shutil.rmtree(env['RESTIC_CACHE_DIR'], ignore_errors=True)
    subprocess.run(['restic', '-r', repo, 'init', '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
    return {
        'full': lambda: timed(['restic', '-r', repo, 'backup', '-q', source], env),
        'incremental': lambda: timed(['restic', '-r', repo, 'backup', '-q', source], env),
        # restic leaves what it restored in the page cache; Ferry's restore ends with syncfs
        'restore': lambda: timed(['sh', '-c', 'restic "$@" && sync', 'sh', '-r', repo, 'restore', 'latest', '-q', '--target', restore_to], env),
        'size': lambda: tree_bytes(repo),
    }


def restic_version():
    return subprocess.run(['restic', 'version'], capture_output=True, text=True, check=True).stdout.split(' compiled')[0]


def one_repetition(work, original, scale, ferry_first):
    source = os.path.join(work, 'src')
    fresh_copy(original, source)
    restores = os.path.join(work, 'restores')
    try:
        if can_mount_loops('mkfs.ext4'):
            unmount_loop(restores + '.img', restores)
            # lazy init off: no kernel thread zeroing inode tables while the tools run
            mount_loop(restores + '.img', restores, ['mkfs.ext4', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0'],
                       int(max(8, 6 * scale) * 2 ** 30))
        return tools_repetition(work, source, restores, scale, ferry_first)
    finally:
        unmount_loop(restores + '.img', restores)


def tools_repetition(work, source, restores, scale, ferry_first):
    tools = {}
    for name, steps in (('ferry', ferry_steps), ('restic', restic_steps)):
        target = os.path.join(restores, name)
        shutil.rmtree(target, ignore_errors=True)
        tools[name] = (steps(work, source, os.path.join(target, 'data')), target)
    order = ['ferry', 'restic'] if ferry_first else ['restic', 'ferry']
    result = {name: {} for name in order}
    for step in ('full', 'incremental', 'restore'):
        if step == 'incremental':
            mutate(source, scale)
        for name in order:
            seconds, _out, peak = tools[name][0][step]()
            result[name][step] = seconds
            result[name][step + '_rss'] = peak
    for name in order:
        result[name]['size'] = tools[name][0]['size']()
    # restic restores the absolute path under the target; Ferry restores the tree itself
    restic_tree = os.path.join(tools['restic'][1], 'data', source.lstrip('/'))
    for name, tree in (('ferry', os.path.join(tools['ferry'][1], 'data')), ('restic', restic_tree)):
        same = subprocess.run(['diff', '-rq', source, tree], capture_output=True, check=False)
        if same.returncode != 0:
            raise SystemExit('%s restored something else than was backed up:\n%s' % (name, same.stdout.decode()[:2000]))
        shutil.rmtree(tools[name][1], ignore_errors=True)
    return result


def memory_run(work, scale):
    original = dataset(work, scale, 'orig-%s' % scale)
    pool = os.path.join(work, 'ferry-memory-pool')
    shutil.rmtree(pool, ignore_errors=True)
    env = dict(os.environ, FERRY_POOL_PASSPHRASE=PASSPHRASE)
    subprocess.run([FERRY, 'pool', 'init', pool, '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
    seconds, _out, peak = timed([FERRY, 'pool', 'backup', pool, original, '-q'], env)
    size = tree_bytes(original)
    shutil.rmtree(pool, ignore_errors=True)
    return size, seconds, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--memory-scale', type=float, default=4.0, help='second scale for the peak-memory comparison (0: skip)')
    parser.add_argument('--work', default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='ferry-bench-pool-', dir=os.environ.get('FERRY_BENCH_DIR'))
    original = dataset(work, args.scale, 'orig-%s' % args.scale)
    size = tree_bytes(original)
    runs = [one_repetition(work, original, args.scale, rep % 2 == 0) for rep in range(args.reps)]
    median = {tool: {key: statistics.median(run[tool][key] for run in runs) for key in runs[0][tool]} for tool in ('ferry', 'restic')}
    spread = {tool: {key: (min(run[tool][key] for run in runs), max(run[tool][key] for run in runs)) for key in runs[0][tool]}
              for tool in ('ferry', 'restic')}
    ferry, restic = median['ferry'], median['restic']
    cold = drop_caches()
    print('dataset: %.2f GiB, %d files, scale %s; %s; %d repetitions (median [min-max])'
          % (size / 2 ** 30, sum(len(f) for _d, _s, f in os.walk(original)), args.scale, restic_version(), args.reps))
    print('caches: %s' % ('dropped before each timed step' if cold else 'not dropped (no permission here): both tools read warm'))
    fresh = can_mount_loops('mkfs.ext4')
    print('restores into: %s' % ('a new ext4 file system per repetition (loop device)' if fresh else 'the work directory (no loop devices here)'))
    print('%-22s %24s %24s %10s %8s %s' % ('figure', 'ferry', 'restic', 'ratio', 'target', 'met'))

    def row(name, key, unit, ratio, target, met):
        def cell(tool):
            low, high = spread[tool][key]
            return '%.2f%s [%.2f-%.2f]' % (median[tool][key], unit, low, high)
        print('%-22s %24s %24s %9.2fx %8s %s' % (name, cell('ferry'), cell('restic'), ratio, target, 'yes' if met else 'NO'))

    full_ratio = restic['full'] / ferry['full']
    incremental_ratio = ferry['incremental'] / restic['incremental']
    restore_ratio = restic['restore'] / ferry['restore']
    size_ratio = ferry['size'] / restic['size']
    row('full backup', 'full', 's', full_ratio, '>=2x', full_ratio >= 2)
    print('%-22s %24s %24s' % ('  throughput', '%.0f MB/s' % (size / ferry['full'] / 1e6), '%.0f MB/s' % (size / restic['full'] / 1e6)))
    row('incremental backup', 'incremental', 's', incremental_ratio, '<=0.5x', incremental_ratio <= 0.5)
    row('restore', 'restore', 's', restore_ratio, '>=1.5x', restore_ratio >= 1.5)
    print('%-22s %24s %24s' % ('  throughput', '%.0f MB/s' % (size / ferry['restore'] / 1e6), '%.0f MB/s' % (size / restic['restore'] / 1e6)))
    print('%-22s %24s %24s %9.3fx %8s %s' % ('pool size after both', '%.1f MB' % (ferry['size'] / 1e6), '%.1f MB' % (restic['size'] / 1e6),
                                             size_ratio, '<=1x', 'yes' if size_ratio <= 1 else 'NO'))
    for key in ('full_rss', 'incremental_rss', 'restore_rss'):
        print('%-22s %24s %24s' % ('peak RSS ' + key.split('_')[0], '%.0f MiB' % ferry[key], '%.0f MiB' % restic[key]))
    if args.memory_scale:
        small = memory_run(work, args.scale)
        large = memory_run(work, args.memory_scale)
        growth = large[2] / small[2]
        print('ferry peak RSS, full backup: %.0f MiB at %.2f GiB (scale %s), %.0f MiB at %.2f GiB (scale %s): %.3fx, target <=1.10x %s'
              % (small[2], small[0] / 2 ** 30, args.scale, large[2], large[0] / 2 ** 30, args.memory_scale, growth,
                 'yes' if growth <= 1.10 else 'NO'))
        print('  (full backup at scale %s took %.1fs, %.0f MB/s)' % (args.memory_scale, large[1], large[0] / large[1] / 1e6))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
