"""The node runtime: local images really run, with volumes at their mountPaths, reachable through
NodePort and LoadBalancer addresses; logs, read-only mounts and deletion."""

import os
import socket
import sys

import pytest
import yaml

from helpers import kubectl, kubectl_json, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='local-image pods need root for mount namespaces')

PROBE = ('import os, socket, sys\n'
         'open("/data/written-by-pod.txt", "w").write(os.environ["POD_NAME"])\n'
         'try:\n    open("/config/x", "w")\n    print("config writable")\nexcept OSError as e:\n    print("config read-only:", e.errno)\n'
         'print("secret:", open("/secret/token").read())\n'
         'print("ip:", os.environ["POD_IP"], "ns:", os.environ["POD_NAMESPACE"])\n'
         'sys.stdout.flush()\n'
         'srv = socket.create_server((os.environ["POD_IP"], 9000))\n'
         'while True:\n    c, _ = srv.accept()\n    c.sendall(b"hello from " + os.environ["POD_NAME"].encode())\n    c.close()\n')


def test_local_image_pod_runs_with_volumes_env_and_exposure(sandbox_cluster):
    cluster = sandbox_cluster(local_images={'probe:1': {'entrypoint': [sys.executable, '-c'], 'cmd': [PROBE]}})
    objects = [
        {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'default'},
         'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cfg', 'namespace': 'default'}, 'data': {'x': '1'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'sec', 'namespace': 'default'}, 'stringData': {'token': 's3cr3t'}},
        {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'probe', 'namespace': 'default', 'labels': {'app': 'probe'}},
         'spec': {'containers': [{'name': 'probe', 'image': 'probe:1', 'ports': [{'containerPort': 9000, 'name': 'tcp'}],
                                  'readinessProbe': {'tcpSocket': {'port': 'tcp'}},
                                  'env': [{'name': 'POD_NAME', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
                                          {'name': 'POD_IP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}},
                                          {'name': 'POD_NAMESPACE', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.namespace'}}}],
                                  'volumeMounts': [{'name': 'data', 'mountPath': '/data'}, {'name': 'cfg', 'mountPath': '/config'},
                                                   {'name': 'sec', 'mountPath': '/secret', 'readOnly': True}]}],
                  'volumes': [{'name': 'data', 'persistentVolumeClaim': {'claimName': 'data'}}, {'name': 'cfg', 'configMap': {'name': 'cfg'}},
                              {'name': 'sec', 'secret': {'secretName': 'sec'}}]}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'probe-np', 'namespace': 'default'},
         'spec': {'type': 'NodePort', 'selector': {'app': 'probe'}, 'ports': [{'port': 9000, 'targetPort': 'tcp'}]}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'probe-lb', 'namespace': 'default'},
         'spec': {'type': 'LoadBalancer', 'selector': {'app': 'probe'}, 'ports': [{'port': 9443, 'targetPort': 9000}]}},
    ]
    kubectl(cluster, 'apply', '-f', '-', stdin=yaml.safe_dump_all(objects))
    kubectl(cluster, 'wait', '--for=condition=Ready', 'pod/probe', '--timeout=30s')
    logs = kubectl(cluster, 'logs', 'probe').stdout
    assert 'config read-only: 30' in logs and 'secret: s3cr3t' in logs and 'ns: default' in logs
    pod = kubectl_json(cluster, 'get', 'pod', 'probe')
    assert 'ip: %s' % pod['status']['podIP'] in logs
    claim = kubectl_json(cluster, 'get', 'pvc', 'data')
    with open(os.path.join(cluster.state_dir, 'volumes', claim['spec']['volumeName'], 'written-by-pod.txt'), encoding='utf-8') as handle:
        assert handle.read() == 'probe'
    assert not os.path.exists('/data/written-by-pod.txt')  # the pod's /data is private to it
    node_port = kubectl_json(cluster, 'get', 'service', 'probe-np')['spec']['ports'][0]['nodePort']
    with socket.create_connection((cluster.node_ip, node_port), timeout=5) as conn:
        assert conn.recv(100) == b'hello from probe'
    lb = wait_for(lambda: kubectl_json(cluster, 'get', 'service', 'probe-lb').get('status', {}).get('loadBalancer', {}).get('ingress'), what='LB')
    with socket.create_connection((lb[0]['ip'], 9443), timeout=5) as conn:
        assert conn.recv(100) == b'hello from probe'
    kubectl(cluster, 'delete', 'pod', 'probe', '--wait=true')
    with pytest.raises(OSError):
        socket.create_connection((pod['status']['podIP'], 9000), timeout=2)


def test_crashing_local_process_restarts_with_back_off(sandbox_cluster):
    cluster = sandbox_cluster(local_images={'exit1:1': {'entrypoint': [sys.executable, '-c', 'import sys; print("bye"); sys.exit(3)']}})
    kubectl(cluster, 'run', 'crasher', '--image=exit1:1')
    status = wait_for(lambda: ((kubectl_json(cluster, 'get', 'pod', 'crasher').get('status') or {}).get('containerStatuses') or [{}])[0]
                      if (((kubectl_json(cluster, 'get', 'pod', 'crasher').get('status') or {}).get('containerStatuses') or [{}])[0]
                          .get('restartCount', 0) >= 1) else None, timeout=30, what='a restart')
    assert status['lastState']['terminated']['exitCode'] == 3
    assert 'bye' in kubectl(cluster, 'logs', 'crasher').stdout
