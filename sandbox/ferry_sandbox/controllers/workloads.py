"""Deployment -> ReplicaSet -> Pods, StatefulSet, DaemonSet and Job controllers."""

import copy
import hashlib
import json

from ..errors import ApiError
from ..store import new_name, now_iso
from .manager import owned_by, owner_ref, record_event


def pod_ready(pod):
    return any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in (pod.get('status') or {}).get('conditions') or [])


def live_pods(cluster, namespace, owner_uid):
    return [p for p in cluster.store.list_refs('', 'pods', namespace)
            if owned_by(p, owner_uid) and not p['metadata'].get('deletionTimestamp')]


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _create(cluster, group, resource, obj):
    try:
        return cluster.store.create(group, resource, obj)
    except ApiError as exc:
        if exc.code in (409, 403, 404):  # exists already, or the namespace is going away
            return None
        raise


def _delete(cluster, group, resource, namespace, name):
    try:
        cluster.store.delete(group, resource, namespace, name)
    except ApiError as exc:
        if exc.code != 404:
            raise


def pod_from_template(owner, template, name, extra_labels=None):
    pod = {'apiVersion': 'v1', 'kind': 'Pod',
           'metadata': {'name': name, 'namespace': owner['metadata']['namespace'],
                        'labels': dict((template.get('metadata') or {}).get('labels') or {}, **(extra_labels or {})),
                        'annotations': dict((template.get('metadata') or {}).get('annotations') or {}),
                        'ownerReferences': [owner_ref(owner)]},
           'spec': copy.deepcopy(template.get('spec') or {})}
    return pod


def _set_status(cluster, group, resource, obj, status):
    """The controller owns the whole status: fields it no longer reports disappear."""
    try:
        cluster.store.replace_status(group, resource, obj['metadata'].get('namespace'), obj['metadata']['name'], status)
    except ApiError as exc:
        if exc.code != 404:
            raise


def _condition(kind, status, reason, message, previous):
    now = now_iso()
    old = next((c for c in previous or [] if c.get('type') == kind), None)
    transition = old['lastTransitionTime'] if old and old.get('status') == status and old.get('lastTransitionTime') else now
    return {'type': kind, 'status': status, 'reason': reason, 'message': message, 'lastUpdateTime': now, 'lastTransitionTime': transition}


# -- Deployment --------------------------------------------------------------------------------------

