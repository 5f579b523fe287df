"""The controllers and the node of a sandbox cluster, started by ``Cluster.start()``."""

from . import services, storage, workloads
from .manager import Manager
from ..node.runtime import Node


def start_controllers(cluster):
    manager = Manager(cluster)
    workloads.install(manager)
    storage.install(manager)
    exposure = services.install(manager)
    node = Node(cluster)
    manager.register('', 'pods', node.reconcile)
    manager.periodic.append(node.tick)
    manager.start()
    # Stopped in reverse order: the node (processes) and proxies after the manager's thread.
    return [exposure, node, manager]
