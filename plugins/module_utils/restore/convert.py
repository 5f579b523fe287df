# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""API-version conversion of captured objects for the cluster they are restored to.

``convert(obj, target, find)`` returns the object(s) to apply on a target whose discovery is
``target`` (a ``TargetApis``):

1. served as-is: the object itself, untouched;
2. a known conversion (``RULES``: (group, kind) -> source version -> candidate targets, first
   one the target serves wins), which may change the schema, the group or even the kind
   (DeploymentConfig -> Deployment, Route -> Ingress plus a TLS Secret);
3. a version of the same group and kind with an identical schema (``SAME_SCHEMA``): only
   ``apiVersion`` is rewritten;
4. otherwise unconvertible, with a reason naming the object, what the target lacks and what to do.

Anything lossy, or a default that changed between versions and had to be made explicit, is
reported in ``Conversion.notes``. The input object is never modified.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import Optional

MAX_INT32 = 2147483647

# A target serving any of these is OpenShift (unless told otherwise).
OPENSHIFT_MARKER_GROUPS = frozenset(('route.openshift.io', 'apps.openshift.io', 'project.openshift.io'))

# OpenShift 3 served its own types in the core group (/oapi/v1, apiVersion "v1").
LEGACY_OPENSHIFT_KINDS = {
    'DeploymentConfig': 'apps.openshift.io', 'Route': 'route.openshift.io', 'Project': 'project.openshift.io',
    'ImageStream': 'image.openshift.io', 'ImageStreamTag': 'image.openshift.io', 'BuildConfig': 'build.openshift.io',
    'Build': 'build.openshift.io', 'Template': 'template.openshift.io',
}

# What to do instead, for OpenShift types a plain Kubernetes cluster has no counterpart for.
OPENSHIFT_ONLY = {
    'image.openshift.io': 'ImageStreams exist only on OpenShift: push the images to a registry the target can pull from and '
                          'reference them directly from the workloads',
    'build.openshift.io': 'builds exist only on OpenShift: build the images in CI (Tekton, GitHub Actions, ...) and push them to a registry',
    'template.openshift.io': 'templates exist only on OpenShift: process it with `oc process` and restore the resulting objects, '
                             'or package them with Helm or Kustomize',
    'security.openshift.io': 'Kubernetes has no SecurityContextConstraints: label the namespaces for Pod Security Admission '
                             '(pod-security.kubernetes.io/enforce) instead',
    'authorization.openshift.io': "it is OpenShift's view of an rbac.authorization.k8s.io object: restore that object instead",
    'quota.openshift.io': 'Kubernetes has no ClusterResourceQuota: create a ResourceQuota in each namespace instead',
    'network.openshift.io': 'use NetworkPolicy egress rules (or your CNI\'s egress policy) instead',
    'user.openshift.io': 'users and groups come from the target\'s own authentication: configure it there',
    'oauth.openshift.io': 'users and groups come from the target\'s own authentication: configure it there',
    'config.openshift.io': 'it is OpenShift cluster configuration, not portable to another distribution',
    'operator.openshift.io': 'it is OpenShift cluster configuration, not portable to another distribution',
    'apps.openshift.io': 'the target serves no DeploymentConfig',
    'route.openshift.io': 'the target serves no Route',
}

# Built-in kinds that are gone from current Kubernetes, with the replacement to point at.
REMOVED_KINDS = {
    'PodSecurityPolicy': 'PodSecurityPolicy was removed in Kubernetes 1.25: label the namespace for Pod Security Admission '
                         '(pod-security.kubernetes.io/enforce: baseline or restricted) instead',
}

BUILTIN_GROUPS = frozenset(('', 'apps', 'batch', 'extensions', 'policy', 'autoscaling'))

# Image references a plain cluster cannot pull: OpenShift's internal registries.
OPENSHIFT_INTERNAL_REGISTRIES = ('image-registry.openshift-image-registry.svc', 'docker-registry.default.svc')

INGRESS_CLASS_ANNOTATION = 'kubernetes.io/ingress.class'
# Ingress classes that controllers read only from the annotation: no IngressClass object of that name exists.
ANNOTATION_ONLY_INGRESS_CLASSES = frozenset(('gce', 'gce-internal'))
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_KUBE_VERSION = re.compile(r'^v(\d+)(?:(alpha|beta)(\d+))?$')


