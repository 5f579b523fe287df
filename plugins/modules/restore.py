#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: restore
short_description: Restore captured application objects onto a cluster, transformed, converted and validated
version_added: 0.1.0
description:
  - Reads a capture made by M(ferry.kube.discover) from a restore point of a storage pool (O(pool), O(point)) or a
    capture file (O(src)), and recreates its objects on O(cluster).
  - Sanitises each object (uid, resourceVersion, managedFields, generation, status, creation time, cluster IPs,
    auto-assigned node ports, node names, claim binding and selected-node annotations) and leaves out what the target
    makes itself (ReplicaSets and Pods of workloads, Jobs of CronJobs, Endpoints of selector Services, service-account
    token Secrets, dynamically provisioned PersistentVolumes). Owner references are re-established where the owner is
    restored too.
  - Transforms in this order, namespaces (also RoleBinding subjects, PV claim references and NetworkPolicy namespace
    selectors), storage classes, image registries, replicas, labels and annotations, then O(patches).
  - Converts objects whose API version the target no longer serves (or does not serve yet) using the target's
    discovery, and OpenShift DeploymentConfigs and Routes to Deployments and Ingresses on other clusters. What
    cannot be converted is listed in RV(unconvertible) with the reason, never dropped silently.
  - Applies in order, CRDs (then waits until they are served), Namespaces, cluster-scoped dependencies, RBAC and
    ServiceAccounts, ConfigMaps and Secrets, volumes, workloads, Services, Ingresses and Routes, then the rest; the
    objects of one tier in parallel. A failed object does not stop the others; every failure is named with its reason.
  - Then validates health (rollouts ready, PVCs bound, Services with endpoints, Jobs complete, user O(probes)).
  - Running the same restore twice changes nothing the second time.
author:
  - Ferry developers (@ferry)
options:
  point:
    description: Restore point to read from O(pool), by id, unique id prefix or V(latest) (within O(group) when given).
    type: str
    default: latest
  group:
    description: Restore point group that O(point) is looked up in.
    type: str
  src:
    description: A capture file written by M(ferry.kube.discover) with O(ferry.kube.discover#module:dest).
    type: path
  namespaces:
    description: Only these source namespaces (and cluster-scoped objects). Default is all the capture holds.
    type: list
    elements: str
    default: []
  apps:
    description: Only these apps (names as M(ferry.kube.discover) returned them) and what they depend on.
    type: list
    elements: str
    default: []
  include_kinds:
    description: Only objects of these kinds (C(Deployment), C(ConfigMap), ...).
    type: list
    elements: str
    default: []
  exclude_kinds:
    description: Never objects of these kinds.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) restores. V(absent) removes what a restore of the same capture made, by deleting its namespaces
        (after O(namespace_mapping)) and waiting until they are gone, for example to tear a drill down.
        Cluster-scoped objects (CRDs, StorageClasses, ClusterRoles) are left, as other copies may use them.
    type: str
    choices: [present, absent]
    default: present
  workers:
    description: Objects of one tier applied at the same time.
    type: int
    default: 8
extends_documentation_fragment:
  - ferry.kube.restore
  - ferry.kube.pool
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: The API server validates every object with a dry run; objects in namespaces the restore would create are reported without it.
  diff_mode:
    support: full
    details: Shows each object that would change, Secret values hidden.
'''

EXAMPLES = r'''
- name: Restore the shop's latest restore point into the DR cluster, as a standby
  ferry.kube.restore:
    cluster: {kubeconfig: /etc/ferry/clusters/dr.kubeconfig}
    pool:
      location: s3://dr-backups/objects
      passphrase: "{{ vault_pool_passphrase }}"
    group: prod/shop
    replicas: 0
    storage_class_mapping: {gp3: managed-csi}
    image_rewrites:
      - {from: registry.prod.example.com, to: registry.dr.example.com}
    validate: true

- name: Migrate one app into a new namespace with a patch
  ferry.kube.restore:
    cluster: {kubeconfig: /etc/ferry/clusters/new.kubeconfig}
    src: /var/lib/ferry/captures/shop.json
    apps: [storefront]
    namespace_mapping: {shop: shop-v2}
    patches:
      - target: {kind: Ingress}
        json_patch:
          - {op: replace, path: /spec/rules/0/host, value: shop-v2.example.com}
      - target: {jmespath: "kind == 'Deployment' && spec.template.spec.containers[0].resources == null"}
        merge_patch: {spec: {template: {spec: {containers: [{name: web, resources: {requests: {cpu: 100m}}}]}}}}
    probes:
      - name: storefront answers
        http_get: {url: "https://shop-v2.example.com/healthz", expected_status: [200]}
'''

RETURN = r'''
objects:
  description:
    - Every captured object and what happened to it, with the reason.
    - C(action) is one of created, updated, replaced, unchanged, relinked, skipped, excluded, unconvertible, failed.
  returned: always
  type: list
  elements: dict
  sample: [{kind: Deployment, api_version: apps/v1, namespace: shop, name: web, action: created, reason: did not exist},
           {kind: Ingress, api_version: networking.k8s.io/v1, namespace: shop, name: web, action: created, reason: did not exist,
            converted_from: extensions/v1beta1 Ingress, notes: ["pathType set to ImplementationSpecific"]}]
