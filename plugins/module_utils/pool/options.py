# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``pool`` option the modules share: where the pool is, how to reach it, and its passphrase.

The passphrase is given directly (an Ansible-vault variable, an AWX credential) or read from a
Kubernetes Secret through the module's ``cluster`` connection.
"""

from __future__ import annotations

import base64

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError, open_backend
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool, PoolError

BACKEND_OPTIONS = dict(
    endpoint_url=dict(type='str'),
    region=dict(type='str'),
    access_key=dict(type='str', no_log=True),
    secret_key=dict(type='str', no_log=True),
    session_token=dict(type='str', no_log=True),
    profile=dict(type='str'),
    ca_bundle=dict(type='path'),
    verify=dict(type='bool'),
    addressing_style=dict(type='str', choices=['path', 'virtual', 'auto']),
    endpoint=dict(type='str'),
    credentials_file=dict(type='path'),
    anonymous=dict(type='bool'),
    project=dict(type='str'),
    account_url=dict(type='str'),
    account_name=dict(type='str'),
    account_key=dict(type='str', no_log=True),
    sas_token=dict(type='str', no_log=True),
    connection_string=dict(type='str', no_log=True),
    use_identity=dict(type='bool'),
    max_attempts=dict(type='int'),
)


def pool_spec():
    """Suboptions of a pool option (fresh copy: Ansible mutates specs)."""
    return dict(
        location=dict(type='str', required=True),
        passphrase=dict(type='str', no_log=True),
        passphrase_secret=dict(type='dict', no_log=False, options=dict(
            namespace=dict(type='str', required=True),
            name=dict(type='str', required=True),
            key=dict(type='str', default='passphrase', no_log=False),
        )),
        options=dict(type='dict', options={name: dict(spec) for name, spec in BACKEND_OPTIONS.items()}),
    )


def pool_option():
    """Optional in the spec, so one doc fragment serves every module; modules that cannot work
    without a pool get a clear error from ``require_pool``."""
    return dict(type='dict', options=pool_spec(), mutually_exclusive=[['passphrase', 'passphrase_secret']],
                required_one_of=[['passphrase', 'passphrase_secret']])


def require_pool(params):
    """The pool option of a module that needs one, or a clear error."""
    if not params:
        raise FerryError('missing required argument: pool (give pool.location and pool.passphrase or pool.passphrase_secret)')
    return params


def passphrase_of(module, params, cluster=None):
    """The passphrase, given directly or read from a Secret through ``cluster`` (default: the module's ``cluster`` option)."""
    params = require_pool(params)
    if params.get('passphrase'):
        return params['passphrase']
    ref = params['passphrase_secret']
    cluster = cluster or module.connect()
    secret = cluster.get('/api/v1/namespaces/%s/secrets/%s' % (ref['namespace'], ref['name']))
    encoded = (secret.get('data') or {}).get(ref['key'])
    if not encoded:
        raise FerryError('Secret %s/%s has no key %r holding the pool passphrase (it has: %s)'
                         % (ref['namespace'], ref['name'], ref['key'], ', '.join(sorted(secret.get('data') or {})) or 'no data'))
    value = base64.b64decode(encoded).decode('utf-8').rstrip('\n')
    module.ansible.no_log_values.add(value)
    return value


def backend_of(params):
    options = {k: v for k, v in (params.get('options') or {}).items() if v is not None}
    try:
        return open_backend(params['location'], options)
    except BackendError as exc:
        raise FerryError(str(exc)) from None


def open_pool(module, params, passphrase=None):
    params = require_pool(params)
    try:
        return Pool.open(backend_of(params), passphrase or passphrase_of(module, params))
    except (PoolError, BackendError) as exc:
        raise FerryError(str(exc)) from None