def split_api_version(api_version):
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``''``, ``v1``)."""
    group, _sep, version = (api_version or '').rpartition('/')
    return group, version


def join_api_version(group, version):
    return '%s/%s' % (group, version) if group else version


def version_priority(version):
    """Sort key: GA > beta > alpha, then higher numbers (Kubernetes' own version ordering)."""
    match = _KUBE_VERSION.match(version or '')
    if not match:
        return (0, 0, 0, version or '')
    stage = {'alpha': 1, 'beta': 2}.get(match.group(2), 3)
    return (int(match.group(1)) if stage == 3 else 0, stage, int(match.group(1)) * 1000 + int(match.group(3) or 0), '')


class TargetApis:
    """What the target serves, from ``Cluster.discovery()`` entries (a list of dicts)."""

    def __init__(self, discovery_entries, openshift=None):
        self._kinds = {}  # (group, kind) -> {version: preferred}
        self.groups = set()
        for entry in discovery_entries or ():
            if entry.get('subresource') or not entry.get('kind'):
                continue
            self.groups.add(entry['group'])
            versions = self._kinds.setdefault((entry['group'], entry['kind']), {})
            versions[entry['version']] = versions.get(entry['version'], False) or bool(entry.get('preferred'))
        self.openshift = bool(self.groups & OPENSHIFT_MARKER_GROUPS) if openshift is None else bool(openshift)

    def serves(self, api_version, kind):
        group, version = split_api_version(api_version)
        return version in self._kinds.get((group, kind), ())

    def serves_kind(self, group, kind):
        return bool(self._kinds.get((group, kind)))

    def versions(self, group, kind):
        """Served api_versions of a kind: the group's preferred one first, then newest first."""
        served = self._kinds.get((group, kind)) or {}
        ordered = sorted(served, key=lambda version: (served[version], version_priority(version)), reverse=True)
        return [join_api_version(group, version) for version in ordered]

    def preferred_version(self, group, kind):
        versions = self.versions(group, kind)
        return versions[0] if versions else None


@dataclass
class Conversion:
    """objects: to apply, in order ([] when unconvertible); converted_from: 'extensions/v1beta1 Deployment' or None when served
    as-is; notes: what was lossy or made explicit; unconvertible: the reason, naming the object and what to do."""
    objects: list = field(default_factory=list)
    converted_from: Optional[str] = None
    notes: list = field(default_factory=list)
    unconvertible: Optional[str] = None


class Unconvertible(Exception):
    """Raised by a conversion function: the object cannot be expressed in the target version."""


class _Context:
    """What a conversion function may use: the target, the restore set, and places for notes and extra objects."""

    def __init__(self, target, find, obj):
        self.target = target
        self._find = find
        self.notes = []
        self.extra = []  # objects to apply before the converted one (a Route's TLS Secret)
        meta = obj.get('metadata') or {}
        self.source_api_version = obj.get('apiVersion')
        self.name = meta.get('name')
        self.namespace = meta.get('namespace')
        self.target_api_version = None

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def find(self, kind, namespace, name):
        if self._find is None or not name:
            return None
        return self._find(kind, namespace, name)


def describe(obj):
    """``extensions/v1beta1 Deployment shop/web``: how messages name an object."""
    meta = obj.get('metadata') or {}
    name = '%s/%s' % (meta['namespace'], meta.get('name')) if meta.get('namespace') else meta.get('name')
    return '%s %s %s' % (obj.get('apiVersion'), obj.get('kind'), name)


def convert(obj, target, find=None):
    """Convert ``obj`` for ``target`` (a TargetApis); ``find(kind, namespace, name)`` looks up the restore set.

    An object the target serves comes back as itself (no copy); converted objects are new (deep copies, without status).
    """
    api_version, kind = obj.get('apiVersion'), obj.get('kind')
    if not api_version or not kind:
        return Conversion([], None, [], '%s: the object has no apiVersion or kind' % describe(obj))
    if target.serves(api_version, kind):
        return Conversion([obj], None, [], None)
    source = '%s %s' % (api_version, kind)
    work = copy.deepcopy(obj)
    work.pop('status', None)  # the source cluster's, and its schema may change too
    group, version = split_api_version(api_version)
    if group == '' and kind in LEGACY_OPENSHIFT_KINDS:
        group = LEGACY_OPENSHIFT_KINDS[kind]
        work['apiVersion'] = join_api_version(group, version)
        if target.serves(work['apiVersion'], kind):
            return Conversion([work], source, [], None)
    ctx = _Context(target, find, obj)
    try:
        converted = _by_rule(work, group, version, kind, ctx)
        if converted is None:
            converted = _same_schema(work, group, version, kind, target)
    except Unconvertible as exc:
        return Conversion([], None, ctx.notes, '%s: %s' % (describe(obj), exc))
    if converted is None:
        return Conversion([], None, [], '%s: %s' % (describe(obj), _why_not(group, version, kind, target, ctx)))
    return Conversion(ctx.extra + [converted], source, ctx.notes, None)


def _by_rule(obj, group, version, kind, ctx):
    for api_version, to_kind, function in RULES.get((group, kind), {}).get(version, ()):
        if ctx.target.serves(api_version, to_kind):
            ctx.target_api_version = api_version
            return _with_type(function(obj, ctx), api_version, to_kind)
    return None


def _same_schema(obj, group, version, kind, target):
    versions = SAME_SCHEMA.get((group, kind), ())
    if version not in versions:
        return None
    for api_version in target.versions(group, kind):
        if split_api_version(api_version)[1] in versions:
            return _with_type(obj, api_version, kind)
    return None


def _with_type(obj, api_version, kind):
    """A copy-free re-keying that puts apiVersion and kind first, as kubectl prints them."""
    rest = {key: value for key, value in obj.items() if key not in ('apiVersion', 'kind')}
    return dict({'apiVersion': api_version, 'kind': kind}, **rest)


def _crd_name(group, kind):
    """The usual CRD name for a kind: lower-case English plural + group (a guess: CRDs choose their plural)."""
    singular = kind.lower()
    if re.search(r'[^aeiou]y$', singular):
        plural = singular[:-1] + 'ies'
    elif re.search(r'(s|x|z|ch|sh)$', singular):
        plural = singular + 'es'
    else:
        plural = singular + 's'
    return '%s.%s' % (plural, group)


def _why_not(group, version, kind, target, ctx):
    if group in OPENSHIFT_ONLY and not target.serves_kind(group, kind):
        return 'the target is not OpenShift (it serves no %s API): %s' % (group, OPENSHIFT_ONLY[group])
    if kind in REMOVED_KINDS and group in ('extensions', 'policy'):
        return 'the target serves no %s: %s' % (kind, REMOVED_KINDS[kind])
    served = target.versions(group, kind)
    builtin = group in BUILTIN_GROUPS or group.endswith('.k8s.io')
    if served and builtin:
        return ('the target serves %s only as %s and Ferry knows no conversion from %s: convert it by hand'
                % (kind, ', '.join(served), join_api_version(group, version)))
    if served:
        return ('the installed CRD serves %s only as %s: install a version of the CRD (and its operator) that serves %s, '
                'or convert the object by hand' % (kind, ', '.join(served), version))
    if builtin:
        return 'the target serves no %s in any version of %s: convert it by hand or leave it out' % (kind, group or 'the core group')
    crd = _crd_name(group, kind)
    if ctx.find('CustomResourceDefinition', None, crd) is not None:
        return ('the target has no CRD for it, but the CRD %s is in this restore set: restore the CRD first, '
                'then the custom resources' % crd)
    return 'the target has no CRD for %s in %s: install the CRD %s first or include it in the restore' % (kind, group, crd)


# -- generic helpers ------------------------------------------------------------------------------

def _same(obj, ctx):
    """Identical schema under another apiVersion."""
    return obj


def _chain(*functions):
    def run(obj, ctx):
        for function in functions:
            obj = function(obj, ctx)
        return obj
    return run


def _set_default(spec, path, value):
    """Set spec[path...] when absent; True when it was set."""
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if path[-1] in node and node[path[-1]] is not None:
        return False
    node[path[-1]] = value
    return True


def _b64(text):
    return base64.b64encode(text.encode('utf-8')).decode('ascii')


# -- workloads: extensions/v1beta1, apps/v1beta1, apps/v1beta2 -> apps/v1 -----------------------------

# Defaults of the old versions that apps/v1 changed: set them explicitly so the workload behaves as before.
# (source group, source version, kind) -> ((path, old default, why), ...)
_OLD_WORKLOAD_DEFAULTS = {
    ('extensions', 'v1beta1', 'Deployment'): (
        (('revisionHistoryLimit',), MAX_INT32, 'extensions/v1beta1 kept every old ReplicaSet'),
        (('progressDeadlineSeconds',), MAX_INT32, 'extensions/v1beta1 had no progress deadline'),
        (('strategy', 'rollingUpdate', 'maxSurge'), 1, 'extensions/v1beta1 rolled one pod at a time'),
        (('strategy', 'rollingUpdate', 'maxUnavailable'), 1, 'extensions/v1beta1 rolled one pod at a time'),
    ),
    ('apps', 'v1beta1', 'Deployment'): (
        (('revisionHistoryLimit',), 2, 'apps/v1beta1 kept 2 old ReplicaSets'),
    ),
    ('extensions', 'v1beta1', 'DaemonSet'): (
        (('updateStrategy', 'type'), 'OnDelete', 'extensions/v1beta1 replaced pods only when deleted'),
    ),
    ('apps', 'v1beta1', 'StatefulSet'): (
        (('updateStrategy', 'type'), 'OnDelete', 'apps/v1beta1 replaced pods only when deleted'),
    ),
}


def _workload_to_apps_v1(obj, ctx):
    spec = obj.setdefault('spec', {})
    if not spec.get('selector'):
        # apps/v1 requires a selector; the old versions defaulted it to the template's labels.
        labels = ((spec.get('template') or {}).get('metadata') or {}).get('labels')
        if not labels:
            raise Unconvertible('apps/v1 requires spec.selector and the pod template has no labels to derive it from: add labels and a selector')
        spec['selector'] = {'matchLabels': dict(labels)}
        ctx.note('spec.selector set to the pod template labels (apps/v1 requires it; the old version defaulted it the same way)')
    if spec.pop('rollbackTo', None) is not None:
        ctx.note('spec.rollbackTo dropped: apps/v1 has no rollback request (use kubectl rollout undo)')
    spec.pop('templateGeneration', None)  # old DaemonSet bookkeeping, kept in ControllerRevisions since apps/v1
    group, version = split_api_version(ctx.source_api_version)
    strategy_field = 'updateStrategy' if obj['kind'] != 'Deployment' else 'strategy'
    for path, value, why in _OLD_WORKLOAD_DEFAULTS.get((group, version, obj['kind']), ()):
        strategy = spec.get(strategy_field) or {}
        if path[0] == strategy_field and path[1] == 'rollingUpdate' and strategy.get('type', 'RollingUpdate') != 'RollingUpdate':
            continue
        if _set_default(spec, path, value):
            if path[1:2] == ('rollingUpdate',):
                spec[strategy_field].setdefault('type', 'RollingUpdate')
            ctx.note('spec.%s set to %s explicitly: %s, apps/v1 defaults differ' % ('.'.join(path), value, why))
    return obj


# -- Ingress ----------------------------------------------------------------------------------------

def _backend_to_v1(backend):
    if backend.get('resource'):
        return {'resource': backend['resource']}
    if not backend.get('serviceName'):
        raise Unconvertible('an Ingress backend has neither serviceName nor resource')
    port = backend.get('servicePort')
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    return {'service': {'name': backend['serviceName'], 'port': {'number': port} if isinstance(port, int) else {'name': port}}}


def _backend_to_v1beta1(backend):
    if backend.get('resource'):
        return {'resource': backend['resource']}
    service = backend.get('service') or {}
    port = service.get('port') or {}
    return {'serviceName': service.get('name'), 'servicePort': port['number'] if 'number' in port else port.get('name')}


def _map_ingress_backends(spec, old_default, new_default, convert_backend):
    if spec.get(old_default):
        spec[new_default] = convert_backend(spec.pop(old_default))
    for rule in spec.get('rules') or []:
        for path in (rule.get('http') or {}).get('paths') or []:
            if path.get('backend'):
                path['backend'] = convert_backend(path['backend'])


def _ingress_to_v1(obj, ctx):
    spec = obj.setdefault('spec', {})
    _map_ingress_backends(spec, 'backend', 'defaultBackend', _backend_to_v1)
    for rule in spec.get('rules') or []:
        for path in (rule.get('http') or {}).get('paths') or []:
            path.setdefault('pathType', 'ImplementationSpecific')  # v1 requires it; v1beta1's default
    ingress_class = ((obj.get('metadata') or {}).get('annotations') or {}).get(INGRESS_CLASS_ANNOTATION)
    if ingress_class and not spec.get('ingressClassName') and _plausible_ingress_class(ingress_class):
        # Both may be set when equal; the annotation stays for controllers that still read it.
        spec['ingressClassName'] = ingress_class
        found = ctx.find('IngressClass', None, ingress_class) is not None
        ctx.note('spec.ingressClassName set to %r from the %s annotation (kept); %s'
                 % (ingress_class, INGRESS_CLASS_ANNOTATION,
                    'its IngressClass is in the restore set' if found else 'an IngressClass of that name must exist on the target'))
    return obj


def _plausible_ingress_class(name):
    return name not in ANNOTATION_ONLY_INGRESS_CLASSES and len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def _ingress_to_v1beta1(obj, ctx):
    spec = obj.setdefault('spec', {})
    _map_ingress_backends(spec, 'defaultBackend', 'backend', _backend_to_v1beta1)
    if ctx.target.serves_kind('networking.k8s.io', 'IngressClass'):
        return obj
    # Before 1.18: no IngressClass, no pathType; the class lives in the annotation.
    if spec.get('ingressClassName'):
        annotations = obj.setdefault('metadata', {}).setdefault('annotations', {})
        annotations.setdefault(INGRESS_CLASS_ANNOTATION, spec['ingressClassName'])
        ctx.note('spec.ingressClassName %r moved to the %s annotation (the target has no IngressClass API)'
                 % (spec.pop('ingressClassName'), INGRESS_CLASS_ANNOTATION))
    path_types = set()
    for rule in spec.get('rules') or []:
        for path in (rule.get('http') or {}).get('paths') or []:
            path_types.add(path.pop('pathType', None))
    path_types -= {None, 'ImplementationSpecific'}
    if path_types:
        ctx.note('pathType %s dropped (the target predates it): path matching is up to the ingress controller' % ', '.join(sorted(path_types)))
    return obj


# -- HorizontalPodAutoscaler ------------------------------------------------------------------------

# v2beta1 target field -> v2 target; in this order, as the API server converts (an average wins over a plain value).
_V2BETA1_TARGETS = (('targetAverageUtilization', 'Utilization', 'averageUtilization'), ('targetAverageValue', 'AverageValue', 'averageValue'),
                    ('averageValue', 'AverageValue', 'averageValue'), ('targetValue', 'Value', 'value'))


def _v2_target(source):
    for old, target_type, new in _V2BETA1_TARGETS:
        if source.get(old) is not None:
            return {'type': target_type, new: source[old]}
    raise Unconvertible('an HPA metric has no target value')


def _metric_id(name, selector):
    metric = {'name': name}
    if selector:
        metric['selector'] = selector
    return metric


def _metric_to_v2(metric):
    metric_type = metric.get('type')
    key = metric_type[:1].lower() + metric_type[1:] if metric_type else None
    source = metric.get(key) or {}
    if metric_type in ('Resource', 'ContainerResource'):
        new = {'name': source.get('name'), 'target': _v2_target(source)}
        if source.get('container'):
            new['container'] = source['container']
    elif metric_type == 'Pods':
        new = {'metric': _metric_id(source.get('metricName'), source.get('selector')), 'target': _v2_target(source)}
    elif metric_type == 'Object':
        new = {'describedObject': source.get('target'), 'metric': _metric_id(source.get('metricName'), source.get('selector')),
               'target': _v2_target(source)}
    elif metric_type == 'External':
        new = {'metric': _metric_id(source.get('metricName'), source.get('metricSelector')), 'target': _v2_target(source)}
    else:
        raise Unconvertible('unknown HPA metric type %r' % metric_type)
    return {'type': metric_type, key: new}


# v2 target type -> v2beta1 field, per metric type (v2beta1 cannot express the other combinations).
_V2BETA1_FIELDS = {
    ('Resource', 'Utilization'): 'targetAverageUtilization', ('Resource', 'AverageValue'): 'targetAverageValue',
    ('ContainerResource', 'Utilization'): 'targetAverageUtilization', ('ContainerResource', 'AverageValue'): 'targetAverageValue',
    ('Pods', 'AverageValue'): 'targetAverageValue',
    ('Object', 'Value'): 'targetValue', ('Object', 'AverageValue'): 'averageValue',
    ('External', 'Value'): 'targetValue', ('External', 'AverageValue'): 'targetAverageValue',
}
_V2_TARGET_VALUE = {'Utilization': 'averageUtilization', 'AverageValue': 'averageValue', 'Value': 'value'}


def _metric_to_v2beta1(metric):
    metric_type = metric.get('type')
    key = metric_type[:1].lower() + metric_type[1:] if metric_type else None
    source = metric.get(key) or {}
    target = source.get('target') or {}
    old_field = _V2BETA1_FIELDS.get((metric_type, target.get('type')))
    if old_field is None:
        raise Unconvertible('a %s metric with a %s target cannot be expressed in autoscaling/v2beta1' % (metric_type, target.get('type')))
    old = {old_field: target.get(_V2_TARGET_VALUE[target['type']])}
    if metric_type in ('Resource', 'ContainerResource'):
        old['name'] = source.get('name')
        if source.get('container'):
            old['container'] = source['container']
    else:
        metric_id = source.get('metric') or {}
        old['metricName'] = metric_id.get('name')
        if metric_id.get('selector'):
            old['metricSelector' if metric_type == 'External' else 'selector'] = metric_id['selector']
        if metric_type == 'Object':
            old['target'] = source.get('describedObject')
    return {'type': metric_type, key: old}


def _hpa_to_v2(obj, ctx):
    spec = obj.setdefault('spec', {})
    if spec.get('metrics'):
        spec['metrics'] = [_metric_to_v2(metric) for metric in spec['metrics']]
    return obj


def _hpa_to_v2beta1(obj, ctx):
    spec = obj.setdefault('spec', {})
    if spec.get('metrics'):
        spec['metrics'] = [_metric_to_v2beta1(metric) for metric in spec['metrics']]
    if spec.pop('behavior', None):
        ctx.note('spec.behavior (scale-up/down policies) dropped: autoscaling/v2beta1 has none, the controller defaults apply')
    return obj


# -- batch, policy, discovery ---------------------------------------------------------------------

def _cronjob_to_v1beta1(obj, ctx):
    spec = obj.setdefault('spec', {})
    if spec.get('timeZone'):
        ctx.note('spec.timeZone %r dropped: %s has none, the schedule runs in the controller manager\'s time zone'
                 % (spec.pop('timeZone'), ctx.target_api_version))
    return obj


def _pdb_to_v1(obj, ctx):
    if (obj.get('spec') or {}).get('selector') == {}:
        ctx.note('spec.selector is empty: it selected no pods in policy/v1beta1 but selects every pod of the namespace in policy/v1')
    return obj


def _pdb_to_v1beta1(obj, ctx):
    spec = obj.setdefault('spec', {})
    if spec.get('selector') == {}:
        ctx.note('spec.selector is empty: it selected every pod of the namespace in policy/v1 but selects none in policy/v1beta1')
    if spec.pop('unhealthyPodEvictionPolicy', None):
        ctx.note('spec.unhealthyPodEvictionPolicy dropped: policy/v1beta1 has none (IfHealthyBudget behaviour)')
    return obj


_TOPOLOGY_FIELDS = (('kubernetes.io/hostname', 'nodeName'), ('topology.kubernetes.io/zone', 'zone'))


def _endpointslice_to_v1(obj, ctx):
    for endpoint in obj.get('endpoints') or []:
        topology = endpoint.pop('topology', None) or {}
        for label, name in _TOPOLOGY_FIELDS:
            if label in topology:
                endpoint.setdefault(name, topology.pop(label))
        if topology:
            endpoint['deprecatedTopology'] = topology
    return obj


def _endpointslice_to_v1beta1(obj, ctx):
    for endpoint in obj.get('endpoints') or []:
        topology = endpoint.pop('deprecatedTopology', None) or {}
        for label, name in _TOPOLOGY_FIELDS:
            if endpoint.get(name):
                topology[label] = endpoint.pop(name)
        if topology:
            endpoint['topology'] = topology
    return obj


# -- apiextensions and admissionregistration v1beta1 -> v1 ----------------------------------------------

def _crd_to_v1(obj, ctx):
    spec = obj.setdefault('spec', {})
    versions = spec.get('versions') or [{'name': spec.get('version'), 'served': True, 'storage': True}]
    if not versions[0].get('name'):
        raise Unconvertible('the CRD names no version')
    spec.pop('version', None)
    schema = (spec.pop('validation', None) or {}).get('openAPIV3Schema')
    subresources = spec.pop('subresources', None)
    columns = spec.pop('additionalPrinterColumns', None)
    preserve = spec.pop('preserveUnknownFields', True)  # v1beta1 kept unknown fields unless told otherwise; v1 forbids true here
    for version in versions:
        version_schema = (version.get('schema') or {}).get('openAPIV3Schema') or copy.deepcopy(schema)
        if not version_schema:
            version_schema = {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}
            ctx.note('version %s has no schema; apiextensions.k8s.io/v1 requires one: an open object schema was set' % version['name'])
        if preserve:
            version_schema.setdefault('x-kubernetes-preserve-unknown-fields', True)
        version['schema'] = {'openAPIV3Schema': version_schema}
        if subresources and 'subresources' not in version:
            version['subresources'] = copy.deepcopy(subresources)
        version_columns = version.get('additionalPrinterColumns') or copy.deepcopy(columns)
        if version_columns:
            version['additionalPrinterColumns'] = [_printer_column_to_v1(column) for column in version_columns]
    if preserve:
        ctx.note('unknown fields are kept as in apiextensions.k8s.io/v1beta1 (x-kubernetes-preserve-unknown-fields on the root schema)')
    spec['versions'] = versions
    conversion = spec.get('conversion') or {}
    if conversion.get('strategy') == 'Webhook':
        spec['conversion'] = {'strategy': 'Webhook', 'webhook': {
            'clientConfig': conversion.get('webhookClientConfig'),
            'conversionReviewVersions': conversion.get('conversionReviewVersions') or ['v1beta1']}}
    if schema:
        ctx.note('apiextensions.k8s.io/v1 requires structural schemas: the API server rejects this CRD if its schema is not structural')
    return obj


def _printer_column_to_v1(column):
    column = dict(column)
    if 'JSONPath' in column:
        column['jsonPath'] = column.pop('JSONPath')
    return column


# v1beta1 defaults that v1 changed or no longer has, made explicit.
_WEBHOOK_V1BETA1_DEFAULTS = (('failurePolicy', 'Ignore'), ('matchPolicy', 'Exact'), ('timeoutSeconds', 30), ('admissionReviewVersions', ['v1beta1']))


def _webhooks_to_v1(obj, ctx):
    for webhook in obj.get('webhooks') or []:
        side_effects = webhook.get('sideEffects', 'Unknown')
        if side_effects not in ('None', 'NoneOnDryRun'):
            raise Unconvertible('webhook %s declares sideEffects %s; admissionregistration.k8s.io/v1 allows only None or NoneOnDryRun: '
                                'reinstall it from its vendor\'s current manifests' % (webhook.get('name'), side_effects))
        made_explicit = [name for name, value in _WEBHOOK_V1BETA1_DEFAULTS if _set_default(webhook, (name,), copy.deepcopy(value))]
        if made_explicit:
            ctx.note('webhook %s: v1beta1 defaults of %s set explicitly (v1 defaults differ)' % (webhook.get('name'), ', '.join(made_explicit)))
    return obj


# -- OpenShift -> Kubernetes -----------------------------------------------------------------------

def _deploymentconfig_to_deployment(obj, ctx):
    spec = obj.get('spec') or {}
    template = spec.get('template') or {}
    new = {key: spec[key] for key in ('replicas', 'revisionHistoryLimit', 'paused', 'minReadySeconds') if key in spec}
    selector = spec.get('selector') or ((template.get('metadata') or {}).get('labels'))
    if not selector:
        raise Unconvertible('neither spec.selector nor pod template labels: a Deployment needs a selector')
    if not spec.get('selector'):
        ctx.note('spec.selector set to the pod template labels (as the DeploymentConfig defaulted it)')
    new['selector'] = {'matchLabels': dict(selector)}
    new['strategy'] = _dc_strategy(spec.get('strategy') or {}, new, ctx)
    new['template'] = template
    _dc_triggers(spec.get('triggers') or [], template, ctx)
    if spec.get('test'):
        ctx.note('spec.test dropped: a Deployment cannot scale itself down after a rollout')
    if ctx.target.openshift:
        ctx.note('the target is OpenShift without the DeploymentConfig API (capability disabled): converted to a Deployment')
    obj['spec'] = new
    return obj


def _dc_strategy(strategy, new_spec, ctx):
    kind = strategy.get('type', 'Rolling')
    hooks = []
    if kind == 'Recreate':
        params = strategy.get('recreateParams') or {}
        hooks = [hook for hook in ('pre', 'mid', 'post') if params.get(hook)]
        result = {'type': 'Recreate'}
    else:
        if kind != 'Rolling':
            ctx.note('%s strategy not expressible in a Deployment: RollingUpdate used instead' % kind)
        params = strategy.get('rollingParams') or {}
        hooks = [hook for hook in ('pre', 'post') if params.get(hook)]
        result = {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': params.get('maxSurge', '25%'),
                                                             'maxUnavailable': params.get('maxUnavailable', '25%')}}
        if params.get('timeoutSeconds') not in (None, 600):
            # A DeploymentConfig fails and rolls back after it; a Deployment only reports ProgressDeadlineExceeded.
            new_spec['progressDeadlineSeconds'] = params['timeoutSeconds']
            ctx.note('rollingParams.timeoutSeconds %s became progressDeadlineSeconds: a Deployment reports a stuck rollout but does not roll back'
                     % params['timeoutSeconds'])
    if hooks:
        ctx.note('DeploymentConfig lifecycle hooks dropped: %s (run them as a Job or an init container)' % ', '.join(hooks))
    # activeDeadlineSeconds (always defaulted) only bounded the deployer pod: dropped without a note.
    if strategy.get('resources') or strategy.get('labels') or strategy.get('annotations'):
        ctx.note('deployer pod settings of the strategy dropped (resources, labels, annotations)')
    return result


