# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health validation after a restore: are the restored apps running on the target, and if not, why.

``validate(cluster, objects)`` re-reads every restored object it knows how to judge and polls the
ones not healthy yet until all are, a terminal failure is seen (a failed Job, a failed Pod), or the
timeout ends. Then it runs the user's probes (HTTP GET, or a command exec'd in a pod) and returns a
report that names each unhealthy object with a short reason and the details that explain it: its
pods' waiting/terminated container states, False conditions, latest Warning events and, for a
crashing container, its last log lines.

Rules:
  * Deployment, ReplicaSet (standalone), DeploymentConfig, StatefulSet, DaemonSet: the controller
    has observed the latest generation and every replica is updated, ready and available. A
    workload at 0 replicas is a DR standby and healthy (``ferry.dev/original-replicas`` says how
    many it gets when activated).
  * PersistentVolumeClaim: Bound; Pending is healthy only with a WaitForFirstConsumer class and no
    pod using the claim yet.
  * Service with a selector: at least one ready endpoint (Endpoints, else EndpointSlices), unless
    every workload it selects is at 0 replicas. Services without a selector are not checked.
  * Job: Complete, or suspended. Failed is terminal.
  * Pod (standalone): Ready or Succeeded. Failed is terminal.
Other kinds, controller-owned Pods and ReplicaSets, and Services without a selector are not
checked: they are left out of ``objects`` and counted in ``skipped``.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import open_url

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import get_object, list_items, split_api_version
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.hooks import exec_in_pod, parse_command

try:
    from kubernetes import client as k8s_client
    HAS_KUBERNETES = True
except ImportError:  # pragma: no cover - validate() gets a connected Cluster, which needs the library
    k8s_client = None
    HAS_KUBERNETES = False

STANDBY_ANNOTATION = 'ferry.dev/original-replicas'
MAX_DETAILS = 8            # detail lines per unhealthy object
MAX_PODS_EXPLAINED = 3     # pods of one object whose state is described
MAX_EVENTS = 3             # latest distinct events per object or pod
LOG_LINES = 5
MAX_DETAILED_OBJECTS = 50  # beyond this many unhealthy objects, the rest get no details (the report stays readable)
MAX_BODY = 1 << 20         # bytes of an HTTP probe's answer searched for ``contains``

