# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Clusters made by commands: an on-premises installer, Terraform, or any other tool.

``create_command`` and ``delete_command`` are argument lists run without a shell. The create
command must leave a kubeconfig at ``kubeconfig_path``; the cluster is then reached through it.
Whether the cluster exists is decided by ``exists``:

``api``
    ``kubeconfig_path`` exists and the cluster in it answers ``/version`` (the default);
``kubeconfig``
    ``kubeconfig_path`` exists;
``command``
    ``check_command`` exits 0 (present) or 1 (absent); the default when ``check_command`` is set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth, connection
from ansible_collections.ferry.kube.plugins.module_utils.provisioning import ProvisioningError
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.wait import Deadline, WaitTimeout

EXISTS = ['api', 'kubeconfig', 'command']
TAIL_LINES = 20
TAIL_CHARS = 2000
POLL_SECONDS = 2.0
API_TIMEOUT = 10.0
CHECK_TIMEOUT = 300.0
KILL_GRACE = 10.0


def command_options():
    """Suboptions of the module's ``command`` option."""
    return dict(
        create_command=dict(type='list', elements='str'),
        delete_command=dict(type='list', elements='str'),
        check_command=dict(type='list', elements='str'),
        exists=dict(type='str', choices=EXISTS),
        kubeconfig_path=dict(type='path', required=True),
        context=dict(type='str'),
        chdir=dict(type='path'),
        environment=dict(type='dict', default={}),
    )


