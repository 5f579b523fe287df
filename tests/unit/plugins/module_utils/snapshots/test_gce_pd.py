"""GCE PD snapshots against an in-memory Compute Engine API: take, wait, expose as PV+PVC, clean up, sweep.

No GCE emulator exists, so FakeCompute (tests/lib/fake_gce.py) answers the v1 routes the provider uses with the shapes the
real API returns (recorded exchanges): Operation objects for inserts and deletes, snapshots stepping
CREATING -> UPLOADING -> READY and disks CREATING -> READY over successive GETs, Google error bodies,
selfLinks naming www.googleapis.com, label and name validation, filtered and paged lists.
"""

import json
import re
import socket

import pytest
import requests

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import gce_pd
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.gce_pd import GcePdSnapshots, disk_location, label_value
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume
from fake_gce import GOOGLE, LABEL_KEY_RE, LABEL_VALUE_RE, NAME_RE, NODE, PROJECT, REGION, REGIONAL_SOURCE, SOURCE, TOKEN, ZONE, ZONE_C, FakeCompute
from fake_http import ScriptedServer
from recording_cluster import RecordingCluster


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(gce_pd, 'POLL_SECONDS', 0.001)
    monkeypatch.setattr(gce_pd, 'DETACH_SECONDS', 0.3)


@pytest.fixture(name='compute')
def compute_fixture():
    fake = FakeCompute()
    fake.add_disk(SOURCE, type=GOOGLE + 'projects/%s/zones/%s/diskTypes/pd-ssd' % (PROJECT, ZONE), users=[NODE])
    fake.add_disk(REGIONAL_SOURCE, type=GOOGLE + 'projects/%s/regions/%s/diskTypes/pd-balanced' % (PROJECT, REGION),
                  replicaZones=[GOOGLE + 'projects/%s/zones/%s' % (PROJECT, z) for z in (ZONE, ZONE_C)])
    with ScriptedServer(fake) as server:
        fake.server = server
        yield fake, server


def session(token=TOKEN):
    authed = requests.Session()
    authed.headers['Authorization'] = 'Bearer ' + token
    return authed


def provider(server, sync_id='s1', project=PROJECT, cluster=None, token=TOKEN):
    return GcePdSnapshots(cluster if cluster is not None else RecordingCluster(), sync_id, session(token), project, compute_url=server.url)


def claim(namespace, name):
    return {'metadata': {'name': name, 'namespace': namespace},
            'spec': {'storageClassName': 'standard-rwo', 'resources': {'requests': {'storage': '10Gi'}}},
            'status': {'phase': 'Bound', 'capacity': {'storage': '10Gi'}}}


def csi_volume(handle, zone=ZONE, namespace='shop', name='db-data'):
    pv = {'metadata': {'name': 'pvc-1234'},
          'spec': {'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': handle, 'fsType': 'xfs'}, 'capacity': {'storage': '10Gi'},
                   'nodeAffinity': {'required': {'nodeSelectorTerms': [{'matchExpressions': [
                       {'key': 'topology.gke.io/zone', 'operator': 'In', 'values': [zone]}]}]}}}}
    return Volume(claim(namespace, name), pv)


def in_tree_volume(pd_name, zone=ZONE):
    pv = {'metadata': {'name': 'pvc-legacy', 'labels': {'topology.kubernetes.io/zone': zone, 'topology.kubernetes.io/region': REGION}},
          'spec': {'gcePersistentDisk': {'pdName': pd_name, 'fsType': 'ext4'}, 'capacity': {'storage': '10Gi'}}}
    return Volume(claim('shop', 'legacy-data'), pv)


def posts(server, suffix):
    return [r for r in server.requests if r['method'] == 'POST' and r['path'].endswith(suffix)]


