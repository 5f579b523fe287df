"""Role ferry.kube.dr_schedule run by ansible-playbook against localhost, with every location it writes to
(systemd unit directory, cron file, log, logrotate directory) in a scratch directory: in check mode nothing is
written; otherwise the units and the cron entry are rendered there (systemctl is not called for a unit directory
that is not the system's, and a stub crontab satisfies ansible.builtin.cron's look-up), and state=absent removes
them again."""

import getpass
import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
USER = getpass.getuser()

# Two schedules, and one whose interval no timer can keep.
PLAYBOOK = textwrap.dedent('''\
    - name: Schedules into a scratch directory
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Schedules
          ansible.builtin.include_tasks: schedules.yml

        - name: An interval that divides neither the hour nor the day
          when: try_bad_interval | bool
          block:
            - name: Every 45 minutes
              ansible.builtin.include_role:
                name: ferry.kube.dr_schedule
              vars:
                dr_schedule_name: ferry-dr-bad
                dr_schedule_interval: 45m
                dr_schedule_unit_dir: "{{ playbook_dir }}/units"
          rescue:
            - name: Refused
              ansible.builtin.debug:
                msg: "REFUSED {{ ansible_failed_result.msg }}"
    ''')

SCHEDULES = textwrap.dedent('''\
    - name: A systemd timer every 15 minutes
      ansible.builtin.include_role:
        name: ferry.kube.dr_schedule
      vars:
        dr_schedule_name: ferry-dr-shop
        dr_schedule_method: systemd
        dr_schedule_interval: 15m
        dr_schedule_unit_dir: "{{ playbook_dir }}/units"
        dr_schedule_cron_file: "{{ playbook_dir }}/cron/ferry-dr-shop"
        dr_schedule_log_file: "{{ playbook_dir }}/log/ferry-dr-shop.log"
        dr_schedule_logrotate_dir: "{{ playbook_dir }}/logrotate"
        dr_schedule_environment: {AWS_PROFILE: dr, FERRY_NOTE: 'at 50% "load"'}
        dr_schedule_extra_args: [--vault-password-file, "{{ playbook_dir }}/vault pass"]

    - name: A cron entry every 2 hours at half past
      ansible.builtin.include_role:
        name: ferry.kube.dr_schedule
      vars:
        dr_schedule_name: ferry-dr-crm
        dr_schedule_method: cron
        dr_schedule_interval: 2h
        dr_schedule_offset: 30
        dr_schedule_unit_dir: "{{ playbook_dir }}/units"
        dr_schedule_cron_file: "{{ playbook_dir }}/cron/ferry-dr-crm"
        dr_schedule_log_file: "{{ playbook_dir }}/log/ferry-dr-crm.log"
        dr_schedule_logrotate_dir: ""
    ''')


def scratch(path):
    """A scratch directory with the playbook, a policy file and a stub crontab."""
    for name in ('units', 'cron', 'logrotate', 'bin', 'home'):
        (path / name).mkdir(parents=True)
    (path / 'play.yml').write_text(PLAYBOOK)
    (path / 'schedules.yml').write_text(SCHEDULES)
    (path / 'policy.yml').write_text('dr_policy: {name: shop}\n')
    crontab = path / 'bin' / 'crontab'
    crontab.write_text('#!/bin/sh\necho "crontab must not run" >&2\nexit 1\n')
    crontab.chmod(0o755)
    return path


