"""Volume syncs between two sandbox clusters vs rsync -z and restic, in one run, on the reference dataset (issue #7).

    bench/sync/run.sh [--scale 1.0] [--reps 3] [--work DIR] [--cow-volumes [xfs|btrfs]]

Starts two sandbox clusters (``source`` and ``dr``) in a process of their own, creates namespace
``app`` with PVC ``data`` on the source and fills the PVC (its directory on the host) with a
pristine copy of the reference dataset. Each repetition then times, with caches dropped before
every timed step and the tools taking turns going first:

  passthrough full         ferry.kube.sync mode=passthrough into a new DR namespace    vs  rsync -a -z --delete SRC/ DST/ && sync
  stage 1 full             ferry.kube.sync mode=backup into a new pool                 vs  restic backup (new repository) && sync
  (make_dataset.py mutate on the source PVC, not timed)
  passthrough incremental  the same module call again                                  vs  the same rsync again
  stage 1 incremental      the same module call again                                  vs  restic backup again && sync
  stage 2 restore          ferry.kube.sync mode=restore of the latest point into a new namespace  vs  restic restore latest && sync

Ferry runs as Ansible runs a module: a new Python process given its arguments in a file
(plugins/modules/sync.py), with its engine timed from inside (this file, ``module`` subcommand,
wraps the snapshot, agent and relay calls to record when each phase ran). rsync runs as
bench/transfer runs it: locally, sender and receiver over a pipe, plus a ``sync``. restic as
bench/pool runs it: repository v2, compression auto, plus a ``sync``. Every tool's time ends with its data
on disk: Ferry's syncs end with ``syncfs`` of what they wrote, rsync's and restic's commands with a
``sync`` (restic's backup fsyncs its files itself; its restore leaves what it wrote in the page cache,
0.5-0.6 GB of the dataset here, so the sync is timed apart and the report also compares the restore
without it). All read the same directory, the source PVC's; restored trees and the passthrough target
are compared with the source after each run.

The figures of the issue are the module's stages: ``transfer`` (Passthrough.run(): snapshot,
agents, transfer, clean-up), ``backup`` (StageOne.run()) and ``restore volumes`` (StageTwo.run());
the whole incremental DR sync is the module process's wall time (connect, sweep, capture, claims,
snapshot, agents, transfer, clean-up, objects, health). Figures are min / median / max over the
repetitions; ratios compare the medians. A second table splits Ferry's time into its phases and
shows what the sandbox's CSI emulation costs: its snapshots and clones are full directory copies
(``cp -a``), which a real CSI driver does not pay (deleting them returns at once: the sandbox
reclaims the files afterwards, as a driver does, and the next step waits until it has; on btrfs also
until the kernel's cleaner has dropped the deleted subvolumes).
``--cow-volumes`` puts everything but the pristine dataset on an XFS file system with reflinks (a
loop device), so those copies share extents, as a copy-on-write driver's snapshots do (creating the
copy's inodes still costs time per file). ``--cow-volumes btrfs`` puts it on btrfs instead, where
the sandbox's volumes are subvolumes and its snapshots and clones subvolume snapshots, made in
constant time as a copy-on-write CSI driver's are.
"""

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import ROOT, dataset, drop_caches, fresh_copy, machine_busy, measured, mount_loop, mutate, sandbox_down, sandbox_up, spread, timed, tree_bytes, unmount_loop  # noqa: E402

MODULE = os.path.join(ROOT, 'plugins', 'modules', 'sync.py')
FERRY = os.path.join(ROOT, 'bin', 'ferry')
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
IMAGE = 'ferry/agent:bench'
NAMESPACE = 'app'
PVC = 'data'
PASSPHRASE = 'bench-passphrase'
GROUP = 'bench/app'
DR_TARGET = 15.0
COW_VOLUMES = {'xfs': '; --cow-volumes xfs: all volumes, copies and repositories on XFS with reflinks (loop device), so those copies share extents',
               'btrfs': '; --cow-volumes btrfs: all volumes, copies and repositories on btrfs (loop device), volumes are subvolumes, '
                        'snapshots and clones subvolume snapshots (constant time, shared extents)'}


# -- inside the module process: phases of the engine ------------------------------------------

class Phases:
    """(label, start, end) spans relative to the process start, and named values; written as JSON at exit."""

    def __init__(self, path):
        self.path = path
        self.origin = time.monotonic()
        self.spans = []
        self.values = {}
        self.lock = threading.Lock()

    def add(self, label, start, end):
        with self.lock:
            self.spans.append((label, start - self.origin, end - self.origin))

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label(args[0]) if callable(label) else label, started, time.monotonic())
        setattr(owner, name, wrapper)
        return original

    def save(self):
        with open(self.path, 'w', encoding='utf-8') as handle:
            json.dump({'spans': self.spans, 'values': self.values}, handle)