def _dc_triggers(triggers, template, ctx):
    """Drop triggers (noted); resolve container images that only an ImageStream trigger filled in."""
    containers = {}
    pod_spec = template.get('spec') or {}
    for container in (pod_spec.get('initContainers') or []) + (pod_spec.get('containers') or []):
        containers[container.get('name')] = container
    described = []
    for trigger in triggers:
        if trigger.get('type') != 'ImageChange':
            described.append(trigger.get('type') or '?')
            continue
        params = trigger.get('imageChangeParams') or {}
        source = (params.get('from') or {}).get('name') or '?'
        described.append('ImageChange(%s)' % source)
        for name in params.get('containerNames') or []:
            container = containers.get(name)
            if container is None or (container.get('image') or '').strip() not in ('', source):
                continue
            if params.get('lastTriggeredImage'):
                container['image'] = params['lastTriggeredImage']
                ctx.note('container %s image set to %s, the image its ImageChange trigger last deployed' % (name, container['image']))
            else:
                ctx.note('container %s has no image (an ImageChange trigger from %s set it on OpenShift): set its image' % (name, source))
    if described:
        ctx.note('DeploymentConfig triggers dropped: %s; a Deployment rolls out on template changes only, update images with your CD tooling'
                 % ', '.join(described))
    for name, container in containers.items():
        if (container.get('image') or '').startswith(OPENSHIFT_INTERNAL_REGISTRIES):
            ctx.note('container %s image %s is in the OpenShift internal registry, which the target cannot pull from: '
                     'copy the image to a registry the target can reach' % (name, container['image']))


