"""The dr_cluster module as Ansible runs it (a process given its arguments): EKS against moto, a command provider,
and its documentation against its argument_spec."""

import json
import os
import subprocess
import sys

import yaml
from module_docs import argument_spec, doc_spec, documented_and_declared, secrets_without_no_log

from provisioning_helpers import AWS, CLUSTER_ROLE, NODE_ROLE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'dr_cluster.py')


def run_module(tmp_path, args, check_mode=False, diff=False):
    arguments = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    path = tmp_path / ('args-%d.json' % len(list(tmp_path.glob('args-*.json'))))
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': arguments}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, '.build', 'collections'), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, MODULE, str(path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def eks_args(moto, name, **values):
    eks = dict(AWS, endpoint_url=moto.url, sts_endpoint_url=moto.url, cluster_role_arn=CLUSTER_ROLE, subnet_ids=['subnet-0aaa', 'subnet-0bbb'],
               version='1.29', nodegroups=[{'name': 'workers', 'node_role_arn': NODE_ROLE, 'desired_size': 2}])
    eks.update(values)
    return {'provider': 'eks', 'name': name, 'eks': eks, 'wait_timeout': 60}


def test_eks_check_mode_create_then_unchanged_with_drift(moto, tmp_path):
    args = eks_args(moto, 'dr-module')
    planned, output = run_module(tmp_path, args, check_mode=True, diff=True)
    assert planned['changed'] is True and not planned.get('failed'), output
    assert planned['cluster'] is None and planned['actions'] == ['create cluster dr-module', 'create nodegroup workers']
    assert planned['diff'] == {'before': {'exists': False, 'version': None, 'nodegroups': []},
                               'after': {'exists': True, 'version': '1.29', 'nodegroups': ['workers']}}

    made, output = run_module(tmp_path, args)
    assert made['changed'] is True and not made.get('failed'), output
    assert made['cluster'] == {'eks': {'cluster_name': 'dr-module', 'region': 'eu-west-1', 'endpoint_url': moto.url, 'sts_endpoint_url': moto.url}}
    assert made['status'] == 'ACTIVE' and made['nodegroups'][0]['status'] == 'ACTIVE' and 'diff' not in made
    assert AWS['secret_key'] not in output

    again, output = run_module(tmp_path, eks_args(moto, 'dr-module', version='1.30'), diff=True)
    assert again['changed'] is False and again['actions'] == [] and again['diff']['before'] == again['diff']['after'], output
    assert again['drift'] == [{'resource': 'cluster/dr-module', 'field': 'version', 'wanted': '1.30', 'actual': '1.29'}]
    assert 'EKS cluster dr-module has version 1.29, not 1.30 as eks.version asks' in json.dumps(again['warnings']), output
    assert AWS['secret_key'] not in output


def test_eks_failure_names_the_option(moto, tmp_path):
    result, output = run_module(tmp_path, eks_args(moto, 'dr-norole', cluster_role_arn=None))
    assert result['failed'] is True, output
    assert result['msg'].startswith('EKS cluster dr-norole does not exist and creating it needs eks.cluster_role_arn: the IAM role EKS assumes')
    assert result['missing'] == ['cluster_role_arn']
    assert AWS['secret_key'] not in output


def test_command_provider(tmp_path):
    kubeconfig = tmp_path / 'dr.kubeconfig'
    args = {'provider': 'command', 'name': 'dr-onprem', 'wait_timeout': 30,
            'command': {'create_command': [sys.executable, '-c', 'import sys; open(sys.argv[1], "w").write("apiVersion: v1\\n")', str(kubeconfig)],
                        'delete_command': [sys.executable, '-c', 'import os, sys; os.remove(sys.argv[1])', str(kubeconfig)],
                        'kubeconfig_path': str(kubeconfig), 'exists': 'kubeconfig'}}
    made, output = run_module(tmp_path, args)
    assert made['changed'] is True and made['cluster'] == {'kubeconfig': str(kubeconfig)} and kubeconfig.exists(), output
    assert made['commands'][0]['command'] == 'create_command' and made['commands'][0]['rc'] == 0

    failing = dict(args, command=dict(args['command'], create_command=[sys.executable, '-c', 'import sys; sys.exit("no capacity in dc1")'],
                                      kubeconfig_path=str(tmp_path / 'other.kubeconfig')))
    failed, output = run_module(tmp_path, failing)
    assert failed['failed'] is True and failed['msg'] == 'create_command for cluster dr-onprem exited with code 1: no capacity in dc1', output
    assert failed['rc'] == 1

    missing, output = run_module(tmp_path, {'provider': 'command', 'name': 'dr-onprem'})
    assert missing['failed'] is True and 'provider is command but all of the following are missing: command' in missing['msg'], output


def test_documentation_matches_the_argument_spec(monkeypatch):
    """What ansible-test validate-modules checks first: every option documented as the argument_spec declares it."""
    dr_cluster, documented, declared = documented_and_declared(MODULE, monkeypatch)
    assert doc_spec(documented['options']) == argument_spec(declared)
    assert documented['extends_documentation_fragment'] == ['ferry.kube.attributes']
    yaml.safe_load(dr_cluster.EXAMPLES)
    returned = yaml.safe_load(dr_cluster.RETURN)
    assert set(returned) == {'cluster', 'endpoint', 'status', 'version', 'nodegroups', 'actions', 'drift', 'commands', 'duration'}
    secrets = {'password', 'token', 'secret_key', 'session_token', 'credentials', 'access_token', 'client_secret'}
    assert secrets_without_no_log(declared, secrets) == []


def test_in_the_action_group():
    with open(os.path.join(ROOT, 'meta', 'runtime.yml'), encoding='utf-8') as handle:
        group = yaml.safe_load(handle)['action_groups']['ferry']
    assert 'dr_cluster' in group and group == sorted(group)