def reconcile_deployment(cluster, deploy, key):
    if deploy is None or deploy['metadata'].get('deletionTimestamp'):
        return
    namespace, name = key
    template = deploy['spec']['template']
    pod_hash = template_hash(template)
    replicasets = [rs for rs in cluster.store.list_refs('apps', 'replicasets', namespace) if owned_by(rs, deploy['metadata']['uid'])]
    current = next((rs for rs in replicasets if (rs['metadata'].get('labels') or {}).get('pod-template-hash') == pod_hash), None)
    desired = 0 if deploy['spec'].get('paused') else deploy['spec'].get('replicas', 1)
    if current is None:
        labels = dict((template.get('metadata') or {}).get('labels') or {}, **{'pod-template-hash': pod_hash})
        rs_template = copy.deepcopy(template)
        rs_template.setdefault('metadata', {})['labels'] = labels
        selector = copy.deepcopy(deploy['spec']['selector'])
        selector.setdefault('matchLabels', {})['pod-template-hash'] = pod_hash
        revision = 1 + max([int((rs['metadata'].get('annotations') or {}).get('deployment.kubernetes.io/revision', '0')) for rs in replicasets] or [0])
        current = _create(cluster, 'apps', 'replicasets', {
            'apiVersion': 'apps/v1', 'kind': 'ReplicaSet',
            'metadata': {'name': '%s-%s' % (name, pod_hash), 'namespace': namespace, 'labels': labels,
                         'annotations': {'deployment.kubernetes.io/revision': str(revision),
                                         'deployment.kubernetes.io/desired-replicas': str(desired)},
                         'ownerReferences': [owner_ref(deploy)]},
            'spec': {'replicas': desired, 'selector': selector, 'template': rs_template}})
        record_event(cluster, deploy, 'ScalingReplicaSet', 'Scaled up replica set %s-%s to %d' % (name, pod_hash, desired), component='deployment-controller')
        if current is None:
            return
    elif current['spec'].get('replicas') != desired:
        updated = copy.deepcopy(current)
        updated['spec']['replicas'] = desired
        cluster.store.update('apps', 'replicasets', updated)
    new_ready = (current.get('status') or {}).get('readyReplicas', 0)
    for rs in replicasets:
        if rs['metadata']['uid'] != current['metadata']['uid'] and rs['spec'].get('replicas', 0) > 0 and new_ready >= desired:
            old = copy.deepcopy(rs)
            old['spec']['replicas'] = 0  # the new set is ready: retire the old one (a compressed rolling update)
            cluster.store.update('apps', 'replicasets', old)
    all_sets = [rs for rs in cluster.store.list_refs('apps', 'replicasets', namespace) if owned_by(rs, deploy['metadata']['uid'])]
    total = sum((rs.get('status') or {}).get('replicas', 0) for rs in all_sets)
    ready = sum((rs.get('status') or {}).get('readyReplicas', 0) for rs in all_sets)
    updated_count = (current.get('status') or {}).get('replicas', 0)
    available = ready
    conditions = (deploy.get('status') or {}).get('conditions')
    complete = updated_count == desired and new_ready >= desired and total == desired
    status = {
        'observedGeneration': deploy['metadata'].get('generation', 1), 'replicas': total, 'updatedReplicas': updated_count,
        'readyReplicas': ready, 'availableReplicas': available, 'unavailableReplicas': max(0, desired - available),
        'conditions': [
            _condition('Available', 'True' if available >= desired else 'False',
                       'MinimumReplicasAvailable' if available >= desired else 'MinimumReplicasUnavailable',
                       'Deployment has minimum availability.' if available >= desired else 'Deployment does not have minimum availability.',
                       conditions),
            _condition('Progressing', 'True', 'NewReplicaSetAvailable' if complete else 'ReplicaSetUpdated',
                       'ReplicaSet "%s" has %s progressing.' % (current['metadata']['name'], 'successfully' if complete else 'is'), conditions),
        ]}
    for field in ('readyReplicas', 'availableReplicas', 'updatedReplicas', 'unavailableReplicas'):
        if not status[field]:
            status.pop(field)
    _set_status(cluster, 'apps', 'deployments', deploy, status)


# -- ReplicaSet ----------------------------------------------------------------------------------------

def reconcile_replicaset(cluster, rs, key):
    if rs is None or rs['metadata'].get('deletionTimestamp'):
        return
    namespace, name = key
    pods = live_pods(cluster, namespace, rs['metadata']['uid'])
    desired = rs['spec'].get('replicas', 1)
    for _ in range(desired - len(pods)):
        pod_name = '%s-%s' % (name, new_name('')[:5])
        _create(cluster, '', 'pods', pod_from_template(rs, rs['spec']['template'], pod_name))
        record_event(cluster, rs, 'SuccessfulCreate', 'Created pod: %s' % pod_name, component='replicaset-controller')
    if len(pods) > desired:
        # Not-ready pods go first, then the youngest, as the ReplicaSet controller prefers.
        victims = sorted(pods, key=lambda p: (pod_ready(p), p['metadata']['creationTimestamp']), reverse=False)[:len(pods) - desired]
        for pod in victims:
            _delete(cluster, '', 'pods', namespace, pod['metadata']['name'])
            record_event(cluster, rs, 'SuccessfulDelete', 'Deleted pod: %s' % pod['metadata']['name'], component='replicaset-controller')
    pods = live_pods(cluster, namespace, rs['metadata']['uid'])
    ready = sum(1 for p in pods if pod_ready(p))
    _set_status(cluster, 'apps', 'replicasets', rs, {'replicas': len(pods), 'fullyLabeledReplicas': len(pods), 'readyReplicas': ready,
                                                     'availableReplicas': ready, 'observedGeneration': rs['metadata'].get('generation', 1)})


