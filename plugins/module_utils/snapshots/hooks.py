# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quiesce hooks declared as pod annotations: a command exec'd in the app's pod before and after.

Ferry reads its own annotations and Velero's, so apps annotated for Velero keep their
consistency guarantees when they move to Ferry::

    pre.hook.ferry.dev/command: '["/bin/sh", "-c", "pg_ctl ... checkpoint"]'
    pre.hook.ferry.dev/container: db          (default: the first container)
    pre.hook.ferry.dev/timeout: "30"          (seconds)
    pre.hook.ferry.dev/on-error: Fail         (or Continue)
    post.hook.ferry.dev/...                    (the same, after the snapshot is cut)
"""

from __future__ import annotations

import json
import shlex

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError

PREFIXES = ('hook.ferry.dev', 'hook.backup.velero.io')


class Hook:
    def __init__(self, phase, pod, container, command, timeout, on_error):
        self.phase = phase
        self.namespace = pod['metadata']['namespace']
        self.pod = pod['metadata']['name']
        self.container = container
        self.command = command
        self.timeout = timeout
        self.on_error = on_error

    def describe(self):
        return {'phase': self.phase, 'pod': '%s/%s' % (self.namespace, self.pod), 'container': self.container,
                'command': self.command, 'timeout': self.timeout, 'on_error': self.on_error}

    @classmethod
    def from_record(cls, record):
        """The hook ``describe()`` recorded (deferred post-hooks of a live read)."""
        namespace, name = record['pod'].split('/', 1)
        return cls(record['phase'], {'metadata': {'namespace': namespace, 'name': name}}, record['container'], record['command'],
                   record.get('timeout', 30), record['on_error'])


def parse_command(text):
    text = (text or '').strip()
    if not text:
        return None
    if text.startswith('['):
        try:
            command = json.loads(text)
        except ValueError:
            raise FerryError('hook command %r is not a JSON list of strings' % text) from None
        if not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
            raise FerryError('hook command %r must be a list of strings' % text)
        return command
    return shlex.split(text)


def hooks_of(pod, phase):
    """The hook of ``phase`` ('pre' or 'post') a pod declares, or None (Ferry's annotations win over Velero's)."""
    annotations = pod['metadata'].get('annotations') or {}
    for prefix in PREFIXES:
        key = '%s.%s/' % (phase, prefix)
        command = parse_command(annotations.get(key + 'command'))
        if not command:
            continue
        containers = [c['name'] for c in (pod.get('spec') or {}).get('containers') or []]
        container = annotations.get(key + 'container') or (containers[0] if containers else None)
        if container not in containers:
            raise FerryError('pod %s/%s: hook container %r is not one of its containers (%s)'
                             % (pod['metadata']['namespace'], pod['metadata']['name'], container, ', '.join(containers)))
        try:
            timeout = float(annotations.get(key + 'timeout') or 30)
        except ValueError:
            raise FerryError('pod %s: hook timeout %r is not a number of seconds' % (pod['metadata']['name'], annotations.get(key + 'timeout'))) from None
        on_error = annotations.get(key + 'on-error') or 'Fail'
        if on_error not in ('Fail', 'Continue'):
            raise FerryError('pod %s: hook on-error must be Fail or Continue, not %r' % (pod['metadata']['name'], on_error))
        return Hook(phase, pod, container, command, timeout, on_error)
    return None


def pods_using(pods, volumes):
    """Running pods that mount any of the volumes (so hooks run where the data is written)."""
    wanted = {(v.namespace, v.name) for v in volumes}
    found = []
    for pod in pods:
        if (pod.get('status') or {}).get('phase') != 'Running':
            continue
        claims = {((v.get('persistentVolumeClaim') or {}).get('claimName')) for v in (pod.get('spec') or {}).get('volumes') or []}
        if any((pod['metadata']['namespace'], claim) in wanted for claim in claims):
            found.append(pod)
    return found


def run_hooks(cluster, hooks):
    """Exec each hook; returns results. Every hook is tried (a post-hook that is skipped leaves its pod
    quiesced); then a failed hook with on-error Fail raises, naming the first that failed."""
    results, failures = [], []
    for hook in hooks:
        try:
            exit_code, output = exec_in_pod(cluster, hook.namespace, hook.pod, hook.container, hook.command, hook.timeout)
        except FerryError as exc:
            exit_code, output = -1, exc.message
        result = dict(hook.describe(), exit_code=exit_code, output=output[-2000:])
        results.append(result)
        if exit_code != 0 and hook.on_error == 'Fail':
            failures.append('%s-hook in pod %s/%s (container %s) failed with exit code %s: %s'
                            % (hook.phase, hook.namespace, hook.pod, hook.container, exit_code, output.strip()[-500:] or 'no output'))
    if failures:
        raise FerryError(failures[0] + (' (and %d more hooks failed)' % (len(failures) - 1) if len(failures) > 1 else ''), hook_results=results)
    return results


def exec_in_pod(cluster, namespace, pod, container, command, timeout):
    """(exit code, combined output) of a command run through the pods/exec API."""
    from kubernetes import client as k8s_client  # pylint: disable=import-outside-toplevel
    from kubernetes.stream import stream  # pylint: disable=import-outside-toplevel
    core = k8s_client.CoreV1Api(cluster.api_client)
    try:
        response = stream(core.connect_get_namespaced_pod_exec, pod, namespace, container=container, command=command,
                          stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    except Exception as exc:  # pylint: disable=broad-except
        raise FerryError('cannot exec a hook in pod %s/%s: %s' % (namespace, pod, exc)) from None
    output = []
    response.run_forever(timeout=timeout)
    output.append(response.read_stdout() or '')
    output.append(response.read_stderr() or '')
    code = response.returncode
    response.close()
    return (code if code is not None else -1), ''.join(output)
