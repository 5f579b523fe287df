"""What the benchmarks share: the reference dataset, cache dropping, and timing a command with its peak memory."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = os.path.join(os.path.dirname(ROOT), 'shared', 'bench', 'make_dataset.py')


def drop_caches():
    """Drop the page cache (cold-cache runs) where the kernel allows it; False when it does not."""
    subprocess.run(['sync'], check=False)
    try:
        with open('/proc/sys/vm/drop_caches', 'w', encoding='ascii') as handle:
            handle.write('3\n')
        return True
    except OSError:
        return False


def timed(argv, env=None, cold=True):
    """(seconds, stdout, peak RSS in MiB) of a command that must succeed; GNU time reads the peak."""
    run = measured(argv, env, cold)
    return run['seconds'], run['stdout'], run['rss']


def measured(argv, env=None, cold=True):
    """A command that must succeed: {seconds, stdout, rss (peak MiB, GNU time's), cpu}. ``cpu`` is what the whole
    machine spent while it ran (CPU-seconds, kernel threads included): on a quiet machine, the command's cost
    wherever it ran (a tool's helpers, a sandbox's pods, the loop device's threads), not only its own process's."""
    if cold:
        drop_caches()
    with tempfile.NamedTemporaryFile('r', suffix='.rss') as rss:
        busy, started = machine_busy(), time.perf_counter()
        proc = subprocess.run(['/usr/bin/time', '-f', '%M', '-o', rss.name] + list(argv), capture_output=True, text=True, env=env, check=False)
        seconds, cpu = time.perf_counter() - started, machine_busy() - busy
        if proc.returncode != 0:
            raise SystemExit('%s failed: %s %s' % (' '.join(argv[:4]), proc.stdout[-1000:], proc.stderr[-1000:]))
        peak = int(rss.read().strip().splitlines()[-1]) / 1024
    return {'seconds': seconds, 'stdout': proc.stdout, 'rss': peak, 'cpu': cpu}


def machine_busy():
    """CPU-seconds the machine has been busy since it booted (all but idle and iowait)."""
    with open('/proc/stat', encoding='ascii') as handle:
        fields = [int(f) for f in handle.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf('SC_CLK_TCK')


def dataset(work, scale, name='orig'):
    """The reference dataset at ``scale`` under ``work``, generated once per work directory."""
    original = os.path.join(work, name)
    if not os.path.isdir(original):
        subprocess.run([sys.executable, DATASET, 'generate', original, '--scale', str(scale)], check=True, stdout=subprocess.DEVNULL)
    return original


def mutate(path, scale):
    subprocess.run([sys.executable, DATASET, 'mutate', path, '--scale', str(scale)], check=True, stdout=subprocess.DEVNULL)


def fresh_copy(original, target):
    """``target`` becomes a copy of ``original``. A directory already there is emptied, not replaced,
    so a volume stays what its driver made it (the sandbox's volumes on btrfs are subvolumes)."""
    if os.path.isdir(target) and not os.path.islink(target):
        for entry in os.listdir(target):
            path = os.path.join(target, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        subprocess.run(['cp', '-a', original + '/.', target], check=True)
        return
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(['cp', '-a', original, target], check=True)


def mount_loop(image, mountpoint, mkfs, size, direct_io=False):
    """A new file system, made by the ``mkfs`` command (its argv without the device), in a sparse file of
    ``size`` bytes at ``image``, mounted at ``mountpoint`` through a loop device (needs root). With
    ``direct_io`` the loop device reads and writes the file around the host's page cache, as a block
    device would: buffered, every byte is cached twice and the image file's dirty pages are written back
    in bursts that stall both tools. Returns whether the loop device does direct I/O."""
    with open(image, 'wb') as handle:
        handle.truncate(size)
    subprocess.run(mkfs + [image], check=True, stdout=subprocess.DEVNULL)
    os.makedirs(mountpoint, exist_ok=True)
    subprocess.run(['mount', '-o', 'loop', image, mountpoint], check=True)
    if not direct_io:
        return False
    devices = subprocess.run(['losetup', '-n', '-O', 'NAME', '-j', image], capture_output=True, text=True, check=False).stdout.split()
    if not devices:
        return False
    subprocess.run(['losetup', '--direct-io=on', devices[0]], check=False, stderr=subprocess.DEVNULL)
    state = subprocess.run(['losetup', '-n', '-O', 'DIO', '-l', devices[0]], capture_output=True, text=True, check=False).stdout.strip()
    return state == '1'


def unmount_loop(image, mountpoint):
    if os.path.ismount(mountpoint):
        if subprocess.run(['umount', mountpoint], check=False).returncode != 0:
            subprocess.run(['umount', '-l', mountpoint], check=False)
    try:
        os.remove(image)
    except FileNotFoundError:
        pass


def can_mount_loops(mkfs):
    return os.geteuid() == 0 and shutil.which(mkfs) is not None


def tree_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(path) for f in fs)


def sandbox_env():
    """The environment to run the sandbox CLI with (``ferry_sandbox`` on the path)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(ROOT, 'sandbox'), os.environ.get('PYTHONPATH', '')) if p))


def sandbox_up(state, clusters):
    """Sandbox clusters in a process of their own (their API servers must not share the GIL of what is measured),
    stopped by ``sandbox_down``; returns {name: kubeconfig path}."""
    argv = [sys.executable, '-m', 'ferry_sandbox', 'up', '--state-dir', state, '--detach']
    for spec in clusters:
        argv += ['--cluster', spec]
    subprocess.run(argv, check=True, env=sandbox_env(), stdout=subprocess.DEVNULL)
    return {spec.split(':')[0]: os.path.join(state, spec.split(':')[0], 'kubeconfig') for spec in clusters}


def sandbox_down(state):
    subprocess.run([sys.executable, '-m', 'ferry_sandbox', 'down', '--state-dir', state], check=False, env=sandbox_env(), stdout=subprocess.DEVNULL)


def spread(values, fmt='%.2f'):
    """'min / median / max' of ``values``."""
    return ('%s / %s / %s' % (fmt, fmt, fmt)) % (min(values), statistics.median(values), max(values))
