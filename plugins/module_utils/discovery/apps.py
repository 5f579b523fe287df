# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Group captured objects into apps.

A micro-service is a Service and the workloads it selects, with everything they bring. Services
selecting a common workload (a headless and a client Service of one StatefulSet) make one app; a
workload no Service selects (a worker, a CronJob) is an app of its own. Objects no app brings
(a ConfigMap nobody mounts) stay in the capture and are listed per namespace as unassigned.
"""

from __future__ import annotations

import re

from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import (
    WORKLOAD_KINDS, containers, describe_key, pod_spec)
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import parse_quantity

NAME_LABELS = ('app.kubernetes.io/instance', 'app.kubernetes.io/name', 'app')
IN_TREE_SOURCES = ('awsElasticBlockStore', 'gcePersistentDisk', 'azureDisk', 'azureFile', 'nfs', 'hostPath', 'local')
_DIGEST = re.compile(r'(sha256:[0-9a-f]{64})')


class _Groups:
    """Union-find over keys."""

    def __init__(self):
        self.parent = {}

    def find(self, key):
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, first, second):
        self.parent[self.find(first)] = self.find(second)


def group_apps(graph, captured):
    """Apps of the captured keys: [{'name', 'namespace', 'services', 'workloads', 'objects', 'cluster_objects', 'volumes', 'images'}]."""
    groups = _Groups()
    roots = {}
    for key in sorted(captured):
        if key[1] != 'Service' or not ((graph.nodes[key].get('spec') or {}).get('selector')):
            continue
        selected = [w for w in graph.workloads_selected(key[2], selector_map=graph.nodes[key]['spec']['selector']) if w in captured]
        groups.find(key)
        for workload in selected:
            groups.join(workload, key)
    for key in sorted(captured):
        if (key[0], key[1]) in WORKLOAD_KINDS and not graph.owner_in_graph(key):
            groups.find(key)  # a workload nobody exposes is an app of its own
    for key in list(groups.parent):
        roots.setdefault(groups.find(key), []).append(key)
    apps, taken_names, assigned = [], set(), set()
    for members in sorted(roots.values(), key=sorted):
        reached = {key for key in graph.closure(members) if key in captured}
        assigned |= reached
        namespace = members[0][2]
        name = _unique(_app_name(graph, members), namespace, taken_names)
        namespaced = sorted(key for key in reached if key[2])
        apps.append({
            'name': name,
            'namespace': namespace,
            'services': sorted(key[3] for key in members if key[1] == 'Service'),
            'workloads': sorted('%s/%s' % (key[1], key[3]) for key in members if key[1] != 'Service'),
            'objects': [describe_key(key) for key in namespaced],
            'cluster_objects': [describe_key(key) for key in sorted(key for key in reached if not key[2])],
            'volumes': [volume_of(graph, key) for key in namespaced if key[1] == 'PersistentVolumeClaim'],
            'images': images_of(graph, reached),
        })
    unassigned = {}
    for key in sorted(captured):
        if key[2] and key not in assigned:
            unassigned.setdefault(key[2], []).append(describe_key(key))
    return apps, unassigned


def _app_name(graph, members):
    """The app's own name label when its workloads agree on one, else its first Service or workload."""
    workloads = [key for key in members if key[1] != 'Service']
    for label in NAME_LABELS:
        values = {((graph.nodes[key].get('metadata') or {}).get('labels') or {}).get(label) for key in workloads}
        if len(values) == 1 and None not in values:
            return values.pop()
    services = sorted(key[3] for key in members if key[1] == 'Service')
    return services[0] if services else sorted(key[3] for key in workloads)[0]


def _unique(name, namespace, taken):
    candidate, number = name, 2
    while (namespace, candidate) in taken:
        candidate = '%s-%d' % (name, number)
        number += 1
    taken.add((namespace, candidate))
    return candidate


def volume_of(graph, key):
    pvc = graph.nodes[key]
    spec, status = pvc.get('spec') or {}, pvc.get('status') or {}
    requested = ((spec.get('resources') or {}).get('requests') or {}).get('storage')
    capacity = (status.get('capacity') or {}).get('storage') or requested
    pv = graph.nodes.get(('', 'PersistentVolume', '', spec.get('volumeName'))) if spec.get('volumeName') else None
    driver = None
    if pv is not None:
        pv_spec = pv.get('spec') or {}
        in_tree = [field for field in IN_TREE_SOURCES if field in pv_spec]
        driver = (pv_spec.get('csi') or {}).get('driver') or (in_tree[0] if in_tree else None)
    return {
        'name': key[3], 'namespace': key[2], 'size': capacity, 'bytes': parse_quantity(capacity) if capacity else None,
        'storage_class': spec.get('storageClassName'), 'pv': spec.get('volumeName'), 'access_modes': spec.get('accessModes') or [],
        'volume_mode': spec.get('volumeMode') or 'Filesystem', 'phase': status.get('phase'), 'driver': driver,
    }


def images_of(graph, keys):
    """Container images the objects run, each with the digest a running pod resolved it to when known."""
    images = {}
    for key in keys:
        obj = graph.nodes[key]
        spec = pod_spec(obj)
        if spec is None:
            continue
        by_name = {}
        for container in containers(spec):
            if container.get('image'):
                images.setdefault(container['image'], None)
                by_name[container.get('name')] = container['image']
        status = (obj.get('status') or {}) if obj.get('kind') == 'Pod' else {}
        for state in (status.get('initContainerStatuses') or []) + (status.get('containerStatuses') or []):
            digest = _DIGEST.search(state.get('imageID') or '')
            image = by_name.get(state.get('name'))
            if digest and image and images.get(image) is None:
                images[image] = digest.group(1)
    return [{'image': image, 'digest': digest} for image, digest in sorted(images.items())]
