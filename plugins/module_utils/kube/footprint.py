# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry's standing footprint in a managed cluster: one ServiceAccount and a minimal ClusterRole.

``RULES`` is the single list of permissions Ferry's modules use, each with the reason it is
there; the footprint module installs it and ``cluster_info`` checks it.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = 'ferry-system'
DEFAULT_NAME = 'ferry'
CONFIG_MAP = 'ferry-config'
MANAGED_BY = {'app.kubernetes.io/managed-by': 'ferry', 'app.kubernetes.io/part-of': 'ferry'}

READ = ['get', 'list', 'watch']
WRITE = ['create', 'update', 'patch', 'delete']

# (apiGroups, resources, verbs, why)
RULES = [
    ([''], ['namespaces'], READ + ['create', 'delete'],
     'discover namespaces of an app; restore creates missing target namespaces; a drill removes its own namespace'),
    (['*'], ['*'], READ,
     'discovery captures every resource type an app uses, custom resources included'),
    ([''], ['configmaps', 'secrets', 'serviceaccounts', 'services', 'persistentvolumeclaims', 'resourcequotas', 'limitranges'], WRITE,
     'restore recreates the objects of an app'),
    (['apps', 'batch', 'autoscaling', 'policy', 'networking.k8s.io', 'route.openshift.io', 'apps.openshift.io'], ['*'], WRITE,
     'restore recreates workloads, jobs, autoscalers, disruption budgets, ingresses and routes; failover scales them'),
    (['rbac.authorization.k8s.io'], ['roles', 'rolebindings', 'clusterroles', 'clusterrolebindings'], WRITE + ['bind', 'escalate'],
     'restore recreates the RBAC objects of an app (bind/escalate: a role may grant what Ferry itself does not hold)'),
    ([''], ['persistentvolumes'], WRITE,
     'restore of statically provisioned volumes'),
    (['storage.k8s.io'], ['storageclasses', 'csidrivers'], READ,
     'choose the snapshot mechanism per volume and map storage classes'),
    (['snapshot.storage.k8s.io'], ['volumesnapshots', 'volumesnapshotcontents', 'volumesnapshotclasses'], READ + WRITE,
     'take and clean up CSI snapshots of app volumes'),
    (['apiextensions.k8s.io'], ['customresourcedefinitions'], READ + ['create', 'update', 'patch'],
     'restore the CRDs an app\'s custom resources need'),
    ([''], ['pods'], READ + WRITE,
     'run transient agent pods that read snapshots and write target volumes'),
    ([''], ['pods/log', 'events'], ['get', 'list'],
     'explain unhealthy workloads and failed agents in reports'),
    ([''], ['pods/exec'], ['create'],
     'quiesce hooks declared by the app (run a command before and after a snapshot)'),
    (['authorization.k8s.io'], ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], ['create'],
     'check Ferry\'s own permissions before it starts work'),
]

# What cluster_info checks, as (verb, group, resource): a representative of each rule.
PERMISSION_PROBES = [
    ('list', '', 'namespaces'),
    ('list', 'apps', 'deployments'),
    ('create', 'apps', 'deployments'),
    ('create', '', 'secrets'),
    ('create', '', 'persistentvolumeclaims'),
    ('create', 'snapshot.storage.k8s.io', 'volumesnapshots'),
    ('create', '', 'pods'),
    ('delete', '', 'pods'),
    ('get', '', 'pods/log'),
    ('list', 'storage.k8s.io', 'storageclasses'),
    ('create', 'rbac.authorization.k8s.io', 'rolebindings'),
]


def cluster_role(name=DEFAULT_NAME):
    return {
        'apiVersion': 'rbac.authorization.k8s.io/v1',
        'kind': 'ClusterRole',
        'metadata': {'name': name, 'labels': dict(MANAGED_BY)},
        'rules': [{'apiGroups': groups, 'resources': resources, 'verbs': verbs} for groups, resources, verbs, _why in RULES],
    }


def objects(namespace=DEFAULT_NAMESPACE, name=DEFAULT_NAME, agent_image=None):
    """Every object of the footprint, in creation order."""
    labels = dict(MANAGED_BY)
    result = [
        {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace, 'labels': labels}},
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': name, 'namespace': namespace, 'labels': labels}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'kubernetes.io/service-account-token',
         'metadata': {'name': name + '-token', 'namespace': namespace, 'labels': labels,
                      'annotations': {'kubernetes.io/service-account.name': name}}},
        cluster_role(name),
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRoleBinding',
         'metadata': {'name': name, 'labels': labels},
         'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': name},
         'subjects': [{'kind': 'ServiceAccount', 'name': name, 'namespace': namespace}]},
    ]
    if agent_image:
        result.append({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': CONFIG_MAP, 'namespace': namespace, 'labels': labels},
                       'data': {'agent_image': agent_image}})
    return result
