"""API-server semantics through the kubernetes DynamicClient."""

import json
import threading

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ConflictError, DynamicApiError, NotFoundError

from helpers import dynamic_client, kubectl, wait_for


@pytest.fixture(name='api')
def api_fixture(sandbox_cluster):
    cluster = sandbox_cluster('source')
    return cluster, dynamic_client(cluster.kubeconfig_path)


def cm(name, namespace='default', **labels):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name, 'namespace': namespace, 'labels': labels}, 'data': {'k': 'v'}}


def test_create_fills_metadata_and_rejects_duplicates(api):
    _cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    created = cms.create(body=cm('a'))
    assert created.metadata.uid and created.metadata.creationTimestamp and int(created.metadata.resourceVersion) > 0
    with pytest.raises(ConflictError) as caught:
        cms.create(body=cm('a'))
    assert 'already exists' in caught.value.body
    generated = cms.create(body={'metadata': {'generateName': 'gen-', 'namespace': 'default'}})
    assert generated.metadata.name.startswith('gen-') and len(generated.metadata.name) == 9


def test_stale_update_conflicts_and_resource_versions_grow(api):
    _cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    first = cms.create(body=cm('b')).to_dict()
    second = dict(first, data={'k': 'w'})
    updated = cms.replace(body=second)
    assert int(updated.metadata.resourceVersion) > int(first['metadata']['resourceVersion'])
    with pytest.raises(ConflictError):
        cms.replace(body=dict(first, data={'k': 'stale'}))


def test_generation_tracks_spec_not_status(api):
    _cluster, client = api
    deployments = client.resources.get(api_version='apps/v1', kind='Deployment')
    body = {'metadata': {'name': 'g', 'namespace': 'default'}, 'spec': {'replicas': 0, 'selector': {'matchLabels': {'a': 'g'}},
                                                                        'template': {'metadata': {'labels': {'a': 'g'}}, 'spec': {'containers': [{'name': 'c', 'image': 'x'}]}}}}
    created = deployments.create(body=body)
    assert created.metadata.generation == 1
    patched = deployments.patch(name='g', namespace='default', body={'spec': {'replicas': 0, 'minReadySeconds': 5}},
                                content_type='application/merge-patch+json')
    assert patched.metadata.generation == 2


def test_missing_namespace_is_404_and_invalid_is_422(api):
    _cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    with pytest.raises(NotFoundError) as caught:
        cms.create(body=cm('x', namespace='nope'))
    assert json.loads(caught.value.body)['message'] == 'namespaces "nope" not found'
    with pytest.raises(DynamicApiError) as invalid:
        cms.create(body={'metadata': {'namespace': 'default'}})
    assert invalid.value.status == 422 and 'name or generateName is required' in invalid.value.body


def test_label_field_selectors_and_pagination(api):
    _cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    for i in range(25):
        cms.create(body=cm('p%02d' % i, tier='front' if i % 2 else 'back'))
    assert len(cms.get(namespace='default', label_selector='tier=front').items) == 12
    assert len(cms.get(namespace='default', label_selector='tier in (front,back),tier!=back').items) == 12
    assert [i.metadata.name for i in cms.get(namespace='default', field_selector='metadata.name=p07').items] == ['p07']
    page = cms.get(namespace='default', label_selector='tier', limit=10).to_dict()
    names = [i['metadata']['name'] for i in page['items']]
    assert page['metadata']['remainingItemCount'] == 15
    while page['metadata'].get('continue'):
        page = cms.get(namespace='default', label_selector='tier', limit=10, _continue=page['metadata']['continue']).to_dict()
        names += [i['metadata']['name'] for i in page['items']]
    assert len(names) == 25 and len(set(names)) == 25


def test_patch_kinds(api):
    cluster, client = api
    deployments = client.resources.get(api_version='apps/v1', kind='Deployment')
    body = {'metadata': {'name': 'p', 'namespace': 'default'}, 'spec': {'replicas': 0, 'selector': {'matchLabels': {'a': 'p'}},
                                                                        'template': {'metadata': {'labels': {'a': 'p'}}, 'spec': {'containers': [
                                                                            {'name': 'app', 'image': 'app:1', 'env': [{'name': 'A', 'value': '1'}]},
                                                                            {'name': 'side', 'image': 'side:1'}]}}}}
    deployments.create(body=body)
    patched = deployments.patch(name='p', namespace='default', content_type='application/strategic-merge-patch+json',
                                body={'spec': {'template': {'spec': {'containers': [{'name': 'app', 'image': 'app:2', 'env': [{'name': 'B', 'value': '2'}]}]}}}})
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers['app'].image == 'app:2' and containers['side'].image == 'side:1'
    assert sorted(e.name for e in containers['app'].env) == ['A', 'B']
    kubectl(cluster, 'patch', 'deployment', 'p', '-n', 'default', '--type=json',
            '-p', '[{"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "side:2"}]')
    assert deployments.get(name='p', namespace='default').spec.template.spec.containers[1].image == 'side:2'
    patched = deployments.patch(name='p', namespace='default', content_type='application/merge-patch+json', body={'metadata': {'labels': {'x': 'y'}}})
    assert patched.to_dict()['metadata']['labels'] == {'x': 'y'}


