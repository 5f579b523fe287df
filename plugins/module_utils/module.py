# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The thin layer every Ferry module shares: dependency checks, connections, error reporting."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError


class FerryModule:
    """Wraps ``AnsibleModule`` (composition, so modules keep the plain Ansible API at hand)."""

    def __init__(self, argument_spec, requires_kubernetes=True, cluster_options=(), **kwargs):
        """``cluster_options``: free-form dict options that hold cluster connections; their secrets are hidden too."""
        kwargs.setdefault('supports_check_mode', True)
        self.ansible = AnsibleModule(argument_spec=argument_spec, **kwargs)
        if requires_kubernetes and not connection.HAS_KUBERNETES:
            self.ansible.fail_json(msg=missing_required_lib('kubernetes'), exception=str(connection.KUBERNETES_IMPORT_ERROR))
        for option, spec in argument_spec.items():
            if option in cluster_options or (spec.get('options') is not None and 'kubeconfig' in spec['options']):
                for value in connection.secret_values(self.params.get(option)):
                    self.ansible.no_log_values.add(value)

    @property
    def params(self):
        return self.ansible.params

    @property
    def check_mode(self):
        return self.ansible.check_mode

    @property
    def diff_mode(self):
        return self.ansible._diff  # pylint: disable=protected-access

    def connect(self, option='cluster'):
        return connection.connect(self.params.get(option) or {})

    def run(self, work):
        """Run ``work(self) -> result dict`` and exit; FerryErrors become clear failures."""
        try:
            result = work(self)
        except FerryError as exc:
            self.ansible.fail_json(msg=exc.message, **_plain(exc.details))
        except Exception as exc:  # pylint: disable=broad-except
            self.ansible.fail_json(msg='unexpected error: %s: %s' % (exc.__class__.__name__, exc), exception=traceback.format_exc())
        self.ansible.exit_json(**result)


def _plain(details):
    """Details safe to put in a result: drop empty values and anything not JSON-like."""
    return {k: v for k, v in (details or {}).items() if v is not None and isinstance(v, (str, int, float, bool, list, dict))}