def instrument(phases):
    """Wrap the engine's snapshot, agent and relay calls (this process only: nothing is changed on disk)."""
    from ansible_collections.ferry.kube.plugins.module_utils.agent import relay  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.kube import connection  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.snapshots import csi, group  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.sync import agents  # pylint: disable=import-outside-toplevel
    phases.wrap(connection, 'connect', 'connect')
    phases.wrap(agents, 'sweep', 'sweep')
    phases.wrap(group, 'sweep', 'sweep')
    phases.wrap(group.AppSnapshot, 'take', 'snapshot')
    phases.wrap(group.AppSnapshot, 'release', 'release')
    phases.wrap(csi.CsiSnapshots, 'wait_cut', 'snapshot cut')
    phases.wrap(agents.Agent, 'start', lambda agent: 'start ' + agent.spec.role)
    phases.wrap(agents.Agent, 'stop', lambda agent: 'stop ' + agent.spec.role)
    phases.wrap(relay, 'serve', 'transfer')
    wait_finished = agents.Agent.wait_finished
    expose = csi.CsiSnapshots.expose

    def finished(agent, timeout):
        started = time.monotonic()
        try:
            return wait_finished(agent, timeout)
        finally:
            phases.add('transfer', started, time.monotonic())
            done = agents.last_event(agent.logs(tail=400), 'done')  # the source agent's own clock, from its connection on
            if done:
                phases.values['agent transfer'] = phases.values.get('agent transfer', 0.0) + done['seconds']

    def exposed(provider, ref, volume):
        started = time.monotonic()
        name = expose(provider, ref, volume)
        path = '/api/v1/namespaces/%s/persistentvolumeclaims/%s' % (volume.namespace, name)

        def bound():  # the sandbox copies the snapshot into the new volume before it binds the claim
            deadline = started + 600
            while time.monotonic() < deadline:
                try:
                    if (provider.cluster.get(path).get('status') or {}).get('phase') == 'Bound':
                        phases.add('clone', started, time.monotonic())
                        return
                except Exception:  # pylint: disable=broad-except
                    return
                time.sleep(0.1)
        threading.Thread(target=bound, daemon=True).start()
        return name
    agents.Agent.wait_finished = finished
    csi.CsiSnapshots.expose = exposed


def module_process(args_path, phases_path):
    """Run plugins/modules/sync.py as Ansible would (its arguments in a file), with the phases recorded."""
    import runpy  # pylint: disable=import-outside-toplevel
    phases = Phases(phases_path)
    instrument(phases)
    sys.argv = [MODULE, args_path]
    try:
        runpy.run_path(MODULE, run_name='__main__')
    finally:
        phases.values['main'] = time.monotonic() - phases.origin
        phases.save()


# -- the clusters -----------------------------------------------------------------------------

def connect(kubeconfig):
    from ansible_collections.ferry.kube.plugins.module_utils.kube import connection  # pylint: disable=import-outside-toplevel
    return connection.connect({'kubeconfig': kubeconfig})


def wait(what, check, timeout=300):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit('timed out waiting for %s' % what)
        time.sleep(0.2)


def claim_dir(state, name, cluster, namespace, pvc):
    """Where the sandbox keeps a claim's data on the host."""
    claim = cluster.get('/api/v1/namespaces/%s/persistentvolumeclaims/%s' % (namespace, pvc))
    return os.path.join(state, name, 'volumes', claim['spec']['volumeName'])


