# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dependency graph of captured objects.

An edge ``a -> b`` means "capturing a brings b": a Deployment brings the ConfigMaps, Secrets,
PVCs and ServiceAccount its pods use; a PVC brings its PV and StorageClass; an owner brings its
children and a child its owner; a workload brings the Services, HPAs, PDBs and NetworkPolicies
that are about it; a ServiceAccount brings the (Cluster)RoleBindings naming it. Every edge keeps
the reason it exists, so a user can ask why an object was captured.
"""

from __future__ import annotations

from collections import defaultdict, deque

from ansible_collections.ferry.kube.plugins.module_utils.discovery import selectors
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import split_api_version

WORKLOAD_KINDS = {('apps', 'Deployment'), ('apps', 'StatefulSet'), ('apps', 'DaemonSet'), ('apps', 'ReplicaSet'),
                  ('', 'ReplicationController'), ('batch', 'Job'), ('batch', 'CronJob'), ('apps.openshift.io', 'DeploymentConfig'),
                  ('extensions', 'Deployment'), ('extensions', 'DaemonSet'), ('extensions', 'ReplicaSet'), ('', 'Pod')}
HELM_RELEASE_TYPE = 'helm.sh/release.v1'
HELM_RELEASE_ANNOTATION = 'meta.helm.sh/release-name'


def key_of(obj):
    """(group, kind, namespace, name): how the graph names an object."""
    meta = obj.get('metadata') or {}
    return (split_api_version(obj.get('apiVersion') or 'v1')[0], obj.get('kind'), meta.get('namespace') or '', meta.get('name'))


def describe_key(key):
    group, kind, namespace, name = key
    kind_name = '%s.%s' % (kind, group) if group else kind
    return '%s %s/%s' % (kind_name, namespace, name) if namespace else '%s %s' % (kind_name, name)


def pod_spec(obj):
    """The pod spec an object runs (directly, or in its template), else None."""
    spec = obj.get('spec') or {}
    if obj.get('kind') == 'Pod':
        return spec
    if obj.get('kind') == 'CronJob':
        spec = ((spec.get('jobTemplate') or {}).get('spec') or {})
    template = spec.get('template') or {}
    template_spec = template.get('spec') if isinstance(template, dict) else None
    if isinstance(template_spec, dict) and 'containers' in template_spec:
        return template_spec
    return None


def pod_labels(obj):
    """Labels of the pods an object runs."""
    if obj.get('kind') == 'Pod':
        return (obj.get('metadata') or {}).get('labels') or {}
    spec = obj.get('spec') or {}
    if obj.get('kind') == 'CronJob':
        spec = ((spec.get('jobTemplate') or {}).get('spec') or {})
    return (((spec.get('template') or {}).get('metadata') or {}).get('labels')) or {}


def containers(spec):
    for field in ('initContainers', 'containers', 'ephemeralContainers'):
        yield from spec.get(field) or []


def pod_references(spec):
    """(kind, name, reason) of every object a pod spec names."""
    refs = [('ServiceAccount', spec.get('serviceAccountName') or spec.get('serviceAccount') or 'default', 'runs as')]
    for secret in spec.get('imagePullSecrets') or []:
        refs.append(('Secret', secret.get('name'), 'pulls images with'))
    for volume in spec.get('volumes') or []:
        if 'configMap' in volume:
            refs.append(('ConfigMap', volume['configMap'].get('name'), 'mounts'))
        if 'secret' in volume:
            refs.append(('Secret', volume['secret'].get('secretName'), 'mounts'))
        if 'persistentVolumeClaim' in volume:
            refs.append(('PersistentVolumeClaim', volume['persistentVolumeClaim'].get('claimName'), 'mounts'))
        for source in (volume.get('projected') or {}).get('sources') or []:
            if 'configMap' in source:
                refs.append(('ConfigMap', source['configMap'].get('name'), 'mounts'))
            if 'secret' in source:
                refs.append(('Secret', source['secret'].get('name'), 'mounts'))
        for driver in ('csi', 'cephfs', 'rbd', 'flexVolume', 'azureFile', 'iscsi'):
            secret_ref = (volume.get(driver) or {}).get('nodePublishSecretRef') or (volume.get(driver) or {}).get('secretRef')
            if secret_ref and secret_ref.get('name'):
                refs.append(('Secret', secret_ref['name'], 'mounts with'))
        if (volume.get('azureFile') or {}).get('secretName'):
            refs.append(('Secret', volume['azureFile']['secretName'], 'mounts with'))
    for container in containers(spec):
        for source in container.get('envFrom') or []:
            if 'configMapRef' in source:
                refs.append(('ConfigMap', source['configMapRef'].get('name'), 'reads env from'))
            if 'secretRef' in source:
                refs.append(('Secret', source['secretRef'].get('name'), 'reads env from'))
        for env in container.get('env') or []:
            value_from = env.get('valueFrom') or {}
            if 'configMapKeyRef' in value_from:
                refs.append(('ConfigMap', value_from['configMapKeyRef'].get('name'), 'reads env from'))
            if 'secretKeyRef' in value_from:
                refs.append(('Secret', value_from['secretKeyRef'].get('name'), 'reads env from'))
    return [ref for ref in refs if ref[1]]


CORE_GROUPS = {'ConfigMap': '', 'Secret': '', 'ServiceAccount': '', 'PersistentVolumeClaim': '', 'Service': '', 'Endpoints': '',
               'PersistentVolume': '', 'Namespace': '', 'Pod': '', 'StorageClass': 'storage.k8s.io', 'PriorityClass': 'scheduling.k8s.io',
               'RuntimeClass': 'node.k8s.io', 'IngressClass': 'networking.k8s.io', 'Role': 'rbac.authorization.k8s.io',
               'ClusterRole': 'rbac.authorization.k8s.io', 'CustomResourceDefinition': 'apiextensions.k8s.io'}


class Graph:
    """Objects by key, edges "a brings b" with reasons, and references to objects that do not exist."""

    def __init__(self, objects, plurals=None):
        self.plurals = dict(plurals or {})  # (group, kind) -> resource name, from discovery
        self.nodes = {}
        self.brings = defaultdict(dict)   # key -> {key: reason}
        self.missing = []                 # {'from', 'kind', 'name', 'reason'}: named but absent
        self._by_kind = defaultdict(list)  # (kind, namespace) -> [key]
        self._by_uid = {}
        for obj in objects:
            key = key_of(obj)
            if key in self.nodes:
                continue
            self.nodes[key] = obj
            self._by_kind[(key[1], key[2])].append(key)
            uid = (obj.get('metadata') or {}).get('uid')
            if uid:
                self._by_uid[uid] = key
        self._workloads = defaultdict(list)  # namespace -> [(key, pod labels)] of workloads no captured object owns
        for key, obj in self.nodes.items():
            if (key[0], key[1]) in WORKLOAD_KINDS and not self.owner_in_graph(key):
                self._workloads[key[2]].append((key, pod_labels(obj)))
        for key, obj in list(self.nodes.items()):
            self._link(key, obj)

    # -- edges ----------------------------------------------------------------------------------
    def keys_of_kind(self, kind, namespace):
        return self._by_kind.get((kind, namespace)) or []

    def find(self, kind, namespace, name, group=None):
        group = CORE_GROUPS.get(kind, '') if group is None else group
        key = (group, kind, namespace or '', name)
        return key if key in self.nodes else None

    def edge(self, source, target, reason):
        if source is not None and target is not None and target != source:
            self.brings[source].setdefault(target, reason)

    def need(self, source, kind, namespace, name, reason, group=None, optional=False):
        target = self.find(kind, namespace, name, group)
        if target is None:
            if not optional and name:
                self.missing.append({'from': describe_key(source), 'kind': kind, 'namespace': namespace or None, 'name': name, 'reason': reason})
            return None
        self.edge(source, target, reason)
        return target

    def both(self, source, target, reason, back_reason):
        """``source`` needs ``target``, and ``target`` brings ``source`` along (it is about it)."""
        if target is not None:
            self.edge(source, target, reason)
            self.edge(target, source, back_reason)

    def _link(self, key, obj):
        group, kind, namespace, name = key
        meta = obj.get('metadata') or {}
        spec = obj.get('spec') or {}
        if namespace:
            self.need(key, 'Namespace', '', namespace, 'lives in')
        for owner in meta.get('ownerReferences') or []:
            owner_key = self._by_uid.get(owner.get('uid'))
            if owner_key is None:
                owner_key = self.find(owner.get('kind'), namespace, owner.get('name'), split_api_version(owner.get('apiVersion') or 'v1')[0])
            self.both(key, owner_key, 'is owned by', 'owns')
        template = pod_spec(obj)
        if template is not None:
            for ref_kind, ref_name, reason in pod_references(template):
                self.need(key, ref_kind, namespace, ref_name, reason, optional=ref_kind == 'ServiceAccount' and ref_name == 'default')
            if template.get('priorityClassName'):
                self.need(key, 'PriorityClass', '', template['priorityClassName'], 'is scheduled with', optional=True)
            if template.get('runtimeClassName'):
                self.need(key, 'RuntimeClass', '', template['runtimeClassName'], 'runs with')
        if kind == 'StatefulSet':
            for claim in spec.get('volumeClaimTemplates') or []:
                prefix = '%s-%s-' % ((claim.get('metadata') or {}).get('name'), name)
                for pvc in self.keys_of_kind('PersistentVolumeClaim', namespace):
                    if pvc[3].startswith(prefix) and pvc[3][len(prefix):].isdigit():
                        self.both(key, pvc, 'claims', 'is claimed by')
        linker = _LINKERS.get(kind)
        if linker is not None:
            linker(self, key, obj)
        if group and group not in BUILTIN_GROUPS:  # by group only: a custom kind may be called Service (Knative)
            plural = self.plurals.get((group, kind)) or kind.lower() + 's'
            crd = self.find('CustomResourceDefinition', '', '%s.%s' % (plural, group))
            self.edge(key, crd, 'is defined by')
        release = (meta.get('annotations') or {}).get(HELM_RELEASE_ANNOTATION)
        if release and namespace:
            for secret in self._helm_release_secrets(namespace, release):
                self.edge(key, secret, 'is managed by Helm release %s' % release)

    def _helm_release_secrets(self, namespace, release):
        found = []
        for key in self.keys_of_kind('Secret', namespace):
            secret = self.nodes[key]
            labels = (secret.get('metadata') or {}).get('labels') or {}
            if secret.get('type') == HELM_RELEASE_TYPE and labels.get('name') == release and labels.get('owner', 'helm') == 'helm':
                found.append(key)
        return found

    def workloads_selected(self, namespace, selector_map=None, label_selector=None):
        """Top-level workloads in ``namespace`` whose pods a selector picks."""
        found = []
        for key, labels in self._workloads.get(namespace) or []:
            if (selector_map is not None and selectors.map_selects(selector_map, labels)) or \
                    (label_selector is not None and selectors.selects(label_selector, labels)):
                found.append(key)
        return found

    def owner_in_graph(self, key):
        for owner in (self.nodes[key].get('metadata') or {}).get('ownerReferences') or []:
            if owner.get('uid') in self._by_uid:
                return True
        return False

    # -- queries --------------------------------------------------------------------------------
    def closure(self, roots):
        """Every key the roots bring, transitively, with the edge that first reached it."""
        reached = {root: None for root in roots if root in self.nodes}
        queue = deque(reached)
        while queue:
            key = queue.popleft()
            for target, reason in self.brings.get(key, {}).items():
                if target not in reached:
                    reached[target] = (key, reason)
                    queue.append(target)
        return reached


def _link_pvc(graph, key, obj):
    spec = obj.get('spec') or {}
    if spec.get('volumeName'):
        graph.need(key, 'PersistentVolume', '', spec['volumeName'], 'is bound to')
    if spec.get('storageClassName'):
        graph.need(key, 'StorageClass', '', spec['storageClassName'], 'is provisioned by')


def _link_pv(graph, key, obj):
    if (obj.get('spec') or {}).get('storageClassName'):
        graph.need(key, 'StorageClass', '', obj['spec']['storageClassName'], 'is provisioned by')


def _link_service(graph, key, obj):
    spec = obj.get('spec') or {}
    for workload in graph.workloads_selected(key[2], selector_map=spec.get('selector')) if spec.get('selector') else []:
        graph.both(key, workload, 'selects', 'is exposed by')
    graph.edge(key, graph.find('Endpoints', key[2], key[3]), 'has endpoints')
    for slice_key in graph.keys_of_kind('EndpointSlice', key[2]):
        labels = (graph.nodes[slice_key].get('metadata') or {}).get('labels') or {}
        if labels.get('kubernetes.io/service-name') == key[3]:
            graph.edge(key, slice_key, 'has endpoints')


def _ingress_backends(spec):
    backends = [spec.get('defaultBackend') or spec.get('backend')]
    for rule in spec.get('rules') or []:
        for path in (rule.get('http') or {}).get('paths') or []:
            backends.append(path.get('backend'))
    for backend in backends:
        if not backend:
            continue
        name = (backend.get('service') or {}).get('name') or backend.get('serviceName')
        if name:
            yield name


def _link_ingress(graph, key, obj):
    spec = obj.get('spec') or {}
    for name in _ingress_backends(spec):
        graph.both(key, graph.need(key, 'Service', key[2], name, 'routes to'), 'routes to', 'is routed to by')
    for tls in spec.get('tls') or []:
        if tls.get('secretName'):
            graph.need(key, 'Secret', key[2], tls['secretName'], 'serves TLS with')
    if spec.get('ingressClassName'):
        graph.need(key, 'IngressClass', '', spec['ingressClassName'], 'is served by', optional=True)


def _link_route(graph, key, obj):
    spec = obj.get('spec') or {}
    for backend in [spec.get('to')] + list(spec.get('alternateBackends') or []):
        if backend and backend.get('kind', 'Service') == 'Service':
            graph.both(key, graph.need(key, 'Service', key[2], backend.get('name'), 'routes to'), 'routes to', 'is routed to by')


def _link_role_binding(graph, key, obj):
    role = obj.get('roleRef') or {}
    role_namespace = key[2] if role.get('kind') == 'Role' else ''
    graph.need(key, role.get('kind'), role_namespace, role.get('name'), 'grants', optional=role.get('kind') == 'ClusterRole' and not key[2])
    for subject in obj.get('subjects') or []:
        if subject.get('kind') == 'ServiceAccount':
            account = graph.find('ServiceAccount', subject.get('namespace') or key[2], subject.get('name'))
            graph.edge(account, key, 'is granted roles by')


def _link_service_account(graph, key, obj):
    for secret in obj.get('imagePullSecrets') or []:
        graph.need(key, 'Secret', key[2], secret.get('name'), 'pulls images with', optional=True)


def _link_scale_target(graph, key, obj):
    target = (obj.get('spec') or {}).get('scaleTargetRef') or {}
    group = split_api_version(target.get('apiVersion') or '')[0] if target.get('apiVersion') else None
    found = graph.find(target.get('kind'), key[2], target.get('name'), group if group is not None else 'apps')
    graph.both(key, found, 'scales', 'is scaled by')


def _link_pod_selector(back_reason, field):
    # one way only: a workload brings the policies about its pods, but a policy (a default-deny
    # NetworkPolicy selects every pod) must not bring every workload it governs
    def link(graph, key, obj):
        selector = (obj.get('spec') or {}).get(field)
        if selector is None:
            return  # a null selector selects no pods
        for workload in graph.workloads_selected(key[2], label_selector=selector):
            graph.edge(workload, key, back_reason)
    return link


_LINKERS = {
    'PersistentVolumeClaim': _link_pvc,
    'PersistentVolume': _link_pv,
    'Service': _link_service,
    'Ingress': _link_ingress,
    'Route': _link_route,
    'RoleBinding': _link_role_binding,
    'ClusterRoleBinding': _link_role_binding,
    'ServiceAccount': _link_service_account,
    'HorizontalPodAutoscaler': _link_scale_target,
    'PodDisruptionBudget': _link_pod_selector('is protected by', 'selector'),
    'NetworkPolicy': _link_pod_selector('is governed by', 'podSelector'),
}

# API groups the API servers serve themselves; a kind of any other group is a custom resource
# whose CRD comes along (snapshot.storage.k8s.io and config.openshift.io are CRDs, so not here).
BUILTIN_GROUPS = {'', 'apps', 'batch', 'extensions', 'policy', 'autoscaling', 'networking.k8s.io', 'rbac.authorization.k8s.io',
                  'storage.k8s.io', 'scheduling.k8s.io', 'coordination.k8s.io', 'discovery.k8s.io', 'node.k8s.io',
                  'admissionregistration.k8s.io', 'apiextensions.k8s.io', 'certificates.k8s.io', 'flowcontrol.apiserver.k8s.io',
                  'apps.openshift.io', 'route.openshift.io', 'image.openshift.io', 'build.openshift.io',
                  'template.openshift.io', 'security.openshift.io', 'project.openshift.io', 'authorization.openshift.io',
                  'oauth.openshift.io', 'user.openshift.io', 'quota.openshift.io'}