# kind -> API groups in which it is checked
CHECKED_KINDS = {
    'Deployment': ('apps', 'extensions'),
    'ReplicaSet': ('apps', 'extensions'),
    'StatefulSet': ('apps',),
    'DaemonSet': ('apps', 'extensions'),
    'DeploymentConfig': ('apps.openshift.io',),
    'Pod': ('',),
    'PersistentVolumeClaim': ('',),
    'Service': ('',),
    'Job': ('batch',),
}
WORKLOAD_KINDS = ('Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'DeploymentConfig')
# status counts that must reach the desired number, in the order a reason names the first short one
_REPLICA_FIELDS = {
    'Deployment': (('availableReplicas', 'replicas available'), ('readyReplicas', 'replicas ready'), ('updatedReplicas', 'replicas updated')),
    'ReplicaSet': (('availableReplicas', 'replicas available'), ('readyReplicas', 'replicas ready')),
    'StatefulSet': (('readyReplicas', 'replicas ready'), ('updatedReplicas', 'replicas updated')),
    'DaemonSet': (('numberReady', 'pods ready'), ('updatedNumberScheduled', 'pods updated')),
    'DeploymentConfig': (('availableReplicas', 'replicas available'),),
}
# workloads whose pod template a Service may select, for the standby rule
_SCALABLE = (('/apis/apps/v1/namespaces/%s/deployments', False), ('/apis/apps/v1/namespaces/%s/statefulsets', False),
             ('/apis/apps/v1/namespaces/%s/replicasets', True), ('/apis/apps.openshift.io/v1/namespaces/%s/deploymentconfigs', False))
_DEFAULT_CLASS_ANNOTATIONS = ('storageclass.kubernetes.io/is-default-class', 'storageclass.beta.kubernetes.io/is-default-class')


def validate(cluster, objects, timeout=300.0, probes=None, interval=2.0, progress=None):
    """Wait until the restored ``objects`` are healthy on ``cluster``, then run ``probes``; return the report.

    ``progress(healthy_count, total, pending_names)`` is called after every round of checks.
    Report: healthy, checked, skipped, duration_seconds, timed_out, summary, objects
    [{kind, namespace, name, healthy, reason}], unhealthy [{kind, namespace, name, reason,
    details}], probes [{name, healthy, reason}].
    """
    started = time.monotonic()
    deadline = started + max(0.0, float(timeout or 0))
    interval = max(0.05, float(interval or 0))
    run = _Validation(cluster)
    targets, seen, skipped = [], set(), 0
    for obj in objects or []:
        target = _Target(obj)
        if not target.checkable():
            skipped += 1
        elif target.key not in seen:
            seen.add(target.key)
            targets.append(target)
    timed_out = stopped = False
    while True:
        run.new_round()
        for target in targets:
            if not (target.healthy or target.skipped):
                run.check(target)
        active = [t for t in targets if not t.skipped]
        pending = [t for t in active if not t.healthy]
        if progress is not None:
            progress(len(active) - len(pending), len(active), [t.label for t in pending])
        if not pending:
            break
        if any(t.terminal for t in pending):
            stopped = True  # a failed Job or Pod will not recover: report now
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        time.sleep(min(interval, remaining))
    run.new_round()
    for number, target in enumerate(pending):
        if number < MAX_DETAILED_OBJECTS:
            target.details = run.explain(target)
        else:
            target.details = ['details not gathered: more than %d objects are unhealthy' % MAX_DETAILED_OBJECTS]
    probe_results = run_probes(run, probes, deadline if not pending else None, interval)
    failed_probes = [p for p in probe_results if not p['healthy']]
    duration = time.monotonic() - started
    return {
        'healthy': not pending and not failed_probes,
        'checked': len(active),
        'skipped': skipped + len(targets) - len(active),
        'duration_seconds': round(duration, 3),
        'timed_out': timed_out,
        'summary': _summary(active, pending, probe_results, failed_probes, timed_out, stopped, timeout),
        'objects': [dict(t.identity(), healthy=t.healthy, reason=t.reason) for t in active],
        'unhealthy': [dict(t.identity(), reason=t.reason, details=t.details) for t in pending],
        'probes': probe_results,
    }


def _summary(active, pending, probe_results, failed_probes, timed_out, stopped, timeout):
    text = '%d of %d objects healthy' % (len(active) - len(pending), len(active))
    if timed_out:
        text += ' (timed out after %gs)' % float(timeout or 0)
    elif stopped:
        text += ' (stopped early: %s)' % ', '.join(t.label for t in pending if t.terminal)
    if probe_results:
        text += '; %d of %d probes passed' % (len(probe_results) - len(failed_probes), len(probe_results))
    return text


class _Target:
    """One restored object under validation."""

    def __init__(self, obj):
        meta = obj.get('metadata') or {}
        self.api_version = obj.get('apiVersion') or ''
        self.kind = obj.get('kind') or ''
        self.namespace = meta.get('namespace')
        self.name = meta.get('name')
        self.key = (self.kind, self.namespace, self.name)
        self.label = '%s %s/%s' % (self.kind, self.namespace, self.name)
        self.healthy = False
        self.terminal = False
        self.skipped = False
        self.reason = 'not checked yet'
        self.live = None
        self.last_read = None  # the reason from the last successful read, for when the API stops answering
        self.details = []

    def checkable(self):
        return split_api_version(self.api_version)[0] in CHECKED_KINDS.get(self.kind, ())

    def identity(self):
        return {'kind': self.kind, 'namespace': self.namespace, 'name': self.name}


class _Validation:
    """Checks and explanations against one cluster, with per-round caches of namespace listings."""

    def __init__(self, cluster):
        self.cluster = cluster
        self._classes = {}
        self._round = {}

    def new_round(self):
        self._round = {}

    def _cached(self, key, read):
        if key not in self._round:
            self._round[key] = read()
        return self._round[key]

    # -- checks ------------------------------------------------------------------------------------
    def check(self, target):
        """Re-read ``target`` and judge it: sets healthy, reason, terminal (or skipped)."""
        try:
            live = get_object(self.cluster, target.api_version, target.kind, target.name, target.namespace)
            if live is None:
                verdict = (False, 'not found on the cluster (deleted since the restore?)', False)
            elif target.kind in WORKLOAD_KINDS:
                verdict = self._check_workload(target.kind, live)
            else:
                verdict = getattr(self, '_check_' + target.kind.lower())(live)
        except FerryError as exc:  # the API failing for one object does not stop the validation
            live, verdict = None, (False, 'cannot read its state: %s' % exc, False)
        if verdict is None:
            target.skipped = True
            return
        target.live = live
        target.healthy, target.reason, target.terminal = verdict
        if live is not None:
            target.last_read = target.reason

    @staticmethod
    def _check_workload(kind, live):
        meta, spec, status = live.get('metadata') or {}, live.get('spec') or {}, live.get('status') or {}
        if kind == 'ReplicaSet' and _controller(live):
            return None  # its Deployment is what is checked
        if kind != 'DaemonSet' and _replicas(live) == 0:
            return True, _standby_reason(live), False
        generation, observed = meta.get('generation'), status.get('observedGeneration')
        if generation and (observed or 0) < generation:
            return False, 'not rolled out yet: its controller has not observed generation %s (observed: %s)' % (generation, observed or 'none'), False
        if kind == 'DaemonSet':
            want = status.get('desiredNumberScheduled') or 0
            if want == 0:
                return True, _standby_reason(live) if STANDBY_ANNOTATION in (meta.get('annotations') or {}) else 'no node selected (0 pods desired)', False
        else:
            want = spec.get('replicas', 1)
        for field, what in _REPLICA_FIELDS[kind]:
            count = status.get(field) or 0
            if count < want:
                reason = '%d/%d %s' % (count, want, what)
                if field == 'updatedReplicas' and kind == 'StatefulSet' and status.get('currentRevision') and \
                        status.get('currentRevision') == status.get('updateRevision'):
                    continue  # every pod runs the current revision (updatedReplicas is not always reported)
                if _condition(live, 'Progressing', 'False', 'ProgressDeadlineExceeded'):
                    reason += '; progress deadline exceeded'
                return False, reason, False
        if kind == 'Deployment' and (status.get('replicas') or 0) > want:
            return False, 'rollout finishing: %d old replicas still running' % (status['replicas'] - want), False
        return True, '%d/%d %s' % (want, want, _REPLICA_FIELDS[kind][0][1]), False

    def _check_persistentvolumeclaim(self, live):
        spec, phase = live.get('spec') or {}, (live.get('status') or {}).get('phase') or 'Pending'
        if phase == 'Bound':
            return True, 'Bound to %s' % spec.get('volumeName'), False
        if phase != 'Pending':
            return False, '%s (its PersistentVolume %s is gone)' % (phase, spec.get('volumeName')) if phase == 'Lost' else phase, False
        if spec.get('volumeName'):
            return False, 'Pending: waiting to bind PersistentVolume %s' % spec['volumeName'], False
        class_name = spec.get('storageClassName')
        if class_name == '':
            return False, 'Pending: no StorageClass (static binding) and no matching PersistentVolume', False
        storage_class = self.storage_class(class_name)
        if storage_class is None:
            if class_name is None:
                return False, 'Pending: it names no StorageClass and the cluster has no default StorageClass', False
            return False, 'Pending: StorageClass "%s" does not exist on this cluster' % class_name, False
        class_name = storage_class['metadata']['name']
        if storage_class.get('volumeBindingMode') == 'WaitForFirstConsumer':
            users = self.pods_using(live)
            if not users:
                return True, 'Pending until a pod uses it (StorageClass %s binds on first consumer)' % class_name, False
            return False, 'Pending although pod %s uses it (StorageClass %s, WaitForFirstConsumer)' % (users[0], class_name), False
        return False, 'Pending: not provisioned yet by %s (StorageClass %s)' % (storage_class.get('provisioner'), class_name), False

    def _check_service(self, live):
        spec = live.get('spec') or {}
        if not spec.get('selector') or spec.get('type') == 'ExternalName':
            return None  # endpoints managed by someone else: nothing to expect
        namespace, name = live['metadata']['namespace'], live['metadata']['name']
        ready, not_ready = self.endpoint_counts(namespace, name)
        if ready:
            return True, '%d ready endpoint%s' % (ready, '' if ready == 1 else 's'), False
        selected = self.selected_workloads(namespace, spec['selector'])
        if selected and all(_replicas(w) == 0 for w in selected):
            return True, 'no endpoints: every workload it selects is scaled to 0 (standby)', False
        return False, 'no ready endpoints%s (selector %s)' % (' (%d not ready)' % not_ready if not_ready else '', selector_string(spec['selector'])), False

    @staticmethod
    def _check_job(live):
        spec, status = live.get('spec') or {}, live.get('status') or {}
        for kind in ('Failed', 'FailureTarget'):
            failed = _condition(live, kind, 'True')
            if failed:
                return False, 'failed: %s' % _join(failed.get('reason'), failed.get('message')), True
        if _condition(live, 'Complete', 'True'):
            return True, 'complete (%d succeeded)' % (status.get('succeeded') or 0), False
        if spec.get('suspend'):
            return True, 'suspended (it runs when resumed)', False
        return False, 'not complete yet: %d active, %d succeeded, %d failed' % (
            status.get('active') or 0, status.get('succeeded') or 0, status.get('failed') or 0), False

    @staticmethod
    def _check_pod(live):
        if _controller(live):
            return None  # its workload is what is checked
        status = live.get('status') or {}
        phase = status.get('phase') or 'Pending'
        if phase == 'Succeeded':
            return True, 'Succeeded', False
        if phase == 'Failed':  # a terminal phase: the kubelet will not restart it
            return False, 'Failed' + (': %s' % _join(status.get('reason'), status.get('message')) if status.get('reason') else ''), True
        if _pod_ready(live):
            return True, 'Ready', False
        return False, '%s, not ready' % phase, False

    # -- reads -------------------------------------------------------------------------------------
    def storage_class(self, name):
        """The StorageClass called ``name`` (None: the default class), or None; cached for the run."""
        if name not in self._classes:
            if name is None:
                classes = list_items(self.cluster, '/apis/storage.k8s.io/v1/storageclasses') or []
                self._classes[name] = next((c for c in classes if _is_default_class(c)), None)
            else:
                self._classes[name] = get_object(self.cluster, 'storage.k8s.io/v1', 'StorageClass', name)
        return self._classes[name]

    def pods(self, namespace):
        return self._cached(('pods', namespace), lambda: list_items(self.cluster, '/api/v1/namespaces/%s/pods' % namespace) or [])

    def pods_using(self, claim):
        name = claim['metadata']['name']
        return sorted(p['metadata']['name'] for p in self.pods(claim['metadata']['namespace'])
                      if (p.get('status') or {}).get('phase') not in ('Succeeded', 'Failed')
                      and any((v.get('persistentVolumeClaim') or {}).get('claimName') == name for v in (p.get('spec') or {}).get('volumes') or []))

    def pods_selected(self, namespace, selector):
        text = selector_string(selector)
        if not text:
            return []
        return self.cluster.get('/api/v1/namespaces/%s/pods' % namespace, labelSelector=text).get('items') or []

    def endpoint_counts(self, namespace, name):
        """(ready, not ready) addresses of a Service, from its Endpoints, else from its EndpointSlices."""
        endpoints = get_object(self.cluster, 'v1', 'Endpoints', name, namespace) or {}
        subsets = endpoints.get('subsets') or []
        ready = sum(len(s.get('addresses') or []) for s in subsets)
        not_ready = sum(len(s.get('notReadyAddresses') or []) for s in subsets)
        if ready:
            return ready, not_ready
        try:
            slices = self.cluster.get('/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices' % namespace,
                                      labelSelector='kubernetes.io/service-name=%s' % name).get('items') or []
        except ApiError as exc:
            if exc.status != 404:
                raise
            slices = []
        for endpoint_slice in slices:
            for endpoint in endpoint_slice.get('endpoints') or []:
                if (endpoint.get('conditions') or {}).get('ready') is False:
                    not_ready += 1
                else:
                    ready += 1
        return ready, not_ready

    def selected_workloads(self, namespace, selector):
        """Scalable workloads of the namespace whose pod template the Service selector matches."""
        def read():
            found = []
            for path, skip_owned in _SCALABLE:
                found += [w for w in list_items(self.cluster, path % namespace) or [] if not (skip_owned and _controller(w))]
            return found
        workloads = self._cached(('workloads', namespace), read)
        return [w for w in workloads if _selects(selector, ((((w.get('spec') or {}).get('template') or {}).get('metadata') or {}).get('labels')))]

    def events(self, namespace, name, kind, warnings_only=True):
        """The latest distinct events about one object, newest first, as text."""
        try:
            items = self.cluster.get('/api/v1/namespaces/%s/events' % namespace, fieldSelector='involvedObject.name=%s' % name).get('items') or []
        except FerryError as exc:
            return ['events not readable: %s' % exc]
        merged = {}
        for event in sorted(items, key=_event_order):
            if (event.get('involvedObject') or {}).get('kind') not in (kind, None) or (warnings_only and event.get('type') != 'Warning'):
                continue
            key = (event.get('reason') or '', ' '.join(str(event.get('message') or '').split()))
            count = merged.pop(key, 0) + (event.get('count') or 1)
            merged[key] = count  # re-inserted: the dict ends with the latest
        latest = list(merged.items())[::-1][:MAX_EVENTS]
        return ['event %s%s: %s' % (reason, ' (x%d)' % count if count > 1 else '', _short(message)) for (reason, message), count in latest]

    def log_tail(self, namespace, pod, container):
        """The last log lines of a container: of its previous instance when there is one, else of the current."""
        if not HAS_KUBERNETES:
            return []
        core = k8s_client.CoreV1Api(self.cluster.api_client)
        for previous in (True, False):
            try:
                response = core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=LOG_LINES, previous=previous,
                                                        _preload_content=False, _request_timeout=self.cluster.request_timeout)
                text = response.data.decode('utf-8', 'replace')
            except Exception:  # pylint: disable=broad-except
                continue  # no previous instance, or logs not readable: the rest of the report still helps
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return [_short(line, 200) for line in lines[-LOG_LINES:]]
        return []

    # -- explanations ------------------------------------------------------------------------------
    def explain(self, target):
        """Detail lines saying why an unhealthy object is unhealthy (best effort, capped)."""
        live, items = target.live, []
        if live is None:
            return ['state when last read: %s' % target.last_read] if target.last_read else []
        namespace = live['metadata'].get('namespace')
        try:
            if target.kind in WORKLOAD_KINDS:
                items = self._workload_items(target.kind, live)
            elif target.kind == 'Pod':
                items = self._pod_items(live, None)
            elif target.kind == 'Job':
                items = self._pods_items(self.pods_selected(namespace, (live.get('spec') or {}).get('selector')))
                items += [(1, None, text) for text in self.events(namespace, target.name, 'Job')]
            elif target.kind == 'PersistentVolumeClaim':
                items = [(1, None, text) for text in self.events(namespace, target.name, 'PersistentVolumeClaim', warnings_only=False)]
                items += [(2, None, 'used by pod %s' % name) for name in self.pods_using(live)[:MAX_PODS_EXPLAINED]]
            elif target.kind == 'Service':
                items = self._service_items(live)
        except FerryError as exc:
            items.append((3, None, 'details not readable: %s' % exc))
        return _render(items)

    def _workload_items(self, kind, live):
        namespace, name = live['metadata']['namespace'], live['metadata']['name']
        items = []
        for condition in (live.get('status') or {}).get('conditions') or []:
            if (condition.get('type'), condition.get('status')) in (('Progressing', 'False'), ('ReplicaFailure', 'True')):
                text = _join(condition.get('reason'), condition.get('message'))
                items.append((0, None, 'condition %s=%s: %s' % (condition['type'], condition['status'], text)))
        selector = (live.get('spec') or {}).get('selector')
        pods = self.pods_selected(namespace, selector)
        if not pods:
            items.append((0, None, 'no pods match its selector %s' % selector_string(selector)))
        items += self._pods_items(pods)
        items += [(1, None, text) for text in self.events(namespace, name, kind)]
        if kind == 'Deployment':  # pods that cannot be created (quota, admission) show on the ReplicaSet
            owned = [rs for rs in self.cluster.get('/apis/apps/v1/namespaces/%s/replicasets' % namespace, labelSelector=selector_string(selector))
                     .get('items') or [] if _controller(rs, live['metadata'].get('uid'))]
            if owned:
                newest = max(owned, key=lambda rs: int((rs['metadata'].get('annotations') or {}).get('deployment.kubernetes.io/revision') or 0))
                items += [(1, ('ReplicaSet', newest['metadata']['name']), text) for text in self.events(namespace, newest['metadata']['name'], 'ReplicaSet')]
        return items

    def _service_items(self, live):
        selector = live['spec']['selector']
        pods = self.pods_selected(live['metadata']['namespace'], selector)
        if not pods:
            return [(0, None, 'selects no pods: no pod has the labels %s' % selector_string(selector))]
        items = self._pods_items(pods)
        if not items:
            items.append((0, None, '%d selected pods are ready but not in its endpoints yet' % len(pods)))
        return items

    def _pods_items(self, pods):
        """Items about the pods that are neither ready nor done, the newest first."""
        troubled = [p for p in pods if not p['metadata'].get('deletionTimestamp') and not _pod_ready(p)
                    and (p.get('status') or {}).get('phase') != 'Succeeded']
        troubled.sort(key=lambda p: (p['metadata'].get('creationTimestamp') or '', p['metadata']['name']), reverse=True)
        items = []
        for pod in troubled[:MAX_PODS_EXPLAINED]:
            items += self._pod_items(pod, ('pod', pod['metadata']['name']))
        return items

    def _pod_items(self, pod, subject):
        """(priority, subject, text) items: container states, then events and logs, then conditions."""
        namespace, name = pod['metadata']['namespace'], pod['metadata']['name']
        status = pod.get('status') or {}
        items, crashing = [], []
        if status.get('reason'):
            items.append((0, subject, '%s: %s' % (status.get('phase') or 'Pending', _join(status['reason'], status.get('message')))))
        statuses = [('init container', s) for s in status.get('initContainerStatuses') or []]
        statuses += [('container', s) for s in status.get('containerStatuses') or []]
        for what, container in statuses:
            state, last = container.get('state') or {}, (container.get('lastState') or {}).get('terminated')
            waiting, terminated = state.get('waiting'), state.get('terminated')
            label = '%s %s' % (what, container.get('name'))
            if waiting:
                items.append((0, subject, '%s waiting: %s' % (label, _join(waiting.get('reason'), waiting.get('message')))))
            if terminated and (terminated.get('exitCode') or what == 'container'):
                items.append((0, subject, '%s terminated: %s' % (label, _termination(terminated))))
            elif last and (waiting or container.get('restartCount')):
                # (a crash-looping container may be caught running between two crashes: its last exit still explains it)
                items.append((0, subject, '%s last terminated: %s, %d restarts' % (label, _termination(last), container.get('restartCount') or 0)))
            if (waiting or {}).get('reason') == 'CrashLoopBackOff' or (terminated or {}).get('exitCode') or (last or {}).get('exitCode'):
                crashing.append(container.get('name'))
        items += [(1, subject, text) for text in self.events(namespace, name, 'Pod')]
        for container in crashing[:1]:
            lines = self.log_tail(namespace, name, container)
            if lines:
                items.append((2, subject, 'last log lines of container %s: %s' % (container, ' | '.join(lines))))
        false = {c.get('type'): c for c in status.get('conditions') or [] if c.get('status') == 'False' and c.get('reason')}
        if 'ContainersReady' in false:
            false.pop('Ready', None)
        items += [(3, subject, 'condition %s=False: %s' % (kind, _join(c['reason'], c.get('message')))) for kind, c in false.items()]
        return items


