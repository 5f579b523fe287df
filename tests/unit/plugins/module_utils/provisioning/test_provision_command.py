"""The command provider, with a tiny installer script in tmp_path and a scripted API server answering /version."""

import os
import signal
import sys
import textwrap
import time

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.provisioning import ProvisioningError, provider
from fake_http import ScriptedServer
from provisioning_helpers import command_params

INSTALLER = textwrap.dedent('''
    import os, subprocess, sys, time
    action, kubeconfig = sys.argv[1], sys.argv[2]
    with open(kubeconfig + '.log', 'a') as log:
        log.write(action + '\\n')
    if action == 'up':
        print('creating cluster at', os.environ['FAKE_API'])
        with open(kubeconfig, 'w') as handle:
            handle.write("""apiVersion: v1
    kind: Config
    clusters: [{name: dr, cluster: {server: '%s'}}]
    users: [{name: admin, user: {token: installer-token}}]
    contexts: [{name: dr, context: {cluster: dr, user: admin}}]
    current-context: dr
    """ % os.environ['FAKE_API'])
    elif action == 'down':
        os.remove(kubeconfig)
    elif action == 'fail':
        print('starting the installer')
        for line in range(40):
            print('step %d' % line, file=sys.stderr)
        print('error: quota exceeded for instances in zone dc1', file=sys.stderr)
        sys.exit(3)
    elif action == 'daemon':
        daemon = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
        with open(kubeconfig + '.daemon', 'w') as handle:
            handle.write(str(daemon.pid))
        with open(kubeconfig, 'w') as handle:
            handle.write('apiVersion: v1\\nkind: Config\\n')
    elif action == 'hang':
        time.sleep(60)
    elif action == 'check':
        sys.exit(0 if os.path.exists(kubeconfig) else 1)
    elif action == 'broken-check':
        print('check: cannot read state', file=sys.stderr)
        sys.exit(2)
''')


def version_routes(method, path, headers, body):
    if path == '/version':
        return 200, {'major': '1', 'minor': '30', 'gitVersion': 'v1.30.2'}
    return 404, {'kind': 'Status', 'code': 404}


@pytest.fixture(name='api', scope='module')
def api_fixture():
    with ScriptedServer(version_routes) as server:
        yield server


@pytest.fixture(name='installer')
def installer_fixture(tmp_path):
    script = tmp_path / 'installer.py'
    script.write_text(INSTALLER)
    return script


def options(installer, tmp_path, api_url='http://127.0.0.1:9', **values):
    kubeconfig = str(tmp_path / 'dr.kubeconfig')
    settings = dict(create_command=[sys.executable, str(installer), 'up', kubeconfig],
                    delete_command=[sys.executable, str(installer), 'down', kubeconfig],
                    kubeconfig_path=kubeconfig, environment={'FAKE_API': api_url})
    settings.update(values)
    return command_params(**settings)


def runs(tmp_path):
    log = tmp_path / 'dr.kubeconfig.log'
    return log.read_text().split() if log.exists() else []


def test_create_by_api_check_then_unchanged_then_delete(installer, tmp_path, api):
    params = options(installer, tmp_path, api.url)
    result = provider('command', 'dr', params, 30).ensure('present')
    assert result['changed'] is True and result['actions'] == ['run create_command']
    assert result['cluster'] == {'kubeconfig': str(tmp_path / 'dr.kubeconfig')}
    assert result['endpoint'] == api.url and result['version'] == 'v1.30.2' and result['status'] == 'present'
    assert result['commands'][0]['rc'] == 0 and 'creating cluster at' in result['commands'][0]['stdout_tail']
    assert runs(tmp_path) == ['up']

    again = provider('command', 'dr', params, 30).ensure('present')
    assert again['changed'] is False and again['actions'] == [] and again['commands'] == []
    assert again['cluster'] == result['cluster'] and runs(tmp_path) == ['up']

    removed = provider('command', 'dr', params, 30).ensure('absent')
    assert removed['changed'] is True and removed['cluster'] is None and runs(tmp_path) == ['up', 'down']
    gone = provider('command', 'dr', params, 30).ensure('absent')
    assert gone['changed'] is False and runs(tmp_path) == ['up', 'down']


def test_a_kubeconfig_whose_cluster_does_not_answer_is_absent(installer, tmp_path, api):
    (tmp_path / 'dr.kubeconfig').write_text('apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: "http://127.0.0.1:9"}}]\n'
                                            'users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n'
                                            'current-context: x\n')
    result = provider('command', 'dr', options(installer, tmp_path, api.url), 30).ensure('present')
    assert result['changed'] is True and runs(tmp_path) == ['up'] and result['version'] == 'v1.30.2'
    kept = provider('command', 'dr', options(installer, tmp_path, api.url, exists='kubeconfig'), 30).ensure('present')
    assert kept['changed'] is False and kept['version'] is None


