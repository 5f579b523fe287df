"""Several control nodes on one machine share the apps through the scaleout_plan playbook."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run_plan(tmp_path, hosts, apps, capacity=None):
    lines = ['[ferry_control_nodes]']
    for host in hosts:
        extra = ' ferry_capacity=%d' % capacity[host] if capacity and host in capacity else ''
        lines.append('%s ansible_connection=local ansible_python_interpreter=%s%s' % (host, sys.executable, extra))
    (tmp_path / 'inventory.ini').write_text('\n'.join(lines) + '\n')
    (tmp_path / 'apps.json').write_text(json.dumps({'ferry_apps': apps, 'ferry_plan_path': str(tmp_path / 'plan.json')}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.build', 'collections'), ANSIBLE_FORKS='4',
               ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_NOCOLOR='1')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    proc = subprocess.run([playbook, '-i', str(tmp_path / 'inventory.ini'), 'ferry.kube.scaleout_plan', '-e', '@' + str(tmp_path / 'apps.json')],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc


def test_three_control_nodes_share_all_apps(tmp_path):
    apps = [{'name': 'svc-%d' % i, 'namespace': 'ns-%d' % (i % 7), 'cluster': 'prod', 'gb': i % 50} for i in range(60)]
    proc = run_plan(tmp_path, ['cn1', 'cn2', 'cn3'], apps)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads((tmp_path / 'plan.json').read_text())
    assert sorted(plan) == ['cn1', 'cn2', 'cn3']
    assigned = sorted(a['name'] for share in plan.values() for a in share)
    assert assigned == sorted(a['name'] for a in apps)
    for host in ('cn1', 'cn2', 'cn3'):
        assert '%s syncs %d app(s)' % (host, len(plan[host])) in proc.stdout


def test_capacity_per_host_from_inventory(tmp_path):
    apps = [{'name': 'svc-%d' % i, 'namespace': 'ns', 'cluster': 'prod', 'gb': 1} for i in range(20)]
    proc = run_plan(tmp_path, ['big', 'small'], apps, capacity={'small': 3})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads((tmp_path / 'plan.json').read_text())
    assert len(plan['small']) <= 3 and len(plan['big']) + len(plan['small']) == 20


def test_not_enough_capacity_fails_clearly(tmp_path):
    apps = [{'name': 'svc-%d' % i, 'namespace': 'ns', 'cluster': 'prod', 'gb': 1} for i in range(10)]
    proc = run_plan(tmp_path, ['a', 'b'], apps, capacity={'a': 2, 'b': 2})
    assert proc.returncode != 0
    assert 'can take 4 apps in all, but there are 10: add a node or raise capacity' in proc.stdout + proc.stderr