class Provider:
    """A cluster that commands make and delete."""

    def __init__(self, name, options, wait_timeout, clock=None, sleep=None):
        self.name = name
        self.options = dict(options)
        self.wait_timeout = wait_timeout
        self.clock, self.sleep = clock, sleep
        self.poll_seconds = POLL_SECONDS
        if not self.options.get('kubeconfig_path'):
            raise ProvisioningError('command.kubeconfig_path is required: the kubeconfig the create command leaves for cluster %s' % name)
        chdir = self.options.get('chdir')
        self.kubeconfig = os.path.abspath(os.path.join(chdir or os.getcwd(), self.options['kubeconfig_path']))
        self.exists_by = self.options.get('exists') or ('command' if self.options.get('check_command') else 'api')
        if self.exists_by == 'command' and not self.options.get('check_command'):
            raise ProvisioningError('command.exists=command needs command.check_command: a command that exits 0 when cluster %s exists '
                                    'and 1 when it does not' % name)
        if self.exists_by == 'api' and not connection.HAS_KUBERNETES:
            raise ProvisioningError('command.exists=api asks the cluster for /version and needs the Python library kubernetes: '
                                    'pip install kubernetes, or set command.exists to kubeconfig or command')
        self.commands, self.warnings = [], []
        self._server_version = None
        self._why_absent = None

    def ensure(self, state, check_mode=False):
        deadline = Deadline(self.wait_timeout, self.clock, self.sleep)
        present = self._exists(deadline)
        before = {'exists': present}
        actions = []
        if state == 'present' and not present:
            argv = self._required('create_command', state)
            actions.append('run create_command')
            if not check_mode:
                self._run('create_command', argv, deadline)
                if not os.path.isfile(self.kubeconfig):
                    raise ProvisioningError('create_command exited 0 but left no kubeconfig at %s: make it write the kubeconfig of cluster %s '
                                            'there, or correct command.kubeconfig_path' % (self.kubeconfig, self.name))
                self._wait_until(True, deadline, 'create_command')
        elif state == 'absent' and present:
            argv = self._required('delete_command', state)
            actions.append('run delete_command')
            if not check_mode:
                self._run('delete_command', argv, deadline)
                self._wait_until(False, deadline, 'delete_command')
        after = {'exists': state == 'present'}
        exists = state == 'present' and (present or not check_mode)
        return {
            'changed': before != after,
            'cluster': self.connection() if exists else None,
            'endpoint': self._endpoint() if exists else None,
            'status': 'present' if exists else None,
            'version': self._server_version if exists else None,
            'nodegroups': [],
            'actions': actions,
            'drift': [],
            'warnings': self.warnings,
            'before': before,
            'after': after,
            'commands': self.commands,
        }

    def connection(self):
        found = {'kubeconfig': self.kubeconfig}
        if self.options.get('context'):
            found['context'] = self.options['context']
        return found

    # -- is it there? ---------------------------------------------------------------------------
    def _exists(self, deadline):
        if self.exists_by == 'command':
            return self._check_command(deadline)
        if not os.path.isfile(self.kubeconfig):
            self._why_absent = 'there is no kubeconfig at %s' % self.kubeconfig
            return False
        if self.exists_by == 'kubeconfig':
            return True
        return self._answers()

    def _answers(self):
        params = {'kubeconfig': self.kubeconfig, 'context': self.options.get('context'), 'request_timeout': API_TIMEOUT}
        try:
            version = connection.connect(params).server_version
        except Exception as exc:  # pylint: disable=broad-except
            self._why_absent = 'the cluster in %s does not answer /version: %s' % (self.kubeconfig, getattr(exc, 'message', None) or exc)
            return False
        self._server_version = (version or {}).get('gitVersion')
        return True

    def _check_command(self, deadline):
        argv = self.options['check_command']
        rc, stdout, stderr = self._execute('check_command', argv, min(deadline.remaining() or 1.0, CHECK_TIMEOUT))
        if rc == 0:
            return True
        if rc == 1:
            self._why_absent = 'check_command exits 1'
            return False
        raise ProvisioningError('check_command failed with exit code %d (0 means cluster %s exists, 1 that it does not): %s'
                                % (rc, self.name, stderr or stdout or '(no output)'), rc=rc, stderr_tail=stderr, stdout_tail=stdout)

    def _wait_until(self, present, deadline, after):
        try:
            deadline.poll(lambda: (self._exists(deadline) == present, self._why_absent), self.poll_seconds)
        except WaitTimeout as exc:
            if present:
                raise ProvisioningError('cluster %s is not there %d seconds after %s (wait_timeout): %s'
                                        % (self.name, self.wait_timeout, after, exc.last or 'it does not answer')) from None
            raise ProvisioningError('cluster %s is still there %d seconds after %s (wait_timeout): by command.exists=%s it is present'
                                    % (self.name, self.wait_timeout, after, self.exists_by)) from None

    def _endpoint(self):
        try:
            return cloud_auth.kubeconfig_server(self.kubeconfig, self.options.get('context'))[0]
        except Exception:  # pylint: disable=broad-except
            return None

    # -- commands -------------------------------------------------------------------------------
    def _required(self, option, state):
        argv = self.options.get(option)
        if not argv:
            raise ProvisioningError('state=%s for cluster %s needs command.%s: the command (an argument list) to run' % (state, self.name, option))
        return argv

    def _run(self, label, argv, deadline):
        started = time.monotonic()
        rc, stdout, stderr = self._execute(label, argv, max(deadline.remaining(), 1.0))
        self.commands.append({'command': label, 'argv': list(argv), 'rc': rc, 'stdout_tail': stdout, 'stderr_tail': stderr,
                              'duration': round(time.monotonic() - started, 3)})
        if rc != 0:
            raise ProvisioningError('%s for cluster %s exited with code %d: %s' % (label, self.name, rc, stderr or stdout or '(no output)'),
                                    rc=rc, stderr_tail=stderr, stdout_tail=stdout)

    def _execute(self, label, argv, timeout):
        """Run ``argv`` without a shell; ``(exit code, stdout tail, stderr tail)``.

        Output goes to files, not pipes: a create command may leave a daemon behind that keeps
        its inherited descriptors open, and reading a pipe to its end would wait for that daemon.
        """
        environment = dict(os.environ)
        environment.update({str(k): str(v) for k, v in (self.options.get('environment') or {}).items()})
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                process = subprocess.Popen([str(arg) for arg in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,  # pylint: disable=consider-using-with
                                           cwd=self.options.get('chdir'), env=environment, start_new_session=True)
            except OSError as exc:
                raise ProvisioningError('cannot run %s for cluster %s (%s): %s' % (label, self.name, argv[0], exc.strerror or exc)) from None
            try:
                rc = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(process)
                raise ProvisioningError('%s for cluster %s did not finish within %d seconds (wait_timeout) and was stopped: %s'
                                        % (label, self.name, timeout, _tail(err) or _tail(out) or '(no output)')) from None
            return rc, _tail(out), _tail(err)


def _stop(process):
    """Stop the command and what it started in its session: SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        try:
            os.killpg(process.pid, sig)
        except OSError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(handle):
    handle.seek(0)
    text = handle.read().decode('utf-8', 'replace').strip()
    lines = text.splitlines()[-TAIL_LINES:]
    return '\n'.join(lines)[-TAIL_CHARS:]