# -- probes ------------------------------------------------------------------------------------------

def run_probes(run, probes, deadline, interval):
    """[{name, healthy, reason}]: each probe until it passes, fails for good or ``deadline`` passes (None: once)."""
    results, pending = [], []
    for number, probe in enumerate(probes or []):
        results.append({'name': (probe or {}).get('name') or 'probe %d' % (number + 1), 'healthy': False, 'reason': 'not run'})
        pending.append(number)
    while pending:
        for number in list(pending):
            healthy, reason, final = run_probe(run, probes[number] or {})
            results[number].update(healthy=healthy, reason=reason)
            if healthy or final:
                pending.remove(number)
        remaining = deadline - time.monotonic() if deadline is not None else 0
        if not pending or remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    return results


def run_probe(run, probe):
    """(healthy, reason, final): ``final`` when trying again cannot help (a refusal, an invalid probe)."""
    if probe.get('http_get'):
        return http_probe(probe['http_get'])
    if probe.get('exec'):
        return exec_probe(run, probe['exec'])
    return False, 'invalid probe: give http_get or exec', True


def http_probe(spec):
    url = spec.get('url') or ''
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ('http', 'https'):
        return False, 'invalid probe: url %r is not an http:// or https:// URL' % safe_url(url), True
    shown = safe_url(url)
    ca_file = spec.get('ca_file') or None
    if ca_file and not os.path.isfile(ca_file):
        return False, 'invalid probe: ca_file %s does not exist' % ca_file, True
    expected = [int(code) for code in spec.get('expected_status') or [200]]
    headers = dict(spec.get('headers') or {})
    parts = urllib.parse.urlsplit(url)
    username = password = None
    if parts.username is not None:  # user:password@host: sent as Basic authentication
        username, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or '')
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition('@')[2]))
    try:
        response = open_url(url, method='GET', headers=headers, timeout=float(spec.get('timeout') or 5),
                            validate_certs=spec.get('validate_certs') is not False, ca_path=ca_file,
                            url_username=username, url_password=password, force_basic_auth=username is not None)
        code, body = response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        code, body = exc.code, _error_body(exc)
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
        return False, 'GET %s failed: %s' % (shown, getattr(exc, 'reason', None) or exc), False
    if code not in expected:
        return False, 'GET %s answered HTTP %d, expected %s' % (shown, code, ' or '.join(str(c) for c in expected)), False
    contains = spec.get('contains')
    if contains and contains not in body.decode('utf-8', 'replace'):
        return False, 'GET %s answered HTTP %d but the body (%d bytes) does not contain %r' % (shown, code, len(body), contains), False
    return True, 'GET %s answered HTTP %d%s' % (shown, code, ' containing %r' % contains if contains else ''), False


