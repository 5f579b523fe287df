"""Clients nobody here wrote, pointed at a sandbox cluster."""

import json
import subprocess
import time

from kubernetes import config, dynamic


def dynamic_client(kubeconfig):
    return dynamic.DynamicClient(config.new_client_from_config(kubeconfig))


def kubectl(cluster, *args, check=True, kubeconfig=None, stdin=None):
    proc = subprocess.run(['kubectl', '--kubeconfig', kubeconfig or cluster.kubeconfig_path] + list(args), capture_output=True, text=True,
                          input=stdin, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('kubectl %s failed: %s%s' % (' '.join(args), proc.stdout, proc.stderr))
    return proc


def kubectl_json(cluster, *args):
    return json.loads(kubectl(cluster, *args, '-o', 'json').stdout)


def wait_for(predicate, timeout=20, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('timed out waiting for %s' % what)
