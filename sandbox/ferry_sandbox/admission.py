"""What the API server itself does to objects on their way in: defaults, allocations, validation,
service-account tokens, CRD registration."""

import base64
import secrets

from . import rbac
from .catalog import ResourceType
from .errors import ApiError, invalid


def _b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def install(cluster):
    hooks = {
        ('', 'namespaces'): _namespace,
        ('', 'pods'): _pod,
        ('', 'services'): _service,
        ('', 'persistentvolumeclaims'): _pvc,
        ('', 'persistentvolumes'): _pv,
        ('', 'secrets'): _secret,
        ('apps', 'deployments'): _deployment,
        ('apps', 'statefulsets'): _statefulset,
        ('apps', 'replicasets'): _replicaset,
        ('batch', 'jobs'): _job,
        ('apiextensions.k8s.io', 'customresourcedefinitions'): _crd,
    }

    def admit(op, group, resource, obj, old):
        hook = hooks.get((group, resource))
        if hook:
            hook(cluster, op, obj, old)

    cluster.store.admission.append(admit)
    cluster.store.subscribe(lambda event, group, resource, obj: _after(cluster, event, group, resource, obj))


def _after(cluster, event, group, resource, obj):
    """Reactions the API server's built-in controllers have at once (default SA, CRD removal)."""
    if (group, resource) == ('', 'namespaces') and event == 'ADDED':
        try:
            cluster.store.create('', 'serviceaccounts', {'metadata': {'name': 'default', 'namespace': obj['metadata']['name']}})
        except ApiError:
            pass
    if (group, resource) == ('apiextensions.k8s.io', 'customresourcedefinitions') and event in ('ADDED', 'MODIFIED'):
        served = _pending_types(cluster).pop(obj['metadata']['name'], None)
        if served is not None:
            cluster.store.register_type(served)
    if (group, resource) == ('apiextensions.k8s.io', 'customresourcedefinitions') and event == 'DELETED':
        spec = obj.get('spec') or {}
        cluster.store.unregister_type(spec.get('group'), (spec.get('names') or {}).get('plural'))


def _pending_types(cluster):
    """CRD name -> the type its admission validated, waiting for the CRD to be stored."""
    if not hasattr(cluster, 'pending_crd_types'):
        cluster.pending_crd_types = {}
    return cluster.pending_crd_types


def _namespace(cluster, op, obj, old):
    meta = obj['metadata']
    meta.setdefault('labels', {})['kubernetes.io/metadata.name'] = meta['name']
    obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
    if op == 'CREATE':
        obj['status'] = {'phase': 'Active'}
    elif old is not None and 'status' not in obj:
        obj['status'] = old.get('status', {'phase': 'Active'})


def _require_containers(kind, name, spec):
    containers = (spec or {}).get('containers') or []
    if not containers:
        raise invalid(kind, name, 'spec.containers: Required value')
    for container in containers:
        if not container.get('name') or not container.get('image'):
            raise invalid(kind, name, 'spec.containers[].name and image: Required value')


def _pod_spec_defaults(spec):
    spec.setdefault('restartPolicy', 'Always')
    spec.setdefault('dnsPolicy', 'ClusterFirst')
    spec.setdefault('schedulerName', 'default-scheduler')
    spec.setdefault('terminationGracePeriodSeconds', 30)
    spec.setdefault('serviceAccountName', spec.get('serviceAccount') or 'default')
    spec.setdefault('securityContext', {})
    for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        container.setdefault('imagePullPolicy', 'Always' if str(container.get('image', '')).endswith(':latest') else 'IfNotPresent')
        container.setdefault('terminationMessagePath', '/dev/termination-log')
        container.setdefault('terminationMessagePolicy', 'File')
        container.setdefault('resources', {})
        for port in container.get('ports') or []:
            port.setdefault('protocol', 'TCP')


