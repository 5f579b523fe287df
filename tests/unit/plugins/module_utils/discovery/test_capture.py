"""Discovery of a realistic app namespace on a sandbox cluster: what is captured, why, and as which apps."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import Capture, document_bytes, load_document
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object
from shop_app import create_shop, wait_for


@pytest.fixture
def shop(sandbox_cluster, connect):
    cluster = connect(sandbox_cluster('source'))
    create_shop(cluster)
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'other'}})
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'elsewhere', 'namespace': 'other'}})
    wait_for(lambda: len(cluster.get('/api/v1/namespaces/shop/pods')['items']) >= 3)  # 2 web + 1 db
    wait_for(lambda: cluster.get('/api/v1/namespaces/shop/persistentvolumeclaims/web-data').get('status', {}).get('phase') == 'Bound')
    return cluster


def names(document):
    return {'%s %s/%s' % (o['kind'], o['metadata'].get('namespace', ''), o['metadata']['name']) for o in document['objects']}


def test_a_namespace_is_captured_with_its_cluster_dependencies_and_grouped_into_apps(shop):
    document = Capture(shop, Selection(['shop'])).run()
    captured = names(document)
    for expected in ('Namespace /shop', 'Deployment shop/web', 'ConfigMap shop/unused', 'Cart shop/default-cart',
                     'CustomResourceDefinition /carts.shop.example.com', 'StorageClass /standard', 'ClusterRoleBinding /shop-web-node-reader',
                     'ClusterRole /shop-node-reader', 'PersistentVolumeClaim shop/data-db-0'):
        assert expected in captured, expected
    assert not [name for name in captured if '/other' in name or 'ConfigMap other/' in name], 'nothing from another namespace'
    assert any(name.startswith('PersistentVolume /') for name in captured), 'the PVs of the claims'
    assert not [name for name in captured if name.startswith('Event ')]
    apps = {app['name']: app for app in document['apps']}
    assert set(apps) == {'storefront', 'db', 'report'}, 'web is named by its app label; db joins its two Services; the CronJob stands alone'
    web = apps['storefront']
    assert web['services'] == ['web'] and web['workloads'] == ['Deployment/web']
    for expected in ('ConfigMap shop/web-config', 'Secret shop/db-creds', 'ServiceAccount shop/web', 'RoleBinding.rbac.authorization.k8s.io shop/web-reader',
                     'Role.rbac.authorization.k8s.io shop/web-reader', 'Ingress.networking.k8s.io shop/web', 'HorizontalPodAutoscaler.autoscaling shop/web',
                     'PodDisruptionBudget.policy shop/web', 'NetworkPolicy.networking.k8s.io shop/default-deny', 'PersistentVolumeClaim shop/web-data',
                     'Secret shop/sh.helm.release.v1.shop.v1'):
        assert expected in web['objects'], expected
    assert 'ClusterRoleBinding.rbac.authorization.k8s.io shop-web-node-reader' in web['cluster_objects']
    assert 'StatefulSet.apps shop/db' not in web['objects'], 'a default-deny NetworkPolicy does not merge apps'
    assert [v['name'] for v in web['volumes']] == ['web-data'] and web['volumes'][0]['storage_class'] == 'standard'
    assert web['volumes'][0]['bytes'] == 2 ** 30 and web['volumes'][0]['pv']
    assert web['images'][0]['image'] == 'registry.example.com/shop/web:1.0'
    db = apps['db']
    assert db['services'] == ['db', 'db-headless']
    assert [v['name'] for v in db['volumes']] == ['data-db-0']
    assert apps['report']['workloads'] == ['CronJob/report'] and 'Secret shop/regcred' in apps['report']['objects']
    assert set(document['unassigned']['shop']) == {'ConfigMap shop/unused', 'Cart.shop.example.com shop/default-cart'}
    assert {'from': 'CronJob.batch shop/report', 'kind': 'ConfigMap', 'namespace': 'shop', 'name': 'report-settings',
            'reason': 'reads env from'} in document['missing']
    assert document['why']['ConfigMap shop/web-config'] == 'selected namespace'
    assert document['why']['CustomResourceDefinition.apiextensions.k8s.io carts.shop.example.com'] == 'Cart.shop.example.com shop/default-cart is defined by it'
    assert load_document(document_bytes(document))['objects'] == document['objects']


def test_a_label_selector_brings_dependencies_without_the_labels(shop):
    document = Capture(shop, Selection(['shop'], label_selector='app=db')).run()
    captured = names(document)
    assert 'Secret shop/db-creds' in captured, 'unlabelled, but the StatefulSet reads it'
    assert 'Namespace /shop' in captured
    assert 'Deployment shop/web' not in captured and 'ConfigMap shop/unused' not in captured
    assert [app['name'] for app in document['apps']] == ['db']
    assert document['why']['Secret shop/db-creds'] == 'StatefulSet.apps shop/db reads env from it'


def test_resource_filters_and_namespace_patterns(shop):
    document = Capture(shop, Selection(['sh*', 'oth*'], exclude_namespaces=['other'], exclude_resources=['secrets', 'cart'])).run()
    captured = names(document)
    assert document['selection']['namespaces'] == ['shop']
    assert not [name for name in captured if name.startswith('Secret ') or name.startswith('Cart ')]
    with pytest.raises(FerryError, match='no namespace of cluster .* matches'):
        Capture(shop, Selection(['nope-*'])).run()
    with pytest.raises(FerryError, match='select at least one namespace'):
        Selection([])
    with pytest.raises(FerryError, match='cannot read'):
        Capture(shop, Selection(['shop'], label_selector='app in web')).run()