def _route_to_ingress(obj, ctx):
    spec = obj.get('spec') or {}
    meta = obj.setdefault('metadata', {})
    to = spec.get('to') or {}
    if to.get('kind', 'Service') != 'Service' or not to.get('name'):
        raise Unconvertible('the route does not point at a Service')
    tls = spec.get('tls') or {}
    termination = tls.get('termination')
    if termination == 'passthrough':
        # Unconvertible rather than a noted conversion: an Ingress would terminate (or refuse) the TLS the backend expects to receive.
        raise Unconvertible('TLS passthrough cannot be expressed by the Ingress API: expose it with a LoadBalancer Service or an ingress '
                            'controller with SSL passthrough (ingress-nginx: --enable-ssl-passthrough and the annotation '
                            'nginx.ingress.kubernetes.io/ssl-passthrough: "true"), or convert by hand')
    backend = {'service': {'name': to['name'], 'port': _route_port(spec, to['name'], ctx)}}
    host = _route_host(spec, ctx)
    rule = {'http': {'paths': [{'path': spec.get('path') or '/', 'pathType': 'Prefix', 'backend': backend}]}}
    if host:
        rule = dict({'host': host}, **rule)
    ingress_spec = {'rules': [rule]}
    if spec.get('alternateBackends'):
        names = ', '.join('%s (weight %s)' % (b.get('name'), b.get('weight')) for b in spec['alternateBackends'])
        ctx.note('alternateBackends dropped: an Ingress cannot split traffic by weight; all traffic goes to %s (was shared with %s)' % (to['name'], names))
    if termination:
        ingress_spec['tls'] = [_route_tls(obj, tls, host, ctx)]
    router_annotations = sorted(key for key in (meta.get('annotations') or {}) if key.startswith('haproxy.router.openshift.io/'))
    if router_annotations:
        ctx.note('OpenShift router annotations have no effect on an Ingress: %s' % ', '.join(router_annotations))
    obj['spec'] = ingress_spec
    return obj