def test_check_mode_runs_nothing(installer, tmp_path, api):
    params = options(installer, tmp_path, api.url)
    planned = provider('command', 'dr', params, 30).ensure('present', check_mode=True)
    assert planned['changed'] is True and planned['actions'] == ['run create_command'] and planned['cluster'] is None
    assert runs(tmp_path) == [] and not (tmp_path / 'dr.kubeconfig').exists()
    provider('command', 'dr', params, 30).ensure('present')
    planned = provider('command', 'dr', params, 30).ensure('absent', check_mode=True)
    assert planned['changed'] is True and planned['actions'] == ['run delete_command'] and planned['cluster'] is None
    assert runs(tmp_path) == ['up']


def test_check_command_decides(installer, tmp_path):
    kubeconfig = str(tmp_path / 'dr.kubeconfig')
    params = options(installer, tmp_path, check_command=[sys.executable, str(installer), 'check', kubeconfig])
    result = provider('command', 'dr', params, 30).ensure('present')
    assert result['changed'] is True and runs(tmp_path) == ['check', 'up', 'check']
    again = provider('command', 'dr', params, 30).ensure('present')
    assert again['changed'] is False and runs(tmp_path)[-1] == 'check' and runs(tmp_path).count('up') == 1

    broken = options(installer, tmp_path, check_command=[sys.executable, str(installer), 'broken-check', kubeconfig])
    with pytest.raises(ProvisioningError, match=r'check_command failed with exit code 2 \(0 means cluster dr exists, 1 that it does not\): '
                                                'check: cannot read state'):
        provider('command', 'dr', broken, 30).ensure('present', check_mode=True)
    with pytest.raises(ProvisioningError, match='command.exists=command needs command.check_command'):
        provider('command', 'dr', options(installer, tmp_path, exists='command'), 30)


def test_failing_command_gives_exit_code_and_stderr_tail(installer, tmp_path):
    kubeconfig = str(tmp_path / 'dr.kubeconfig')
    params = options(installer, tmp_path, exists='kubeconfig', create_command=[sys.executable, str(installer), 'fail', kubeconfig])
    with pytest.raises(ProvisioningError) as caught:
        provider('command', 'dr', params, 30).ensure('present')
    message = caught.value.message
    assert message.startswith('create_command for cluster dr exited with code 3: ')
    assert message.endswith('error: quota exceeded for instances in zone dc1')
    assert 'step 39' in message and 'step 10' not in message  # the tail only
    assert caught.value.details['rc'] == 3 and 'starting the installer' in caught.value.details['stdout_tail']


def test_missing_kubeconfig_and_missing_commands_are_named(installer, tmp_path):
    params = options(installer, tmp_path, exists='kubeconfig', create_command=[sys.executable, '-c', 'pass'])
    with pytest.raises(ProvisioningError, match=r'create_command exited 0 but left no kubeconfig at .*dr.kubeconfig: make it write'):
        provider('command', 'dr', params, 30).ensure('present')
    with pytest.raises(ProvisioningError, match='state=present for cluster dr needs command.create_command'):
        provider('command', 'dr', options(installer, tmp_path, create_command=None), 30).ensure('present', check_mode=True)
    (tmp_path / 'dr.kubeconfig').write_text('apiVersion: v1\n')
    with pytest.raises(ProvisioningError, match='state=absent for cluster dr needs command.delete_command'):
        provider('command', 'dr', options(installer, tmp_path, exists='kubeconfig', delete_command=None), 30).ensure('absent')
    with pytest.raises(ProvisioningError, match=r'cannot run create_command for cluster dr \(/nonexistent/install\): No such file'):
        provider('command', 'dr', options(installer, tmp_path, create_command=['/nonexistent/install']), 30).ensure('present')


def test_timeout_stops_the_command(installer, tmp_path):
    kubeconfig = str(tmp_path / 'dr.kubeconfig')
    params = options(installer, tmp_path, exists='kubeconfig', create_command=[sys.executable, str(installer), 'hang', kubeconfig])
    started = time.monotonic()
    with pytest.raises(ProvisioningError, match=r'create_command for cluster dr did not finish within 1 seconds \(wait_timeout\) and was stopped'):
        provider('command', 'dr', params, 1).ensure('present')
    assert time.monotonic() - started < 10


def test_a_daemon_left_behind_does_not_hold_the_run(installer, tmp_path):
    kubeconfig = str(tmp_path / 'dr.kubeconfig')
    params = options(installer, tmp_path, exists='kubeconfig', create_command=[sys.executable, str(installer), 'daemon', kubeconfig])
    started = time.monotonic()
    try:
        result = provider('command', 'dr', params, 30).ensure('present')
        assert result['changed'] is True and time.monotonic() - started < 10
    finally:
        pid_file = tmp_path / 'dr.kubeconfig.daemon'
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except OSError:
                pass


def test_relative_kubeconfig_is_under_chdir(installer, tmp_path, api):
    params = options(installer, tmp_path, api.url, chdir=str(tmp_path), kubeconfig_path='dr.kubeconfig',
                     create_command=[sys.executable, str(installer), 'up', 'dr.kubeconfig'], context='dr')
    result = provider('command', 'dr', params, 30).ensure('present')
    assert result['cluster'] == {'kubeconfig': str(tmp_path / 'dr.kubeconfig'), 'context': 'dr'}
    assert result['version'] == 'v1.30.2'
