"""EBS snapshots against moto's EC2 server: take, wait, expose as PV+PVC, clean up, sweep."""

import boto3
import pytest

from ansible_collections.ferry.kube.plugins.module_utils.snapshots.aws_ebs import EbsSnapshots, volume_id
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume
from moto_server import MotoServer
from recording_cluster import RecordingCluster

REGION = 'eu-west-1'


@pytest.fixture(name='ec2', scope='module')
def ec2_fixture():
    with MotoServer() as server:
        session = boto3.session.Session(aws_access_key_id='a', aws_secret_access_key='b', region_name=REGION)
        yield session, server.url


def ebs_volume(ec2_client):
    vol = ec2_client.create_volume(AvailabilityZone=REGION + 'a', Size=5)['VolumeId']
    pvc = {'metadata': {'name': 'db-data', 'namespace': 'shop'}, 'spec': {'storageClassName': 'gp3', 'resources': {'requests': {'storage': '5Gi'}}},
           'status': {'phase': 'Bound', 'capacity': {'storage': '5Gi'}}}
    pv = {'metadata': {'name': 'pvc-1', 'labels': {'topology.kubernetes.io/zone': REGION + 'a'}},
          'spec': {'csi': {'driver': 'ebs.csi.aws.com', 'volumeHandle': vol}, 'capacity': {'storage': '5Gi'}}}
    return vol, Volume(pvc, pv)


def test_take_expose_cleanup(ec2):
    session, url = ec2
    cluster = RecordingCluster()
    provider = EbsSnapshots(cluster, 's1', session, endpoint_url=url)
    source, vol = ebs_volume(provider.ec2)
    ref = provider.take(vol)
    assert ref['source_volume'] == source and ref['snapshot'].startswith('snap-')
    assert provider.take(vol)['snapshot'] == ref['snapshot']  # a re-run of the sync reuses its snapshot
    provider.wait_cut(ref, 10)
    provider.wait_ready(ref, 30)
    pvc_name = provider.expose(ref, vol)
    pv = cluster.objects['/api/v1/persistentvolumes/%s' % pvc_name]
    assert pv['spec']['csi']['volumeHandle'] == ref['volume']
    assert pv['spec']['claimRef'] == {'namespace': 'shop', 'name': pvc_name}
    created = provider.ec2.describe_volumes(VolumeIds=[ref['volume']])['Volumes'][0]
    assert created['SnapshotId'] == ref['snapshot'] and created['AvailabilityZone'] == REGION + 'a'
    removed = provider.cleanup(ref)
    assert len(removed) == 4 and cluster.objects == {}
    assert not provider.ec2.describe_snapshots(SnapshotIds=[], Filters=[{'Name': 'tag:ferry.dev/sync-id', 'Values': ['s1']}])['Snapshots']


def test_sweep_removes_leftovers_of_dead_syncs_only(ec2):
    session, url = ec2
    dead = EbsSnapshots(RecordingCluster(), 'dead', session, endpoint_url=url)
    alive = EbsSnapshots(RecordingCluster(), 'alive', session, endpoint_url=url)
    _source, vol = ebs_volume(dead.ec2)
    dead_ref, alive_ref = dead.take(vol), alive.take(vol)
    removed = alive.sweep(keep_sync_ids={'alive'})
    assert 'snapshot %s' % dead_ref['snapshot'] in removed
    assert 'snapshot %s' % alive_ref['snapshot'] not in removed


def test_volume_ids_from_csi_and_in_tree_handles():
    assert volume_id('vol-0abc') == 'vol-0abc'
    assert volume_id('aws://eu-west-1a/vol-0abc') == 'vol-0abc'
