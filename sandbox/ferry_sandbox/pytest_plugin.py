"""pytest fixtures: ``sandbox_cluster`` (a factory) and ``sandbox_pair`` (source and dr).

Use from any test tree with ``pytest_plugins = ['ferry_sandbox.pytest_plugin']`` and
``sandbox/`` on sys.path.
"""

import pytest

from .cluster import Cluster
from .images import default_images


@pytest.fixture
def sandbox_cluster(tmp_path):
    started = []

    def make(name='source', version='1.31', openshift=False, local_images=None):
        images = default_images()
        images.update(local_images or {})
        cluster = Cluster(name, str(tmp_path / name), version=version, api_groups_extra=('openshift',) if openshift else (),
                          local_images=images)
        cluster.start()
        started.append(cluster)
        return cluster

    yield make
    for cluster in reversed(started):
        cluster.stop()


@pytest.fixture
def sandbox_pair(sandbox_cluster):
    return sandbox_cluster('source'), sandbox_cluster('dr')
