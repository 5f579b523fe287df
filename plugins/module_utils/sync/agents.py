# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transient agent pods: a Secret with the sync's certificate, the pod, and the Service that
exposes it to the control node (NodePort or LoadBalancer).

Every object carries the sync's labels, so a later run (``sweep``) removes what a crashed one left.
Pods run unprivileged: non-root, read-only root filesystem, no capabilities, RuntimeDefault
seccomp, with requests and limits. They run as the app's own user when its pods declare one, so
they can read (and write back) what the app wrote.
"""

from __future__ import annotations

import json
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, ClusterError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import delete_path
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import MANAGED_BY, SYNC_LABEL, TEMP_LABEL, temp_name

AGENT_PORT = 8443
ROLE_LABEL = 'ferry.dev/agent-role'
TLS_DIR = '/etc/ferry/tls'
DATA_DIR = '/data'
NON_ROOT_USER = 65532
MAX_RESTARTS = 5
# An agent's waits (ready, finished) watch its pod, so they end when it changes: polled every 0.25 s,
# a wait ended 0.125 s after the change on average (a whole stage 2 of the benchmark is 6-7 s)
WATCH_SECONDS = 10.0
POLL_SECONDS = 0.25
DEFAULT_RESOURCES = {'requests': {'cpu': '250m', 'memory': '256Mi'}, 'limits': {'cpu': '2', 'memory': '2Gi'}}


def volume_root(name):
    """Where an agent mounts the claim of volume ``name`` (the directory its job names)."""
    return '%s/%s' % (DATA_DIR, name)


class AgentSpec:
    """What an agent pod needs: where, which image, which claims at which paths, how to expose it."""

    def __init__(self, namespace, image, role, args, claims, read_only, exposure='NodePort', resources=None, run_as=None, listens=True):
        self.namespace = namespace
        self.image = image
        self.role = role
        self.args = list(args)
        self.claims = dict(claims)  # volume name -> PVC name; mounted at /data/<volume name>
        self.read_only = read_only
        self.exposure = exposure
        self.resources = resources or DEFAULT_RESOURCES
        self.run_as = run_as  # (user, group, fs group) or None
        self.listens = listens  # a server the control node or another agent dials; else a client that runs to completion


class Agent:
    """One running agent; ``start`` returns once it accepts connections at ``address``."""

    def __init__(self, cluster, sync_id, spec, pki, index=0):
        self.cluster = cluster
        self.sync_id = sync_id
        self.spec = spec
        self.pki = pki
        self.name = temp_name(sync_id, 'agent', spec.role, str(index))
        self.address = None
        self.created = []
        self._watching = True  # until the cluster refuses a watch

    @property
    def labels(self):
        return dict(MANAGED_BY, **{TEMP_LABEL: 'true', SYNC_LABEL: self.sync_id, ROLE_LABEL: self.spec.role, 'ferry.dev/agent': self.name})

    def start(self, timeout=300):
        base = '/api/v1/namespaces/%s' % self.spec.namespace
        self._create('%s/secrets' % base, self._secret())
        self._create('%s/pods' % base, self._pod())
        if not self.spec.listens:
            return None
        self._create('%s/services' % base, self._service())
        self.address = self._wait_reachable(timeout)
        return self.address

    def wait_finished(self, timeout):
        """The ``result`` event of an agent that runs to completion; restarts after a cut connection resume."""
        deadline = time.monotonic() + timeout
        path = '/api/v1/namespaces/%s/pods/%s' % (self.spec.namespace, self.name)
        while True:
            pod = self.cluster.get(path)
            status = pod.get('status') or {}
            if status.get('phase') in ('Succeeded', 'Failed'):
                log = self.logs(tail=200)
                result = last_event(log, 'result')
                if status['phase'] == 'Succeeded' and result is not None:
                    return result
                error = last_event(log, 'error') or {}
                reason = error.get('reason') or _waiting_reason(status)
                raise FerryError('agent %s/%s %s: %s' % (self.spec.namespace, self.name, status['phase'].lower(), reason))
            restarts = _restarts(status)
            if restarts >= MAX_RESTARTS:  # a cut connection resumes; an error that stays (firewall, full volume) does not go away
                error = last_event(self.logs(tail=200), 'error') or {}
                reason = error.get('reason') or _waiting_reason(status)
                raise FerryError('agent %s/%s failed %d times: %s' % (self.spec.namespace, self.name, restarts, reason))
            if time.monotonic() > deadline:
                raise FerryError('agent %s/%s did not finish in %d s%s' % (self.spec.namespace, self.name, timeout, _tail(self.logs())))
            self._wait_for_change(path, pod, deadline)

    def stop(self):
        """Delete the pod, Service and Secret; returns what was removed (missing objects are fine)."""
        removed = []
        for path in reversed(self.created):
            removed += delete_path(self.cluster, path)
        self.created = []
        return removed

    def logs(self, tail=40):
        try:
            from kubernetes import client as k8s_client  # pylint: disable=import-outside-toplevel
            response = k8s_client.CoreV1Api(self.cluster.api_client).read_namespaced_pod_log(
                self.name, self.spec.namespace, tail_lines=tail, _preload_content=False)
            return response.data.decode('utf-8', 'replace')
        except Exception:  # pylint: disable=broad-except
            return ''

    def _create(self, collection, body):
        self.created.append('%s/%s' % (collection, body['metadata']['name']))
        try:
            self.cluster.request('POST', collection, body=body)
        except ApiError as exc:
            if exc.status != 409:  # left by an interrupted attempt of this sync: replaced below
                raise
            delete_path(self.cluster, '%s/%s' % (collection, body['metadata']['name']))
            self._wait_deleted('%s/%s' % (collection, body['metadata']['name']))
            self.cluster.request('POST', collection, body=body)

    def _wait_deleted(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.cluster.get(path)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.2)
        raise FerryError('%s left by an earlier attempt is still being deleted after %d s' % (path, timeout))

    def _secret(self):
        bundle = self.pki.bundle(self.spec.role, self.name)
        return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
                'metadata': {'name': self.name, 'namespace': self.spec.namespace, 'labels': self.labels}, 'stringData': bundle}

    def _pod(self):
        mounts = [{'name': 'tls', 'mountPath': TLS_DIR, 'readOnly': True}, {'name': 'tmp', 'mountPath': '/tmp'}]
        # group-readable through fsGroup: kubelet makes Secret files root-owned, which a non-root agent could not read
        volumes = [{'name': 'tls', 'secret': {'secretName': self.name, 'defaultMode': 0o440}}, {'name': 'tmp', 'emptyDir': {}}]
        for index, (volume, claim) in enumerate(sorted(self.spec.claims.items())):
            mounts.append({'name': 'data-%d' % index, 'mountPath': volume_root(volume), 'readOnly': self.spec.read_only})
            volumes.append({'name': 'data-%d' % index, 'persistentVolumeClaim': {'claimName': claim, 'readOnly': self.spec.read_only}})
        user, group, fs_group = self.spec.run_as or (NON_ROOT_USER, NON_ROOT_USER, None)
        pod_security = {'runAsNonRoot': user != 0, 'runAsUser': user, 'runAsGroup': group, 'seccompProfile': {'type': 'RuntimeDefault'},
                        'fsGroup': fs_group if fs_group is not None else group, 'fsGroupChangePolicy': 'OnRootMismatch'}
        listen = ['--listen', '$(POD_IP):%d' % AGENT_PORT] if self.spec.listens else []
        container = {
            'name': 'agent', 'image': self.spec.image, 'args': self.spec.args + listen + ['--tls', TLS_DIR],
            'env': [{'name': 'POD_IP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}}],
            'resources': self.spec.resources,
            'securityContext': {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True, 'capabilities': {'drop': ['ALL']}},
            'volumeMounts': mounts,
        }
        if self.spec.listens:
            container['ports'] = [{'name': 'transfer', 'containerPort': AGENT_PORT}]
            container['readinessProbe'] = {'tcpSocket': {'port': AGENT_PORT}, 'periodSeconds': 1}
        return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': self.name, 'namespace': self.spec.namespace, 'labels': self.labels},
                'spec': {'restartPolicy': 'OnFailure', 'automountServiceAccountToken': False, 'securityContext': pod_security,
                         'containers': [container], 'volumes': volumes}}

    def _service(self):
        return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': self.name, 'namespace': self.spec.namespace, 'labels': self.labels},
                'spec': {'type': self.spec.exposure, 'selector': {'ferry.dev/agent': self.name},
                         'ports': [{'name': 'transfer', 'port': AGENT_PORT, 'targetPort': AGENT_PORT}]}}

    def _wait_reachable(self, timeout):
        """(host, port) the control node reaches the agent at, once its pod is ready."""
        deadline = time.monotonic() + timeout
        base = '/api/v1/namespaces/%s' % self.spec.namespace
        path = '%s/pods/%s' % (base, self.name)
        while True:
            pod = self.cluster.get(path)
            status = pod.get('status') or {}
            ready = any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in status.get('conditions') or [])
            address = self._exposed_address(base, pod) if ready else None
            if address is not None:
                return address
            if status.get('phase') == 'Failed' or time.monotonic() > deadline or _restarts(status) >= MAX_RESTARTS:
                raise FerryError('agent pod %s/%s did not become ready (waited up to %d s; phase %s, %d restarts; %s)%s'
                                 % (self.spec.namespace, self.name, timeout, status.get('phase'), _restarts(status), _waiting_reason(status),
                                    _tail(self.logs())))
            if ready:
                time.sleep(POLL_SECONDS)  # ready, its Service not yet exposed: the pod's changes do not tell
            else:
                self._wait_for_change(path, pod, deadline)

    def _wait_for_change(self, path, pod, deadline):
        """Until the pod changes (a watch) or the deadline passes; a poll's pause where the cluster will not watch."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        version = (pod.get('metadata') or {}).get('resourceVersion')
        if self._watching and version:  # (without a version a watch would start with the pod as it is: at once)
            try:
                self.cluster.wait_for_change(path, version, min(remaining, WATCH_SECONDS))
                return
            except ClusterError:
                self._watching = False
        time.sleep(min(remaining, POLL_SECONDS))

    def _exposed_address(self, base, pod):
        service = self.cluster.get('%s/services/%s' % (base, self.name))
        port = (service.get('spec') or {}).get('ports', [{}])[0]
        if self.spec.exposure == 'LoadBalancer':
            ingress = ((service.get('status') or {}).get('loadBalancer') or {}).get('ingress') or []
            host = ingress and (ingress[0].get('ip') or ingress[0].get('hostname'))
            return (host, AGENT_PORT) if host else None
        node_name = (pod.get('spec') or {}).get('nodeName')
        if not port.get('nodePort') or not node_name:
            return None
        node = self.cluster.get('/api/v1/nodes/%s' % node_name)
        addresses = {a.get('type'): a.get('address') for a in (node.get('status') or {}).get('addresses') or []}
        host = addresses.get('ExternalIP') or addresses.get('InternalIP')
        return (host, int(port['nodePort'])) if host else None