def _pod(cluster, op, obj, old):
    if op == 'CREATE':
        _require_containers('Pod', obj['metadata']['name'], obj.get('spec'))
        _pod_spec_defaults(obj['spec'])
        obj['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}


def _template_defaults(obj):
    template = (obj.get('spec') or {}).get('template') or {}
    _require_containers(obj['kind'], obj['metadata']['name'], template.get('spec'))
    _pod_spec_defaults(template['spec'])
    selector = (obj['spec'].get('selector') or {})
    labels = (template.get('metadata') or {}).get('labels') or {}
    from .selectors import matches_selector_dict  # pylint: disable=import-outside-toplevel
    if not selector or not matches_selector_dict(selector, labels):
        raise invalid(obj['kind'], obj['metadata']['name'], 'spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`')


def _deployment(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('replicas', 1)
    spec.setdefault('revisionHistoryLimit', 10)
    spec.setdefault('progressDeadlineSeconds', 600)
    spec.setdefault('strategy', {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}})
    _template_defaults(obj)


def _statefulset(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('replicas', 1)
    spec.setdefault('podManagementPolicy', 'OrderedReady')
    spec.setdefault('updateStrategy', {'type': 'RollingUpdate', 'rollingUpdate': {'partition': 0}})
    spec.setdefault('revisionHistoryLimit', 10)
    _template_defaults(obj)


def _replicaset(cluster, op, obj, old):
    obj.setdefault('spec', {}).setdefault('replicas', 1)
    _template_defaults(obj)


def _job(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('parallelism', 1)
    spec.setdefault('completions', 1)
    spec.setdefault('backoffLimit', 6)
    template = spec.setdefault('template', {})
    if op == 'CREATE' and not spec.get('manualSelector'):
        uid = obj['metadata']['uid']
        labels = template.setdefault('metadata', {}).setdefault('labels', {})
        labels.update({'batch.kubernetes.io/controller-uid': uid, 'controller-uid': uid, 'batch.kubernetes.io/job-name': obj['metadata']['name'],
                       'job-name': obj['metadata']['name']})
        spec['selector'] = {'matchLabels': {'batch.kubernetes.io/controller-uid': uid}}
    _require_containers('Job', obj['metadata']['name'], template.get('spec'))
    _pod_spec_defaults(template['spec'])
    if template['spec'].get('restartPolicy') not in ('Never', 'OnFailure'):
        raise invalid('Job', obj['metadata']['name'], 'spec.template.spec.restartPolicy: Unsupported value: "%s": supported values: "OnFailure", "Never"'
                      % template['spec'].get('restartPolicy'))


def _service(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('type', 'ClusterIP')
    spec.setdefault('sessionAffinity', 'None')
    old_spec = (old or {}).get('spec') or {}
    if spec['type'] != 'ExternalName':
        if old_spec.get('clusterIP') and not spec.get('clusterIP'):
            spec['clusterIP'] = old_spec['clusterIP']
        if spec.get('clusterIP') in (None, ''):
            spec['clusterIP'] = cluster.allocate_service_ip()
        if old_spec.get('clusterIP') and spec['clusterIP'] != old_spec['clusterIP']:
            raise invalid('Service', obj['metadata']['name'], 'spec.clusterIP: Invalid value: field is immutable')
        spec['clusterIPs'] = [spec['clusterIP']]
        spec.setdefault('ipFamilies', ['IPv4'])
        spec.setdefault('ipFamilyPolicy', 'SingleStack')
    old_ports = {(p.get('port'), p.get('protocol', 'TCP')): p for p in old_spec.get('ports') or []}
    for port in spec.get('ports') or []:
        port.setdefault('protocol', 'TCP')
        port.setdefault('targetPort', port.get('port'))
        if spec['type'] in ('NodePort', 'LoadBalancer'):
            previous = old_ports.get((port.get('port'), port['protocol']), {}).get('nodePort')
            if not port.get('nodePort'):
                port['nodePort'] = previous or cluster.allocate_node_port()
            elif not 30000 <= int(port['nodePort']) <= 32767:
                raise invalid('Service', obj['metadata']['name'], 'spec.ports[].nodePort: Invalid value: %s: provided port is not in the valid range. '
                              'The range of valid ports is 30000-32767' % port['nodePort'])
        else:
            port.pop('nodePort', None)
    if op == 'CREATE':
        obj['status'] = {'loadBalancer': {}}
    elif 'status' not in obj and old is not None:
        obj['status'] = old.get('status', {'loadBalancer': {}})


def _pvc(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('volumeMode', 'Filesystem')
    if not (spec.get('resources') or {}).get('requests', {}).get('storage'):
        raise invalid('PersistentVolumeClaim', obj['metadata']['name'], 'spec.resources[storage]: Required value')
    if not spec.get('accessModes'):
        raise invalid('PersistentVolumeClaim', obj['metadata']['name'], 'spec.accessModes: Required value: at least 1 access mode is required')
    if op == 'CREATE':
        obj['status'] = {'phase': 'Pending'}


def _pv(cluster, op, obj, old):
    spec = obj.setdefault('spec', {})
    spec.setdefault('persistentVolumeReclaimPolicy', 'Retain')
    spec.setdefault('volumeMode', 'Filesystem')
    if op == 'CREATE':
        obj['status'] = {'phase': 'Available'}


def _secret(cluster, op, obj, old):
    obj.setdefault('type', 'Opaque')
    string_data = obj.pop('stringData', None) or {}
    data = obj.setdefault('data', {}) if (string_data or obj.get('data') is not None) else obj.get('data')
    for key, value in string_data.items():
        data[key] = _b64(value)
    if obj['type'] == 'kubernetes.io/service-account-token' and op == 'CREATE':
        account = (obj['metadata'].get('annotations') or {}).get('kubernetes.io/service-account.name')
        if not account:
            raise invalid('Secret', obj['metadata']['name'], 'metadata.annotations[kubernetes.io/service-account.name]: Required value')
        token = secrets.token_urlsafe(32)
        cluster.register_token(token, rbac.User.service_account(obj['metadata']['namespace'], account))
        obj['data'] = dict(obj.get('data') or {}, token=_b64(token), namespace=_b64(obj['metadata']['namespace']), **{'ca.crt': _b64(cluster.ca_pem)})


def _crd(cluster, op, obj, old):
    spec = obj.get('spec') or {}
    names = spec.get('names') or {}
    name = obj['metadata']['name']
    if not spec.get('group') or not names.get('plural') or not names.get('kind'):
        raise invalid('CustomResourceDefinition', name, 'spec.group, spec.names.plural and spec.names.kind are required')
    if name != '%s.%s' % (names['plural'], spec['group']):
        raise invalid('CustomResourceDefinition', name, 'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group')
    versions = [v for v in spec.get('versions') or [] if v.get('served', True)]
    if not versions:
        raise invalid('CustomResourceDefinition', name, 'spec.versions: Required value: at least one served version')
    storage = [v['name'] for v in versions if v.get('storage')] or [versions[0]['name']]
    ordered = storage + [v['name'] for v in versions if v['name'] != storage[0]]
    subresources = ('status',) if any((v.get('subresources') or {}).get('status') is not None for v in versions) else ()
    if any((v.get('subresources') or {}).get('scale') is not None for v in versions):
        subresources += ('scale',)
    existing = next((t for t in cluster.store.types() if t.group == spec['group'] and t.resource == names['plural']), None)
    if existing is not None and op == 'CREATE':
        raise ApiError(409, 'AlreadyExists', 'resource %s.%s is already served' % (names['plural'], spec['group']))
    # served once stored (see _after), so a dry run registers nothing
    _pending_types(cluster)[name] = ResourceType(spec['group'], tuple(ordered), names['plural'], names['kind'], spec.get('scope', 'Namespaced') == 'Namespaced',
                                                 tuple(names.get('shortNames') or ()), subresources, tuple(names.get('categories') or ()),
                                                 singular=names.get('singular') or names['kind'].lower())
    obj['status'] = {'conditions': [{'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts'},
                                    {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted'}],
                     'acceptedNames': names, 'storedVersions': storage}
