"""Syncs that fail on sandbox clusters: a clear FerryError, quickly, and nothing left behind; and the
sweep of what crashed syncs left."""

import functools
import os
import sys
import time

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object, get_object
from ansible_collections.ferry.kube.plugins.module_utils.pool import crypto
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import CsiSnapshots
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.group import LiveRead
from ansible_collections.ferry.kube.plugins.module_utils.sync import agents, staged
from ansible_collections.ferry.kube.plugins.module_utils.sync.agents import Agent, AgentSpec
from ansible_collections.ferry.kube.plugins.module_utils.sync.passthrough import Passthrough
from ansible_collections.ferry.kube.plugins.module_utils.sync.staged import StageOne
from ferry_sandbox import pytest_plugin
from shop_app import wait_for

NS = 'shop'
PASSPHRASE = 'the-right-pool-passphrase'
# The sync engine has no option for these (StageOne/StageTwo always start agents with 300 s and
# connect for 60 s): the tests shorten them where run_agent_job looks them up.
START_TIMEOUT = 3
CONNECT_TIMEOUT = 2
# A local image whose program runs but never listens: its readiness probe never passes.
DEAF_IMAGE = 'ferry-test/deaf:1'
LOCAL_IMAGES = {DEAF_IMAGE: {'entrypoint': [sys.executable, '-c', 'import time; time.sleep(600)'], 'cmd': []}}

sandbox_cluster = pytest_plugin.sandbox_cluster  # the fixture, for this module


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch):
    monkeypatch.setattr(staged, 'run_agent_job', functools.partial(staged.run_agent_job, start_timeout=START_TIMEOUT))
    monkeypatch.setattr(staged, 'control_channel', functools.partial(staged.control_channel, timeout=CONNECT_TIMEOUT))
    # Argon2id at test cost (slots record their parameters, so the agent opens them with the same)
    monkeypatch.setattr(crypto, 'ARGON2', {'iterations': 1, 'lanes': 1, 'memory_cost': 64})


@pytest.fixture
def source(sandbox_cluster):
    box = sandbox_cluster('source', local_images=LOCAL_IMAGES)
    cluster = connection.connect({'kubeconfig': box.kubeconfig_path})
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}})
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': NS},
                            'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}})
    wait_for(lambda: get_object(cluster, 'v1', 'PersistentVolumeClaim', 'data', NS)['status'].get('phase') == 'Bound')
    claim = get_object(cluster, 'v1', 'PersistentVolumeClaim', 'data', NS)
    root = os.path.join(box.state_dir, 'volumes', claim['spec']['volumeName'])
    os.makedirs(os.path.join(root, 'db'), exist_ok=True)
    for number in range(5):
        with open(os.path.join(root, 'db', 'part%d' % number), 'wb') as handle:
            handle.write(os.urandom(64 * 1024))
    return cluster


@pytest.fixture
def pool(tmp_path):
    backend = LocalBackend(str(tmp_path / 'pool'))
    Pool.create(backend, PASSPHRASE).close()
    return backend


def providers(cluster, sync_id):
    return {'csi-snapshot': CsiSnapshots(cluster, sync_id), 'live-read': LiveRead(cluster, sync_id)}


def leftovers(cluster, namespace=NS):
    """Every temporary object in the namespace (agents, their Secrets and Services, snapshots, claims, records)."""
    found = []
    for path in ('/api/v1/namespaces/%s/pods', '/api/v1/namespaces/%s/services', '/api/v1/namespaces/%s/secrets',
                 '/api/v1/namespaces/%s/configmaps', '/api/v1/namespaces/%s/persistentvolumeclaims',
                 '/apis/snapshot.storage.k8s.io/v1/namespaces/%s/volumesnapshots'):
        for item in cluster.get(path % namespace).get('items') or []:
            meta = item['metadata']
            if meta['name'].startswith('ferry-') or (meta.get('labels') or {}).get('ferry.dev/temporary') == 'true':
                found.append('%s %s' % (item.get('kind') or path.rsplit('/', 1)[-1], meta['name']))
    return sorted(found)


def temporary_volumes(cluster):
    return [pv['metadata']['name'] for pv in cluster.get('/api/v1/persistentvolumes')['items']
            if ((pv.get('spec') or {}).get('claimRef') or {}).get('name', '').startswith('ferry-')]


