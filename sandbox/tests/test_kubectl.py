"""kubectl, a client nobody here wrote: apply, get, selectors, wait, delete."""

import json
import os

from helpers import kubectl, kubectl_json

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'demo', 'app.yaml')


def test_apply_multi_document_manifest_and_wait(sandbox_cluster):
    cluster = sandbox_cluster()
    out = kubectl(cluster, 'apply', '-f', APP).stdout
    assert 'deployment.apps/web created' in out and 'persistentvolumeclaim/web-data created' in out
    kubectl(cluster, 'wait', '-n', 'shop', '--for=condition=complete', 'job/seed-data', '--timeout=60s')
    kubectl(cluster, 'wait', '-n', 'shop', '--for=condition=Available', 'deployment/web', 'deployment/catalog', '--timeout=60s')
    again = kubectl(cluster, 'apply', '-f', APP).stdout
    assert 'deployment.apps/web unchanged' in again
    pods = kubectl_json(cluster, 'get', 'pods', '-n', 'shop', '-l', 'app=catalog')
    assert len(pods['items']) == 2 and all(p['status']['phase'] == 'Running' for p in pods['items'])
    svc = kubectl_json(cluster, 'get', 'service', 'web', '-n', 'shop')
    assert 30000 <= svc['spec']['ports'][0]['nodePort'] <= 32767


def test_apply_changes_and_delete(sandbox_cluster):
    cluster = sandbox_cluster()
    manifest = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings', 'namespace': 'default', 'labels': {'team': 'a'}},
                'data': {'mode': 'one'}}
    kubectl(cluster, 'apply', '-f', '-', stdin=json.dumps(manifest))
    manifest['data'] = {'mode': 'two'}
    assert 'configured' in kubectl(cluster, 'apply', '-f', '-', stdin=json.dumps(manifest)).stdout
    assert kubectl_json(cluster, 'get', 'configmap', 'settings', '-n', 'default')['data'] == {'mode': 'two'}
    assert [i['metadata']['name'] for i in kubectl_json(cluster, 'get', 'configmaps', '-A', '-l', 'team=a')['items']] == ['settings']
    kubectl(cluster, 'delete', 'configmap', 'settings', '-n', 'default')
    assert kubectl(cluster, 'get', 'configmap', 'settings', '-n', 'default', check=False).returncode != 0


def test_api_resources_and_versions(sandbox_cluster):
    cluster = sandbox_cluster()
    resources = kubectl(cluster, 'api-resources', '-o', 'name').stdout.split()
    for name in ('pods', 'deployments.apps', 'volumesnapshots.snapshot.storage.k8s.io', 'customresourcedefinitions.apiextensions.k8s.io'):
        assert name in resources
    assert json.loads(kubectl(cluster, 'version', '-o', 'json').stdout)['serverVersion']['minor'] == '31'
