# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order objects are restored in: what others need comes first.

CRDs (then wait until served) -> namespaces -> cluster-scoped dependencies -> RBAC and service
accounts -> configuration -> volumes -> workloads -> Services -> Ingresses and Routes -> the
rest (autoscalers, budgets, policies, custom resources). Objects of one tier do not depend on
each other and are applied in parallel.
"""

from __future__ import annotations

TIERS = [
    ('definitions', {'CustomResourceDefinition'}),
    ('namespaces', {'Namespace'}),
    ('cluster dependencies', {'StorageClass', 'PriorityClass', 'IngressClass', 'RuntimeClass', 'VolumeSnapshotClass', 'CSIDriver'}),
    ('access', {'ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding', 'SecurityContextConstraints'}),
    ('configuration', {'ConfigMap', 'Secret', 'LimitRange', 'ResourceQuota'}),
    ('volumes', {'PersistentVolume', 'PersistentVolumeClaim'}),
    ('workloads', {'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Job', 'CronJob', 'Pod',
                   'DeploymentConfig'}),
    ('services', {'Service', 'Endpoints', 'EndpointSlice'}),
    ('routing', {'Ingress', 'Route'}),
]
REST = 'the rest'
TIER_NAMES = [name for name, kinds in TIERS] + [REST]
_TIER_OF = {kind: index for index, (name, kinds) in enumerate(TIERS) for kind in kinds}


def tier_of(obj):
    """The tier index of an object (its kind decides)."""
    return _TIER_OF.get(obj.get('kind'), len(TIERS))


def in_tiers(items, obj_of=None):
    """``[(tier name, [items])]`` in restore order, empty tiers left out; ``obj_of(item)`` is the object of an item."""
    buckets = [[] for name in TIER_NAMES]
    for item in items:
        buckets[tier_of(obj_of(item) if obj_of else item)].append(item)
    return [(TIER_NAMES[index], bucket) for index, bucket in enumerate(buckets) if bucket]