def _route_host(spec, ctx):
    host = spec.get('host')
    if not host:
        ctx.note('the route had no spec.host (the OpenShift router generated one): the Ingress matches any host, set one')
        return None
    if spec.get('wildcardPolicy') == 'Subdomain' and '.' in host:
        wildcard = '*.' + host.split('.', 1)[1]
        ctx.note('wildcardPolicy Subdomain: the Ingress host is %s (whether wildcard hosts work depends on the ingress controller)' % wildcard)
        return wildcard
    return host


def _route_port(spec, service_name, ctx):
    """The Service port for the route's targetPort (a Service port name, or an endpoint port by number or name)."""
    wanted = (spec.get('port') or {}).get('targetPort')
    service = ctx.find('Service', ctx.namespace, service_name)
    ports = ((service or {}).get('spec') or {}).get('ports') or []
    if wanted is None:
        if not ports:
            raise Unconvertible('the route names no port and its Service %s is not in the restore set: set spec.port.targetPort or restore the Service too'
                                % service_name)
        if len(ports) > 1:
            ctx.note('the route names no port: the Ingress uses the first port (%s) of Service %s' % (ports[0].get('port'), service_name))
        return {'number': ports[0]['port']}
    for port in ports:
        if port.get('name') == wanted or port.get('targetPort', port.get('port')) == wanted:
            return {'number': port['port']}
    if isinstance(wanted, str) and wanted.isdigit():
        wanted = int(wanted)
    if service is not None:
        ctx.note('no port of Service %s matches the route\'s targetPort %s: the Ingress uses it as the Service port' % (service_name, wanted))
    else:
        ctx.note('Service %s is not in the restore set: the route\'s targetPort %s is assumed to be the Service port' % (service_name, wanted))
    return {'number': wanted} if isinstance(wanted, int) else {'name': wanted}


