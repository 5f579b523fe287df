# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged syncs, through a storage pool.

Stage 1 (``backup``): snapshot the app's volumes, start a source agent on the snapshots, and let it
back them up into a new restore point, with the captured objects as the point's metadata.
Stage 2 (``restore``): create the point's claims on the target, start a sink agent on them, let it
restore the volumes, then restore the objects and validate health.

The pool stays on the control node's side (see agent/relay.py). Whatever happens, the agents,
their Secrets and Services, and the temporary snapshots and claims are removed before returning.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from ansible_collections.ferry.kube.plugins.module_utils.agent import relay, wire
from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.sync.agents import Agent, AgentSpec, app_user, require_filesystems, volume_root

CONNECT_TIMEOUT = 60.0


def control_context(pki):
    """A TLS client context with the control node's certificate of this sync (the key never touches the disk for long)."""
    directory = tempfile.mkdtemp(prefix='ferry-tls-')
    try:
        paths = []
        for name, text in zip(('ca.crt', 'tls.crt', 'tls.key'), _bundle_texts(pki)):
            path = os.path.join(directory, name)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as handle:
                handle.write(text)
            paths.append(path)
        return wire.client_context(*paths)
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # loaded into the context; no key stays on disk


def control_channel(context, address, timeout=CONNECT_TIMEOUT):
    """A channel to an agent, authenticated with the control node's certificate of this sync."""
    deadline, attempt = time.monotonic() + timeout, 0
    while True:
        attempt += 1
        try:
            tls = wire.connect(address, context)
            tls.settimeout(None)
            return wire.Channel(tls)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise FerryError('cannot reach the agent at %s:%d: %s (is the NodePort or load balancer reachable from the control node?)'
                                 % (address[0], address[1], exc)) from None
            time.sleep(min(2.0, 0.1 * attempt))


def _bundle_texts(pki):
    bundle = pki.bundle('control', 'ferry-control-node')
    return bundle['ca.crt'], bundle['tls.crt'], bundle['tls.key']


def run_agent_job(cluster, sync_id, spec, job, backend, payload=b'', on_progress=None, start_timeout=300, packs_in_tls=False):
    """Start an agent, give it ``job``, serve the pool to it, stop it. Returns (result, bytes on the wire).

    ``packs_in_tls``: the packs cross inside TLS too (else as clear segments: sealed already, checked where they land)."""
    pki = SyncPKI.create(sync_id)
    agent = Agent(cluster, sync_id, spec, pki)
    try:
        address = agent.start(timeout=start_timeout)
        context = control_context(pki)
        channel = control_channel(context, address)
        lanes = []

        def open_lane():
            lanes.append(control_channel(context, address))
            return lanes[-1]

        try:
            shared = relay.SharedChannel(channel)
            relay.send_job(shared, job, payload, clear_packs=not packs_in_tls)
            try:
                result = relay.serve(shared, backend, on_progress, open_lane=open_lane, clear_packs=not packs_in_tls)
            except relay.RelayError as exc:
                raise FerryError('the agent in %s failed: %s' % (spec.namespace, exc)) from None
            except (EOFError, OSError, wire.ProtocolError) as exc:
                raise FerryError('lost the agent in %s: %s%s' % (spec.namespace, exc, _log_tail(agent))) from None
            return result, sum(each.bytes_sent + each.bytes_received for each in [channel] + lanes)
        finally:
            channel.sock.close()
    finally:
        agent.stop()


def _log_tail(agent):
    text = agent.logs(10).strip()
    return ' (agent log: %s)' % ' | '.join(text.splitlines()[-3:]) if text else ''