def play(path, *args, state='present', bad=False, **more):
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_')}
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_HOME=str(path / 'home'), ANSIBLE_LOCAL_TEMP=str(path / 'home' / 'tmp'),
               ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0', PATH='%s:%s' % (path / 'bin', os.environ.get('PATH', '')))
    extra = {'try_bad_interval': bad, 'dr_schedule_state': state, 'dr_schedule_user': USER,
             'dr_schedule_policy_file': str(path / 'policy.yml'), 'ansible_python_interpreter': sys.executable, **more}
    proc = subprocess.run([ANSIBLE_PLAYBOOK, str(path / 'play.yml'), '-i', 'localhost,', '-e', json.dumps(extra), *args],
                          cwd=str(path), env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def files(path):
    return sorted(os.path.relpath(os.path.join(d, f), str(path)) for sub in ('units', 'cron', 'logrotate', 'log')
                  for d, dummy, names in os.walk(str(path / sub)) for f in names)


def installed(path):
    """Schedules as an earlier run left them, for state=absent to remove."""
    scratch(path)
    (path / 'log').mkdir()
    for name in ('ferry-dr-shop.service', 'ferry-dr-shop.timer'):
        (path / 'units' / name).write_text('[Unit]\n')
    (path / 'cron' / 'ferry-dr-crm').write_text('#Ansible: ferry-dr-crm\n30 0 * * * %s true\n' % USER)
    (path / 'logrotate' / 'ferry-dr-shop').write_text('/var/log/ferry/x.log {\n}\n')
    (path / 'log' / 'ferry-dr-shop.log').write_text('an earlier run\n')
    return path


@pytest.mark.skipif(not os.path.isdir(COLLECTIONS), reason='the collection is not set up (make setup)')
def test_check_mode_rendered_and_absent(tmp_path):
    checked, rendered, removed = scratch(tmp_path / 'check'), scratch(tmp_path / 'real'), installed(tmp_path / 'absent')
    with ThreadPoolExecutor(3) as pool:  # independent scratch directories: run side by side
        runs = [pool.submit(play, checked, '--check', dr_schedule_logrotate_dir=''), pool.submit(play, rendered, bad=True),
                pool.submit(play, removed, state='absent')]
        check_out, real_out = runs[0].result(), runs[1].result()
        runs[2].result()

    # Check mode reports the changes and writes nothing.
    assert 'changed: [localhost]' in check_out
    assert files(checked) == []

    # Rendered into the scratch directory, and only there.
    assert set(files(rendered)) == {'cron/ferry-dr-crm', 'logrotate/ferry-dr-shop', 'units/ferry-dr-shop.service', 'units/ferry-dr-shop.timer'}
    assert (rendered / 'log').is_dir()

    service = (rendered / 'units' / 'ferry-dr-shop.service').read_text()
    timer = (rendered / 'units' / 'ferry-dr-shop.timer').read_text()
    cron = (rendered / 'cron' / 'ferry-dr-crm').read_text()
    policy = rendered / 'policy.yml'

    assert 'Type=oneshot' in service
    assert 'User=%s' % USER in service
    assert 'WorkingDirectory=%s' % rendered in service
    assert ('ExecStart=%s ferry.kube.dr_sync -e @%s --vault-password-file \'%s/vault pass\''
            % (ANSIBLE_PLAYBOOK, policy, rendered)) in service.splitlines()
    assert 'Environment="ANSIBLE_LOG_PATH=%s/log/ferry-dr-shop.log"' % rendered in service
    assert 'Environment="ANSIBLE_COLLECTIONS_PATH=%s"' % COLLECTIONS in service
    assert 'Environment="AWS_PROFILE=dr"' in service
    assert 'Environment="FERRY_NOTE=at 50%% \\"load\\""' in service  # systemd's escapes for % and "

    assert 'OnCalendar=*-*-* *:00,15,30,45:00' in timer.splitlines()
    assert 'Persistent=true' in timer
    assert 'Unit=ferry-dr-shop.service' in timer
    assert 'WantedBy=timers.target' in timer

    lines = cron.splitlines()
    assert lines[0] == '#Ansible: ferry-dr-crm'
    minute, hour, dom, month, dow, user, job = lines[1].split(' ', 6)
    assert (minute, hour, dom, month, dow, user) == ('30', '0,2,4,6,8,10,12,14,16,18,20,22', '*', '*', '*', USER)
    assert job.startswith('cd %s && ' % rendered)
    assert 'ANSIBLE_LOG_PATH=%s/log/ferry-dr-crm.log' % rendered in job
    assert 'flock -n %s/log/ferry-dr-crm.lock %s ferry.kube.dr_sync -e @%s' % (rendered, ANSIBLE_PLAYBOOK, policy) in job
    assert job.endswith('> /dev/null 2>> %s/log/ferry-dr-crm.log' % rendered)

    assert '%s/log/ferry-dr-shop.log {' % rendered in (rendered / 'logrotate' / 'ferry-dr-shop').read_text()

    assert 'REFUSED' in real_out and 'dr_schedule_interval must divide the hour or the day' in real_out
    assert not (rendered / 'units' / 'ferry-dr-bad.timer').exists()

    if shutil.which('systemd-analyze'):
        calendar = subprocess.run(['systemd-analyze', 'calendar', '*-*-* *:00,15,30,45:00'], capture_output=True, text=True, check=False)
        assert calendar.returncode == 0, calendar.stderr

    # state=absent removes the units, the cron entry (its file with it) and the logrotate rule; the log stays.
    assert files(removed) == ['log/ferry-dr-shop.log']