def _restarts(status):
    return max([c.get('restartCount') or 0 for c in status.get('containerStatuses') or []] or [0])


def _waiting_reason(status):
    for container in status.get('containerStatuses') or []:
        waiting = (container.get('state') or {}).get('waiting')
        if waiting:
            return '%s: %s' % (waiting.get('reason'), waiting.get('message') or '')
    for condition in status.get('conditions') or []:
        if condition.get('status') == 'False' and condition.get('reason'):
            return '%s: %s' % (condition['reason'], condition.get('message') or '')
    return 'no reason given'


def _tail(text, lines=5):
    text = (text or '').strip()
    return '; agent log: ' + ' | '.join(text.splitlines()[-lines:]) if text else ''


def app_user(pods):
    """(user, group, fs group) the app's pods run as, when they declare one; else None.

    ``pods`` are pods or pod templates (``{'spec': ...}``); Ferry's own agents are skipped. The user
    is the one the first container (the app, by convention; sidecars come after it) runs as: its own
    runAsUser, else the pod's.
    """
    for pod in pods:
        if ((pod.get('metadata') or {}).get('labels') or {}).get(ROLE_LABEL):
            continue
        spec = pod.get('spec') or {}
        security = spec.get('securityContext') or {}
        first = (spec.get('containers') or [{}])[0]
        container_security = first.get('securityContext') or {}
        user = container_security.get('runAsUser', security.get('runAsUser'))
        if user is not None:
            return user, container_security.get('runAsGroup', security.get('runAsGroup', user)), security.get('fsGroup')
    return None


def last_event(log_text, event):
    """The last JSON line of an agent log with this ``event``."""
    found = None
    for line in (log_text or '').splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get('event') == event:
            found = record
    return found


def require_filesystems(volumes):
    """Agents read and write files: a raw block claim would leave the agent pod unable to start."""
    block = [v.name for v in volumes if v.volume_mode == 'Block']
    if block:
        raise FerryError('claims %s are raw block volumes, which agents cannot sync yet: leave them out with pvcs' % ', '.join(block))


def sweep(cluster, namespaces, keep_sync_ids=()):
    """Remove agent pods, Services and Secrets that crashed or interrupted syncs left, except those of running syncs."""
    removed = []
    selector = '%s=true,app.kubernetes.io/managed-by=ferry,%s' % (TEMP_LABEL, ROLE_LABEL)
    for namespace in namespaces:
        for collection in ('pods', 'services', 'secrets'):
            path = '/api/v1/namespaces/%s/%s' % (namespace, collection)
            for item in cluster.get(path, labelSelector=selector).get('items') or []:
                if (item['metadata'].get('labels') or {}).get(SYNC_LABEL) not in keep_sync_ids:
                    removed += delete_path(cluster, '%s/%s' % (path, item['metadata']['name']))
    return removed
