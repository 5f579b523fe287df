"""Plain Kubernetes objects for tests that need no cluster: terse builders with only the fields the code reads."""

API_VERSIONS = {
    'Pod': 'v1', 'Service': 'v1', 'ConfigMap': 'v1', 'Secret': 'v1', 'ServiceAccount': 'v1', 'PersistentVolumeClaim': 'v1',
    'PersistentVolume': 'v1', 'Namespace': 'v1', 'Endpoints': 'v1', 'ReplicationController': 'v1',
    'Deployment': 'apps/v1', 'StatefulSet': 'apps/v1', 'DaemonSet': 'apps/v1', 'ReplicaSet': 'apps/v1', 'ControllerRevision': 'apps/v1',
    'Job': 'batch/v1', 'CronJob': 'batch/v1', 'DeploymentConfig': 'apps.openshift.io/v1', 'Route': 'route.openshift.io/v1',
    'Ingress': 'networking.k8s.io/v1', 'IngressClass': 'networking.k8s.io/v1', 'NetworkPolicy': 'networking.k8s.io/v1',
    'EndpointSlice': 'discovery.k8s.io/v1', 'StorageClass': 'storage.k8s.io/v1', 'PriorityClass': 'scheduling.k8s.io/v1',
    'RuntimeClass': 'node.k8s.io/v1', 'Role': 'rbac.authorization.k8s.io/v1', 'RoleBinding': 'rbac.authorization.k8s.io/v1',
    'ClusterRole': 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding': 'rbac.authorization.k8s.io/v1',
    'HorizontalPodAutoscaler': 'autoscaling/v2', 'PodDisruptionBudget': 'policy/v1',
    'CustomResourceDefinition': 'apiextensions.k8s.io/v1',
}
CLUSTER_SCOPED = {'Namespace', 'PersistentVolume', 'StorageClass', 'PriorityClass', 'RuntimeClass', 'IngressClass', 'ClusterRole',
                  'ClusterRoleBinding', 'CustomResourceDefinition'}


def obj(kind, name, namespace='ns', api_version=None, uid=None, labels=None, annotations=None, owners=None, **fields):
    """An object of ``kind`` (namespace ignored for cluster-scoped kinds); ``fields`` are top-level fields (spec, data...)."""
    meta = {'name': name}
    if namespace and kind not in CLUSTER_SCOPED:
        meta['namespace'] = namespace
    if uid:
        meta['uid'] = uid
    if labels:
        meta['labels'] = dict(labels)
    if annotations:
        meta['annotations'] = dict(annotations)
    if owners:
        meta['ownerReferences'] = list(owners)
    result = {'apiVersion': api_version or API_VERSIONS[kind], 'kind': kind, 'metadata': meta}
    result.update(fields)
    return result


def owner(kind, name, uid, controller=True):
    return {'apiVersion': API_VERSIONS.get(kind, 'v1'), 'kind': kind, 'name': name, 'uid': uid, 'controller': controller}


def pod_spec(*containers, **fields):
    """A pod spec; each container is a name (image ``<name>:1``) or a dict."""
    spec = {'containers': [c if isinstance(c, dict) else {'name': c, 'image': '%s:1' % c} for c in containers or ('app',)]}
    spec.update(fields)
    return spec


def workload(kind, name, namespace='ns', pod_labels=None, spec=None, uid=None, labels=None, annotations=None, owners=None, **spec_fields):
    """A Pod, a CronJob or a templated workload (Deployment, StatefulSet, Job...) running ``spec`` with ``pod_labels``."""
    pod_labels = dict(pod_labels if pod_labels is not None else {'app': name})
    spec = spec if spec is not None else pod_spec(name)
    if kind == 'Pod':
        return obj(kind, name, namespace, uid=uid, labels=dict(pod_labels, **(labels or {})), annotations=annotations, owners=owners,
                   spec=spec)
    template = {'metadata': {'labels': pod_labels}, 'spec': spec}
    if kind == 'CronJob':
        body = dict({'schedule': '0 * * * *', 'jobTemplate': {'spec': {'template': template}}}, **spec_fields)
    else:
        body = dict({'selector': {'matchLabels': dict(pod_labels)}, 'template': template}, **spec_fields)
    return obj(kind, name, namespace, uid=uid, labels=labels, annotations=annotations, owners=owners, spec=body)