def _route_tls(obj, tls, host, ctx):
    termination = tls.get('termination')
    entry = {'hosts': [host]} if host else {}
    if tls.get('certificate') and tls.get('key'):
        secret_name = '%s-tls' % ctx.name
        chain = tls['certificate'].rstrip('\n') + '\n' + (tls['caCertificate'].rstrip('\n') + '\n' if tls.get('caCertificate') else '')
        meta = {'name': secret_name}
        if ctx.namespace:
            meta['namespace'] = ctx.namespace
        if (obj.get('metadata') or {}).get('labels'):
            meta['labels'] = dict(obj['metadata']['labels'])
        ctx.extra.append({'apiVersion': 'v1', 'kind': 'Secret', 'metadata': meta, 'type': 'kubernetes.io/tls',
                          'data': {'tls.crt': _b64(chain), 'tls.key': _b64(tls['key'])}})
        entry['secretName'] = secret_name
        ctx.note('the route\'s certificate and key moved to the kubernetes.io/tls Secret %s%s'
                 % (secret_name, ' (with its CA chain appended to tls.crt)' if tls.get('caCertificate') else ''))
    else:
        ctx.note('the route used the router\'s default certificate: the Ingress uses the ingress controller\'s default certificate')
    if termination == 'reencrypt':
        ctx.note('reencrypt: the backend speaks TLS, which the Ingress API cannot say (ingress-nginx: annotation '
                 'nginx.ingress.kubernetes.io/backend-protocol: "HTTPS"); destinationCACertificate dropped')
    policy = tls.get('insecureEdgeTerminationPolicy')
    if policy == 'Redirect':
        ctx.note('insecureEdgeTerminationPolicy Redirect: HTTP is redirected to HTTPS only if the ingress controller does so '
                 '(ingress-nginx does by default when tls is set)')
    elif policy == 'Allow':
        ctx.note('insecureEdgeTerminationPolicy Allow: the route also served plain HTTP; ingress-nginx redirects to HTTPS unless '
                 'nginx.ingress.kubernetes.io/ssl-redirect: "false"')
    return entry


