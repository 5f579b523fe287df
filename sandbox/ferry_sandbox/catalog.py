"""The resource types a sandbox cluster serves, as data: one row per resource.

Each row: group, versions (storage version first), resource, kind, namespaced, short names,
subresources. ``served(profile)`` filters by the Kubernetes version profile and extra API groups
(OpenShift), so a "1.21-like" cluster still serves the beta APIs a current one does not.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple
    resource: str
    kind: str
    namespaced: bool = True
    short_names: tuple = ()
    subresources: tuple = ()
    categories: tuple = ()
    # Kubernetes minor versions serving this row: [since, until) with None for open ends.
    since: int = None
    until: int = None
    extra_group: str = None  # served only when this extra API set is enabled (e.g. 'openshift')
    singular: str = field(default='')
    verbs: tuple = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')

    @property
    def storage_version(self):
        return self.versions[0]

    @property
    def key(self):
        return (self.group, self.resource)

    def group_version(self, version):
        return '%s/%s' % (self.group, version) if self.group else version


def _r(group, versions, resource, kind, namespaced=True, short=(), sub=('status',), cats=(), since=None, until=None, extra=None, verbs=None):
    kwargs = {}
    if verbs is not None:
        kwargs['verbs'] = verbs
    return ResourceType(group, tuple(versions), resource, kind, namespaced, tuple(short), tuple(sub), tuple(cats), since, until, extra,
                        singular=kind.lower(), **kwargs)


ALL = ('all',)
CATALOG = [
    # core/v1
    _r('', ['v1'], 'namespaces', 'Namespace', False, ['ns'], ['status', 'finalize'], verbs=('create', 'delete', 'get', 'list', 'patch', 'update', 'watch')),
    _r('', ['v1'], 'nodes', 'Node', False, ['no'], ['status']),
    _r('', ['v1'], 'pods', 'Pod', True, ['po'], ['status', 'log', 'exec', 'eviction'], ALL),
    _r('', ['v1'], 'services', 'Service', True, ['svc'], ['status'], ALL),
    _r('', ['v1'], 'endpoints', 'Endpoints', True, ['ep'], ()),
    _r('', ['v1'], 'configmaps', 'ConfigMap', True, ['cm'], ()),
    _r('', ['v1'], 'secrets', 'Secret', True, (), ()),
    _r('', ['v1'], 'serviceaccounts', 'ServiceAccount', True, ['sa'], ['token']),
    _r('', ['v1'], 'persistentvolumeclaims', 'PersistentVolumeClaim', True, ['pvc'], ['status']),
    _r('', ['v1'], 'persistentvolumes', 'PersistentVolume', False, ['pv'], ['status']),
    _r('', ['v1'], 'events', 'Event', True, ['ev'], ()),
    _r('', ['v1'], 'resourcequotas', 'ResourceQuota', True, ['quota'], ['status']),
    _r('', ['v1'], 'limitranges', 'LimitRange', True, ['limits'], ()),
    _r('', ['v1'], 'replicationcontrollers', 'ReplicationController', True, ['rc'], ['status', 'scale'], ALL),
    # apps
    _r('apps', ['v1'], 'deployments', 'Deployment', True, ['deploy'], ['status', 'scale'], ALL),
    _r('apps', ['v1'], 'replicasets', 'ReplicaSet', True, ['rs'], ['status', 'scale'], ALL),
    _r('apps', ['v1'], 'statefulsets', 'StatefulSet', True, ['sts'], ['status', 'scale'], ALL),
    _r('apps', ['v1'], 'daemonsets', 'DaemonSet', True, ['ds'], ['status'], ALL),
    _r('apps', ['v1'], 'controllerrevisions', 'ControllerRevision', True, (), ()),
    # batch
    _r('batch', ['v1'], 'jobs', 'Job', True, (), ['status'], ALL),
    _r('batch', ['v1', 'v1beta1'], 'cronjobs', 'CronJob', True, ['cj'], ['status'], ALL),
    # networking
    _r('networking.k8s.io', ['v1', 'v1beta1'], 'ingresses', 'Ingress', True, ['ing'], ['status']),
    _r('networking.k8s.io', ['v1'], 'networkpolicies', 'NetworkPolicy', True, ['netpol'], ()),
    _r('networking.k8s.io', ['v1'], 'ingressclasses', 'IngressClass', False, (), ()),
    _r('extensions', ['v1beta1'], 'ingresses', 'Ingress', True, ['ing'], ['status'], until=21),
    # rbac
    _r('rbac.authorization.k8s.io', ['v1'], 'roles', 'Role', True, (), ()),
    _r('rbac.authorization.k8s.io', ['v1'], 'rolebindings', 'RoleBinding', True, (), ()),
    _r('rbac.authorization.k8s.io', ['v1'], 'clusterroles', 'ClusterRole', False, (), ()),
    _r('rbac.authorization.k8s.io', ['v1'], 'clusterrolebindings', 'ClusterRoleBinding', False, (), ()),
    # storage
    _r('storage.k8s.io', ['v1'], 'storageclasses', 'StorageClass', False, ['sc'], ()),
    _r('storage.k8s.io', ['v1'], 'csidrivers', 'CSIDriver', False, (), ()),
    _r('snapshot.storage.k8s.io', ['v1'], 'volumesnapshots', 'VolumeSnapshot', True, ['vs'], ['status']),
    _r('snapshot.storage.k8s.io', ['v1'], 'volumesnapshotcontents', 'VolumeSnapshotContent', False, ['vsc'], ['status']),
    _r('snapshot.storage.k8s.io', ['v1'], 'volumesnapshotclasses', 'VolumeSnapshotClass', False, ['vsclass'], ()),
    # policy, autoscaling, scheduling, coordination
    _r('policy', ['v1', 'v1beta1'], 'poddisruptionbudgets', 'PodDisruptionBudget', True, ['pdb'], ['status']),
    _r('autoscaling', ['v2', 'v1', 'v2beta2', 'v2beta1'], 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', True, ['hpa'], ['status'], ALL),
    _r('scheduling.k8s.io', ['v1'], 'priorityclasses', 'PriorityClass', False, ['pc'], ()),
    _r('coordination.k8s.io', ['v1'], 'leases', 'Lease', True, (), ()),
    _r('discovery.k8s.io', ['v1'], 'endpointslices', 'EndpointSlice', True, (), ()),
    # apiextensions
    _r('apiextensions.k8s.io', ['v1'], 'customresourcedefinitions', 'CustomResourceDefinition', False, ['crd', 'crds'], ['status']),
    # authorization / authentication (create-only review APIs)
    _r('authorization.k8s.io', ['v1'], 'selfsubjectaccessreviews', 'SelfSubjectAccessReview', False, (), (), verbs=('create',)),
    _r('authorization.k8s.io', ['v1'], 'selfsubjectrulesreviews', 'SelfSubjectRulesReview', False, (), (), verbs=('create',)),
    _r('authentication.k8s.io', ['v1'], 'tokenreviews', 'TokenReview', False, (), (), verbs=('create',)),
    # OpenShift
    _r('route.openshift.io', ['v1'], 'routes', 'Route', True, (), ['status'], ALL, extra='openshift'),
    _r('apps.openshift.io', ['v1'], 'deploymentconfigs', 'DeploymentConfig', True, ['dc'], ['status', 'scale'], ALL, extra='openshift'),
    _r('project.openshift.io', ['v1'], 'projects', 'Project', False, (), (), extra='openshift'),
    _r('security.openshift.io', ['v1'], 'securitycontextconstraints', 'SecurityContextConstraints', False, ['scc'], (), extra='openshift'),
    _r('config.openshift.io', ['v1'], 'clusterversions', 'ClusterVersion', False, (), ['status'], extra='openshift'),
]

# Versions of a multi-version row that a profile no longer serves: (group, resource, version) -> last minor serving it.
VERSION_UNTIL = {
    ('batch', 'cronjobs', 'v1beta1'): 24,
    ('networking.k8s.io', 'ingresses', 'v1beta1'): 21,
    ('policy', 'poddisruptionbudgets', 'v1beta1'): 24,
    ('autoscaling', 'horizontalpodautoscalers', 'v2beta1'): 24,
    ('autoscaling', 'horizontalpodautoscalers', 'v2beta2'): 25,
}
# Versions introduced late: (group, resource, version) -> first minor serving it.
VERSION_SINCE = {
    ('batch', 'cronjobs', 'v1'): 21,
    ('policy', 'poddisruptionbudgets', 'v1'): 21,
    ('autoscaling', 'horizontalpodautoscalers', 'v2'): 23,
}


def served_versions(row, minor):
    """Versions of ``row`` a cluster of Kubernetes 1.<minor> serves (storage version first)."""
    versions = []
    for version in row.versions:
        until = VERSION_UNTIL.get((row.group, row.resource, version))
        since = VERSION_SINCE.get((row.group, row.resource, version))
        if until is not None and minor > until:
            continue
        if since is not None and minor < since:
            continue
        versions.append(version)
    return versions


def served(minor, extras=()):
    """(row, [versions]) pairs a cluster with this profile serves."""
    result = []
    for row in CATALOG:
        if row.extra_group and row.extra_group not in extras:
            continue
        if row.since is not None and minor < row.since:
            continue
        if row.until is not None and minor > row.until:
            continue
        versions = served_versions(row, minor)
        if versions:
            result.append((row, versions))
    return result