def _error_body(exc):
    try:
        return exc.read(MAX_BODY) or b''
    except (OSError, ValueError):
        return b''


def safe_url(url):
    """``url`` without credentials: no user:password, query values masked."""
    parts = urllib.parse.urlsplit(url)
    query = '&'.join('%s=***' % key for key, _value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition('@')[2], parts.path, query, ''))


def exec_probe(run, spec):
    namespace = spec.get('namespace')
    command = parse_command(spec['command']) if isinstance(spec.get('command'), str) else spec.get('command')
    if not (namespace and command and (spec.get('pod') or spec.get('selector'))):
        return False, 'invalid probe: exec needs namespace, command and pod or selector', True
    try:
        pod = _probe_pod(run, namespace, spec)
    except FerryError as exc:
        return False, 'cannot find the pod to exec in: %s' % exc, False
    if isinstance(pod, str):
        return False, pod, False
    name = pod['metadata']['name']
    containers = [c['name'] for c in (pod.get('spec') or {}).get('containers') or []]
    container = spec.get('container') or (containers[0] if containers else None)
    if container not in containers:
        return False, 'invalid probe: container %s is not in pod %s/%s (its containers: %s)' % (container, namespace, name, ', '.join(containers)), True
    timeout = float(spec.get('timeout') or 10)
    where = 'pod %s/%s (container %s)' % (namespace, name, container)
    try:
        code, output = exec_in_pod(run.cluster, namespace, name, container, command, timeout)
    except Exception as exc:  # pylint: disable=broad-except
        refusal = exec_refusal(exc)
        if refusal:
            return False, 'exec refused by the API server for %s: %s' % (where, refusal[1]), 400 <= refusal[0] < 500 and refusal[0] not in (404, 409, 429)
        return False, 'exec in %s failed: %s' % (where, _short(exc)), False
    expected = int(spec.get('expected_rc') or 0)
    if code == expected:
        return True, 'command exited %d in %s' % (code, where), False
    if code == -1:
        return False, 'command gave no exit status within %gs in %s' % (timeout, where), False
    tail = [line for line in output.splitlines() if line.strip()][-1:]
    return False, 'command exited %d (expected %d) in %s%s' % (code, expected, where, ': %s' % _short(tail[0], 200) if tail else ''), False