counts:
  description: Objects per action.
  returned: always
  type: dict
  sample: {created: 41, excluded: 12, unchanged: 3}
failures:
  description: The objects that failed, each with the API's reason.
  returned: always
  type: list
  elements: dict
unconvertible:
  description: Objects the target does not serve and Ferry cannot convert, each with why and what to do.
  returned: always
  type: list
  elements: dict
health:
  description: The health report (healthy, summary, objects, unhealthy with details from pods, events and logs, probes).
  returned: when validated
  type: dict
  sample: {healthy: false, summary: "11 of 12 objects healthy", unhealthy: [{kind: Deployment, namespace: shop, name: web,
           reason: "1/2 replicas available", details: ["pod web-5d9c-x2: container web waiting: CrashLoopBackOff"]}]}
point:
  description: The restore point read, when O(pool) is given.
  returned: when O(pool) is given
  type: dict
removed_namespaces:
  description: With O(state=absent), the namespaces deleted.
  returned: when O(state=absent)
  type: list
  elements: str
seconds:
  description: How long applying took.
  returned: always
  type: float
'''

import time

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import METADATA_NAME, load_document
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import delete_object, get_object
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.restore import options as restore_options
from ansible_collections.ferry.kube.plugins.module_utils.restore.engine import Restore, Selection


def load_capture(module):
    params = module.params
    point = None
    if params['pool']:
        from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import read_metadata  # pylint: disable=import-outside-toplevel
        from ansible_collections.ferry.kube.plugins.module_utils.pool.engine import describe_point  # pylint: disable=import-outside-toplevel
        from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError  # pylint: disable=import-outside-toplevel
        pool = pool_options.open_pool(module, params['pool'])
        try:
            record = pool.resolve_point(params['point'], params['group'])
            data = read_metadata(pool, record, METADATA_NAME)
            point = describe_point(record)
        except PoolError as exc:
            raise FerryError('%s (restore points with objects are written by ferry.kube.discover or ferry.kube.sync)' % exc) from None
        finally:
            pool.close()
        where = 'restore point %s' % point['id']
    else:
        try:
            with open(params['src'], 'rb') as handle:
                data = handle.read()
        except OSError as exc:
            raise FerryError('src %s cannot be read: %s' % (params['src'], exc.strerror)) from None
        where = params['src']
    try:
        return load_document(data), point
    except ValueError as exc:
        raise FerryError('%s does not hold a capture: %s' % (where, exc)) from None


def run(module):
    params = module.params
    capture, point = load_capture(module)
    if params['state'] == 'absent':
        return remove(module, capture)
    transforms = restore_options.transforms_of(params)
    selection = Selection(params['namespaces'], params['apps'], params['include_kinds'], params['exclude_kinds'])
    cluster = module.connect()
    result = Restore(cluster, capture, transforms, selection, existing=params['existing'], dry_run=module.check_mode,
                     restore_pvs=params['restore_pvs'], workers=params['workers'], diff=module.diff_mode).run()
    diff = result.pop('diff')
    if module.diff_mode:
        result['diff'] = diff
    if point is not None:
        result['point'] = point
    restore_options.raise_failures(result)
    if not module.check_mode:
        restore_options.validate_after(cluster, result, params)
    return result


def remove(module, capture):
    """Delete the namespaces a restore of ``capture`` made (mapped), and wait until they are gone."""
    params = module.params
    transforms = restore_options.transforms_of(params)
    wanted = set(params['namespaces'])
    names = sorted({transforms.target_namespace(o['metadata']['name']) for o in capture['objects']
                    if o['kind'] == 'Namespace' and (not wanted or o['metadata']['name'] in wanted)})
    cluster = module.connect()
    removed = [name for name in names if get_object(cluster, 'v1', 'Namespace', name) is not None]
    for name in removed:
        delete_object(cluster, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}, dry_run=module.check_mode)
    deadline = time.monotonic() + params['validate_timeout']
    while not module.check_mode and any(get_object(cluster, 'v1', 'Namespace', name) is not None for name in removed):
        if time.monotonic() > deadline:
            raise FerryError('namespaces %s are still terminating after %d s (finalizers of their objects?)' % (', '.join(removed), params['validate_timeout']))
        time.sleep(0.5)
    return {'changed': bool(removed), 'removed_namespaces': removed}


def main():
    spec = dict(
        cluster=cluster_option(),
        pool=pool_options.pool_option(),
        point=dict(type='str', default='latest'),
        group=dict(type='str'),
        src=dict(type='path'),
        namespaces=dict(type='list', elements='str', default=[]),
        apps=dict(type='list', elements='str', default=[]),
        include_kinds=dict(type='list', elements='str', default=[]),
        exclude_kinds=dict(type='list', elements='str', default=[]),
        workers=dict(type='int', default=8),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    spec.update(restore_options.argument_spec())
    module = FerryModule(argument_spec=spec, required_one_of=[['pool', 'src']], mutually_exclusive=[['pool', 'src']])
    module.run(run)


if __name__ == '__main__':
    main()