def create_app(cluster):
    """Namespace ``app``: the PVC the dataset goes in and a ConfigMap, as a small app has."""
    base = '/api/v1/namespaces/%s' % NAMESPACE
    cluster.request('POST', '/api/v1/namespaces', body={'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NAMESPACE}})
    cluster.request('POST', base + '/configmaps', body={'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings'},
                                                        'data': {'LOG_LEVEL': 'info'}})
    cluster.request('POST', base + '/persistentvolumeclaims', body={
        'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': PVC},
        'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '8Gi'}}}})
    wait('the source claim to bind', lambda: (cluster.get(base + '/persistentvolumeclaims/' + PVC).get('status') or {}).get('phase') == 'Bound')


def settle(state, clusters, namespaces):
    """Wait until the sandbox has removed the last sync's pods, snapshots and temporary volumes."""
    def quiet():
        for name, cluster in clusters.items():
            snapshots = os.path.join(state, name, 'snapshots')
            if os.path.isdir(snapshots) and os.listdir(snapshots):
                return False
            volumes = os.path.join(state, name, 'volumes')
            if os.path.isdir(volumes) and any(entry.startswith('.deleting-') for entry in os.listdir(volumes)):
                return False  # the sandbox still reclaims a deleted volume's files
            for namespace in namespaces.get(name, ()):
                try:
                    if cluster.get('/api/v1/namespaces/%s/pods' % namespace).get('items'):
                        return False
                except Exception:  # pylint: disable=broad-except
                    continue
        claims = clusters['source'].get('/api/v1/persistentvolumeclaims').get('items') or []
        return set(os.listdir(os.path.join(state, 'source', 'volumes'))) <= {c['spec'].get('volumeName') for c in claims}
    wait('the sandbox to remove the last sync\'s temporary objects', quiet)


def delete_namespace(cluster, namespace):
    from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError  # pylint: disable=import-outside-toplevel
    try:
        cluster.request('DELETE', '/api/v1/namespaces/%s' % namespace)
    except ApiError as exc:
        if exc.status != 404:
            raise

    def gone():
        try:
            cluster.get('/api/v1/namespaces/%s' % namespace)
            return False
        except ApiError as exc:
            return exc.status == 404
    wait('namespace %s to go' % namespace, gone)


# -- the measured commands --------------------------------------------------------------------

class Bench:
    def __init__(self, args, work, state, kubeconfigs, clusters, source_dir, size):
        self.args = args
        self.work = work
        self.state = state
        self.kubeconfigs = kubeconfigs
        self.clusters = clusters
        self.source_dir = source_dir
        self.size = size
        self.calls = 0

    def ferry(self, params):
        """One module process: (wall seconds, result, phases)."""
        self.calls += 1
        args_path = os.path.join(self.work, 'args-%d.json' % self.calls)
        phases_path = os.path.join(self.work, 'phases-%d.json' % self.calls)
        with open(args_path, 'w', encoding='utf-8') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': dict(params, agent_image=IMAGE, namespace=NAMESPACE)}, handle)
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        run = measured([sys.executable, os.path.abspath(__file__), 'module', args_path, phases_path], env=env)
        result = json.loads(run['stdout'].strip().splitlines()[-1])
        if result.get('failed'):
            raise SystemExit('ferry.kube.sync %s failed: %s' % (params['mode'], result.get('msg')))
        with open(phases_path, encoding='utf-8') as handle:
            phases = json.load(handle)
        os.remove(args_path)
        os.remove(phases_path)
        return {'seconds': run['seconds'], 'result': result, 'phases': phases, 'rss': run['rss'], 'cpu': run['cpu']}

    def source(self):
        return {'kubeconfig': self.kubeconfigs['source']}

    def target(self):
        return {'kubeconfig': self.kubeconfigs['dr']}

    def pool(self, rep):
        return {'location': os.path.join(self.work, 'pool-%d' % rep), 'passphrase': PASSPHRASE}

    def settle(self, rep):
        settle(self.state, self.clusters, {'source': [NAMESPACE], 'dr': ['pt-%d' % rep, 'st-%d' % rep]})
        if self.args.cow_volumes == 'btrfs':
            # A deleted subvolume (the last sync's snapshot and clone, a namespace's volumes) is dropped by the
            # kernel's cleaner thread after the deletion returned: seconds of CPU and writes that belong to the
            # step before, not to whichever tool runs next (a CSI driver's storage does this off the node).
            subprocess.run(['btrfs', 'subvolume', 'sync', self.work], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def verify(self, what, tree):
        same = subprocess.run(['diff', '-rq', '--no-dereference', '--exclude=.ferry-state', self.source_dir, tree], capture_output=True, check=False)
        if same.returncode != 0:
            raise SystemExit('%s differs from the source:\n%s' % (what, same.stdout.decode()[:2000]))

    def repetition(self, rep, original, ferry_first):
        """One pristine source, full syncs, mutate, incremental syncs, restores; returns {step: {tool: run}}."""
        work, runs = self.work, {}
        fresh_copy(original, self.source_dir)
        for path in ('pool-%d' % rep, 'restic-repo', 'restic-cache', 'rsync-dst', 'restic-restore'):
            shutil.rmtree(os.path.join(work, path), ignore_errors=True)
        env = dict(os.environ, FERRY_POOL_PASSPHRASE=PASSPHRASE)
        subprocess.run([FERRY, 'pool', 'init', self.pool(rep)['location'], '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
        restic_env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=os.path.join(work, 'restic-cache'))
        repo = os.path.join(work, 'restic-repo')
        subprocess.run(['restic', '-r', repo, 'init', '-q'], check=True, env=restic_env, stdout=subprocess.DEVNULL)
        rsync = ['sh', '-c', 'rsync -a -z --delete "$0"/ "$1"/ && sync', self.source_dir, os.path.join(work, 'rsync-dst')]
        restore_to = os.path.join(work, 'restic-restore')
        passthrough = dict(mode='passthrough', source=self.source(), target=self.target(), target_namespace='pt-%d' % rep)
        backup = dict(mode='backup', source=self.source(), pool=self.pool(rep), group=GROUP)
        steps = [
            ('passthrough full', lambda: self.ferry(dict(passthrough, sync_id='ptf-%d' % rep)), lambda: _command(rsync)),
            ('stage 1 full', lambda: self.ferry(dict(backup, sync_id='s1f-%d' % rep)),
             lambda: _synced(['restic', '-r', repo, 'backup', '-q', self.source_dir], restic_env)),
            ('mutate', None, None),
            ('passthrough incremental', lambda: self.ferry(dict(passthrough, sync_id='pti-%d' % rep)), lambda: _command(rsync)),
            ('stage 1 incremental', lambda: self.ferry(dict(backup, sync_id='s1i-%d' % rep)),
             lambda: _synced(['restic', '-r', repo, 'backup', '-q', self.source_dir], restic_env)),
            ('stage 2 restore', lambda: self.ferry(dict(mode='restore', target=self.target(), target_namespace='st-%d' % rep, pool=self.pool(rep),
                                                        group=GROUP, sync_id='s2-%d' % rep)),
             lambda: _synced(['restic', '-r', repo, 'restore', 'latest', '-q', '--target', restore_to], restic_env)),
        ]
        for name, ferry, peer in steps:
            if name == 'mutate':
                mutate(self.source_dir, self.args.scale)
                if rep == 0:
                    runs['sandbox copy'] = self.sandbox_copy()
                continue
            runs[name] = {}
            for tool in ('ferry', 'peer') if ferry_first else ('peer', 'ferry'):
                self.settle(rep)
                runs[name][tool] = (ferry if tool == 'ferry' else peer)()
                progress('rep %d  %-24s %-5s %6.2f s' % (rep + 1, name, tool, runs[name][tool]['seconds']))
        dr = self.clusters['dr']
        self.verify('the passthrough target', claim_dir(self.state, 'dr', dr, 'pt-%d' % rep, PVC))
        self.verify('the staged restore', claim_dir(self.state, 'dr', dr, 'st-%d' % rep, PVC))
        if rep == 0:  # the peers' results once, Ferry's every time
            self.verify('rsync\'s copy', os.path.join(work, 'rsync-dst'))
            self.verify('restic\'s restore', os.path.join(restore_to, self.source_dir.lstrip('/')))
        runs['sizes'] = {'pool': tree_bytes(self.pool(rep)['location']), 'restic': tree_bytes(repo)}
        for namespace in ('pt-%d' % rep, 'st-%d' % rep):
            delete_namespace(dr, namespace)
        for path in ('pool-%d' % rep, 'restic-repo', 'restic-cache', 'rsync-dst', 'restic-restore'):
            shutil.rmtree(os.path.join(work, path), ignore_errors=True)
        return runs

    def sandbox_copy(self):
        """What the sandbox's CSI emulation does per snapshot and per clone (its copy_tree: cp -a, or a btrfs
        subvolume snapshot), and per deletion (rm -r or a subvolume deletion), cold; not Ferry's."""
        from ferry_sandbox.controllers import storage  # pylint: disable=import-outside-toplevel (the module process must not see the sandbox)
        copy = os.path.join(self.work, 'sandbox-copy')
        shutil.rmtree(copy, ignore_errors=True)
        drop_caches()
        started = time.monotonic()
        storage.copy_tree(self.source_dir, copy)
        copied = time.monotonic() - started
        subvolume = storage.is_subvolume(copy)
        removed = timed(['btrfs', '-q', 'subvolume', 'delete', copy] if subvolume else ['rm', '-rf', copy])[0]
        return {'copy': copied, 'remove': removed}


def _command(argv, env=None):
    run = measured(argv, env=env)
    return {'seconds': run['seconds'], 'rss': run['rss'], 'cpu': run['cpu']}


def _synced(argv, env=None):
    """A peer's command and then ``sync``, timed together (as rsync's ``&& sync``) and apart: what the
    command left in the page cache is written before the step counts as done."""
    run = _command(argv, env)
    flushed = measured(['sync'], cold=False)
    return dict(run, seconds=run['seconds'] + flushed['seconds'], cpu=run['cpu'] + flushed['cpu'], unsynced=run['seconds'])


def progress(text):
    sys.stderr.write(text + '\n')
    sys.stderr.flush()


# -- the report -------------------------------------------------------------------------------

def span_sum(run, *labels):
    return sum(end - start for label, start, end in run['phases']['spans'] if label in labels)


def span_edge(run, label, edge):
    found = [span[1 + edge] for span in run['phases']['spans'] if span[0] == label]
    return (min(found) if edge == 0 else max(found)) if found else None


def clone_delay(run):
    """How long the source agent's pod waited for the sandbox's clone of the snapshot (0 if it did not)."""
    bound, asked = span_edge(run, 'clone', 1), span_edge(run, 'start source', 0)
    return max(0.0, bound - asked) if bound is not None and asked is not None else 0.0


def span_overlap(run, first, second):
    """Seconds during which spans labelled ``first`` and ``second`` both ran."""
    spans = run['phases']['spans']
    return sum(max(0.0, min(end, other_end) - max(start, other_start))
               for label, start, end in spans if label == first for other, other_start, other_end in spans if other == second)


def sandbox_pid(state):
    """The process of the sandbox clusters (their pods are its children)."""
    with open(os.path.join(state, 'state.json'), encoding='utf-8') as handle:
        return json.load(handle)['pid']


def service_forwarding(state):
    """How the sandbox's NodePorts carry the agents' connections: in the kernel as kube-proxy does (the sandbox
    process holds DNAT chains), or through its userspace proxy."""
    from ferry_sandbox.controllers import kernel_forwarding  # pylint: disable=import-outside-toplevel (as in sandbox_copy)
    if kernel_forwarding.chains_of(sandbox_pid(state)):
        return 'in the kernel (DNAT rules per ready pod, as kube-proxy\'s iptables mode)'
    return 'the sandbox\'s userspace proxy (a process per connection, splice(2): not root, no iptables, or no right to use it)'


def sandbox_share(run):
    """Seconds of a Ferry run spent waiting for the sandbox's CSI emulation: its snapshot copy (less what a passthrough's sink start
    overlapped: on a copy-on-write driver that start would be waited for instead) and the clone the source agent waited for.
    Deleting them costs the DELETE calls only: the sandbox reclaims the files afterwards, as a CSI driver does."""
    return span_sum(run, 'snapshot cut') - span_overlap(run, 'snapshot cut', 'start sink') + clone_delay(run)


def sandbox_free(run):
    return run['seconds'] - sandbox_share(run)


def stage_of(step):
    return {'passthrough full': 'transfer', 'passthrough incremental': 'transfer', 'stage 1 full': 'backup',
            'stage 1 incremental': 'backup', 'stage 2 restore': 'restore volumes'}[step]


def report(args, bench, runs, versions):
    size = bench.size
    values = {}
    for step in ('passthrough full', 'passthrough incremental', 'stage 1 full', 'stage 1 incremental', 'stage 2 restore'):
        values[step] = {'ferry': [rep[step]['ferry']['result']['stages'][stage_of(step)] for rep in runs],
                        'peer': [rep[step]['peer']['seconds'] for rep in runs], 'whole': [rep[step]['ferry']['seconds'] for rep in runs]}
    cold = drop_caches()
    files = sum(len(f) for _d, _s, f in os.walk(bench.source_dir))
    print('dataset: %.2f GiB (%d bytes), %d files after the mutation, scale %s; %d repetitions, min / median / max, ratios of the medians'
          % (size / 2 ** 30, size, files, args.scale, args.reps))
    print('caches: %s; %s; %s' % ('dropped before each timed step' if cold else 'NOT dropped (no permission): warm', versions['rsync'], versions['restic']))
    busy, mine = (now - then for now, then in zip(cpu_seconds(bench.state), bench.cpu))
    print('CPU: %.0f CPU-seconds busy during the repetitions, of which %.0f by other processes than this benchmark, the sandbox and its pods '
          '(%.0f%% of one CPU)' % (busy, busy - mine, 100 * (busy - mine) / bench.elapsed))
    print('snapshot mechanism: %s (the sandbox CSI driver: a snapshot and a clone are each a copy of the volume, cp -a --reflink=auto or a btrfs subvolume snapshot)%s'
          % (runs[0]['passthrough full']['ferry']['result']['volumes'][0]['mechanism'],
             COW_VOLUMES.get(args.cow_volumes, '')))
    if args.cow_volumes:
        print('loop device: %s' % ('direct I/O (the image file is not cached a second time, as a block device\'s data is not)' if args.loop_direct
                                   else 'buffered (the image file is cached a second time and written back in bursts)'))
    print('Service forwarding: %s' % service_forwarding(bench.state))
    print()
    head = '%-44s %-24s %-24s %8s %-15s %s'
    print(head % ('figure (seconds)', 'ferry', 'peer', 'ratio', 'target', 'met'))

    def row(name, ferry, peer, ratio_kind, target, peer_name=''):
        f, p = statistics.median(ferry), statistics.median(peer) if peer else None
        if ratio_kind == 'throughput':
            ratio, met = p / f, p / f >= target
            goal = 'thr >= %gx' % target
        elif ratio_kind == 'time':
            ratio, met = f / p, f / p <= target
            goal = 'time <= %gx' % target
        elif ratio_kind == 'info throughput':
            ratio, met, goal = p / f, None, '-'
        elif ratio_kind == 'absolute':
            ratio, met = None, f < target
            goal = '< %g s' % target
        else:
            ratio, met, goal = f / p if p else None, None, '-'
        print(head % (name, spread(ferry), (peer_name + ' ' + spread(peer)).strip() if peer else '-', '%.2fx' % ratio if ratio else '-', goal,
                      '-' if met is None else 'yes' if met else 'NO'))

    def rate(name, ferry, peer):
        print(head % ('  ' + name, '%.0f MB/s' % (size / statistics.median(ferry) / 1e6), '%.0f MB/s' % (size / statistics.median(peer) / 1e6) if peer else '-',
                      '', '', ''))

    v = values
    row('1 passthrough full (vs rsync -z)', v['passthrough full']['ferry'], v['passthrough full']['peer'], 'throughput', 1)
    rate('throughput', v['passthrough full']['ferry'], v['passthrough full']['peer'])
    agent = [rep['passthrough full']['ferry']['phases']['values'].get('agent transfer', float('nan')) for rep in runs]
    row('  transfer only (source agent\'s clock)', agent, v['passthrough full']['peer'], 'throughput', 1)
    rate('throughput, transfer only', agent, None)
    row('2 passthrough incremental (vs rsync -z)', v['passthrough incremental']['ferry'], v['passthrough incremental']['peer'], 'time', 0.7)
    agent = [rep['passthrough incremental']['ferry']['phases']['values'].get('agent transfer', float('nan')) for rep in runs]
    row('  transfer only (source agent\'s clock)', agent, v['passthrough incremental']['peer'], 'time', 0.7)
    row('3 stage 1 full (vs restic backup)', v['stage 1 full']['ferry'], v['stage 1 full']['peer'], 'throughput', 2)
    rate('throughput', v['stage 1 full']['ferry'], v['stage 1 full']['peer'])
    relay = [span_sum(rep['stage 1 full']['ferry'], 'transfer') for rep in runs]
    row('  transfer only (job sent to result)', relay, v['stage 1 full']['peer'], 'throughput', 2)
    rate('throughput, transfer only', relay, None)
    row('  stage 1 incremental (vs restic backup)', v['stage 1 incremental']['ferry'], v['stage 1 incremental']['peer'], 'info', None)
    relay = [span_sum(rep['stage 1 incremental']['ferry'], 'transfer') for rep in runs]
    row('    transfer only (job sent to result)', relay, v['stage 1 incremental']['peer'], 'info', None)
    row('  stage 2 restore (vs restic restore)', v['stage 2 restore']['ferry'], v['stage 2 restore']['peer'], 'throughput', 1.5)
    rate('throughput', v['stage 2 restore']['ferry'], v['stage 2 restore']['peer'])
    relay = [span_sum(rep['stage 2 restore']['ferry'], 'transfer') for rep in runs]
    row('    transfer only (job sent to result)', relay, v['stage 2 restore']['peer'], 'throughput', 1.5)
    unsynced = [rep['stage 2 restore']['peer']['unsynced'] for rep in runs]
    row('    vs restic restore without its sync', v['stage 2 restore']['ferry'], unsynced, 'info throughput', None)
    row('4 whole incremental DR sync, passthrough', v['passthrough incremental']['whole'], None, 'absolute', DR_TARGET)
    row('  the same without the sandbox\'s copies*', [sandbox_free(rep['passthrough incremental']['ferry']) for rep in runs], None, 'absolute', DR_TARGET)
    row('  whole incremental sync, staged backup', v['stage 1 incremental']['whole'], None, 'absolute', DR_TARGET)
    row('  the same without the sandbox\'s copies*', [sandbox_free(rep['stage 1 incremental']['ferry']) for rep in runs], None, 'absolute', DR_TARGET)
    sizes = [rep['sizes'] for rep in runs]
    print('%-44s %-24s %-24s' % ('pool / restic repository after the runs', '%.0f MB' % (statistics.median(s['pool'] for s in sizes) / 1e6),
                                 '%.0f MB' % (statistics.median(s['restic'] for s in sizes) / 1e6)))
    sent = [rep['passthrough incremental']['ferry']['result']['volumes'][0].get('bytes_sent', 0) for rep in runs]
    print('passthrough incremental sent %.1f MiB of chunks; peak RSS of the module process %.0f MiB (passthrough full), %.0f MiB (stage 1 full)'
          % (statistics.median(sent) / 2 ** 20, statistics.median(rep['passthrough full']['ferry']['rss'] for rep in runs),
             statistics.median(rep['stage 1 full']['ferry']['rss'] for rep in runs)))
    cpu_table(runs)
    breakdown(runs)
    return 0


def cpu_table(runs):
    """What each step cost the machine in CPU: with two cores shared by the control node, both agents and the sandbox, a tool that
    needs more CPU-seconds than its peer is slower here however well it overlaps its work; on separate nodes, the agents' share counts."""
    print('\nCPU-seconds the whole machine spent while each tool ran (medians; Ferry\'s include its agents, the sandbox\'s API servers and '
          'Service proxies if any,\nboth tools\' the kernel\'s threads, the loop device\'s among them); "busy" = CPU-seconds / wall seconds, of %d CPUs'
          % os.cpu_count())
    head = '%-24s %10s %10s %10s %10s %8s'
    print(head % ('step', 'ferry', 'busy', 'peer', 'busy', 'ratio'))
    for step in ('passthrough full', 'stage 1 full', 'passthrough incremental', 'stage 1 incremental', 'stage 2 restore'):
        cpu = {tool: statistics.median(rep[step][tool]['cpu'] for rep in runs) for tool in ('ferry', 'peer')}
        busy = {tool: cpu[tool] / statistics.median(rep[step][tool]['seconds'] for rep in runs) for tool in ('ferry', 'peer')}
        print(head % (step, '%.1f' % cpu['ferry'], '%.2f' % busy['ferry'], '%.1f' % cpu['peer'], '%.2f' % busy['peer'], '%.2fx' % (cpu['ferry'] / cpu['peer'])))


def breakdown(runs):
    """Where Ferry's time goes, medians per step, and the sandbox's share."""
    print('\nwhere Ferry\'s time goes (medians, seconds). The module process: python start and imports, connect, sweep, capture, claims, the stage, objects, '
          'health.\nThe stage: snapshot (take(): create, of which the sandbox copies the volume [cut], expose), agent pods (start: Secret, pod, Service, '
          'ready;\nthe source pod waits for the sandbox\'s clone [clone wait]), transfer, stop, release (deleting the snapshot and clone; '
          'the sandbox reclaims their files after the calls return).')
    cols = ('process', 'stage', 'snapshot', '[cut]', '[clone]', '[clone wait]', 'start', 'transfer', 'stop', 'release', 'w/o sandbox')
    print('%-24s' % 'step' + ''.join('%13s' % c for c in cols))
    for step in ('passthrough full', 'stage 1 full', 'passthrough incremental', 'stage 1 incremental', 'stage 2 restore'):
        per = [rep[step]['ferry'] for rep in runs]

        def med(fn):
            return statistics.median(fn(run) for run in per)
        stage = med(lambda run, step=step: run['result']['stages'][stage_of(step)])
        cells = (med(lambda run: run['seconds']), stage, med(lambda run: span_sum(run, 'snapshot')), med(lambda run: span_sum(run, 'snapshot cut')),
                 med(lambda run: span_sum(run, 'clone')), med(clone_delay), med(lambda run: span_sum(run, 'start source', 'start sink')),
                 med(lambda run: span_sum(run, 'transfer')), med(lambda run: span_sum(run, 'stop source', 'stop sink')),
                 med(lambda run: span_sum(run, 'release')), med(lambda run, step=step: run['result']['stages'][stage_of(step)] - sandbox_share(run)))
        print('%-24s' % step + ''.join('%13.2f' % c for c in cells))
    copies = [rep['sandbox copy'] for rep in runs if 'sandbox copy' in rep]
    print('the sandbox\'s copy of the mutated volume by itself, cold: copy %s s, removal %s s (a sync pays two copies; the removals run after it)'
          % (spread([c['copy'] for c in copies]), spread([c['remove'] for c in copies])))
    print('"w/o sandbox" (and * above) = stage (process) - [cut] (less what the sink\'s start overlapped) - [clone wait]: an estimate on a CSI '
          'driver whose snapshots and clones are copy-on-write')
    for step in ('passthrough incremental', 'stage 1 incremental'):
        parts = ', '.join('%s %.2f' % (name, statistics.median(rep[step]['ferry']['result']['stages'].get(name, 0.0) for rep in runs))
                          for name in sorted({n for rep in runs for n in rep[step]['ferry']['result']['stages']}))
        per = [rep[step]['ferry'] for rep in runs]
        outside = statistics.median(run['seconds'] - run['phases']['values']['main'] for run in per)
        imports = statistics.median(span_edge(run, 'connect', 0) for run in per)
        connects, sweeps = (statistics.median(span_sum(run, label) for run in per) for label in ('connect', 'sweep'))
        print('%s: the process %.2f = interpreter start and exit %.2f, imports and arguments %.2f, connect %.2f, sweep %.2f, stages: %s'
              % (step, statistics.median(run['seconds'] for run in per), outside, imports, connects, sweeps, parts))


def cpu_seconds(state):
    """(CPU seconds the machine was busy, CPU seconds of this benchmark, its children, the sandbox and its pods) so far."""
    tick = os.sysconf('SC_CLK_TCK')
    busy = machine_busy()
    own = os.times()
    mine = own.user + own.system + own.children_user + own.children_system
    try:
        with open('/proc/%d/stat' % sandbox_pid(state), encoding='ascii') as handle:
            stat = handle.read().rsplit(')', 1)[1].split()
        mine += sum(int(v) for v in stat[11:15]) / tick  # utime stime cutime cstime: pods are the sandbox's children
    except (OSError, ValueError, KeyError):
        pass
    return busy, mine


def mount_cow(work, mountpoint, kind, direct_io):
    """An XFS file system with reflinks (cp --reflink=auto then shares extents) or a btrfs one (the sandbox's volumes
    are then subvolumes, its snapshots subvolume snapshots) in a sparse file, mounted at ``mountpoint``; returns
    whether its loop device does direct I/O."""
    mkfs = {'xfs': ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'], 'btrfs': ['mkfs.btrfs', '-q', '-f']}[kind]
    for tool in (mkfs[0],) + (('btrfs',) if kind == 'btrfs' else ()):
        if not shutil.which(tool):
            raise SystemExit('--cow-volumes %s needs %s (bench/sync/run.sh --cow-volumes %s installs it)' % (kind, tool, kind))
    return mount_loop(os.path.join(work, 'cow.img'), mountpoint, mkfs, 64 * 2 ** 30, direct_io=direct_io)


def unmount_cow(work, mountpoint):
    unmount_loop(os.path.join(work, 'cow.img'), mountpoint)


def versions():
    rsync = subprocess.run(['rsync', '--version'], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    restic = subprocess.run(['restic', 'version'], capture_output=True, text=True, check=True).stdout.split(' compiled')[0]
    return {'rsync': ' '.join(rsync.split()[:3]), 'restic': restic}


def main():
    if sys.argv[1:2] == ['module']:
        return module_process(*sys.argv[2:4])
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--work', default=None, help='working directory, kept (and the dataset in it reused); default: a temporary one, removed')
    parser.add_argument('--cow-volumes', nargs='?', const='xfs', choices=sorted(COW_VOLUMES),
                        help='run everything but the pristine dataset on an XFS (default) or btrfs file system (a loop device), so that the sandbox\'s '
                             'snapshots and clones are copy-on-write, as a real CSI driver\'s are (needs root, and mkfs.xfs or mkfs.btrfs)')
    parser.add_argument('--loop-io', choices=('direct', 'buffered'), default='direct',
                        help='with --cow-volumes: the loop device reads and writes its image file around the host\'s page cache (direct, as a '
                             'block device would; from run N on) or through it (buffered: runs H-M)')
    args = parser.parse_args()
    for tool in ('rsync', 'restic', 'diff'):
        if not shutil.which(tool):
            raise SystemExit('%s is needed (bench/sync/run.sh installs it)' % tool)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (the finally below) when stopped
    bench_dir = os.environ.get('FERRY_BENCH_DIR')
    work = args.work or tempfile.mkdtemp(prefix='ferry-bench-sync-', dir=bench_dir)
    data = os.path.join(work, 'cow') if args.cow_volumes else work
    state = os.path.join(data, 'sandbox')
    try:
        original = dataset(args.work or bench_dir or work, args.scale, 'orig-%s' % args.scale)
        if args.cow_volumes:
            args.loop_direct = mount_cow(work, data, args.cow_volumes, args.loop_io == 'direct')
        shutil.rmtree(state, ignore_errors=True)  # volume directories outlive a sandbox
        kubeconfigs = sandbox_up(state, ['source', 'dr'])
        sys.path.insert(0, COLLECTIONS)
        clusters = {name: connect(path) for name, path in kubeconfigs.items()}
        create_app(clusters['source'])
        source_dir = claim_dir(state, 'source', clusters['source'], NAMESPACE, PVC)
        bench = Bench(args, data, state, kubeconfigs, clusters, source_dir, 0)
        bench.cpu, started = cpu_seconds(state), time.monotonic()
        runs = []
        for rep in range(args.reps):
            runs.append(bench.repetition(rep, original, rep % 2 == 0))
        bench.elapsed = time.monotonic() - started
        bench.size = tree_bytes(source_dir)
        return report(args, bench, runs, versions())
    finally:
        sandbox_down(state)
        if args.cow_volumes:
            unmount_cow(work, data)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
