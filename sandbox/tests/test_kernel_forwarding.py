"""NodePort and LoadBalancer addresses forwarded in the kernel (DNAT), as kube-proxy's iptables mode
does, and the userspace proxy where that is turned off; both with real pods and real connections."""

import os
import socket
import subprocess
import sys

import pytest
import yaml

from ferry_sandbox.controllers import kernel_forwarding
from helpers import kubectl, kubectl_json, wait_for


def _kernel_usable():
    """Whether this process may set nat rules at all (root without CAP_NET_ADMIN may not)."""
    probe = kernel_forwarding.KernelForwarding.create('0-0')
    if probe is None:
        return False
    probe.close()
    return True


pytestmark = pytest.mark.skipif(not _kernel_usable(), reason='needs root and iptables that may change the nat table (local-image pods need root too)')
OWN_CHAINS = '%s%d-' % (kernel_forwarding.CHAIN_PREFIX, os.getpid())

# answers each connection with its name and the address it sees the connection come from
ECHO_PEER = ('import os, socket\n'
             'srv = socket.create_server((os.environ["POD_IP"], 9000))\n'
             'while True:\n'
             '    c, peer = srv.accept()\n'
             '    c.sendall(("%s %s:%d" % (os.environ["POD_NAME"], peer[0], peer[1])).encode())\n'
             '    c.close()\n')


def _pod(name):
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'namespace': 'default', 'labels': {'app': 'echo'}},
            'spec': {'containers': [{'name': 'echo', 'image': 'echo:1', 'ports': [{'containerPort': 9000, 'name': 'tcp'}],
                                     'readinessProbe': {'tcpSocket': {'port': 'tcp'}},
                                     'env': [{'name': 'POD_NAME', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
                                             {'name': 'POD_IP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}}]}]}}


def _service():
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'echo', 'namespace': 'default'},
            'spec': {'type': 'NodePort', 'selector': {'app': 'echo'}, 'ports': [{'port': 9000, 'targetPort': 'tcp'}]}}


# The test's connections leave from an address of their own: a pod that sees it was reached with no process
# in between (the userspace proxy connects from 127.0.0.1). Ports are not compared: when the rewritten
# connection's tuple clashes with one conntrack still holds (a readiness probe's, from the same ephemeral
# port to the same pod), the kernel picks another source port, as it does under kube-proxy.
CLIENT_ADDRESS = '127.0.0.77'


def _ask(address, port):
    """(pod name, the address the pod saw the connection come from, this end's own address)."""
    with socket.create_connection((address, port), timeout=5, source_address=(CLIENT_ADDRESS, 0)) as conn:
        own = conn.getsockname()[0]
        answer = conn.recv(200).decode()
    if not answer:
        raise ConnectionResetError('closed without an answer')
    name, peer = answer.split()
    return name, peer.rsplit(':', 1)[0], own


def _chain_rules():
    listing = subprocess.run(['iptables', '-w', '-t', 'nat', '-S'], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if OWN_CHAINS in line and 'DNAT' in line]


def _start(sandbox_cluster, pods):
    cluster = sandbox_cluster(local_images={'echo:1': {'entrypoint': [sys.executable, '-c'], 'cmd': [ECHO_PEER]}})
    kubectl(cluster, 'apply', '-f', '-', stdin=yaml.safe_dump_all([_pod(name) for name in pods] + [_service()]))
    for name in pods:
        kubectl(cluster, 'wait', '--for=condition=Ready', 'pod/' + name, '--timeout=30s')
    return cluster, kubectl_json(cluster, 'get', 'service', 'echo')['spec']['ports'][0]['nodePort']


def test_node_port_is_rewritten_in_the_kernel_to_each_ready_pod(sandbox_cluster):
    cluster, node_port = _start(sandbox_cluster, ['echo-a', 'echo-b'])
    wait_for(lambda: len(_chain_rules()) == 2, what='a DNAT rule per ready pod')
    answers = [_ask(cluster.node_ip, node_port) for _ in range(40)]
    # no process in between: the pod sees the connection coming from this end's own address
    assert all(peer == own for _name, peer, own in answers)
    assert {name for name, _peer, _own in answers} == {'echo-a', 'echo-b'}

    kubectl(cluster, 'delete', 'pod', 'echo-b', '--wait=true')
    wait_for(lambda: len(_chain_rules()) == 1, what='the deleted pod\'s rule gone')
    assert {_ask(cluster.node_ip, node_port)[0] for _ in range(10)} == {'echo-a'}

    kubectl(cluster, 'delete', 'pod', 'echo-a', '--wait=true')
    wait_for(lambda: not _chain_rules(), what='no rule without a ready pod')
    with pytest.raises(OSError):  # the listener closes the connection: no endpoint
        _ask(cluster.node_ip, node_port)

    cluster.stop()
    assert not [line for line in subprocess.run(['iptables', '-w', '-t', 'nat', '-S'], capture_output=True, text=True, check=True).stdout.splitlines()
                if OWN_CHAINS in line]


def test_userspace_proxy_carries_the_node_port_when_kernel_forwarding_is_off(sandbox_cluster, monkeypatch):
    monkeypatch.setenv('FERRY_SANDBOX_PROXY', 'userspace')
    cluster, node_port = _start(sandbox_cluster, ['echo-a'])
    name, peer, own = _ask(cluster.node_ip, node_port)
    assert name == 'echo-a' and peer != own  # the proxy's own connection
    assert not _chain_rules()


def test_an_address_the_kernel_cannot_take_is_carried_by_the_userspace_proxy(sandbox_cluster, monkeypatch):
    def refuse(*_args):
        raise OSError('iptables-restore failed (exit 4): Permission denied')  # as _restore reports it
    monkeypatch.setattr(kernel_forwarding.KernelForwarding, 'forward', refuse)
    cluster, node_port = _start(sandbox_cluster, ['echo-a'])
    answer = wait_for(lambda: _answer_or_none(cluster.node_ip, node_port), what='the proxy to carry the node port')
    assert answer[0] == 'echo-a' and answer[1] != answer[2]
    events = kubectl_json(cluster, 'get', 'events', '--field-selector', 'reason=FailedToForward')['items']
    assert events and 'Permission denied' in events[0]['message']


def _answer_or_none(address, port):
    try:
        return _ask(address, port)
    except OSError:
        return None


def test_a_chain_left_by_a_killed_sandbox_is_removed_by_the_next_one(sandbox_cluster):
    dead = subprocess.Popen(['true'])
    dead.wait()
    chain = '%s%d-0-0' % (kernel_forwarding.CHAIN_PREFIX, dead.pid)
    subprocess.run(['iptables', '-w', '-t', 'nat', '-N', chain], check=True)
    subprocess.run(['iptables', '-w', '-t', 'nat', '-I', 'OUTPUT', '-j', chain], check=True)
    try:
        sandbox_cluster()
        listing = subprocess.run(['iptables', '-w', '-t', 'nat', '-S'], capture_output=True, text=True, check=True).stdout
        assert chain not in listing
    finally:
        subprocess.run(['iptables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-j', chain], capture_output=True, check=False)
        subprocess.run(['iptables', '-w', '-t', 'nat', '-X', chain], capture_output=True, check=False)
