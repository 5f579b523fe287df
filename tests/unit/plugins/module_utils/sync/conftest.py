"""Sandbox clusters for the sync engine's tests, and a Ferry connection to them (as in restore/conftest.py)."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ferry_sandbox.pytest_plugin import sandbox_cluster, sandbox_pair  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def connect():
    """Connect Ferry to a sandbox cluster as to any cluster: through its kubeconfig."""
    return lambda cluster: connection.connect({'kubeconfig': cluster.kubeconfig_path})