def _project_to_namespace(obj, ctx):
    # A Project is OpenShift's view of a Namespace; display name and description stay as annotations.
    meta = obj.get('metadata') or {}
    return {'metadata': meta}


# -- the tables --------------------------------------------------------------------------------------

# (group, kind) -> source version -> [(target apiVersion, target kind, function)], first one served wins.
RULES = {
    ('extensions', 'Ingress'): {'v1beta1': [('networking.k8s.io/v1', 'Ingress', _ingress_to_v1), ('networking.k8s.io/v1beta1', 'Ingress', _same)]},
    ('networking.k8s.io', 'Ingress'): {
        'v1beta1': [('networking.k8s.io/v1', 'Ingress', _ingress_to_v1), ('extensions/v1beta1', 'Ingress', _same)],
        'v1': [('networking.k8s.io/v1beta1', 'Ingress', _ingress_to_v1beta1), ('extensions/v1beta1', 'Ingress', _ingress_to_v1beta1)],
    },
    ('extensions', 'NetworkPolicy'): {'v1beta1': [('networking.k8s.io/v1', 'NetworkPolicy', _same)]},
    ('extensions', 'PodSecurityPolicy'): {'v1beta1': [('policy/v1beta1', 'PodSecurityPolicy', _same)]},
    ('autoscaling', 'HorizontalPodAutoscaler'): {
        'v2beta1': [('autoscaling/v2', 'HorizontalPodAutoscaler', _hpa_to_v2), ('autoscaling/v2beta2', 'HorizontalPodAutoscaler', _hpa_to_v2)],
        'v2beta2': [('autoscaling/v2', 'HorizontalPodAutoscaler', _same), ('autoscaling/v2beta1', 'HorizontalPodAutoscaler', _hpa_to_v2beta1)],
        'v2': [('autoscaling/v2beta2', 'HorizontalPodAutoscaler', _same), ('autoscaling/v2beta1', 'HorizontalPodAutoscaler', _hpa_to_v2beta1)],
    },
    ('batch', 'CronJob'): {
        'v1beta1': [('batch/v1', 'CronJob', _same)],
        'v2alpha1': [('batch/v1', 'CronJob', _same), ('batch/v1beta1', 'CronJob', _same)],
        'v1': [('batch/v1beta1', 'CronJob', _cronjob_to_v1beta1), ('batch/v2alpha1', 'CronJob', _cronjob_to_v1beta1)],
    },
    ('policy', 'PodDisruptionBudget'): {
        'v1beta1': [('policy/v1', 'PodDisruptionBudget', _pdb_to_v1)],
        'v1': [('policy/v1beta1', 'PodDisruptionBudget', _pdb_to_v1beta1)],
    },
    ('discovery.k8s.io', 'EndpointSlice'): {
        'v1beta1': [('discovery.k8s.io/v1', 'EndpointSlice', _endpointslice_to_v1)],
        'v1': [('discovery.k8s.io/v1beta1', 'EndpointSlice', _endpointslice_to_v1beta1)],
    },
    ('apiextensions.k8s.io', 'CustomResourceDefinition'): {'v1beta1': [('apiextensions.k8s.io/v1', 'CustomResourceDefinition', _crd_to_v1)]},
    ('admissionregistration.k8s.io', 'ValidatingWebhookConfiguration'): {
        'v1beta1': [('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', _webhooks_to_v1)]},
    ('admissionregistration.k8s.io', 'MutatingWebhookConfiguration'): {
        'v1beta1': [('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', _webhooks_to_v1)]},
    ('apps.openshift.io', 'DeploymentConfig'): {'v1': [('apps/v1', 'Deployment', _deploymentconfig_to_deployment)]},
    ('route.openshift.io', 'Route'): {'v1': [
        ('networking.k8s.io/v1', 'Ingress', _route_to_ingress),
        ('networking.k8s.io/v1beta1', 'Ingress', _chain(_route_to_ingress, _ingress_to_v1beta1)),
        ('extensions/v1beta1', 'Ingress', _chain(_route_to_ingress, _ingress_to_v1beta1)),
    ]},
    ('project.openshift.io', 'Project'): {'v1': [('v1', 'Namespace', _project_to_namespace)]},
}