class StageOne:
    """Source volumes (snapshotted) and captured objects -> a new restore point."""

    def __init__(self, cluster, namespace, sync_id, image, pool, providers, pvcs=None, group_name=None, tags=None,
                 capture_bytes=None, exposure='NodePort', mechanism=None, hooks=True, on_progress=None, packs_in_tls=False):
        """``pool``: the opened pool (Pool.open): the agent gets its keys, not the passphrase."""
        self.cluster = cluster
        self.namespace = namespace
        self.sync_id = sync_id
        self.image = image
        self.pool = pool
        self.providers = providers
        self.pvcs = pvcs
        self.group_name = group_name or '%s/%s' % (cluster.name, namespace)
        self.tags = tags or {}
        self.capture_bytes = capture_bytes
        self.exposure = exposure
        self.mechanism = mechanism
        self.hooks = hooks
        self.on_progress = on_progress
        self.packs_in_tls = packs_in_tls

    def run(self):
        started = time.monotonic()
        volumes = group.load_volumes(self.cluster, self.namespace, self.pvcs)
        require_filesystems(volumes)
        snapper = group.AppSnapshot(self.cluster, self.sync_id, self.providers)
        plans = snapper.plan(volumes, self.mechanism)
        pods = self.cluster.get('/api/v1/namespaces/%s/pods' % self.namespace).get('items') or []
        taken = snapper.take(plans, pods, expose=True, run_hooks=self.hooks) if plans else {'volumes': [], 'hooks': []}
        try:
            claims = {v['pvc']: v['exposed_pvc'] or v['pvc'] for v in taken['volumes']}
            job = {'op': 'backup', 'keys': self.pool.master_keys(), 'location': self.pool.backend.location, 'group': self.group_name, 'tags': self.tags,
                   'volumes': {name: volume_root(name) for name in claims}, 'metadata_name': 'objects' if self.capture_bytes else None,
                   # a claim restored from a snapshot is a new filesystem: inode numbers and ctimes differ every time
                   'compare_identity': all(v['mechanism'] == 'live-read' for v in taken['volumes'])}
            spec = AgentSpec(self.namespace, self.image, 'source', ['stage', '--once'], claims, read_only=True, exposure=self.exposure,
                             run_as=app_user(pods))
            transfer_started = time.monotonic()
            result, wire_bytes = run_agent_job(self.cluster, self.sync_id, spec, job, self.pool.backend, self.capture_bytes or b'', self.on_progress,
                                               packs_in_tls=self.packs_in_tls)
            transfer_seconds = time.monotonic() - transfer_started
        finally:
            snapper.release([self.namespace])
        return {'point': result['point'], 'group': self.group_name, 'volumes': _volume_results(taken['volumes'], result, transfer_seconds),
                'hooks': taken.get('hooks') or [], 'bytes_on_wire': wire_bytes, 'stats': result['stats'],
                'seconds': round(time.monotonic() - started, 3), 'transfer_seconds': round(transfer_seconds, 3)}


def _volume_results(snapshots, result, seconds):
    volumes = []
    for snap in snapshots:
        record = result['volumes'].get(snap['pvc']) or {}
        volumes.append({'pvc': snap['pvc'], 'mechanism': snap['mechanism'], 'reason': snap['reason'], 'consistency': snap.get('consistency'),
                        'bytes_scanned': record.get('bytes_read', 0), 'bytes': record.get('bytes', 0), 'files': record.get('files', 0),
                        'files_changed': record.get('files_changed', 0),
                        'throughput_bytes_per_second': int(record.get('bytes_read', 0) / seconds) if seconds > 0 else None})
    return volumes


class StageTwo:
    """A restore point's volumes -> claims on the target (which must exist), through a sink agent."""

    def __init__(self, cluster, namespace, sync_id, image, pool, point, claims, run_as=None, exposure='NodePort',
                 on_progress=None, packs_in_tls=False):
        """``pool``: the opened pool (Pool.open): the agent gets its keys, not the passphrase."""
        self.cluster = cluster
        self.namespace = namespace
        self.sync_id = sync_id
        self.image = image
        self.pool = pool
        self.point = point
        self.claims = claims  # point volume name -> target PVC name
        self.run_as = run_as
        self.exposure = exposure
        self.on_progress = on_progress
        self.packs_in_tls = packs_in_tls

    def run(self):
        started = time.monotonic()
        if not self.claims:
            return {'volumes': [], 'bytes_on_wire': 0, 'seconds': 0.0}
        job = {'op': 'restore', 'keys': self.pool.master_keys(), 'location': self.pool.backend.location, 'point': self.point,
               'volumes': {name: volume_root(name) for name in self.claims}}
        spec = AgentSpec(self.namespace, self.image, 'sink', ['stage', '--once'], self.claims, read_only=False, exposure=self.exposure,
                         run_as=self.run_as)
        result, wire_bytes = run_agent_job(self.cluster, self.sync_id, spec, job, self.pool.backend, b'', self.on_progress, packs_in_tls=self.packs_in_tls)
        seconds = time.monotonic() - started
        volumes = [dict({'pvc': self.claims[name]}, **(stats if isinstance(stats, dict) else {})) for name, stats in sorted(result['stats'].items())]
        return {'volumes': volumes, 'bytes_on_wire': wire_bytes, 'seconds': round(seconds, 3)}