def _probe_pod(run, namespace, spec):
    """The pod an exec probe runs in, or a string saying why there is none (yet)."""
    if spec.get('pod'):
        pod = get_object(run.cluster, 'v1', 'Pod', spec['pod'], namespace)
        if pod is None:
            return 'pod %s/%s not found' % (namespace, spec['pod'])
        phase = (pod.get('status') or {}).get('phase')
        return pod if phase == 'Running' else 'pod %s/%s is %s, not Running' % (namespace, spec['pod'], phase or 'Pending')
    pods = run.cluster.get('/api/v1/namespaces/%s/pods' % namespace, labelSelector=spec['selector']).get('items') or []
    running = sorted((p for p in pods if (p.get('status') or {}).get('phase') == 'Running' and not p['metadata'].get('deletionTimestamp')),
                     key=lambda p: (not _pod_ready(p), p['metadata']['name']))
    return running[0] if running else 'no running pod matches selector %s in namespace %s' % (spec['selector'], namespace)


def exec_refusal(exc):
    """(status, text) of the API server's refusal to open an exec stream, found along the exception chain; or None.

    The client reports a refused WebSocket upgrade as ``Handshake status 400 Bad Request -+-+- headers
    -+-+- body`` (and some versions then fail on it with an unrelated AttributeError).
    """
    link, seen = exc, 0
    while link is not None and seen < 10:
        status, body = getattr(link, 'status_code', None), getattr(link, 'resp_body', None)
        match = re.search(r'Handshake status (\d+)', str(link))
        if not status and match:
            status, body = int(match.group(1)), str(link).rsplit('-+-+-', 1)[-1]
        if not status and isinstance(getattr(link, 'status', None), int) and link.status >= 400:
            status, body = link.status, getattr(link, 'body', None)
        if status:
            return status, _status_text(status, body)
        link, seen = link.__cause__ or link.__context__, seen + 1
    return None