def pod_changed(cluster_manager):
    """Pods changing wake their owners (ReplicaSet, StatefulSet, DaemonSet, Job) and those owners' owners."""
    def on_pod(_event, pod):
        for ref in pod['metadata'].get('ownerReferences') or []:
            kind_map = {'ReplicaSet': ('apps', 'replicasets'), 'StatefulSet': ('apps', 'statefulsets'), 'DaemonSet': ('apps', 'daemonsets'),
                        'Job': ('batch', 'jobs')}
            if ref.get('kind') in kind_map:
                group, resource = kind_map[ref['kind']]
                cluster_manager.enqueue(group, resource, pod['metadata']['namespace'], ref['name'])
    return on_pod


def replicaset_changed(cluster_manager):
    def on_rs(_event, rs):
        for ref in rs['metadata'].get('ownerReferences') or []:
            if ref.get('kind') == 'Deployment':
                cluster_manager.enqueue('apps', 'deployments', rs['metadata']['namespace'], ref['name'])
    return on_rs


# -- StatefulSet ---------------------------------------------------------------------------------------

def reconcile_statefulset(cluster, sts, key):
    if sts is None or sts['metadata'].get('deletionTimestamp'):
        return
    namespace, name = key
    desired = sts['spec'].get('replicas', 1)
    pods = {p['metadata']['name']: p for p in live_pods(cluster, namespace, sts['metadata']['uid'])}
    ordered = sts['spec'].get('podManagementPolicy', 'OrderedReady') == 'OrderedReady'
    for index in range(desired):
        pod_name = '%s-%d' % (name, index)
        if pod_name in pods:
            if ordered and not pod_ready(pods[pod_name]):
                break
            continue
        for template in sts['spec'].get('volumeClaimTemplates') or []:
            claim = copy.deepcopy(template)
            claim_name = '%s-%s' % (template['metadata']['name'], pod_name)
            claim['metadata'] = {'name': claim_name, 'namespace': namespace,
                                 'labels': dict((sts['spec']['selector'].get('matchLabels') or {}), **(template['metadata'].get('labels') or {}))}
            claim['apiVersion'], claim['kind'] = 'v1', 'PersistentVolumeClaim'
            claim.pop('status', None)
            _create(cluster, '', 'persistentvolumeclaims', claim)
        pod = pod_from_template(sts, sts['spec']['template'], pod_name,
                                {'statefulset.kubernetes.io/pod-name': pod_name, 'apps.kubernetes.io/pod-index': str(index)})
        pod['spec']['hostname'] = pod_name
        if sts['spec'].get('serviceName'):
            pod['spec']['subdomain'] = sts['spec']['serviceName']
        volumes = pod['spec'].setdefault('volumes', [])
        for template in sts['spec'].get('volumeClaimTemplates') or []:
            volumes.append({'name': template['metadata']['name'],
                            'persistentVolumeClaim': {'claimName': '%s-%s' % (template['metadata']['name'], pod_name)}})
        _create(cluster, '', 'pods', pod)
        record_event(cluster, sts, 'SuccessfulCreate', 'create Pod %s in StatefulSet %s successful' % (pod_name, name), component='statefulset-controller')
        if ordered:
            break
    for pod_name, pod in pods.items():
        if int(pod_name.rsplit('-', 1)[1]) >= desired:
            _delete(cluster, '', 'pods', namespace, pod_name)
    pods = live_pods(cluster, namespace, sts['metadata']['uid'])
    ready = sum(1 for p in pods if pod_ready(p))
    status = {'observedGeneration': sts['metadata'].get('generation', 1), 'replicas': len(pods), 'readyReplicas': ready,
              'currentReplicas': len(pods), 'updatedReplicas': len(pods), 'availableReplicas': ready,
              'currentRevision': '%s-%s' % (name, template_hash(sts['spec']['template'])),
              'updateRevision': '%s-%s' % (name, template_hash(sts['spec']['template']))}
    _set_status(cluster, 'apps', 'statefulsets', sts, status)


