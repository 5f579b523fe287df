#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: discover
short_description: Capture applications and everything they depend on, grouped into apps
version_added: 0.1.0
description:
  - Lists every namespaced resource type the cluster serves and may list (custom resources included) in the
    selected namespaces, plus the cluster-scoped objects the selection depends on (Namespaces, CRDs of its custom
    resources, PersistentVolumes and StorageClasses of its claims, PriorityClasses, RuntimeClasses, IngressClasses,
    ClusterRoleBindings naming its ServiceAccounts and their ClusterRoles).
  - Builds the dependency graph (owner references; pod templates to ConfigMaps, Secrets, ServiceAccounts, PVCs and
    image pull secrets; PVC to PV to StorageClass; Service to the workloads it selects; Ingress and Route to Service;
    RoleBindings to Roles and ServiceAccounts; HPA, PDB and NetworkPolicy to workloads; Helm release Secrets to the
    objects of the release) and groups it into apps. An app is a Service with the workloads it selects and
    everything they need; a workload no Service selects is an app of its own.
  - With O(label_selector), the selected objects bring what they depend on even when it lacks the labels.
  - With O(pool), writes the capture into a new restore point of the storage pool (metadata C(objects)), which
    M(ferry.kube.restore) reads. With O(dest), writes it to a local JSON file.
  - Events, leases and derived or virtual types (metrics, reviews, image stream tags) are never captured.
    Controller-made objects (ReplicaSets and Pods of workloads, Endpoints of selector Services) are captured so the
    graph is complete, and left out by M(ferry.kube.restore).
author:
  - Ferry developers (@ferry)