def _status_text(status, body):
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    try:
        document = json.loads(body or '')
    except ValueError:
        document = None
    if isinstance(document, dict) and (document.get('message') or document.get('reason')):
        return '%s %s: %s' % (status, document.get('reason') or '', document.get('message') or '')
    return '%s %s' % (status, _short(body or '', 200))


# -- helpers -------------------------------------------------------------------------------------------

def selector_string(selector):
    """A LabelSelector (matchLabels, matchExpressions) or a plain label map (Service, DeploymentConfig) in the API's string syntax."""
    if not selector:
        return ''
    if 'matchLabels' in selector or 'matchExpressions' in selector:
        labels, expressions = selector.get('matchLabels') or {}, selector.get('matchExpressions') or []
    else:
        labels, expressions = selector, []
    parts = ['%s=%s' % item for item in sorted(labels.items())]
    for expression in expressions:
        key, operator = expression.get('key'), expression.get('operator')
        if operator in ('In', 'NotIn'):
            parts.append('%s %s (%s)' % (key, operator.lower(), ','.join(expression.get('values') or [])))
        else:
            parts.append(key if operator == 'Exists' else '!%s' % key)
    return ','.join(parts)


def _is_default_class(storage_class):
    annotations = storage_class['metadata'].get('annotations') or {}
    return any(annotations.get(key) == 'true' for key in _DEFAULT_CLASS_ANNOTATIONS)


