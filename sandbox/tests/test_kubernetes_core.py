"""Ansible's kubernetes.core modules (k8s, k8s_info), a client nobody here wrote, against a sandbox cluster."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_playbook(tmp_path, cluster, tasks):
    playbook = [{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                 'module_defaults': {'group/kubernetes.core.k8s': {'kubeconfig': cluster.kubeconfig_path}}, 'tasks': tasks}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(playbook))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.build', 'collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', str(path)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    return proc


def test_k8s_apply_is_idempotent_and_k8s_info_reads(sandbox_cluster, tmp_path):
    cluster = sandbox_cluster()
    deployment = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'api', 'namespace': 'default'},
                  'spec': {'replicas': 2, 'selector': {'matchLabels': {'app': 'api'}},
                           'template': {'metadata': {'labels': {'app': 'api'}}, 'spec': {'containers': [{'name': 'api', 'image': 'api:1'}]}}}}
    tasks = [
        {'name': 'create', 'kubernetes.core.k8s': {'definition': deployment, 'wait': True, 'wait_timeout': 60}, 'register': 'first'},
        {'name': 'again', 'kubernetes.core.k8s': {'definition': deployment}, 'register': 'second'},
        {'name': 'read', 'kubernetes.core.k8s_info': {'kind': 'Deployment', 'namespace': 'default', 'label_selectors': []}, 'register': 'info'},
        {'name': 'check', 'ansible.builtin.assert': {'that': [
            'first is changed', 'second is not changed', "info.resources | map(attribute='metadata.name') | list == ['api']",
            'info.resources[0].status.readyReplicas == 2']}},
        {'name': 'delete', 'kubernetes.core.k8s': {'state': 'absent', 'definition': deployment, 'wait': True}, 'register': 'gone'},
        {'name': 'deleted', 'ansible.builtin.assert': {'that': ['gone is changed']}},
    ]
    proc = run_playbook(tmp_path, cluster, tasks)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert 'failed=0' in proc.stdout
