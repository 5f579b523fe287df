# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passthrough syncs: a source agent pushes each snapshotted volume straight to a sink agent on the
target cluster (agent/mover.py), no pool in between.

The sink keeps the chunk map of the last verified sync in ``.ferry-state`` inside the target volume,
so a later sync sends only changed chunks without re-reading the target, and an interrupted one
resumes (the source pod restarts and reconnects; the sink's journal says what is done). The sink is
exposed through a NodePort or load balancer of the target cluster, which the source agent dials.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.sync.agents import Agent, AgentSpec, app_user, require_filesystems, volume_root
from ansible_collections.ferry.kube.plugins.module_utils.workers import Background

STATE_DIR = '.ferry-state'


class Passthrough:
    """Source claims (snapshotted) -> target claims (which must exist), volume by volume in parallel."""

    def __init__(self, source, target, namespace, target_namespace, sync_id, image, providers, claims, pvcs=None, exposure='NodePort',
                 mechanism=None, hooks=True, timeout=3600, parallel=2):
        self.source = source
        self.target = target
        self.namespace = namespace
        self.target_namespace = target_namespace
        self.sync_id = sync_id
        self.image = image
        self.providers = providers
        self.claims = claims  # source PVC -> target PVC
        self.pvcs = pvcs
        self.exposure = exposure
        self.mechanism = mechanism
        self.hooks = hooks
        self.timeout = timeout
        self.parallel = parallel

    def run(self):
        started = time.monotonic()
        volumes = group.load_volumes(self.source, self.namespace, self.pvcs)
        require_filesystems(volumes)
        missing = [v.name for v in volumes if v.name not in self.claims]
        if missing:
            raise FerryError('no target claim for %s: create them on the target first (the sync module does)' % ', '.join(missing))
        snapper = group.AppSnapshot(self.source, self.sync_id, self.providers)
        plans = snapper.plan(volumes, self.mechanism)
        pods = self.source.get('/api/v1/namespaces/%s/pods' % self.namespace).get('items') or []
        pki = SyncPKI.create(self.sync_id)
        run_as = app_user(pods)
        numbers = {volume.name: index for index, volume in enumerate(volumes)}
        # The first sinks start while the snapshots are cut: they need nothing from the source, and
        # a pod takes seconds to be scheduled and started on a real cluster.
        early = {}
        try:
            for volume in volumes[:max(1, self.parallel)]:
                sink = self._sink(pki, numbers[volume.name], volume.name, run_as)
                early[volume.name] = (sink, Background(sink.start))
            taken = snapper.take(plans, pods, expose=True, run_hooks=self.hooks) if plans else {'volumes': [], 'hooks': []}
            try:
                with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
                    moved = list(pool.map(lambda snap: self._volume(pki, numbers[snap['pvc']], snap, run_as, early.pop(snap['pvc'], None)),
                                          taken['volumes']))
            finally:
                snapper.release([self.namespace])
        finally:
            for sink, starting in early.values():  # started for a volume never synced (the snapshot failed)
                _stop_unused(sink, starting)
        return {'volumes': moved, 'hooks': taken.get('hooks') or [], 'seconds': round(time.monotonic() - started, 3)}

    def _sink(self, pki, index, name, run_as):
        root = volume_root(name)
        return Agent(self.target, self.sync_id, AgentSpec(self.target_namespace, self.image, 'sink',
                                                          ['sink', '--root', root, '--state', '%s/%s' % (root, STATE_DIR), '--once'],
                                                          {name: self.claims[name]}, read_only=False, exposure=self.exposure, run_as=run_as),
                     pki, index)

    def _volume(self, pki, index, snap, run_as, early=None):
        """Sync one snapshotted volume; ``early`` is its sink and the call starting it, when started ahead."""
        name = snap['pvc']
        sink, starting = early or (self._sink(pki, index, name, run_as), None)
        source = None
        started = time.monotonic()
        try:
            address = starting.result() if starting is not None else sink.start()
            source = Agent(self.source, self.sync_id, AgentSpec(self.namespace, self.image, 'source',
                                                                ['push', '--root', volume_root(name), '--to', '%s:%d' % address,
                                                                 '--sync-id', self.sync_id],
                                                                {name: snap['exposed_pvc'] or name}, read_only=True, run_as=run_as, listens=False),
                           pki, index)
            source.start()
            result = source.wait_finished(self.timeout)
        finally:
            for agent in (source, sink):
                if agent is not None:
                    agent.stop()
        seconds = time.monotonic() - started
        return {'pvc': name, 'target_pvc': self.claims[name], 'mechanism': snap['mechanism'], 'reason': snap['reason'],
                'consistency': snap.get('consistency'), 'bytes_scanned': result.get('bytes_scanned', 0), 'bytes_sent': result.get('bytes_sent', 0),
                'files': result.get('files', 0), 'files_changed': result.get('files_written', 0),
                'seconds': round(seconds, 3), 'throughput_bytes_per_second': int(result.get('bytes_scanned', 0) / seconds) if seconds > 0 else None}


def _stop_unused(sink, starting):
    """Stop a sink started ahead for a volume that is not synced after all.

    Its start is waited for first (up to the start's timeout): a stop while the start still
    creates objects could miss one. Its own errors give way to the one being raised; what a failed
    stop leaves, the next sync's sweep removes.
    """
    try:
        starting.result()
    except Exception:  # pylint: disable=broad-except
        pass
    try:
        sink.stop()
    except Exception:  # pylint: disable=broad-except
        pass
