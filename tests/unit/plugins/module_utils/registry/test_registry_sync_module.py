"""The registry_sync module as Ansible runs it (a process given its arguments), against the test registries."""

import json
import os
import subprocess
import sys

import yaml
from module_docs import argument_spec, doc_spec, documented_and_declared, secrets_without_no_log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'registry_sync.py')


def run_module(tmp_path, args, check_mode=False):
    arguments = dict(args, _ansible_check_mode=check_mode)
    path = tmp_path / ('args-%d.json' % len(list(tmp_path.iterdir())))
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': arguments}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, '.build', 'collections'), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, MODULE, str(path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def test_module_check_mode_copy_and_idempotence(registries, prefix, tmp_path):
    args = {'source': registries.option('source'), 'target': registries.option('target'), 'target_prefix': prefix,
            'images': [registries.source.name + '/multi:1', registries.source.name + '/app:1'], 'state_dir': str(tmp_path / 'state')}
    planned, output = run_module(tmp_path, args, check_mode=True)
    assert planned['changed'] is True and not planned.get('failed'), output
    assert [image['status'] for image in planned['images']] == ['would copy', 'would copy']
    assert registries.password not in output
    copied, output = run_module(tmp_path, args)
    assert copied['changed'] is True and not copied.get('failed'), output
    assert copied['bytes_copied'] == planned['bytes_copied'] + planned['bytes_mounted'] - copied['bytes_mounted']
    assert {rule['from'] for rule in copied['rewrites']} == {registries.source.name + '/multi', registries.source.name + '/app'}
    assert copied['digests'][registries.source.name + '/multi:1'] == registries.images['multi']['digest']
    again, output = run_module(tmp_path, args)
    assert again['changed'] is False and again['bytes_copied'] == 0, output
    assert [image['from_record'] for image in again['images']] == [True, True]
    assert registries.password not in output
    checked, output = run_module(tmp_path, dict(args, verify=True))
    assert checked['changed'] is False and not any(image['from_record'] for image in checked['images']), output
    assert checked['digests'] == again['digests'] == copied['digests']


def test_module_failure_names_the_option(registries, prefix, tmp_path):
    args = {'target': registries.option('target', password='wrong-pw-xyz'), 'images': [registries.source.name + '/app:1'],
            'source': registries.option('source'), 'target_prefix': prefix, 'state_dir': str(tmp_path / 'state')}
    result, output = run_module(tmp_path, args)
    assert result['failed'] is True
    assert 'check target.username and target.password' in result['msg']
    assert 'wrong-pw-xyz' not in output and registries.password not in output


def test_module_needs_images_or_repositories(tmp_path):
    result, _output = run_module(tmp_path, {'target': {'url': 'localhost:5000'}})
    assert result['failed'] is True and 'one of the following is required: images, repositories' in result['msg']


def test_documentation_matches_the_argument_spec(monkeypatch):
    """What ansible-test validate-modules checks first: every option documented as the argument_spec declares it."""
    registry_sync, documentation, declared = documented_and_declared(MODULE, monkeypatch)
    documented = documentation['options']
    assert doc_spec(documented) == argument_spec(declared)
    yaml.safe_load(registry_sync.EXAMPLES)
    yaml.safe_load(registry_sync.RETURN)
    secrets = {'password', 'token', 'secret_key', 'session_token', 'credentials', 'access_token', 'client_secret'}
    assert secrets_without_no_log(declared, secrets) == []