# -- DaemonSet ------------------------------------------------------------------------------------------

def reconcile_daemonset(cluster, ds, key):
    if ds is None or ds['metadata'].get('deletionTimestamp'):
        return
    namespace, name = key
    pods = live_pods(cluster, namespace, ds['metadata']['uid'])
    if not pods:
        pod = pod_from_template(ds, ds['spec']['template'], '%s-%s' % (name, new_name('')[:5]))
        pod['spec']['nodeName'] = cluster.node_name
        _create(cluster, '', 'pods', pod)
        pods = live_pods(cluster, namespace, ds['metadata']['uid'])
    ready = sum(1 for p in pods if pod_ready(p))
    _set_status(cluster, 'apps', 'daemonsets', ds, {'desiredNumberScheduled': 1, 'currentNumberScheduled': len(pods), 'numberReady': ready,
                                                    'numberAvailable': ready, 'updatedNumberScheduled': len(pods), 'numberMisscheduled': 0,
                                                    'observedGeneration': ds['metadata'].get('generation', 1)})


# -- Job ---------------------------------------------------------------------------------------------------

def reconcile_job(cluster, job, key):
    if job is None or job['metadata'].get('deletionTimestamp'):
        return
    namespace, name = key
    status = copy.deepcopy(job.get('status') or {})
    if any(c.get('type') in ('Complete', 'Failed') and c.get('status') == 'True' for c in status.get('conditions') or []):
        return
    pods = [p for p in cluster.store.list_refs('', 'pods', namespace) if owned_by(p, job['metadata']['uid'])]
    succeeded = sum(1 for p in pods if (p.get('status') or {}).get('phase') == 'Succeeded')
    failed = sum(1 for p in pods if (p.get('status') or {}).get('phase') == 'Failed')
    active = [p for p in pods if (p.get('status') or {}).get('phase') not in ('Succeeded', 'Failed') and not p['metadata'].get('deletionTimestamp')]
    spec = job['spec']
    completions, parallelism = spec.get('completions', 1), spec.get('parallelism', 1)
    status.setdefault('startTime', now_iso())
    now = now_iso()
    if succeeded >= completions:
        status['conditions'] = [{'type': 'Complete', 'status': 'True', 'lastProbeTime': now, 'lastTransitionTime': now}]
        status['completionTime'] = now
        record_event(cluster, job, 'Completed', 'Job completed', component='job-controller')
    elif failed > spec.get('backoffLimit', 6):
        status['conditions'] = [{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                                 'message': 'Job has reached the specified backoff limit', 'lastProbeTime': now, 'lastTransitionTime': now}]
        record_event(cluster, job, 'BackoffLimitExceeded', 'Job has reached the specified backoff limit', 'Warning', 'job-controller')
    else:
        for _ in range(min(parallelism, completions - succeeded) - len(active)):
            pod_name = '%s-%s' % (name, new_name('')[:5])
            _create(cluster, '', 'pods', pod_from_template(job, spec['template'], pod_name))
            record_event(cluster, job, 'SuccessfulCreate', 'Created pod: %s' % pod_name, component='job-controller')
    status.update({'active': len(active), 'succeeded': succeeded, 'failed': failed, 'ready': sum(1 for p in active if pod_ready(p))})
    for field in ('active', 'succeeded', 'failed'):
        if not status[field]:
            status.pop(field)
    _set_status(cluster, 'batch', 'jobs', job, status)


def install(manager):
    manager.register('apps', 'deployments', reconcile_deployment)
    manager.register('apps', 'replicasets', reconcile_replicaset)
    manager.register('apps', 'statefulsets', reconcile_statefulset)
    manager.register('apps', 'daemonsets', reconcile_daemonset)
    manager.register('batch', 'jobs', reconcile_job)
    manager.watch('', 'pods', pod_changed(manager))
    manager.watch('apps', 'replicasets', replicaset_changed(manager))

