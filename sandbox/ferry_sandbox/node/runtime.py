"""The node: schedules pods, gives each a loopback IP, and runs them.

Pods whose image is a local image really run: each container is a host process in a private mount
namespace (see launch.py) with its volumes at their mountPaths. Other images are simulated:
Running and Ready at once, or as the ``sandbox.ferry.dev/simulate`` annotation says (``crash``,
``unready``, ``fail``), so health validation can be tested.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from ..errors import ApiError
from ..images import default_paths, resolve
from ..store import now_iso
from ..controllers.manager import record_event
from ..controllers.storage import volume_dir

SIMULATE = 'sandbox.ferry.dev/simulate'
LAUNCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'launch.py')
_VAR = re.compile(r'\$\(([A-Za-z_][A-Za-z0-9_]*)\)')


def _condition(kind, status, reason=None, message=None):
    entry = {'type': kind, 'status': status, 'lastProbeTime': None, 'lastTransitionTime': now_iso()}
    if reason:
        entry['reason'] = reason
    if message:
        entry['message'] = message
    return entry


def _owner_kind(pod):
    return next((r.get('kind') for r in pod['metadata'].get('ownerReferences') or [] if r.get('controller')), None)


class Container:
    def __init__(self, process, log_file, started):
        self.process = process
        self.log_file = log_file
        self.started = started
        self.restarts = 0
        self.exit_code = None
        self.finished = None
        self.next_start = None
        self.last = None  # (exit code, started, finished) of the run before a restart


class Node:
    def __init__(self, cluster):
        self.cluster = cluster
        self.running = {}     # (namespace, name) -> {container name: Container}
        self.simulated = {}   # (namespace, name) -> dict(started=..., restarts=...)
        self.lock = threading.RLock()

    # -- reconcile -----------------------------------------------------------------------------------
    def reconcile(self, cluster, pod, key):
        if pod is None or pod['metadata'].get('deletionTimestamp'):
            self._kill(key)
            if pod is not None and pod['metadata'].get('deletionTimestamp') and not pod['metadata'].get('finalizers'):
                try:
                    cluster.store.delete('', 'pods', key[0], key[1])
                except ApiError:
                    pass
            return
        status = pod.get('status') or {}
        if status.get('phase') in ('Succeeded', 'Failed'):
            return
        if not pod['spec'].get('nodeName'):
            pod = dict(pod, spec=dict(pod['spec'], nodeName=cluster.node_name))
            try:
                pod = cluster.store.update('', 'pods', pod)
            except ApiError:
                return
            record_event(cluster, pod, 'Scheduled', 'Successfully assigned %s/%s to %s' % (key[0], key[1], cluster.node_name), component='default-scheduler')
        if status.get('phase') == 'Pending' and key not in self.running and key not in self.simulated:
            self._start(pod, key)

    def _set_status(self, key, status):
        """Replace the pod's status, keeping what stays for the pod's life (addresses, start time)."""
        current = (self.cluster.store.get_ref('', 'pods', key[0], key[1]) or {}).get('status') or {}
        kept = {k: current[k] for k in ('hostIP', 'podIP', 'podIPs', 'startTime', 'qosClass') if k in current}
        try:
            self.cluster.store.replace_status('', 'pods', key[0], key[1], dict(kept, **status))
        except ApiError:
            pass

    def _volumes_ready(self, pod, key):
        """(ready, message): claims bound, config maps and secrets present."""
        for volume in pod['spec'].get('volumes') or []:
            claim = (volume.get('persistentVolumeClaim') or {}).get('claimName')
            if claim:
                pvc = self.cluster.store.get_ref('', 'persistentvolumeclaims', key[0], claim)
                if pvc is None:
                    return False, 'persistentvolumeclaim "%s" not found' % claim
                if (pvc.get('status') or {}).get('phase') != 'Bound':
                    return False, 'pod has unbound immediate PersistentVolumeClaims'
            for kind, resource, field in (('configMap', 'configmaps', 'name'), ('secret', 'secrets', 'secretName')):
                source = volume.get(kind)
                if source and not source.get('optional') and self.cluster.store.get_ref('', resource, key[0], source.get(field)) is None:
                    return False, 'MountVolume.SetUp failed for volume "%s" : %s "%s" not found' % (volume['name'], resource[:-1], source.get(field))
        return True, ''

    def _start(self, pod, key):
        ready, message = self._volumes_ready(pod, key)
        if not ready:
            if (pod.get('status') or {}).get('reason') != message:
                self._set_status(key, {'phase': 'Pending', 'reason': message,
                                       'conditions': [_condition('PodScheduled', 'True'), _condition('Ready', 'False', 'ContainersNotReady', message)]})
                record_event(self.cluster, pod, 'FailedMount' if 'MountVolume' in message else 'FailedScheduling', message, 'Warning', 'kubelet')
            return
        pod_ip = (pod.get('status') or {}).get('podIP') or self.cluster.allocate_pod_ip()
        images = [c.get('image') for c in pod['spec']['containers']]
        local = [resolve(self.cluster.local_images, image) for image in images]
        base = {'hostIP': self.cluster.node_ip, 'podIP': pod_ip, 'podIPs': [{'ip': pod_ip}], 'startTime': now_iso()}
        if all(spec is not None for spec in local):
            if os.geteuid() != 0:
                message = 'the sandbox node runs local images in mount namespaces, which needs root'
                self._set_status(key, dict(base, phase='Pending', reason='RootRequired', message=message))
                record_event(self.cluster, pod, 'Failed', message, 'Warning', 'kubelet')
                return
            self._start_local(pod, key, local, dict(base, podIP=pod_ip))
        else:
            self._start_simulated(pod, key, base)

    # -- simulated pods ------------------------------------------------------------------------------------
    def _start_simulated(self, pod, key, base):
        mode = (pod['metadata'].get('annotations') or {}).get(SIMULATE, 'ok')
        with self.lock:
            self.simulated[key] = {'started': time.monotonic(), 'restarts': 0, 'mode': mode}
        for container in pod['spec']['containers']:
            record_event(self.cluster, pod, 'Pulled', 'Container image "%s" already present on machine' % container['image'], component='kubelet')
            record_event(self.cluster, pod, 'Started', 'Started container %s' % container['name'], component='kubelet')
        self._simulated_status(pod, key, base)

    def _simulated_status(self, pod, key, base=None):
        info = self.simulated.get(key)
        if info is None:
            return
        status = dict(base or {})
        mode = info['mode']
        started = now_iso()
        completes = _owner_kind(pod) == 'Job' or pod['spec'].get('restartPolicy') == 'Never' and mode in ('ok', 'fail')
        statuses = []
        for container in pod['spec']['containers']:
            entry = {'name': container['name'], 'image': container['image'], 'imageID': 'sandbox://%s' % container['image'],
                     'containerID': 'sandbox://%s-%s' % (key[1], container['name']), 'restartCount': info['restarts'], 'started': True}
            if mode == 'crash':
                entry.update(ready=False, started=False, state={'waiting': {'reason': 'CrashLoopBackOff',
                                                                            'message': 'back-off restarting failed container %s' % container['name']}},
                             lastState={'terminated': {'exitCode': 1, 'reason': 'Error', 'startedAt': started, 'finishedAt': started}})
            elif mode == 'fail' and completes:
                entry.update(ready=False, started=False, state={'terminated': {'exitCode': 1, 'reason': 'Error', 'startedAt': started, 'finishedAt': started}})
            elif completes and time.monotonic() - info['started'] > 0.2:
                entry.update(ready=False, started=False, state={'terminated': {'exitCode': 0, 'reason': 'Completed', 'startedAt': started, 'finishedAt': started}})
            else:
                entry.update(ready=mode != 'unready', state={'running': {'startedAt': started}})
            statuses.append(entry)
        ready = all(s['ready'] for s in statuses)
        if all('terminated' in s['state'] for s in statuses):
            phase = 'Succeeded' if all(s['state']['terminated']['exitCode'] == 0 for s in statuses) else 'Failed'
        else:
            phase = 'Running'
        status.update(phase=phase, containerStatuses=statuses, conditions=[
            _condition('PodScheduled', 'True'), _condition('Initialized', 'True'),
            _condition('ContainersReady', 'True' if ready else 'False', None if ready else 'ContainersNotReady'),
            _condition('Ready', 'True' if ready else 'False', None if ready else 'ContainersNotReady',
                       None if ready else 'containers with unready status: [%s]' % ' '.join(s['name'] for s in statuses if not s['ready']))])
        current = pod.get('status') or {}
        if [s.get('state') for s in current.get('containerStatuses') or []] != [s['state'] for s in statuses] or \
                current.get('phase') != phase or [s.get('restartCount') for s in current.get('containerStatuses') or []] != [info['restarts']] * len(statuses):
            self._set_status(key, status)

    def tick(self, cluster):
        """Periodic: simulated crash loops and completions, local process exits and readiness."""
        with self.lock:
            simulated = list(self.simulated.items())
            running = list(self.running.items())
        for key, info in simulated:
            pod = cluster.store.get_ref('', 'pods', key[0], key[1])
            if pod is None:
                with self.lock:
                    self.simulated.pop(key, None)
                continue
            if info['mode'] == 'crash' and time.monotonic() - info.get('last_crash', info['started']) > 1.0:
                info['restarts'] += 1
                info['last_crash'] = time.monotonic()
                record_event(cluster, pod, 'BackOff', 'Back-off restarting failed container %s in pod %s' % (pod['spec']['containers'][0]['name'], key[1]),
                             'Warning', 'kubelet')
            elif info['mode'] == 'unready' and not info.get('reported'):
                info['reported'] = True
                record_event(cluster, pod, 'Unhealthy', 'Readiness probe failed: simulated by %s=unready' % SIMULATE, 'Warning', 'kubelet')
            if (pod.get('status') or {}).get('phase') not in ('Succeeded', 'Failed'):
                self._simulated_status(pod, key)
        for key, containers in running:
            self._check_local(cluster, key, containers)

    # -- local pods ---------------------------------------------------------------------------------------
    def pod_dir(self, key):
        return os.path.join(self.cluster.state_dir, 'pods', key[0], key[1])

    def _env(self, pod, container, pod_ip, image):
        env = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME': pod['metadata']['name'],
               'KUBERNETES_SERVICE_HOST': '127.0.0.1', 'KUBERNETES_SERVICE_PORT': str(self.cluster.port)}
        env.update(image.get('env') or {})
        namespace = pod['metadata']['namespace']
        for source in container.get('envFrom') or []:
            prefix = source.get('prefix', '')
            if source.get('configMapRef'):
                data = (self.cluster.store.get_ref('', 'configmaps', namespace, source['configMapRef']['name']) or {}).get('data') or {}
                env.update({prefix + k: v for k, v in data.items()})
            if source.get('secretRef'):
                data = (self.cluster.store.get_ref('', 'secrets', namespace, source['secretRef']['name']) or {}).get('data') or {}
                env.update({prefix + k: base64.b64decode(v).decode(errors='replace') for k, v in data.items()})
        fields = {'metadata.name': pod['metadata']['name'], 'metadata.namespace': namespace, 'metadata.uid': pod['metadata']['uid'],
                  'status.podIP': pod_ip, 'status.hostIP': self.cluster.node_ip, 'spec.nodeName': self.cluster.node_name,
                  'spec.serviceAccountName': pod['spec'].get('serviceAccountName', 'default')}
        for item in container.get('env') or []:
            if 'value' in item:
                env[item['name']] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(item['value']))
                continue
            source = item.get('valueFrom') or {}
            if source.get('fieldRef'):
                env[item['name']] = str(fields.get(source['fieldRef'].get('fieldPath'), ''))
            elif source.get('secretKeyRef'):
                ref = source['secretKeyRef']
                data = (self.cluster.store.get_ref('', 'secrets', namespace, ref['name']) or {}).get('data') or {}
                if ref['key'] in data:
                    env[item['name']] = base64.b64decode(data[ref['key']]).decode(errors='replace')
            elif source.get('configMapKeyRef'):
                ref = source['configMapKeyRef']
                data = (self.cluster.store.get_ref('', 'configmaps', namespace, ref['name']) or {}).get('data') or {}
                if ref['key'] in data:
                    env[item['name']] = data[ref['key']]
        return env

    def _mounts(self, pod, container, key):
        volumes = {v['name']: v for v in pod['spec'].get('volumes') or []}
        mounts = []
        for mount in container.get('volumeMounts') or []:
            volume = volumes.get(mount['name'])
            if volume is None:
                continue
            source = self._volume_source(pod, volume, key)
            if source is None:
                continue
            if mount.get('subPath'):
                source = os.path.join(source, mount['subPath'])
                os.makedirs(source, exist_ok=True)
            read_only = bool(mount.get('readOnly')) or bool((volume.get('persistentVolumeClaim') or {}).get('readOnly')) or \
                bool(volume.get('configMap') or volume.get('secret'))
            mounts.append({'source': source, 'path': mount['mountPath'], 'read_only': read_only})
        return mounts

    def _volume_source(self, pod, volume, key):
        namespace = pod['metadata']['namespace']
        base = os.path.join(self.pod_dir(key), 'volumes', volume['name'])
        if volume.get('persistentVolumeClaim'):
            pvc = self.cluster.store.get_ref('', 'persistentvolumeclaims', namespace, volume['persistentVolumeClaim']['claimName'])
            directory = volume_dir(self.cluster, pvc['spec']['volumeName'])
            os.makedirs(directory, exist_ok=True)
            return directory
        if volume.get('emptyDir') is not None:
            os.makedirs(base, exist_ok=True)
            return base
        if volume.get('hostPath'):
            return volume['hostPath']['path']
        for kind, resource, field, decode in (('configMap', 'configmaps', 'name', False), ('secret', 'secrets', 'secretName', True)):
            source = volume.get(kind)
            if source:
                obj = self.cluster.store.get_ref('', resource, namespace, source.get(field)) or {}
                data = obj.get('data') or {}
                os.makedirs(base, exist_ok=True)
                items = source.get('items') or [{'key': k, 'path': k} for k in data]
                for item in items:
                    if item['key'] not in data:
                        continue
                    path = os.path.join(base, item['path'])
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, 'wb') as handle:
                        value = data[item['key']]
                        handle.write(base64.b64decode(value) if decode else value.encode())
                    os.chmod(path, 0o644 if not decode else 0o640)
                return base
        return None

    def _launch(self, pod, key, container, image, pod_ip):
        env = self._env(pod, container, pod_ip, image)

        def expand(values):
            return [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(v)) for v in values]
        entrypoint = expand(container['command']) if container.get('command') else list(image.get('entrypoint') or [])
        args = expand(container['args']) if container.get('args') is not None else ([] if container.get('command') else list(image.get('cmd') or []))
        argv = entrypoint + args
        if not argv:
            raise ApiError(400, 'BadRequest', 'container %s has no command' % container['name'])
        directory = os.path.join(self.pod_dir(key), container['name'])
        os.makedirs(directory, exist_ok=True)
        spec = {'pod_dir': directory, 'mounts': self._mounts(pod, container, key), 'argv': argv, 'env': env,
                'workdir': container.get('workingDir') or image.get('workdir') or '/', 'image_paths': list(image.get('paths') or default_paths())}
        spec_path = os.path.join(directory, 'spec.json')
        with open(spec_path, 'w', encoding='utf-8') as handle:
            json.dump(spec, handle)
        log_path = os.path.join(self.pod_dir(key), '%s.log' % container['name'])
        log = open(log_path, 'ab')  # pylint: disable=consider-using-with
        process = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', sys.executable, LAUNCH, spec_path],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return Container(process, log_path, now_iso())

    def _start_local(self, pod, key, images, base):
        containers = {}
        try:
            for container, image in zip(pod['spec']['containers'], images):
                containers[container['name']] = self._launch(pod, key, container, image, base['podIP'])
                record_event(self.cluster, pod, 'Started', 'Started container %s' % container['name'], component='kubelet')
        except (OSError, ApiError) as exc:
            for started in containers.values():
                _terminate(started.process, 1)
            self._set_status(key, dict(base, phase='Failed', reason='StartError', message=str(exc)))
            record_event(self.cluster, pod, 'Failed', 'Error: %s' % exc, 'Warning', 'kubelet')
            return
        with self.lock:
            self.running[key] = containers
        self._set_status(key, dict(base, phase='Running', containerStatuses=self._local_statuses(pod, containers, {}),
                                   conditions=[_condition('PodScheduled', 'True'), _condition('Initialized', 'True'),
                                               _condition('ContainersReady', 'False', 'ContainersNotReady'),
                                               _condition('Ready', 'False', 'ContainersNotReady')]))

    def _probe(self, pod, container, pod_ip):
        probe = container.get('readinessProbe')
        if not probe:
            return True
        def port_of(value):
            if isinstance(value, int) or str(value).isdigit():
                return int(value)
            return next((p['containerPort'] for p in container.get('ports') or [] if p.get('name') == value), None)
        try:
            if probe.get('tcpSocket'):
                with socket.create_connection((pod_ip, port_of(probe['tcpSocket']['port'])), timeout=0.5):
                    return True
            if probe.get('httpGet'):
                get = probe['httpGet']
                url = 'http://%s:%d%s' % (pod_ip, port_of(get['port']), get.get('path', '/'))
                with urllib.request.urlopen(url, timeout=0.5) as response:  # nosec - loopback probe
                    return 200 <= response.status < 400
        except (OSError, ValueError, TypeError):
            return False
        return True  # exec probes are not run by the sandbox: a live process counts as ready

    def _local_statuses(self, pod, containers, ready):
        statuses = []
        for container in pod['spec']['containers']:
            info = containers.get(container['name'])
            entry = {'name': container['name'], 'image': container['image'], 'imageID': 'sandbox-local://%s' % container['image'],
                     'containerID': 'sandbox://%s-%s' % (pod['metadata']['name'], container['name']), 'ready': bool(ready.get(container['name'])),
                     'restartCount': info.restarts if info else 0, 'started': info is not None and info.exit_code is None}
            if info is None:
                entry['state'] = {'waiting': {'reason': 'ContainerCreating'}}
            elif info.exit_code is not None and info.next_start is None:
                entry['state'] = {'terminated': {'exitCode': info.exit_code, 'reason': 'Completed' if info.exit_code == 0 else 'Error',
                                                 'startedAt': info.started, 'finishedAt': info.finished}}
            elif info.exit_code is not None:
                entry['state'] = {'waiting': {'reason': 'CrashLoopBackOff', 'message': 'back-off restarting failed container %s' % container['name']}}
                entry['lastState'] = {'terminated': {'exitCode': info.exit_code, 'reason': 'Error', 'startedAt': info.started, 'finishedAt': info.finished}}
            else:
                entry['state'] = {'running': {'startedAt': info.started}}
            if info is not None and info.last and 'lastState' not in entry:
                entry['lastState'] = {'terminated': {'exitCode': info.last[0], 'reason': 'Error' if info.last[0] else 'Completed',
                                                     'startedAt': info.last[1], 'finishedAt': info.last[2]}}
            statuses.append(entry)
        return statuses

    def _check_local(self, cluster, key, containers):
        pod = cluster.store.get_ref('', 'pods', key[0], key[1])
        if pod is None:
            self._kill(key)
            return
        pod_ip = (pod.get('status') or {}).get('podIP')
        policy = pod['spec'].get('restartPolicy', 'Always')
        ready = {}
        for container in pod['spec']['containers']:
            info = containers.get(container['name'])
            if info is None:
                continue
            if info.exit_code is None:
                code = info.process.poll()
                if code is not None:
                    info.exit_code, info.finished = code, now_iso()
                    if policy == 'Always' or (policy == 'OnFailure' and code != 0):
                        info.next_start = time.monotonic() + min(10, 0.5 * 2 ** info.restarts)
                        record_event(cluster, pod, 'BackOff', 'Back-off restarting failed container %s in pod %s' % (container['name'], key[1]),
                                     'Warning', 'kubelet')
            elif info.next_start is not None and time.monotonic() >= info.next_start:
                image = resolve(cluster.local_images, container['image'])
                restarted = self._launch(pod, key, container, image, pod_ip)
                restarted.restarts = info.restarts + 1
                restarted.last = (info.exit_code, info.started, info.finished)
                containers[container['name']] = info = restarted
            ready[container['name']] = info.exit_code is None and self._probe(pod, container, pod_ip)
        all_done = all(c.exit_code is not None and c.next_start is None for c in containers.values())
        if all_done:
            phase = 'Succeeded' if all(c.exit_code == 0 for c in containers.values()) else 'Failed'
        else:
            phase = 'Running'
        all_ready = bool(ready) and all(ready.values()) and phase == 'Running'
        statuses = self._local_statuses(pod, containers, ready)
        current = pod.get('status') or {}
        if current.get('phase') != phase or current.get('containerStatuses') != statuses:
            self._set_status(key, {'phase': phase, 'containerStatuses': statuses, 'conditions': [
                _condition('PodScheduled', 'True'), _condition('Initialized', 'True'),
                _condition('ContainersReady', 'True' if all_ready else 'False'), _condition('Ready', 'True' if all_ready else 'False')]})
        if all_done:
            with self.lock:
                self.running.pop(key, None)

    def _kill(self, key):
        with self.lock:
            containers = self.running.pop(key, {})
            self.simulated.pop(key, None)
        for info in containers.values():
            _terminate(info.process, 10)
        if containers:
            shutil.rmtree(os.path.join(self.pod_dir(key)), ignore_errors=True)

    def stop(self):
        with self.lock:
            keys = list(self.running)
        for key in keys:
            self._kill(key)


def _terminate(process, grace):
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)