def _workload_rules():
    """Every old workload version converts to apps/v1, the only version served since Kubernetes 1.16."""
    rules = {}
    for group, version, kinds in (('extensions', 'v1beta1', ('Deployment', 'DaemonSet', 'ReplicaSet')),
                                  ('apps', 'v1beta1', ('Deployment', 'StatefulSet')),
                                  ('apps', 'v1beta2', ('Deployment', 'DaemonSet', 'ReplicaSet', 'StatefulSet'))):
        for kind in kinds:
            rules.setdefault((group, kind), {})[version] = [('apps/v1', kind, _workload_to_apps_v1)]
    return rules


RULES.update(_workload_rules())

# (group, kind) -> versions sharing one schema: moving between them only rewrites apiVersion.
SAME_SCHEMA = {('scheduling.k8s.io', 'PriorityClass'): ('v1', 'v1beta1', 'v1alpha1'),
               ('coordination.k8s.io', 'Lease'): ('v1', 'v1beta1'),
               ('node.k8s.io', 'RuntimeClass'): ('v1', 'v1beta1'),
               ('networking.k8s.io', 'IngressClass'): ('v1', 'v1beta1'),
               ('apps', 'ControllerRevision'): ('v1', 'v1beta2', 'v1beta1')}
SAME_SCHEMA.update({(group, kind): ('v1', 'v1beta1')
                    for group, kinds in (('rbac.authorization.k8s.io', ('Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding')),
                                         ('storage.k8s.io', ('StorageClass', 'VolumeAttachment', 'CSIDriver', 'CSINode', 'CSIStorageCapacity')),
                                         ('snapshot.storage.k8s.io', ('VolumeSnapshot', 'VolumeSnapshotContent', 'VolumeSnapshotClass')))
                    for kind in kinds})