def _selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def _replicas(obj):
    replicas = (obj.get('spec') or {}).get('replicas')
    return 1 if replicas is None else replicas


def _standby_reason(obj):
    original = ((obj.get('metadata') or {}).get('annotations') or {}).get(STANDBY_ANNOTATION)
    return 'scaled to 0 (standby; %s replicas when activated)' % original if original else 'scaled to 0 (standby)'


def _controller(obj, uid=None):
    return any(ref.get('controller') and (uid is None or ref.get('uid') == uid) for ref in (obj.get('metadata') or {}).get('ownerReferences') or [])


def _condition(obj, kind, status, reason=None):
    for condition in (obj.get('status') or {}).get('conditions') or []:
        if condition.get('type') == kind and condition.get('status') == status and (reason is None or condition.get('reason') == reason):
            return condition
    return None


def _pod_ready(pod):
    return _condition(pod, 'Ready', 'True') is not None


def _termination(state):
    text = '%s (exit code %s)' % (state.get('reason') or 'terminated', state.get('exitCode'))
    return text + (': %s' % _short(state['message'], 200) if state.get('message') else '')


def _event_order(event):
    version = str((event.get('metadata') or {}).get('resourceVersion') or '')
    return (event.get('lastTimestamp') or event.get('eventTime') or (event.get('metadata') or {}).get('creationTimestamp') or '',
            int(version) if version.isdigit() else 0)


def _join(*parts):
    return ': '.join(str(p) for p in parts if p) or 'no reason given'


def _short(text, limit=300):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit] + '...'


def _render(items):
    """Detail lines from (priority, subject, text) items: by priority, the same text of several pods on one line, capped."""
    grouped = {}
    for priority, subject, text in sorted(items, key=lambda item: item[0]):
        grouped.setdefault((text, subject[0] if subject else None), []).append(subject[1] if subject else None)
    lines = []
    for (text, kind), names in grouped.items():
        names = [n for n in dict.fromkeys(names) if n]
        if not names:
            lines.append(text)
        else:
            lines.append('%s %s: %s' % (kind + ('s' if len(names) > 1 else ''), ', '.join(names), text))
    if len(lines) > MAX_DETAILS:
        lines = lines[:MAX_DETAILS - 1] + ['(%d more)' % (len(lines) - MAX_DETAILS + 1)]
    return lines
