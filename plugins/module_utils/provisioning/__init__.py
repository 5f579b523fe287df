# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pluggable provisioning of clusters for dynamic DR (``ferry.kube.dr_cluster``).

A provider makes a cluster exist (or not) and says how to connect to it. Each one is a module of
this package with a ``Provider`` class:

``Provider(name, options, wait_timeout)``
    ``name`` is the cluster's name, ``options`` the provider's suboptions (the module's option of
    the provider's name), ``wait_timeout`` the seconds the whole run may take.
``Provider.ensure(state, check_mode) -> dict``
    Makes the cluster ``present`` or ``absent`` (plans only in check mode) and returns the module
    result: ``changed``, ``cluster`` (a Ferry connection dict, None when absent), ``endpoint``,
    ``status``, ``version``, ``nodegroups``, ``actions``, ``drift``, ``warnings``, ``before``, ``after``.

Providers raise ``ProvisioningError`` (or another ``FerryError``) with a message naming the fix.
"""

from __future__ import annotations

import importlib

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError

# provider name -> module of this package (imported on use: the EKS one needs boto3).
PROVIDERS = {'command': 'command', 'eks': 'eks'}


class ProvisioningError(FerryError):
    """A cluster could not be created, found or deleted."""


def provider(kind, name, options, wait_timeout):
    """The provider ``kind`` for cluster ``name``."""
    if kind not in PROVIDERS:
        raise ProvisioningError('unknown provisioning provider "%s": use one of %s' % (kind, ', '.join(sorted(PROVIDERS))))
    implementation = importlib.import_module('%s.%s' % (__name__, PROVIDERS[kind]))
    return implementation.Provider(name, options or {}, wait_timeout)
