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
  namespace_mapping:
    description: Source namespace to target namespace.
    type: dict
    default: {}
  storage_class_mapping:
    description: Source storage class to target storage class. A mapped StorageClass itself is not restored.
    type: dict
    default: {}
  image_rewrites:
    description:
      - Registry or repository prefixes to rewrite in container images, longest match first, for example the
        RV(ferry.kube.registry_sync#module:rewrites) of a registry sync.
    type: list
    elements: dict
    default: []
    suboptions:
      from:
        description: Source prefix (C(docker.io/library), C(registry.example.com/team)).
        type: str
        required: true
      to:
        description: Replacement prefix.
        type: str
        required: true
  image_digests:
    description: Source image reference to digest; rewritten images are pinned by digest where known.
    type: dict
    default: {}
  replicas:
    description:
      - Set every Deployment, StatefulSet, ReplicaSet and DeploymentConfig to this many replicas. The original count is
        kept in the annotation C(ferry.dev/original-replicas). V(0) keeps a DR copy hydrated but idle.
    type: int
  suspend_cron_jobs:
    description: Suspend CronJobs (the original setting kept in C(ferry.dev/original-suspend)). Default is true when O(replicas=0).
    type: bool
  add_labels:
    description: Labels added to every restored object.
    type: dict
    default: {}
  add_annotations:
    description: Annotations added to every restored object.
    type: dict
    default: {}
  patches:
    description: Patches applied to the objects their target selects, after the other transforms.
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description: Which objects; every given field must match.
        type: dict
        default: {}
        suboptions:
          kind:
            description: Kind.
            type: str
          group:
            description: API group (empty for the core group).
            type: str
          name:
            description: Name or shell pattern.
            type: str
          namespace:
            description: Namespace (after O(namespace_mapping)) or shell pattern.
            type: str
          label_selector:
            description: Label selector.
            type: str
          jmespath:
            description: JMESPath expression evaluated on the object; the object is targeted when it is truthy.
            type: str
      json_patch:
        description: RFC 6902 operations.
        type: list
        elements: dict
      merge_patch:
        description: RFC 7386 merge patch.
        type: dict
  existing:
    description:
      - What to do with objects that exist on the target and differ. V(skip) leaves them; V(update) merges three-way
        (fields Ferry set before and no longer wants are removed, fields others set are kept); V(replace) replaces them,
        deleting and recreating when an immutable field differs.
    type: str
    choices: [skip, update, replace]
    default: update
  restore_pvs:
    description:
      - V(static) restores statically provisioned PersistentVolumes only (dynamically provisioned ones are provisioned
        anew by their claims); V(all) restores every captured PV; V(none) none.
    type: str
    choices: [static, all, none]
    default: static
  validate:
    description: Validate health after the restore (not in check mode).
    type: bool
    default: true
  validate_timeout:
    description: Seconds to wait for the restored objects to become healthy.
    type: int
    default: 300
  fail_on_unhealthy:
    description: Fail when validation finds an unhealthy object or probe.
    type: bool
    default: true
  probes:
    description:
      - Checks run once the objects are healthy. Each has a C(name) and either C(http_get) (C(url), C(expected_status),
        C(contains), C(timeout), C(validate_certs), C(ca_file), C(headers)) or C(exec) (C(namespace), C(pod) or
        C(selector), C(container), C(command), C(expected_rc)).
      - Not logged, as headers may carry credentials.
    type: list
    elements: dict
    default: []
  workers:
    description: Objects of one tier applied at the same time.
    type: int
    default: 8
extends_documentation_fragment:
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
seconds:
  description: How long applying took.
  returned: always
  type: float
'''

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import METADATA_NAME, load_document
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.restore.engine import Restore, Selection
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import Transforms

PATCH_TARGET = dict(kind=dict(type='str'), group=dict(type='str'), name=dict(type='str'), namespace=dict(type='str'),
                    label_selector=dict(type='str'), jmespath=dict(type='str'))


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
    transforms = Transforms(params['namespace_mapping'], params['storage_class_mapping'], params['image_rewrites'], params['image_digests'],
                            params['replicas'], params['suspend_cron_jobs'], params['add_labels'], params['add_annotations'], params['patches'])
    selection = Selection(params['namespaces'], params['apps'], params['include_kinds'], params['exclude_kinds'])
    cluster = module.connect()
    result = Restore(cluster, capture, transforms, selection, existing=params['existing'], dry_run=module.check_mode,
                     restore_pvs=params['restore_pvs'], workers=params['workers'], diff=module.diff_mode).run()
    diff = result.pop('diff')
    if module.diff_mode:
        result['diff'] = diff
    if point is not None:
        result['point'] = point
    if result['failures']:
        named = '; '.join('%s %s/%s: %s' % (e['kind'], e['namespace'] or '', e['name'], e['reason']) for e in result['failures'][:20])
        raise FerryError('%d of %d objects failed to restore: %s' % (len(result['failures']), len(result['objects']), named), **result)
    if params['validate'] and not module.check_mode:
        result['health'] = validate_health(cluster, result['objects'], params)
        if params['fail_on_unhealthy'] and not result['health']['healthy']:
            unhealthy = '; '.join('%s %s/%s: %s' % (u['kind'], u['namespace'] or '', u['name'], u['reason']) for u in result['health']['unhealthy'][:20])
            probes = '; '.join('probe %s: %s' % (p['name'], p['reason']) for p in result['health']['probes'] if not p['healthy'])
            raise FerryError('restored, but not healthy: %s' % '; '.join(part for part in (unhealthy, probes) if part), **result)
    return result


def validate_health(cluster, entries, params):
    from ansible_collections.ferry.kube.plugins.module_utils.restore.health import validate  # pylint: disable=import-outside-toplevel
    restored = [{'apiVersion': e['api_version'], 'kind': e['kind'], 'metadata': {'name': e['name'], 'namespace': e['namespace']}}
                for e in entries if e['action'] in ('created', 'updated', 'replaced', 'unchanged', 'relinked')]
    return validate(cluster, restored, timeout=params['validate_timeout'], probes=params['probes'])


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        pool=pool_options.pool_option(),
        point=dict(type='str', default='latest'),
        group=dict(type='str'),
        src=dict(type='path'),
        namespaces=dict(type='list', elements='str', default=[]),
        apps=dict(type='list', elements='str', default=[]),
        include_kinds=dict(type='list', elements='str', default=[]),
        exclude_kinds=dict(type='list', elements='str', default=[]),
        namespace_mapping=dict(type='dict', default={}),
        storage_class_mapping=dict(type='dict', default={}),
        image_rewrites=dict(type='list', elements='dict', default=[], options={'from': dict(type='str', required=True), 'to': dict(type='str', required=True)}),
        image_digests=dict(type='dict', default={}),
        replicas=dict(type='int'),
        suspend_cron_jobs=dict(type='bool'),
        add_labels=dict(type='dict', default={}),
        add_annotations=dict(type='dict', default={}),
        patches=dict(type='list', elements='dict', default=[], options=dict(
            target=dict(type='dict', default={}, options=PATCH_TARGET),
            json_patch=dict(type='list', elements='dict'),
            merge_patch=dict(type='dict'),
        )),
        existing=dict(type='str', choices=['skip', 'update', 'replace'], default='update'),
        restore_pvs=dict(type='str', choices=['static', 'all', 'none'], default='static'),
        validate=dict(type='bool', default=True),
        validate_timeout=dict(type='int', default=300),
        fail_on_unhealthy=dict(type='bool', default=True),
        probes=dict(type='list', elements='dict', default=[], no_log=True),  # headers may carry credentials
        workers=dict(type='int', default=8),
    ), required_one_of=[['pool', 'src']], mutually_exclusive=[['pool', 'src']])
    module.run(run)


if __name__ == '__main__':
    main()