def test_take_wait_expose_cleanup_end_to_end(compute):
    fake, server = compute
    cluster = RecordingCluster()
    gce = provider(server, project='other-project', cluster=cluster)  # the handle's project wins
    vol = csi_volume(SOURCE)
    ref = gce.take(vol)
    snap_path = 'projects/%s/global/snapshots/ferry-s1-shop-db-data' % PROJECT
    assert ref['operation'].startswith('projects/%s/global/operations/operation-' % PROJECT)
    assert {k: v for k, v in ref.items() if k != 'operation'} == {
        'mechanism': 'gce-pd', 'namespace': 'shop', 'snapshot': 'ferry-s1-shop-db-data', 'project': PROJECT, 'source_disk': SOURCE, 'zone': ZONE}
    assert fake.snapshots[snap_path]['sourceDisk'] == GOOGLE + SOURCE
    assert fake.snapshots[snap_path]['labels'] == {'ferry-temporary': 'true', 'ferry-sync-id': 's1', 'ferry-source-pvc': 'shop-db-data'}

    again = provider(server).take(vol)  # a re-run of the sync reuses its snapshot
    assert again['snapshot'] == ref['snapshot'] and len(fake.snapshots) == 1
    assert len(posts(server, '/global/snapshots')) == 1

    gce.wait_cut(ref, 10)
    assert fake.snapshots[snap_path]['status'] == 'UPLOADING'  # cut: post-hooks may run before the upload ends
    assert ref['creation_time'] == fake.snapshots[snap_path]['creationTimestamp']
    gce.wait_ready(ref, 10)
    assert fake.snapshots[snap_path]['status'] == 'READY'

    pvc_name = gce.expose(ref, vol)
    disk_path = 'projects/%s/zones/%s/disks/%s' % (PROJECT, ZONE, ref['disk'])
    assert ref['disk'] == 'ferry-s1-shop-db-data-disk' and ref['disk_path'] == disk_path
    disk = fake.disks[disk_path]
    assert disk['status'] == 'READY' and disk['sourceSnapshot'] == GOOGLE + snap_path
    assert disk['type'].endswith('/zones/%s/diskTypes/pd-ssd' % ZONE)  # the source disk's type
    assert disk['labels']['ferry-temporary'] == 'true' and disk['labels']['ferry-sync-id'] == 's1'
    pv = cluster.objects['/api/v1/persistentvolumes/%s' % pvc_name]
    assert pv['spec']['csi'] == {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': disk_path, 'fsType': 'xfs'}
    assert pv['spec']['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'][0]['values'] == [ZONE]
    assert pv['spec']['claimRef'] == {'namespace': 'shop', 'name': pvc_name}
    assert cluster.objects['/api/v1/namespaces/shop/persistentvolumeclaims/%s' % pvc_name]['spec']['volumeName'] == pvc_name

    stored = json.loads(json.dumps(ref))  # as the sync's ConfigMap keeps it; release() cleans up from that
    removed = provider(server, cluster=cluster).cleanup(stored)
    assert removed == ['/api/v1/namespaces/shop/persistentvolumeclaims/%s' % pvc_name, '/api/v1/persistentvolumes/%s' % pvc_name,
                       'disk ferry-s1-shop-db-data-disk', 'snapshot ferry-s1-shop-db-data']
    assert cluster.objects == {} and fake.snapshots == {}
    assert set(fake.disks) == {SOURCE, REGIONAL_SOURCE}
    assert all(r['headers']['authorization'] == 'Bearer ' + TOKEN for r in server.requests)
    assert not any('other-project' in r['path'] for r in server.requests)
    deletes = [op for op, _error in fake.operations.values() if op['operationType'] == 'delete']
    assert len(deletes) == 2 and all(op['status'] == 'DONE' for op in deletes)  # each delete was waited for


def test_regional_disk_is_restored_as_a_regional_disk(compute):
    fake, server = compute
    cluster = RecordingCluster()
    gce = provider(server, cluster=cluster)
    vol = csi_volume(REGIONAL_SOURCE, zone=ZONE_C)
    ref = gce.take(vol)
    assert ref['region'] == REGION and 'zone' not in ref and ref['source_disk'] == REGIONAL_SOURCE
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    pvc_name = gce.expose(ref, vol)
    disk_path = 'projects/%s/regions/%s/disks/ferry-s1-shop-db-data-disk' % (PROJECT, REGION)
    assert fake.disks[disk_path]['replicaZones'] == fake.disks[REGIONAL_SOURCE]['replicaZones']
    assert fake.disks[disk_path]['type'].endswith('/regions/%s/diskTypes/pd-balanced' % REGION)
    pv = cluster.objects['/api/v1/persistentvolumes/%s' % pvc_name]
    assert pv['spec']['csi']['volumeHandle'] == disk_path
    # pinned to the source PV's zone, one of the two replica zones
    assert pv['spec']['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'][0]['values'] == [ZONE_C]
    assert 'disk ferry-s1-shop-db-data-disk' in gce.cleanup(ref)
    assert disk_path not in fake.disks and not fake.snapshots


def test_in_tree_handle_uses_the_disk_name_and_the_topology_zone(compute):
    fake, server = compute
    fake.add_disk('projects/%s/zones/%s/disks/legacy-disk' % (PROJECT, ZONE))
    cluster = RecordingCluster()
    gce = provider(server, cluster=cluster)
    vol = in_tree_volume('legacy-disk')
    assert vol.driver == 'kubernetes.io/gce-pd'
    ref = gce.take(vol)
    assert ref['source_disk'] == 'projects/%s/zones/%s/disks/legacy-disk' % (PROJECT, ZONE) and ref['zone'] == ZONE
    assert fake.snapshots['projects/%s/global/snapshots/ferry-s1-shop-legacy-data' % PROJECT]['sourceDisk'].endswith('/disks/legacy-disk')
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    pv = cluster.objects['/api/v1/persistentvolumes/%s' % gce.expose(ref, vol)]
    # the restored disk is given to the CSI driver (GKE migrates in-tree PD volumes to it)
    assert pv['spec']['csi'] == {'driver': 'pd.csi.storage.gke.io', 'fsType': 'ext4',
                                 'volumeHandle': 'projects/%s/zones/%s/disks/ferry-s1-shop-legacy-data-disk' % (PROJECT, ZONE)}
    assert pv['spec']['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'][0]['values'] == [ZONE]


def test_disk_location_of_csi_and_in_tree_handles():
    assert disk_location(csi_volume(SOURCE), 'default') == (PROJECT, 'zones', ZONE, 'pvc-1234')
    assert disk_location(csi_volume(REGIONAL_SOURCE), None) == (PROJECT, 'regions', REGION, 'pvc-regional')
    assert disk_location(csi_volume(GOOGLE + SOURCE), None) == (PROJECT, 'zones', ZONE, 'pvc-1234')  # a full URL
    assert disk_location(in_tree_volume('legacy-disk'), 'default') == ('default', 'zones', ZONE, 'legacy-disk')
    assert disk_location(in_tree_volume('legacy-disk', zone='%s__%s' % (ZONE, ZONE_C)), 'default') == ('default', 'regions', REGION, 'legacy-disk')


@pytest.mark.parametrize('volume, project, expected', [
    (csi_volume('zones/%s/pvc-1234' % ZONE), PROJECT, "shop/db-data: cannot tell its GCE disk from the PV handle 'zones/"),
    (csi_volume(''), PROJECT, 'shop/db-data: cannot tell its GCE disk'),
    (in_tree_volume('legacy-disk', zone=None), PROJECT, 'shop/legacy-data: the PV names GCE disk legacy-disk but no zone'),
    (in_tree_volume('legacy-disk'), None, 'shop/legacy-data: the PV names GCE disk legacy-disk without its project'),
    (Volume(claim('shop', 'ebs'), {'spec': {'csi': {'driver': 'ebs.csi.aws.com', 'volumeHandle': 'vol-1'}}}), PROJECT,
     'shop/ebs: driver ebs.csi.aws.com does not make GCE persistent disks'),
])
def test_disk_location_names_the_volume_when_it_cannot_tell(volume, project, expected):
    with pytest.raises(FerryError, match=re.escape(expected)):
        disk_location(volume, project)


def test_labels_and_names_are_sanitised_and_valid(compute):
    fake, server = compute
    sync_id = 'Nightly_2024.05.01T10:00:00Z'
    namespace, name = 'payments-eu-west-production-blue', 'data.postgres-primary-0.with-a-rather-long-name'
    gce = provider(server, sync_id=sync_id)
    vol = csi_volume(SOURCE, namespace=namespace, name=name)
    ref = gce.take(vol)  # the fake answers 400 to an invalid name or label, as GCE does
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    gce.expose(ref, vol)
    made = list(fake.snapshots.values()) + [d for d in fake.disks.values() if d.get('labels')]
    assert len(made) == 2
    for resource in made:
        assert NAME_RE.fullmatch(resource['name']) and len(resource['name']) <= 63
        assert all(LABEL_KEY_RE.fullmatch(k) and LABEL_VALUE_RE.fullmatch(v) for k, v in resource['labels'].items())
        assert resource['labels']['ferry-sync-id'] == 'nightly_2024-05-01t10-00-00z'
        source = resource['labels']['ferry-source-pvc']
        assert len(source) == 63 and source.startswith('payments-eu-west-production-blue-data-postgres')
    assert ref['snapshot'] != ref['disk']
    assert label_value('x' * 100) != label_value('x' * 99 + 'y') and len(label_value('x' * 100)) == 63


def test_a_409_on_create_means_another_run_took_it(compute):
    fake, server = compute
    vol = csi_volume(SOURCE)
    provider(server).take(vol)
    fake.hidden_once.add('projects/%s/global/snapshots/ferry-s1-shop-db-data' % PROJECT)  # not seen by the GET, then 409 on insert
    gce = provider(server)
    ref = gce.take(vol)
    assert ref['snapshot'] == 'ferry-s1-shop-db-data' and 'operation' not in ref
    assert len(posts(server, '/global/snapshots')) == 2 and len(fake.snapshots) == 1
    gce.wait_cut(ref, 10)
    assert ref['creation_time']


def test_failed_snapshot_is_a_clear_error(compute):
    fake, server = compute
    fake.plans['ferry-s1-shop-db-data'] = {'steps': ['CREATING', 'FAILED'],
                                           'op_error': {'code': 'QUOTA_EXCEEDED', 'message': "Quota 'SNAPSHOTS' exceeded.  Limit: 1000.0 globally."}}
    gce = provider(server)
    ref = gce.take(csi_volume(SOURCE))
    with pytest.raises(FerryError) as raised:
        gce.wait_cut(ref, 10)
    assert str(raised.value) == "GCE snapshot ferry-s1-shop-db-data is FAILED: Quota 'SNAPSHOTS' exceeded.  Limit: 1000.0 globally."


def test_insert_failing_in_its_operation_is_a_clear_error(compute):
    fake, server = compute
    fake.plans['ferry-s1-shop-db-data'] = {'absent': True, 'op_error': {
        'code': 'PERMISSIONS_ERROR', 'message': "Required 'compute.disks.createSnapshot' permission for '%s'" % SOURCE}}
    gce = provider(server)
    ref = gce.take(csi_volume(SOURCE))
    with pytest.raises(FerryError) as raised:
        gce.wait_cut(ref, 10)
    assert str(raised.value) == ("cannot create GCE snapshot ferry-s1-shop-db-data: Required 'compute.disks.createSnapshot' "
                                 "permission for '%s'" % SOURCE)
    assert raised.value.details['reason'] == 'PERMISSIONS_ERROR'


def test_timeouts_name_the_snapshot_and_the_seconds(compute):
    fake, server = compute
    fake.plans['ferry-s1-shop-db-data'] = {'steps': ['CREATING']}
    fake.plans['ferry-s2-shop-db-data'] = {'steps': ['CREATING', 'UPLOADING']}
    gce = provider(server)
    ref = gce.take(csi_volume(SOURCE))
    with pytest.raises(FerryError, match=r'^GCE snapshot ferry-s1-shop-db-data is still CREATING after 0.2s \(waiting for UPLOADING or READY\)'):
        gce.wait_cut(ref, 0.2)
    gce = provider(server, sync_id='s2')
    ref = gce.take(csi_volume(SOURCE))
    gce.wait_cut(ref, 10)
    with pytest.raises(FerryError, match=r'^GCE snapshot ferry-s2-shop-db-data is still UPLOADING after 0.3s \(waiting for READY\)'):
        gce.wait_ready(ref, 0.3)


def test_api_errors_reach_the_ferry_error_without_the_token(compute):
    _fake, server = compute
    missing = 'projects/%s/zones/%s/disks/gone-disk' % (PROJECT, ZONE)
    with pytest.raises(FerryError) as raised:
        provider(server).take(csi_volume(missing))
    assert str(raised.value) == "cannot snapshot GCE disk %s of shop/db-data: HTTP 404: The resource '%s' was not found" % (missing, missing)
    assert raised.value.details == {'status': 404, 'reason': 'notFound'}
    assert TOKEN not in str(raised.value)

    with pytest.raises(FerryError) as raised:
        provider(server, token='ya29.wrong-token-42').take(csi_volume(SOURCE))
    message = str(raised.value)
    assert message.startswith('cannot snapshot GCE disk %s of shop/db-data: HTTP 401: Request had invalid authentication credentials' % SOURCE)
    assert 'wrong-token-42' not in message and 'Bearer' not in message and 'wrong-token-42' not in repr(raised.value.details)


def test_an_unreachable_api_is_a_ferry_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    gce = GcePdSnapshots(RecordingCluster(), 's1', session(), PROJECT, compute_url='http://127.0.0.1:%d' % port)
    with pytest.raises(FerryError) as raised:
        gce.take(csi_volume(SOURCE))
    assert str(raised.value).startswith('cannot snapshot GCE disk %s of shop/db-data: ' % SOURCE)
    assert 'Connection refused' in str(raised.value) and TOKEN not in str(raised.value)


def test_cleanup_of_already_deleted_resources_is_quiet(compute):
    fake, server = compute
    cluster = RecordingCluster()
    gce = provider(server, cluster=cluster)
    vol = csi_volume(SOURCE)
    ref = gce.take(vol)
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    gce.expose(ref, vol)
    for path in [p for p in fake.disks if p.endswith('-disk')]:  # someone deleted them by hand
        del fake.disks[path]
    fake.snapshots.clear()
    cluster.objects.clear()
    assert gce.cleanup(ref) == []
    assert gce.cleanup(ref) == []
    deletes = [r for r in server.requests if r['method'] == 'DELETE']
    assert len(deletes) == 4  # each asked once per clean-up, answered 404


def test_cleanup_waits_for_the_node_to_let_go_then_reports_what_is_stuck(compute):
    fake, server = compute
    gce = provider(server)
    vol = csi_volume(SOURCE)
    ref = gce.take(vol)
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    gce.expose(ref, vol)
    disk = fake.disks[ref['disk_path']]
    disk['users'] = [NODE]
    fake.in_use_deletes[ref['disk_path']] = 3  # still detaching for three tries
    assert gce.cleanup(ref)[-2:] == ['disk ferry-s1-shop-db-data-disk', 'snapshot ferry-s1-shop-db-data']

    ref = gce.take(vol)
    gce.wait_cut(ref, 10)
    gce.wait_ready(ref, 10)
    gce.expose(ref, vol)
    fake.disks[ref['disk_path']]['users'] = [NODE]  # attached for good
    with pytest.raises(FerryError) as raised:
        gce.cleanup(ref)
    assert str(raised.value) == ("cannot delete temporary GCE disk ferry-s1-shop-db-data-disk: HTTP 400: The disk resource '%s' "
                                 "is already being used by '%s'" % (ref['disk_path'], gce_pd._relative(NODE)))
    assert ref['disk_path'] in fake.disks and len(fake.snapshots) == 1  # nothing after the failure was touched


def test_sweep_removes_leftovers_of_other_syncs_only(compute):
    fake, server = compute
    fake.add_disk('projects/%s/zones/%s/disks/pvc-5678' % (PROJECT, ZONE))
    fake.add_snapshot(PROJECT, 'nightly-backup', labels={'team': 'shop'})  # not Ferry's
    dead = provider(server, sync_id='dead')
    refs = []
    for handle, name in ((SOURCE, 'db-data'), ('projects/%s/zones/%s/disks/pvc-5678' % (PROJECT, ZONE), 'cache')):
        vol = csi_volume(handle, name=name)
        ref = dead.take(vol)
        dead.wait_cut(ref, 10)
        dead.wait_ready(ref, 10)
        dead.expose(ref, vol)
        refs.append(ref)
    fake.disks[refs[1]['disk_path']]['users'] = [NODE]  # attached: an agent may still read it
    alive = provider(server, sync_id='Alive.Sync')
    alive_ref = alive.take(csi_volume(SOURCE))
    alive.wait_cut(alive_ref, 10)
    alive.wait_ready(alive_ref, 10)
    alive.expose(alive_ref, csi_volume(SOURCE))

    removed = alive.sweep(keep_sync_ids={'Alive.Sync'})  # compared through the same sanitising as the labels
    assert sorted(removed) == ['disk ferry-dead-shop-db-data-disk', 'snapshot ferry-dead-shop-cache', 'snapshot ferry-dead-shop-db-data']
    assert sorted(s['name'] for s in fake.snapshots.values()) == ['ferry-alive-sync-shop-db-data', 'nightly-backup']
    kept = ['ferry-alive-sync-shop-db-data-disk', 'ferry-dead-shop-cache-disk', 'pvc-1234', 'pvc-5678', 'pvc-regional']
    assert sorted(d['name'] for d in fake.disks.values()) == kept
    lists = [r['path'] for r in server.requests if r['method'] == 'GET' and re.search(r'/(global/snapshots|aggregated/disks)\?', r['path'])]
    assert all('filter=labels.ferry-temporary%3D%22true%22' in p for p in lists)
    assert any('pageToken=2' in p for p in lists if '/global/snapshots' in p)  # three temporary snapshots: two pages
    assert any('pageToken=2' in p for p in lists if '/aggregated/disks' in p)
    assert alive.sweep(keep_sync_ids={'Alive.Sync'}) == []
    with pytest.raises(FerryError, match='needs the GCP project'):
        provider(server, sync_id='x', project=None).sweep()