options:
  namespaces:
    description: Namespaces to capture, by name or shell pattern (C(shop-*)); C(*) selects all.
    type: list
    elements: str
    required: true
  exclude_namespaces:
    description: Namespaces to leave out, by name or shell pattern.
    type: list
    elements: str
    default: []
  label_selector:
    description:
      - Capture only objects with these labels (C(app=web,tier in (front,api))), and what they depend on.
    type: str
  include_resources:
    description:
      - Only these resource types, named as C(kubectl) names them (C(deployments), C(deploy), C(Deployment), C(deployments.apps)).
    type: list
    elements: str
    default: []
  exclude_resources:
    description: Resource types never to capture, named as for O(include_resources).
    type: list
    elements: str
    default: []
  group:
    description: Restore point group of the new point written to O(pool). Default C(<cluster>/<namespaces>).
    type: str
  tags:
    description: Tags of the new restore point.
    type: dict
    default: {}
  dest:
    description:
      - Also write the capture document (JSON) to this file on the control node, for M(ferry.kube.restore) O(ferry.kube.restore#module:src).
      - The file holds the captured Secrets, so it is created with mode C(0600); the captured objects are never returned in results.
    type: path
  workers:
    description: Resource types listed at the same time.
    type: int
    default: 8
extends_documentation_fragment:
  - ferry.kube.pool
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Discovers and reports; writes neither the restore point nor O(dest).
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: What makes up the shop, and which volumes and images it uses
  ferry.kube.discover:
    cluster: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespaces: [shop]
  register: shop

- name: Its apps
  ansible.builtin.debug:
    msg: "{{ shop.apps | map(attribute='name') | list }}"

- name: Capture every team namespace into the pool as a restore point
  ferry.kube.discover:
    cluster: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespaces: ["team-*"]
    exclude_namespaces: [team-sandbox]
    exclude_resources: [secrets.bitnami.com]
    pool:
      location: s3://dr-backups/objects
      passphrase: "{{ vault_pool_passphrase }}"
    tags: {schedule: nightly}
'''

RETURN = r'''
namespaces:
  description: The namespaces captured.
  returned: always
  type: list
  elements: str
  sample: [shop]
apps:
  description: The apps found, each with its Services, workloads, objects, cluster-scoped dependencies, volumes and images.
  returned: always
  type: list
  elements: dict
  sample: [{name: web, namespace: shop, services: [web], workloads: [Deployment/web],
            objects: ["ConfigMap shop/web-config", "Deployment.apps shop/web", "Service shop/web"],
            cluster_objects: ["Namespace shop", "StorageClass.storage.k8s.io standard"],
            volumes: [{name: data, namespace: shop, size: 5Gi, bytes: 5368709120, storage_class: standard, pv: pvc-1a2b,
                       access_modes: [ReadWriteOnce], volume_mode: Filesystem, phase: Bound, driver: ebs.csi.aws.com}],
            images: [{image: "registry.example.com/shop/web:1.4", digest: "sha256:4f5e..."}]}]
unassigned:
  description: Per namespace, captured objects that no app brings (they are restored with their namespace).
  returned: always
  type: dict
  sample: {shop: ["ConfigMap shop/feature-flags"]}
images:
  description: Every container image the captured apps run, with the digest a running pod resolved it to when known.
  returned: always
  type: list
  elements: dict
  sample: [{image: "registry.example.com/shop/web:1.4", digest: "sha256:4f5e..."}]
counts:
  description: Captured objects per kind.
  returned: always
  type: dict
  sample: {Deployment.apps: 3, ConfigMap: 7, Namespace: 1}
objects:
  description: Number of captured objects.
  returned: always
  type: int
  sample: 81
missing:
  description: Objects the captured ones name but that do not exist (a Deployment mounting a Secret nobody created).
  returned: always
  type: list
  elements: dict
  sample: [{from: "Deployment.apps shop/web", kind: Secret, namespace: shop, name: web-tls, reason: mounts}]
warnings:
  description: Resource types that could not be listed (for example forbidden to Ferry's account), so not captured.
  returned: always
  type: list
  elements: str
resource_types:
  description: Number of namespaced resource types listed.
  returned: always
  type: int
seconds:
  description: How long discovery took.
  returned: always
  type: float
point:
  description: The restore point written, when O(pool) is given and not in check mode.
  returned: when written
  type: dict
  sample: {id: 20261201T020000Z-1a2b3c4d, group: prod/shop, metadata: {objects: 81234}}
dest:
  description: The file written, when O(dest) is given and not in check mode.
  returned: when written
  type: str
'''

import json
import os
import tempfile

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import METADATA_NAME, Capture, document_bytes
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options


def run(module):
    params = module.params
    cluster = module.connect()
    selection = Selection(params['namespaces'], params['exclude_namespaces'], params['label_selector'],
                          params['include_resources'], params['exclude_resources'])
    document = Capture(cluster, selection, workers=params['workers']).run()
    result = summary(document)
    changed = False
    if params['pool'] and not module.check_mode:
        result['point'] = write_point(module, params, document)
        changed = True
    if params['dest'] and not module.check_mode:
        changed = write_file(params['dest'], document) or changed
        result['dest'] = params['dest']
    result['changed'] = changed
    return result


def summary(document):
    counts = {}
    for obj in document['objects']:
        group = (obj.get('apiVersion') or 'v1').rpartition('/')[0]
        kind = '%s.%s' % (obj['kind'], group) if group else obj['kind']
        counts[kind] = counts.get(kind, 0) + 1
    images = {}
    for app in document['apps']:
        for image in app['images']:
            images[image['image']] = images.get(image['image']) or image['digest']
    return {'namespaces': document['selection']['namespaces'], 'apps': document['apps'], 'unassigned': document['unassigned'],
            'images': [{'image': image, 'digest': digest} for image, digest in sorted(images.items())],
            'counts': counts, 'objects': len(document['objects']), 'missing': document['missing'], 'warnings': document['warnings'],
            'resource_types': document['resource_types'], 'seconds': document['seconds']}


def write_point(module, params, document):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.pool.engine import describe_point  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError  # pylint: disable=import-outside-toplevel
    pool = pool_options.open_pool(module, params['pool'])
    group = params['group'] or '%s/%s' % (document['cluster']['name'], '+'.join(document['selection']['namespaces'])[:200])
    try:
        point = Backup(pool, {}, group=group, tags=params['tags'], metadata={METADATA_NAME: document_bytes(document)}).run()
    except PoolError as exc:
        raise FerryError(str(exc)) from None
    finally:
        pool.close()
    return describe_point(point)


def write_file(path, document):
    """Write atomically; False when the file already holds the same capture (apart from its time)."""
    data = json.dumps(document, indent=1, sort_keys=True)
    try:
        with open(path) as handle:
            old = json.load(handle)
        if dict(old, time=None, seconds=None) == json.loads(json.dumps(dict(document, time=None, seconds=None))):
            return False
    except (OSError, ValueError):
        pass
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FerryError('dest %s: directory %s does not exist' % (path, directory))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix='.ferry-capture-')
    with os.fdopen(handle, 'w') as out:
        out.write(data)
    os.replace(temporary, path)
    return True


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        namespaces=dict(type='list', elements='str', required=True),
        exclude_namespaces=dict(type='list', elements='str', default=[]),
        label_selector=dict(type='str'),
        include_resources=dict(type='list', elements='str', default=[]),
        exclude_resources=dict(type='list', elements='str', default=[]),
        pool=pool_options.pool_option(),
        group=dict(type='str'),
        tags=dict(type='dict', default={}),
        dest=dict(type='path'),
        workers=dict(type='int', default=8),
    ))
    module.run(run)


if __name__ == '__main__':
    main()
