"""Capture on one sandbox cluster, restore on another: sanitising, transforms, order, policies, idempotency."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import Capture
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection as CaptureSelection
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import get_object
from ansible_collections.ferry.kube.plugins.module_utils.restore.engine import Restore, Selection
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import Transforms
from shop_app import create_shop, wait_for


@pytest.fixture
def captured(sandbox_pair, connect):
    source, dr = (connect(cluster) for cluster in sandbox_pair)
    create_shop(source)
    wait_for(lambda: len(source.get('/api/v1/namespaces/shop/pods')['items']) >= 3)
    wait_for(lambda: source.get('/api/v1/namespaces/shop/persistentvolumeclaims/web-data').get('status', {}).get('phase') == 'Bound')
    return Capture(source, CaptureSelection(['shop'])).run(), source, dr


def actions(result):
    return {('%s %s' % (e['kind'], e['name'])): e['action'] for e in result['objects']}


def test_restore_to_another_cluster_then_again_changes_nothing(captured):
    capture, source, dr = captured
    result = Restore(dr, capture, Transforms()).run()
    assert not result['failures'], [(e['kind'], e['name'], e['reason']) for e in result['failures']]
    done = actions(result)
    assert done['Deployment web'] == 'created' and done['Cart default-cart'] == 'created'
    assert done['CustomResourceDefinition carts.shop.example.com'] == 'created'
    assert done['ReplicaSet %s' % next(o['metadata']['name'] for o in capture['objects'] if o['kind'] == 'ReplicaSet')] == 'excluded'
    assert all(e['action'] == 'excluded' for e in result['objects'] if e['kind'] == 'Pod')
    assert all(e['action'] == 'excluded' for e in result['objects'] if e['kind'] == 'PersistentVolume'), 'dynamically provisioned'
    service = get_object(dr, 'v1', 'Service', 'web', 'shop')
    source_service = get_object(source, 'v1', 'Service', 'web', 'shop')
    assert service['spec']['clusterIP'] != source_service['spec']['clusterIP'] or service['spec']['clusterIP']
    assert get_object(dr, 'v1', 'Service', 'db-headless', 'shop')['spec']['clusterIP'] == 'None'
    pvc = get_object(dr, 'v1', 'PersistentVolumeClaim', 'web-data', 'shop')
    assert pvc['spec'].get('volumeName') != get_object(source, 'v1', 'PersistentVolumeClaim', 'web-data', 'shop')['spec']['volumeName']
    wait_for(lambda: get_object(dr, 'v1', 'PersistentVolumeClaim', 'web-data', 'shop')['status'].get('phase') == 'Bound')
    wait_for(lambda: (get_object(dr, 'apps/v1', 'Deployment', 'web', 'shop').get('status') or {}).get('readyReplicas') == 2)

    again = Restore(dr, capture, Transforms()).run()
    assert not again['changed'], [e for e in again['objects'] if e['action'] not in ('unchanged', 'excluded')]
    assert again['counts'].get('unchanged', 0) > 20


def test_namespace_mapping_standby_replicas_and_labels_in_a_dry_run_then_for_real(captured):
    capture, source, dr = captured
    transforms = Transforms(namespace_mapping={'shop': 'shop-dr'}, replicas=0, add_labels={'ferry.dev/restored': 'yes'},
                            storage_class_mapping={'standard': 'nosnap'},
                            patches=[{'target': {'kind': 'ConfigMap', 'name': 'web-*'}, 'merge_patch': {'data': {'greeting': 'hello from DR'}}},
                                     {'target': {'jmespath': "kind == 'Deployment' && spec.replicas == `0`"},
                                      'json_patch': [{'op': 'add', 'path': '/metadata/labels/standby', 'value': 'true'}]}])
    planned = Restore(dr, capture, transforms, dry_run=True, diff=True).run()
    assert not planned['failures'], [(e['kind'], e['name'], e['reason']) for e in planned['failures']]
    assert get_object(dr, 'v1', 'Namespace', 'shop-dr') is None, 'check mode creates nothing'
    assert planned['changed'] and planned['diff']
    result = Restore(dr, capture, transforms).run()
    assert not result['failures'], [(e['kind'], e['name'], e['reason']) for e in result['failures']]
    web = get_object(dr, 'apps/v1', 'Deployment', 'web', 'shop-dr')
    assert web['spec']['replicas'] == 0 and web['metadata']['annotations']['ferry.dev/original-replicas'] == '2'
    assert web['metadata']['labels']['standby'] == 'true' and web['metadata']['labels']['ferry.dev/restored'] == 'yes'
    assert get_object(dr, 'batch/v1', 'CronJob', 'report', 'shop-dr')['spec']['suspend'] is True
    assert get_object(dr, 'v1', 'ConfigMap', 'web-config', 'shop-dr')['data']['greeting'] == 'hello from DR'
    assert get_object(dr, 'v1', 'PersistentVolumeClaim', 'web-data', 'shop-dr')['spec']['storageClassName'] == 'nosnap'
    binding = get_object(dr, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', 'shop-web-node-reader')
    assert binding['subjects'][0]['namespace'] == 'shop-dr'
    assert 'StorageClass standard' in {'%s %s' % (e['kind'], e['name']) for e in result['objects'] if e['action'] == 'excluded'}
    assert not Restore(dr, capture, transforms).run()['changed']


def test_existing_objects_follow_the_policy(captured):
    capture, source, dr = captured
    only_config = Selection(include_kinds=['ConfigMap', 'Namespace'])
    Restore(dr, capture, Transforms(), selection=only_config).run()
    dr.request('PATCH', '/api/v1/namespaces/shop/configmaps/web-config', body={'data': {'greeting': 'changed on DR', 'extra': 'kept'}},
               content_type='application/merge-patch+json')
    skipped = Restore(dr, capture, Transforms(), selection=only_config, existing='skip').run()
    assert actions(skipped)['ConfigMap web-config'] == 'skipped'
    updated = Restore(dr, capture, Transforms(), selection=only_config, existing='update').run()
    assert actions(updated)['ConfigMap web-config'] == 'updated'
    live = get_object(dr, 'v1', 'ConfigMap', 'web-config', 'shop')
    assert live['data'] == {'greeting': 'hello', 'extra': 'kept'}, 'three-way: a field Ferry never set is kept'
    replaced = Restore(dr, capture, Transforms(), selection=only_config, existing='replace',
                       ).run()
    assert actions(replaced)['ConfigMap web-config'] == 'unchanged'


def test_apps_select_what_is_restored_and_failures_are_named(captured):
    capture, source, dr = captured
    result = Restore(dr, capture, Transforms(), selection=Selection(apps=['db'])).run()
    restored = {'%s %s' % (e['kind'], e['name']) for e in result['objects'] if e['action'] == 'created'}
    assert {'StatefulSet db', 'Service db', 'Service db-headless', 'Secret db-creds', 'Namespace shop'} <= restored
    assert 'Deployment web' not in restored
    broken = Transforms(patches=[{'target': {'kind': 'Service', 'name': 'db'}, 'merge_patch': {'metadata': {'namespace': 'gone'}}}])
    failed = Restore(dr, capture, broken, selection=Selection(apps=['db'])).run()
    assert [(e['kind'], e['namespace'], e['name']) for e in failed['failures']] == [('Service', 'gone', 'db')]
    assert '404' in failed['failures'][0]['reason'] and 'gone' in failed['failures'][0]['reason']
    assert actions(failed)['StatefulSet db'] == 'unchanged', 'one failure does not stop the others'