def assert_clean(cluster):
    assert leftovers(cluster) == []
    assert [c['metadata']['name'] for c in cluster.get('/api/v1/namespaces/%s/persistentvolumeclaims' % NS)['items']] == ['data']
    wait_for(lambda: not temporary_volumes(cluster), timeout=10)


@pytest.mark.parametrize('image, message', [
    # simulated by the sandbox: Running and Ready at once, but nothing listens behind the NodePort
    ('busybox:1', r'cannot reach the agent at 127\.[0-9.]+:[0-9]+: .* \(is the NodePort or load balancer reachable from the control node\?\)'),
    # a program that runs and never listens: its readiness probe keeps it unready
    (DEAF_IMAGE, r'agent pod shop/ferry-broken-1-agent-source-0 did not become ready \(waited up to %d s; phase Running, 0 restarts; ' % START_TIMEOUT),
], ids=['simulated-image', 'never-ready'])
def test_a_staged_backup_whose_agent_never_listens_fails_fast_and_leaves_nothing_behind(source, pool, image, message):
    started = time.monotonic()
    with pytest.raises(FerryError, match=message):
        StageOne(source, NS, 'broken-1', image, Pool.open(pool, PASSPHRASE), providers(source, 'broken-1'), capture_bytes=b'{}').run()
    assert time.monotonic() - started < 20
    assert_clean(source)
    assert Pool.open(pool, PASSPHRASE).point_ids() == [], 'no restore point was written'


def test_a_passthrough_whose_snapshot_fails_stops_the_sink_it_started_meanwhile(source, monkeypatch):
    create_object(source, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop-dr'}})
    create_object(source, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'data', 'namespace': 'shop-dr'},
                           'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}})
    sinks_seen = []

    def failing_take(_snapper, *_args, **_kwargs):
        # the sink is being started while the snapshot is cut
        wait_for(lambda: 'Pod ferry-early-sink-agent-sink-0' in leftovers(source, 'shop-dr'), timeout=10)
        sinks_seen.extend(leftovers(source, 'shop-dr'))
        raise FerryError('the snapshot of shop/data failed')

    monkeypatch.setattr(group.AppSnapshot, 'take', failing_take)
    with pytest.raises(FerryError, match='the snapshot of shop/data failed'):
        Passthrough(source, source, NS, 'shop-dr', 'early-sink', 'ferry/agent:test', providers(source, 'early-sink'), {'data': 'data'}).run()
    assert 'Pod ferry-early-sink-agent-sink-0' in sinks_seen
    assert leftovers(source, 'shop-dr') == []
    assert leftovers(source) == []


def test_the_sweep_removes_what_a_crashed_sync_left_and_keeps_a_running_syncs_objects(source):
    pki = SyncPKI.create('crashed')

    def abandoned_agent(sync_id, role):
        agent = Agent(source, sync_id, AgentSpec(NS, 'busybox:1', role, ['stage', '--once'], {'data': 'data'}, read_only=True), pki)
        agent.start(timeout=10)  # and never stopped: its sync crashed or is still running
        return agent

    crashed, running = abandoned_agent('crashed', 'source'), abandoned_agent('running', 'sink')
    # a crashed sync's snapshot and exposed claim, recorded but never released
    snapper = group.AppSnapshot(source, 'crashed', providers(source, 'crashed'))
    snapper.take(snapper.plan(group.load_volumes(source, NS)), [], expose=True)
    assert 'VolumeSnapshot ferry-crashed-data' in leftovers(source)

    removed = agents.sweep(source, [NS], keep_sync_ids={'running'}) + group.sweep(source, [NS], keep_sync_ids={'running'})
    base = '/api/v1/namespaces/%s' % NS
    assert sorted(path for path in removed if '/ferry-crashed-agent-' in path) == sorted(
        '%s/%s/%s' % (base, collection, crashed.name) for collection in ('pods', 'services', 'secrets'))
    assert '%s/persistentvolumeclaims/ferry-crashed-data-ro' % base in removed
    assert '/apis/snapshot.storage.k8s.io/v1/namespaces/%s/volumesnapshots/ferry-crashed-data' % NS in removed
    assert '%s/configmaps/%s' % (base, group.record_name('crashed')) in removed
    assert leftovers(source) == sorted('%s %s' % (kind, running.name) for kind in ('Pod', 'Secret', 'Service'))

    running.stop()
    assert_clean(source)
