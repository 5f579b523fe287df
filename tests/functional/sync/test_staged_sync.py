"""Staged sync end to end on sandbox clusters: snapshot, source agent pod, pool on the control node,
sink agent pod, objects; then an incremental sync that sends only what changed."""

import hashlib
import os

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.agent import relay
from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object, get_object
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import CsiSnapshots
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.group import LiveRead
from ansible_collections.ferry.kube.plugins.module_utils.sync.staged import StageOne, StageTwo
from ferry_sandbox.pytest_plugin import sandbox_cluster, sandbox_pair  # noqa: F401  pylint: disable=unused-import
from shop_app import wait_for

IMAGE = 'ferry/agent:test'


def volume_dir(sandbox, cluster, namespace, pvc):
    claim = get_object(cluster, 'v1', 'PersistentVolumeClaim', pvc, namespace)
    return os.path.join(sandbox.state_dir, 'volumes', claim['spec']['volumeName'])


def digest_tree(root):
    found = {}
    for top, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != '.ferry-state']
        for name in names:
            path = os.path.join(top, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture
def clusters(sandbox_pair):
    source_box, dr_box = sandbox_pair
    source = connection.connect({'kubeconfig': source_box.kubeconfig_path})
    dr = connection.connect({'kubeconfig': dr_box.kubeconfig_path})
    create_object(source, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop'}})
    create_object(source, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop'},
                           'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}})
    wait_for(lambda: get_object(source, 'v1', 'PersistentVolumeClaim', 'data', 'shop')['status'].get('phase') == 'Bound')
    root = volume_dir(source_box, source, 'shop', 'data')
    os.makedirs(os.path.join(root, 'db'), exist_ok=True)
    for number in range(20):
        with open(os.path.join(root, 'db', 'part%02d' % number), 'wb') as handle:
            handle.write(os.urandom(200 * 1024))
    return source_box, source, dr_box, dr, root


def test_stage_one_then_two_moves_the_volume_and_a_second_sync_sends_only_changes(clusters, tmp_path, monkeypatch):
    source_box, source, dr_box, dr, root = clusters
    offers = []
    send_job = relay.send_job
    monkeypatch.setattr(relay, 'send_job', lambda shared, job, payload=b'', **kwargs: offers.append(kwargs) or send_job(shared, job, payload, **kwargs))
    backend = LocalBackend(str(tmp_path / 'pool'))
    pool = Pool.create(backend, 'pass-phrase-1')
    providers = {'csi-snapshot': CsiSnapshots(source, 'sync-1'), 'live-read': LiveRead(source, 'sync-1')}
    progress = []
    first = StageOne(source, 'shop', 'sync-1', IMAGE, pool, providers, on_progress=progress.append).run()
    assert first['volumes'][0]['mechanism'] == 'csi-snapshot'
    assert first['volumes'][0]['bytes'] == 20 * 200 * 1024
    assert not source.get('/api/v1/namespaces/shop/pods')['items'], 'the agent pod is gone'
    assert not [s for s in source.get('/api/v1/namespaces/shop/secrets')['items'] if s['metadata']['name'].startswith('ferry-')]
    assert [c['metadata']['name'] for c in source.get('/api/v1/namespaces/shop/persistentvolumeclaims')['items']] == ['data'], 'temporary claim gone'

    with open(os.path.join(root, 'db', 'part03'), 'r+b') as handle:
        handle.write(os.urandom(4096))
    providers = {'csi-snapshot': CsiSnapshots(source, 'sync-2'), 'live-read': LiveRead(source, 'sync-2')}
    second = StageOne(source, 'shop', 'sync-2', IMAGE, pool, providers, packs_in_tls=True).run()  # (as a policy may want)
    assert second['volumes'][0]['files_changed'] == 1
    assert second['stats']['bytes_new'] < 400 * 1024, 'only the changed file was read and only its new chunk stored'

    create_object(dr, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop'}})
    create_object(dr, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop'},
                       'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}})
    wait_for(lambda: get_object(dr, 'v1', 'PersistentVolumeClaim', 'data', 'shop')['status'].get('phase') == 'Bound')
    restored = StageTwo(dr, 'shop', 'sync-3', IMAGE, Pool.open(backend, 'pass-phrase-1'), second['point'], {'data': 'data'}).run()
    assert restored['volumes'][0]['pvc'] == 'data'
    assert digest_tree(volume_dir(dr_box, dr, 'shop', 'data')) == digest_tree(root)
    assert not dr.get('/api/v1/namespaces/shop/pods')['items']
    assert [offer['clear_packs'] for offer in offers] == [True, False, True]


def test_passthrough_moves_the_volume_and_the_second_sync_sends_only_changes(clusters):
    from ansible_collections.ferry.kube.plugins.module_utils.sync.passthrough import Passthrough
    source_box, source, dr_box, dr, root = clusters
    create_object(dr, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop-dr'}})
    create_object(dr, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop-dr'},
                       'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}})
    wait_for(lambda: get_object(dr, 'v1', 'PersistentVolumeClaim', 'data', 'shop-dr')['status'].get('phase') == 'Bound')

    def sync(sync_id):
        providers = {'csi-snapshot': CsiSnapshots(source, sync_id), 'live-read': LiveRead(source, sync_id)}
        return Passthrough(source, dr, 'shop', 'shop-dr', sync_id, IMAGE, providers, {'data': 'data'}).run()

    first = sync('pt-1')
    assert first['volumes'][0]['bytes_sent'] > 0
    assert digest_tree(volume_dir(dr_box, dr, 'shop-dr', 'data')) == digest_tree(root)
    with open(os.path.join(root, 'db', 'part07'), 'r+b') as handle:
        handle.write(os.urandom(4096))
    second = sync('pt-2')
    assert second['volumes'][0]['bytes_sent'] < 300 * 1024, 'only the changed file (one chunk of 200 KiB of 4 MiB) crossed the wire'
    assert digest_tree(volume_dir(dr_box, dr, 'shop-dr', 'data')) == digest_tree(root)
    assert not source.get('/api/v1/namespaces/shop/pods')['items'] and not dr.get('/api/v1/namespaces/shop-dr/pods')['items']
    assert not dr.get('/api/v1/namespaces/shop-dr/services')['items']
