#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: sync
short_description: Sync an app's volumes and objects, staged through a storage pool or passthrough between clusters
version_added: 0.1.0
description:
  - V(backup) (staged, stage 1) snapshots the app's volumes in O(namespace) of O(source), reads the snapshots with
    a transient source agent pod and writes them, with the app's objects (as M(ferry.kube.discover) captures them),
    into a new restore point of O(pool). The first point stores everything, later ones only new chunks.
  - V(restore) (staged, stage 2) takes a restore point (O(point)) to O(target), creates the app's namespace and
    claims there (with O(storage_class_mapping)), fills the claims through a sink agent pod, then restores the objects
    (the options of M(ferry.kube.restore) apply) and validates health.
  - V(staged) runs both stages, V(passthrough) skips the pool, a source agent sends each volume straight to a sink
    agent on O(target), only changed chunks after the first sync (the sink keeps the chunk map of the last verified
    sync in C(.ferry-state) inside the volume).
  - Agents are reached through NodePort or LoadBalancer Services (O(exposure)) with certificates made for the sync;
    the pool stays with the control node, which serves it to the agent over the agent's own TLS connection, so agents
    never hold pool credentials.
  - Temporary snapshots, claims, agent pods, Services and Secrets are removed when the sync ends, also when it fails.
    With O(sweep), leftovers of earlier syncs that crashed are removed first.
  - A sync is long work. Run it with C(async) and poll with M(ansible.builtin.async_status); O(progress_file) holds
    the latest progress (bytes, files, rate, ETA) as JSON while it runs.
author:
  - Ferry developers (@ferry)
