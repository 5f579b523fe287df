"""Sandbox clusters for the sync engine's tests, and a Ferry connection to them (as in restore/conftest.py)."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ferry_sandbox import pytest_plugin

# the sandbox fixtures, offered to the tests below this directory (assigned, not imported: nothing looks unused)
sandbox_cluster = pytest_plugin.sandbox_cluster
sandbox_pair = pytest_plugin.sandbox_pair


@pytest.fixture
def connect():
    """Connect Ferry to a sandbox cluster as to any cluster: through its kubeconfig."""
    return lambda cluster: connection.connect({'kubeconfig': cluster.kubeconfig_path})
