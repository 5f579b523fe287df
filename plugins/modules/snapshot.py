#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot
short_description: Take point-in-time snapshots of an app's volumes for a sync, expose them to agents, and clean up
version_added: 0.1.0
description:
  - Chooses the snapshot mechanism per volume from the cluster's capabilities, and reports which one and why.
    CSI VolumeSnapshot when the volume's driver has a VolumeSnapshotClass; the cloud's own API (AWS EBS) when cloud
    credentials are given for a disk without one; otherwise a live read of the volume.
  - Snapshots all of the app's volumes together, after the pre-hooks and before the post-hooks declared as pod
    annotations (C(pre.hook.ferry.dev/command), also Velero's C(pre.hook.backup.velero.io/command)). With a live
    read, the post-hooks run when the snapshot is released, after the data was read.
  - With O(expose=true), each snapshot becomes a temporary PVC in the app's namespace that agent pods mount read-only.
  - O(state=absent) releases a sync's snapshots, temporary PVCs, PVs and cloud resources, and runs deferred post-hooks.
    O(sweep=true) also removes what crashed or interrupted syncs left behind.
  - What a sync made is recorded in a ConfigMap per namespace, so clean-up works from any control node.
author:
  - Ferry developers (@ferry)
options:
  sync_id:
    description: Identifies this sync's temporary objects. Use the same value to release them.
    type: str
    required: true
  namespace:
    description: Namespace of the app.
    type: str
    required: true
  pvcs:
    description: PVCs to snapshot. Default is every bound PVC in O(namespace).
    type: list
    elements: str
  state:
    description: C(present) takes and exposes the snapshots, C(absent) releases them.
    type: str
    choices: [present, absent]
    default: present
  mechanism:
    description: Force a mechanism for all volumes instead of choosing per volume.
    type: str
    choices: [auto, csi-snapshot, aws-ebs, gce-pd, azure-disk, live-read]
    default: auto
  expose:
    description: Make a temporary PVC from each snapshot for agent pods.
    type: bool
    default: true
  hooks:
    description: Run the pre- and post-hooks the app's pods declare.
    type: bool
    default: true
  sweep:
    description: With O(state=absent), also remove temporary objects of other syncs in O(namespace), except those in O(keep_sync_ids).
    type: bool
    default: false
  keep_sync_ids:
    description: Syncs still running, whose objects O(sweep) must keep.
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to wait for each snapshot to be cut and ready.
    type: int
    default: 600
extends_documentation_fragment:
  - ferry.kube.cloud_snapshots
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Plans the mechanism per volume without taking anything.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Snapshot the shop's volumes for sync 20261124-0100
  ferry.kube.snapshot:
    cluster: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespace: shop
    sync_id: "20261124-0100"
  register: snaps

- name: Show the mechanism chosen per volume
  ansible.builtin.debug:
    msg: "{{ snaps.volumes | map(attribute='pvc') | zip(snaps.volumes | map(attribute='reason')) | list }}"

- name: Release them once the data is read
  ferry.kube.snapshot:
    cluster: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespace: shop
    sync_id: "20261124-0100"
    state: absent
'''

RETURN = r'''
volumes:
  description: One entry per volume.
  returned: always
  type: list
  elements: dict
  contains:
    pvc:
      description: Source PVC.
      type: str
    mechanism:
      description: C(csi-snapshot), C(aws-ebs), C(gce-pd), C(azure-disk) or C(live-read).
      type: str
    reason:
      description: Why that mechanism.
      type: str
    snapshot:
      description: VolumeSnapshot name or cloud snapshot ID (null for a live read).
      type: str
    exposed_pvc:
      description: The PVC agents mount (a temporary one, or the source PVC for a live read).
      type: str
    consistency:
      description: C(application-consistent), C(crash-consistent), or what a live read gives.
      type: str
    size:
      description: Volume size in bytes.
      type: int
  sample: [{pvc: web-data, mechanism: csi-snapshot, reason: "driver csi.example.com has VolumeSnapshotClass standard",
            snapshot: ferry-s1-web-data, exposed_pvc: ferry-s1-web-data-ro, consistency: crash-consistent, size: 1073741824}]
hooks:
  description: Hooks run, with exit codes.
  returned: always
  type: list
  elements: dict
  sample: []
removed:
  description: What O(state=absent) removed.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["/api/v1/namespaces/shop/persistentvolumeclaims/ferry-s1-web-data-ro"]
duration:
  description: Seconds taken.
  returned: always
  type: float
  sample: 2.4
'''

import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.providers import MECHANISMS, cloud_options, providers_of


def run(module):
    params = module.params
    cluster = module.connect()
    snapper = group.AppSnapshot(cluster, params['sync_id'], providers_of(cluster, params['sync_id'], params))
    started = time.monotonic()
    if params['state'] == 'absent':
        record = group.load_record(cluster, params['namespace'], params['sync_id'])
        removed, hook_results = [], []
        if not module.check_mode:
            removed, hook_results = snapper.release([params['namespace']])
            if params['sweep']:
                removed += group.sweep(cluster, [params['namespace']], keep_sync_ids=set(params['keep_sync_ids']) - {params['sync_id']},
                                       providers_for=lambda sync_id: providers_of(cluster, sync_id, params))
        changed = bool(removed) or (module.check_mode and record is not None)
        return {'changed': changed, 'volumes': [], 'hooks': hook_results, 'removed': removed, 'duration': round(time.monotonic() - started, 3)}

    volumes = group.load_volumes(cluster, params['namespace'], params['pvcs'])
    forced = None if params['mechanism'] == 'auto' else params['mechanism']
    plans = snapper.plan(volumes, forced)
    record = group.load_record(cluster, params['namespace'], params['sync_id'])
    if record and {r['source_pvc'] for r in record.get('refs') or []} >= {v.name for v in volumes} and \
            all(r.get('pvc') or not params['expose'] for r in record['refs']):
        # Taken by an earlier run of this sync: report it, take nothing new.
        by_pvc = {r['source_pvc']: r for r in record['refs']}
        results = [dict(p['volume'].summary(), mechanism=p['mechanism'], reason=p['reason'], snapshot=by_pvc[p['volume'].name].get('snapshot'),
                        exposed_pvc=by_pvc[p['volume'].name].get('pvc')) for p in plans]
        return {'changed': False, 'volumes': results, 'hooks': [], 'duration': round(time.monotonic() - started, 3)}
    if module.check_mode:
        results = [dict(p['volume'].summary(), mechanism=p['mechanism'], reason=p['reason'], snapshot=None, exposed_pvc=None) for p in plans]
        return {'changed': True, 'volumes': results, 'hooks': [], 'duration': round(time.monotonic() - started, 3)}
    pods = cluster.get('/api/v1/namespaces/%s/pods' % params['namespace']).get('items') or []
    outcome = snapper.take(plans, pods, timeout=params['wait_timeout'], expose=params['expose'], run_hooks=params['hooks'])
    outcome['changed'] = True
    return outcome


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        sync_id=dict(type='str', required=True),
        namespace=dict(type='str', required=True),
        pvcs=dict(type='list', elements='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        mechanism=dict(type='str', choices=MECHANISMS, default='auto'),
        expose=dict(type='bool', default=True),
        hooks=dict(type='bool', default=True),
        sweep=dict(type='bool', default=False),
        keep_sync_ids=dict(type='list', elements='str', default=[], no_log=False),
        wait_timeout=dict(type='int', default=600),
        **cloud_options()
    ))
    module.run(run)


if __name__ == '__main__':
    main()