def test_dry_run_changes_nothing(api):
    cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    cms.create(body=cm('dry'), query_params=[('dryRun', 'All')])
    with pytest.raises(NotFoundError):
        cms.get(name='dry', namespace='default')
    assert cluster.store.get('', 'configmaps', 'default', 'dry') is None


def test_status_subresource_is_separate(api):
    _cluster, client = api
    pvcs = client.resources.get(api_version='v1', kind='PersistentVolumeClaim')
    body = {'metadata': {'name': 's', 'namespace': 'default'}, 'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'manual',
                                                                        'resources': {'requests': {'storage': '1Gi'}}}}
    created = pvcs.create(body=body)
    assert created.status.phase == 'Pending'
    replaced = pvcs.replace(body=dict(created.to_dict(), status={'phase': 'Lost'}))
    assert replaced.status.phase == 'Pending'
    status = pvcs.status.replace(body=dict(replaced.to_dict(), status={'phase': 'Lost'}))
    assert status.status.phase == 'Lost'


def test_finalizers_delay_deletion_and_owner_gc(api):
    cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    owner = cms.create(body=cm('owner'))
    child = cm('child')
    child['metadata']['ownerReferences'] = [{'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': 'owner', 'uid': owner.metadata.uid}]
    cms.create(body=child)
    held = cm('held')
    held['metadata']['finalizers'] = ['example.com/hold']
    cms.create(body=held)
    cms.delete(name='held', namespace='default')
    assert cms.get(name='held', namespace='default').metadata.deletionTimestamp
    cms.patch(name='held', namespace='default', body={'metadata': {'finalizers': None}}, content_type='application/merge-patch+json')
    with pytest.raises(NotFoundError):
        cms.get(name='held', namespace='default')
    cms.delete(name='owner', namespace='default')
    assert cluster.store.get('', 'configmaps', 'default', 'child') is None


def test_namespace_deletion_removes_content(api):
    cluster, client = api
    namespaces = client.resources.get(api_version='v1', kind='Namespace')
    namespaces.create(body={'metadata': {'name': 'gone'}})
    client.resources.get(api_version='v1', kind='ConfigMap').create(body=cm('c', namespace='gone'))
    namespaces.delete(name='gone')
    wait_for(lambda: cluster.store.get('', 'namespaces', None, 'gone') is None, what='namespace removal')
    assert cluster.store.list('', 'configmaps', 'gone') == []


def test_watch_sees_changes(api):
    _cluster, client = api
    cms = client.resources.get(api_version='v1', kind='ConfigMap')
    start = cms.get(namespace='default').metadata.resourceVersion
    seen = []

    def watch():
        for event in client.watch(cms, namespace='default', resource_version=start, timeout=5):
            seen.append((event['type'], event['object'].metadata.name))
            if len(seen) == 3:
                return
    thread = threading.Thread(target=watch)
    thread.start()
    cms.create(body=cm('w'))
    cms.patch(name='w', namespace='default', body={'data': {'k': 'z'}}, content_type='application/merge-patch+json')
    cms.delete(name='w', namespace='default')
    thread.join(10)
    assert seen == [('ADDED', 'w'), ('MODIFIED', 'w'), ('DELETED', 'w')]


def test_crd_lifecycle(api):
    cluster, client = api
    crds = client.resources.get(api_version='apiextensions.k8s.io/v1', kind='CustomResourceDefinition')
    crds.create(body={'metadata': {'name': 'widgets.example.com'}, 'spec': {
        'group': 'example.com', 'scope': 'Namespaced', 'names': {'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget', 'shortNames': ['wd']},
        'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {'type': 'object'}},
                      'subresources': {'status': {}}}]}})
    fresh = dynamic_client(cluster.kubeconfig_path)
    widgets = fresh.resources.get(api_version='example.com/v1', kind='Widget')
    widgets.create(body={'apiVersion': 'example.com/v1', 'kind': 'Widget', 'metadata': {'name': 'w1', 'namespace': 'default'}, 'spec': {'size': 3}})
    assert widgets.get(name='w1', namespace='default').spec.size == 3
    crds.delete(name='widgets.example.com')
    with pytest.raises(ApiException) as gone:
        fresh.request('GET', '/apis/example.com/v1')
    assert gone.value.status == 404
    assert cluster.store.list('example.com', 'widgets') == []


def test_version_profiles_and_openshift(sandbox_cluster):
    legacy = dynamic_client(sandbox_cluster('legacy', version='1.21').kubeconfig_path)
    assert legacy.resources.get(api_version='extensions/v1beta1', kind='Ingress')
    assert legacy.resources.get(api_version='batch/v1beta1', kind='CronJob')
    assert legacy.resources.get(api_version='policy/v1beta1', kind='PodDisruptionBudget')
    current = dynamic_client(sandbox_cluster('current').kubeconfig_path)
    with pytest.raises(Exception):
        current.resources.get(api_version='batch/v1beta1', kind='CronJob')
    ocp = dynamic_client(sandbox_cluster('ocp', openshift=True).kubeconfig_path)
    assert ocp.resources.get(api_version='route.openshift.io/v1', kind='Route')
    assert ocp.resources.get(api_version='apps.openshift.io/v1', kind='DeploymentConfig')