options:
  mode:
    description: What to sync, see the description.
    type: str
    choices: [backup, restore, staged, passthrough]
    required: true
  source:
    description:
      - Connection to the source cluster (V(backup), V(staged), V(passthrough)), with the suboptions of
        O(ferry.kube.cluster_info#module:cluster) (C(kubeconfig), C(context), C(host), C(api_key), C(eks), C(gke), C(aks), ...).
      - Credentials in it are never logged or returned.
    type: dict
  target:
    description:
      - Connection to the target cluster (V(restore), V(staged), V(passthrough)), as O(source).
      - A Kubernetes Secret named by O(pool.passphrase_secret) is read through this cluster (else O(source)).
    type: dict
  namespace:
    description: Namespace of the app on the source; for V(restore), the source namespace recorded in the restore point.
    type: str
    required: true
  target_namespace:
    description: Namespace on the target. Default is O(namespace) (or what O(namespace_mapping) says).
    type: str
  pvcs:
    description: Only these claims. Default is every bound claim of the namespace.
    type: list
    elements: str
  label_selector:
    description: Capture only objects with these labels and what they depend on (see M(ferry.kube.discover)).
    type: str
  point:
    description: Restore point for V(restore), by id, unique id prefix or V(latest) in O(group).
    type: str
    default: latest
  group:
    description: Restore point group. Default C(<source cluster>/<namespace>) as V(backup) writes it.
    type: str
  tags:
    description: Tags of the new restore point.
    type: dict
    default: {}
  sync_id:
    description: Names this sync's temporary objects. Default is made from the time.
    type: str
  agent_image:
    description: Image of Ferry's agent.
    type: str
    default: ferry/agent:0.1.0
  exposure:
    description: How the control node (and, for V(passthrough), the source agent) reaches agents.
    type: str
    choices: [NodePort, LoadBalancer]
    default: NodePort
  packs_in_tls:
    description:
      - In staged modes, move the pool's packs inside TLS as well. By default they cross the agents' mutual-TLS
        connections as clear segments between the TLS records, since they are sealed already (compressed, every chunk
        encrypted under the pool's key). The agent authenticates every chunk before it restores it, and the control
        node stores an uploaded pack only if its bytes hash to its name. The handshakes, the job (with the pool's keys),
        the requests and everything else stay in TLS either way.
      - Set it where a policy wants every byte inside TLS. It costs staged syncs about a fifth more CPU and time on the
        benchmark's data.
    type: bool
    default: false
  mechanism:
    description: Force a snapshot mechanism for all volumes instead of choosing per volume.
    type: str
    choices: [auto, csi-snapshot, aws-ebs, gce-pd, azure-disk, live-read]
    default: auto
  hooks:
    description: Run the pre- and post-hooks the app's pods declare around the snapshots.
    type: bool
    default: true
  sweep:
    description: First remove temporary objects that earlier syncs of this namespace left (except those of O(keep_sync_ids)).
    type: bool
    default: true
  keep_sync_ids:
    description: Syncs running right now from other control nodes, whose objects O(sweep) must keep.
    type: list
    elements: str
    default: []
  progress_file:
    description: Keep the latest progress here as JSON while the sync runs.
    type: path
  timeout:
    description: Seconds a volume transfer may take.
    type: int
    default: 21600
extends_documentation_fragment:
  - ferry.kube.restore
  - ferry.kube.cloud_snapshots
  - ferry.kube.pool
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Plans the snapshot mechanism per volume and validates the object restore with a server dry run; moves nothing.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Nightly staged backup of the shop into the DR site's pool
  ferry.kube.sync:
    mode: backup
    source: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespace: shop
    pool:
      location: /var/lib/ferry/pools/shop
      passphrase: "{{ vault_pool_passphrase }}"
  async: 7200
  poll: 10

- name: Keep the DR copy hydrated at 0 replicas from the latest point
  ferry.kube.sync:
    mode: restore
    target: {kubeconfig: /etc/ferry/clusters/dr.kubeconfig}
    namespace: shop
    pool:
      location: /var/lib/ferry/pools/shop
      passphrase: "{{ vault_pool_passphrase }}"
    replicas: 0

- name: Passthrough migration into a new cluster and namespace
  ferry.kube.sync:
    mode: passthrough
    source: {kubeconfig: /etc/ferry/clusters/old.kubeconfig}
    target: {kubeconfig: /etc/ferry/clusters/new.kubeconfig}
    namespace: shop
    target_namespace: shop-v2
    storage_class_mapping: {gp2: gp3}
'''

RETURN = r'''
point:
  description: The restore point written (V(backup), V(staged)) or read (V(restore)).
  returned: when a pool is used
  type: str
  sample: 20261201T020000Z-1a2b3c4d
volumes:
  description: Per volume, the snapshot mechanism and why, bytes scanned and sent, duration, throughput and verification.
  returned: always
  type: list
  elements: dict
  sample: [{pvc: data, mechanism: csi-snapshot, reason: "driver ebs.csi.aws.com has VolumeSnapshotClass ebs", bytes_scanned: 2147483648,
            bytes_sent: 41943040, seconds: 12.4, throughput_bytes_per_second: 173184000}]
objects:
  description: For modes that restore, every object and what happened to it (see M(ferry.kube.restore)).
  returned: when objects are restored
  type: list
  elements: dict
counts:
  description: Restored objects per action.
  returned: when objects are restored
  type: dict
health:
  description: The health report after the restore (see M(ferry.kube.restore)).
  returned: when validated
  type: dict
stages:
  description: Seconds per stage (capture, backup, claims, restore, objects, validation).
  returned: always
  type: dict
sync_id:
  description: The sync's id (its temporary objects carry it).
  returned: always
  type: str
swept:
  description: Temporary objects of earlier syncs that were removed.
  returned: always
  type: list
  elements: str
'''

import json
import os
import tempfile
import time

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import METADATA_NAME, Capture, document_bytes, load_document
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection as CaptureSelection
from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.restore import options as restore_options
from ansible_collections.ferry.kube.plugins.module_utils.restore.engine import Restore, Selection
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.providers import MECHANISMS, cloud_options, providers_of
from ansible_collections.ferry.kube.plugins.module_utils.sync import agents
from ansible_collections.ferry.kube.plugins.module_utils.sync.agents import app_user
from ansible_collections.ferry.kube.plugins.module_utils.sync.passthrough import Passthrough
from ansible_collections.ferry.kube.plugins.module_utils.sync.staged import StageOne, StageTwo

NEEDS = {'backup': ('source', 'pool'), 'restore': ('target', 'pool'), 'staged': ('source', 'target', 'pool'), 'passthrough': ('source', 'target')}


class SyncRun:
    """One run of the module: the clusters, the pool, the stages and the result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.sync_id = self.params['sync_id'] or time.strftime('%Y%m%d-%H%M%S', time.gmtime()) + '-' + os.urandom(2).hex()
        self.stages = {}
        self.result = {'changed': False, 'sync_id': self.sync_id, 'volumes': [], 'stages': self.stages, 'swept': []}
        self.source = self.target = None
        self.pool = None
        self.capture_doc = None
        self.claims = {}          # source claim -> target claim, once created on the target
        self.point_volumes = None  # volume names of the restore point read (None: a point this run wrote)
        self._progress_failed = False

    # -- helpers ---------------------------------------------------------------------------------
    def timed(self, name, work, *args):
        started = time.monotonic()
        try:
            return work(*args)
        finally:
            self.stages[name] = round(time.monotonic() - started, 3)

    def report_progress(self, state):
        path = self.params['progress_file']
        if not path or self._progress_failed:
            return
        try:
            directory = os.path.dirname(os.path.abspath(path))
            handle, temporary = tempfile.mkstemp(dir=directory, prefix='.ferry-progress-')
            with os.fdopen(handle, 'w') as out:
                json.dump(dict(state, sync_id=self.sync_id), out)
            os.replace(temporary, path)
        except OSError as exc:  # progress is a convenience: it must not fail the sync
            self._progress_failed = True
            self.module.ansible.warn('progress_file %s cannot be written (%s); the sync goes on without it' % (path, exc.strerror))

    @property
    def target_namespace(self):
        mapped = (self.params['namespace_mapping'] or {}).get(self.params['namespace'], self.params['namespace'])
        return self.params['target_namespace'] or mapped

    def connect(self):
        mode = self.params['mode']
        missing = [option for option in NEEDS[mode] if not self.params.get(option)]
        if missing:
            raise FerryError('mode=%s needs %s' % (mode, ' and '.join(missing)))
        known = set(connection.cluster_spec())
        for option in ('source', 'target'):
            if option in NEEDS[mode]:
                unknown = sorted(set(self.params[option]) - known)
                if unknown:
                    raise FerryError('%s has unknown keys %s; a cluster connection takes: %s' % (option, ', '.join(unknown), ', '.join(sorted(known))))
                setattr(self, option, connection.connect(self.params[option]))
        if 'pool' in NEEDS[mode]:
            # opened before anything is snapshotted or started, so a wrong passphrase fails the run at once;
            # agents get the pool's keys, never the passphrase (which may open other pools too)
            passphrase = pool_options.passphrase_of(self.module, self.params['pool'], cluster=self.target or self.source)
            self.pool = self.timed('open pool', pool_options.open_pool, self.module, self.params['pool'], passphrase)

    def sweep(self):
        if not self.params['sweep'] or self.module.check_mode:
            return
        keep = set(self.params['keep_sync_ids']) | {self.sync_id}
        for cluster, namespace in ((self.source, self.params['namespace']), (self.target, self.target_namespace)):
            if cluster is not None and _namespace_exists(cluster, namespace):
                providers_for = self._providers_for(cluster)
                self.result['swept'] += agents.sweep(cluster, [namespace], keep) + group.sweep(cluster, [namespace], keep, providers_for)

    # -- the modes -------------------------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        finally:
            if self.pool is not None:
                self.pool.close()

    def _run(self):
        self.connect()
        self.sweep()
        mode = self.params['mode']
        capture = None
        if mode in ('backup', 'staged', 'passthrough'):
            capture = self.timed('capture', self.capture)
        if self.module.check_mode:
            return self.plan(capture)
        if mode in ('backup', 'staged'):
            self.timed('backup', self.backup, capture)
        if mode in ('restore', 'staged'):
            if mode == 'restore':
                capture = self.timed('read point', self.read_point)
            self.timed('claims', self.restore_claims, capture)
            self.timed('restore volumes', self.restore_volumes)
            self.timed('objects', self.restore_objects, capture)
        if mode == 'passthrough':
            self.timed('claims', self.restore_claims, capture)
            self.timed('transfer', self.passthrough)
            self.timed('objects', self.restore_objects, capture)
        self.result['changed'] = True
        return self.result

    def capture(self):
        selection = CaptureSelection([self.params['namespace']], label_selector=self.params['label_selector'])
        return Capture(self.source, selection).run()

    def backup(self, capture):
        providers_found = providers_of(self.source, self.sync_id, self.params)
        group_name = self.params['group'] or '%s/%s' % (self.source.name, self.params['namespace'])
        outcome = StageOne(self.source, self.params['namespace'], self.sync_id, self.params['agent_image'], self.pool, providers_found,
                           pvcs=self.params['pvcs'], group_name=group_name, tags=self.params['tags'],
                           capture_bytes=document_bytes(capture), exposure=self.params['exposure'], mechanism=self._mechanism(),
                           hooks=self.params['hooks'], on_progress=self.report_progress, packs_in_tls=self.params['packs_in_tls']).run()
        self.result.update(point=outcome['point'], group=outcome['group'], volumes=outcome['volumes'], hooks=outcome['hooks'],
                           bytes_on_wire=outcome['bytes_on_wire'], stats=outcome['stats'])
        self.params['point'] = outcome['point']

    def read_point(self):
        from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import read_metadata  # pylint: disable=import-outside-toplevel
        from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError  # pylint: disable=import-outside-toplevel
        pool = self.pool
        try:
            if self.params['group'] is None:
                groups = sorted({p.get('group') for p in pool.points()})
                if len(groups) > 1:
                    raise FerryError('the pool holds restore points of several groups (%s): give group, e.g. the "group" a backup returned'
                                     % ', '.join(str(g) for g in groups))
            record = pool.resolve_point(self.params['point'], self.params['group'])
            capture = load_document(read_metadata(pool, record, METADATA_NAME))
        except (PoolError, ValueError) as exc:
            raise FerryError('cannot read the restore point: %s' % exc) from None
        self.params['point'] = record['id']
        self.result.update(point=record['id'], volumes_in_point=sorted(record['volumes']))
        self.point_volumes = set(record['volumes'])
        return capture

    def _restore(self, capture, selection, dry_run=False):
        transforms = restore_options.transforms_of(self.params, {self.params['namespace']: self.target_namespace})
        return Restore(self.target, capture, transforms, selection, existing=self.params['existing'], dry_run=dry_run,
                       restore_pvs=self.params['restore_pvs']).run()

    def restore_claims(self, capture):
        """The namespace and the claims first: the sink agents mount them."""
        self.capture_doc = capture
        wanted = set(self.params['pvcs'] or [])
        claims = [o for o in capture['objects'] if o['kind'] == 'PersistentVolumeClaim' and (not wanted or o['metadata']['name'] in wanted)]
        result = self._restore(capture, Selection(namespaces=[self.params['namespace']], include_kinds=['Namespace', 'PersistentVolumeClaim']))
        restore_options.raise_failures(result, 'create on the target')
        self.claims = {o['metadata']['name']: o['metadata']['name'] for o in claims}
        self.result['claims'] = sorted(self.claims)

    def restore_volumes(self):
        claims = {name: target for name, target in self.claims.items() if self.point_volumes is None or name in self.point_volumes}
        outcome = StageTwo(self.target, self.target_namespace, self.sync_id, self.params['agent_image'], self.pool, self.params['point'], claims,
                           run_as=app_user(_pod_specs(self.capture_doc)), exposure=self.params['exposure'],
                           on_progress=self.report_progress, packs_in_tls=self.params['packs_in_tls']).run()
        self.result['restored_volumes'] = outcome['volumes']
        self.result['bytes_on_wire'] = self.result.get('bytes_on_wire', 0) + outcome['bytes_on_wire']

    def passthrough(self):
        providers_found = providers_of(self.source, self.sync_id, self.params)
        outcome = Passthrough(self.source, self.target, self.params['namespace'], self.target_namespace, self.sync_id, self.params['agent_image'],
                              providers_found, self.claims, pvcs=self.params['pvcs'], exposure=self.params['exposure'], mechanism=self._mechanism(),
                              hooks=self.params['hooks'], timeout=self.params['timeout']).run()
        self.result.update(volumes=outcome['volumes'], hooks=outcome['hooks'])

    def restore_objects(self, capture):
        result = self._restore(capture, Selection(namespaces=[self.params['namespace']]))
        restore_options.raise_failures(result)
        self.result.update(objects=result['objects'], counts=result['counts'], unconvertible=result['unconvertible'])
        self.timed('validation', restore_options.validate_after, self.target, self.result, self.params)

    def plan(self, capture):
        """Check mode: the snapshot mechanism per volume and a server-validated dry run of the object restore."""
        if self.source is not None:
            snapper = group.AppSnapshot(self.source, self.sync_id, providers_of(self.source, self.sync_id, self.params))
            volumes = group.load_volumes(self.source, self.params['namespace'], self.params['pvcs'])
            self.result['volumes'] = [dict(p['volume'].summary(), mechanism=p['mechanism'], reason=p['reason'])
                                      for p in snapper.plan(volumes, self._mechanism())]
        if self.target is not None:
            if capture is None:
                capture = self.read_point()
            result = self._restore(capture, Selection(namespaces=[self.params['namespace']]), dry_run=True)
            self.result.update(objects=result['objects'], counts=result['counts'], failures=result['failures'])
        self.result['changed'] = True
        return self.result

    def _providers_for(self, cluster):
        """The snapshot providers of another sync, to release what it left (its cloud snapshots too)."""
        return lambda sync_id: providers_of(cluster, sync_id, self.params)

    def _mechanism(self):
        return None if self.params['mechanism'] == 'auto' else self.params['mechanism']


def _pod_specs(capture):
    """The app's pods and pod templates in a capture: the sink writes files as the user the app runs as."""
    from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import pod_spec  # pylint: disable=import-outside-toplevel
    specs = []
    for obj in (capture or {}).get('objects') or []:
        spec = pod_spec(obj)
        if spec is not None:
            specs.append({'metadata': obj.get('metadata') or {}, 'spec': spec})
    return specs


def _namespace_exists(cluster, namespace):
    from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import get_object  # pylint: disable=import-outside-toplevel
    return get_object(cluster, 'v1', 'Namespace', namespace) is not None


def main():
    spec = dict(
        mode=dict(type='str', choices=['backup', 'restore', 'staged', 'passthrough'], required=True),
        source=dict(type='dict', no_log=False),
        target=dict(type='dict', no_log=False),
        namespace=dict(type='str', required=True),
        target_namespace=dict(type='str'),
        pvcs=dict(type='list', elements='str'),
        label_selector=dict(type='str'),
        pool=pool_options.pool_option(),
        point=dict(type='str', default='latest'),
        group=dict(type='str'),
        tags=dict(type='dict', default={}),
        sync_id=dict(type='str'),
        agent_image=dict(type='str', default='ferry/agent:0.1.0'),
        exposure=dict(type='str', choices=['NodePort', 'LoadBalancer'], default='NodePort'),
        packs_in_tls=dict(type='bool', default=False),
        mechanism=dict(type='str', choices=MECHANISMS, default='auto'),
        hooks=dict(type='bool', default=True),
        sweep=dict(type='bool', default=True),
        keep_sync_ids=dict(type='list', elements='str', default=[], no_log=False),
        progress_file=dict(type='path'),
        timeout=dict(type='int', default=21600),
        **cloud_options()
    )
    spec.update(restore_options.argument_spec())
    module = FerryModule(argument_spec=spec, cluster_options=('source', 'target'))
    module.run(lambda ferry_module: SyncRun(ferry_module).run())


if __name__ == '__main__':
    main()
