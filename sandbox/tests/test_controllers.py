"""Controllers: workloads, endpoints, storage and snapshots, observed through the API."""

import os
import shutil
import subprocess

import pytest
import yaml

from ferry_sandbox.cluster import Cluster
from ferry_sandbox.controllers import storage
from ferry_sandbox.images import default_images
from helpers import kubectl, kubectl_json, wait_for


def apply(cluster, *objects):
    kubectl(cluster, 'apply', '-f', '-', stdin=yaml.safe_dump_all(list(objects)))


def deployment(name, replicas=1, image='app:1', annotations=None):
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': name}},
                     'template': {'metadata': {'labels': {'app': name}, 'annotations': annotations or {}},
                                  'spec': {'containers': [{'name': 'app', 'image': image, 'ports': [{'containerPort': 8080}]}]}}}}


def test_deployment_rollout_scale_and_owner_chain(sandbox_cluster):
    cluster = sandbox_cluster()
    apply(cluster, deployment('web', 3))
    kubectl(cluster, 'wait', '--for=condition=Available', 'deployment/web', '--timeout=30s')
    rs = kubectl_json(cluster, 'get', 'replicasets', '-l', 'app=web')['items']
    assert len(rs) == 1 and rs[0]['metadata']['ownerReferences'][0]['kind'] == 'Deployment'
    pods = kubectl_json(cluster, 'get', 'pods', '-l', 'app=web')['items']
    assert len(pods) == 3 and all(p['metadata']['ownerReferences'][0]['name'] == rs[0]['metadata']['name'] for p in pods)
    assert len({p['status']['podIP'] for p in pods}) == 3
    kubectl(cluster, 'scale', 'deployment/web', '--replicas=1')
    wait_for(lambda: len(kubectl_json(cluster, 'get', 'pods', '-l', 'app=web')['items']) == 1, what='scale down')
    kubectl(cluster, 'set', 'image', 'deployment/web', 'app=app:2')
    kubectl(cluster, 'rollout', 'status', 'deployment/web', '--timeout=30s')
    sets = kubectl_json(cluster, 'get', 'replicasets', '-l', 'app=web')['items']
    assert sorted(s['spec']['replicas'] for s in sets) == [0, 1]
    kubectl(cluster, 'delete', 'deployment', 'web')
    wait_for(lambda: not kubectl_json(cluster, 'get', 'pods', '-l', 'app=web')['items'], what='garbage collection of pods')


def test_statefulset_claims_and_job_completion(sandbox_cluster):
    cluster = sandbox_cluster()
    sts = {'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'name': 'db', 'namespace': 'default'},
           'spec': {'replicas': 2, 'serviceName': 'db', 'selector': {'matchLabels': {'app': 'db'}},
                    'template': {'metadata': {'labels': {'app': 'db'}}, 'spec': {'containers': [{'name': 'db', 'image': 'db:1'}]}},
                    'volumeClaimTemplates': [{'metadata': {'name': 'data'}, 'spec': {'accessModes': ['ReadWriteOnce'],
                                                                                    'resources': {'requests': {'storage': '1Gi'}}}}]}}
    job = {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': 'once', 'namespace': 'default'},
           'spec': {'template': {'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'c', 'image': 'busybox'}]}}}}
    apply(cluster, sts, job)
    kubectl(cluster, 'wait', '--for=condition=complete', 'job/once', '--timeout=30s')
    wait_for(lambda: kubectl_json(cluster, 'get', 'statefulset', 'db').get('status', {}).get('readyReplicas') == 2, what='statefulset ready')
    claims = kubectl_json(cluster, 'get', 'pvc')['items']
    assert sorted(c['metadata']['name'] for c in claims) == ['data-db-0', 'data-db-1']
    assert all(c['status']['phase'] == 'Bound' for c in claims)
    assert sorted(p['metadata']['name'] for p in kubectl_json(cluster, 'get', 'pods', '-l', 'app=db')['items']) == ['db-0', 'db-1']


def test_endpoints_follow_ready_pods(sandbox_cluster):
    cluster = sandbox_cluster()
    service = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'web', 'namespace': 'default'},
               'spec': {'selector': {'app': 'web'}, 'ports': [{'port': 80, 'targetPort': 8080}]}}
    apply(cluster, deployment('web', 2), service)
    endpoints = wait_for(lambda: (kubectl_json(cluster, 'get', 'endpoints', 'web').get('subsets') or [None])[0], what='endpoints')
    assert len(endpoints['addresses']) == 2 and endpoints['ports'][0]['port'] == 8080


def test_health_simulations_show_in_status_and_events(sandbox_cluster):
    cluster = sandbox_cluster()
    apply(cluster, deployment('crashy', annotations={'sandbox.ferry.dev/simulate': 'crash'}),
          deployment('slow', annotations={'sandbox.ferry.dev/simulate': 'unready'}))

    def crash_status():
        pods = kubectl_json(cluster, 'get', 'pods', '-l', 'app=crashy')['items']
        statuses = pods[0]['status'].get('containerStatuses') if pods else None
        return statuses and statuses[0]['restartCount'] >= 1 and statuses[0]
    status = wait_for(crash_status, what='a crash loop')
    assert status['state']['waiting']['reason'] == 'CrashLoopBackOff' and status['lastState']['terminated']['exitCode'] == 1
    events = kubectl_json(cluster, 'get', 'events', '--field-selector', 'reason=BackOff')['items']
    assert events and events[0]['type'] == 'Warning'
    deploy = kubectl_json(cluster, 'get', 'deployment', 'slow')
    wait_for(lambda: kubectl_json(cluster, 'get', 'pods', '-l', 'app=slow')['items'][0]['status'].get('phase') == 'Running', what='running')
    assert deploy.get('status', {}).get('readyReplicas') is None
    assert any(e['reason'] == 'Unhealthy' for e in wait_for(lambda: kubectl_json(cluster, 'get', 'events', '--field-selector', 'reason=Unhealthy')['items'],
                                                            what='unhealthy event'))


def pvc(name, storage_class='standard', data_source=None):
    body = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': storage_class, 'resources': {'requests': {'storage': '1Gi'}}}}
    if data_source:
        body['spec']['dataSource'] = {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': data_source}
    return body


def snapshot(name, claim, snap_class='standard-snapclass'):
    return {'apiVersion': 'snapshot.storage.k8s.io/v1', 'kind': 'VolumeSnapshot', 'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'volumeSnapshotClassName': snap_class, 'source': {'persistentVolumeClaimName': claim}}}


def volume_path(cluster, claim):
    return os.path.join(cluster.state_dir, 'volumes', kubectl_json(cluster, 'get', 'pvc', claim)['spec']['volumeName'])


def test_snapshot_is_a_point_in_time_copy_and_restores(sandbox_cluster):
    cluster = sandbox_cluster()
    apply(cluster, pvc('data'))
    wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'data')['status'].get('phase') == 'Bound', what='binding')
    with open(os.path.join(volume_path(cluster, 'data'), 'before.txt'), 'w', encoding='utf-8') as handle:
        handle.write('kept')
    apply(cluster, snapshot('snap', 'data'))
    kubectl(cluster, 'wait', '--for=jsonpath={.status.readyToUse}=true', 'volumesnapshot/snap', '--timeout=30s')
    with open(os.path.join(volume_path(cluster, 'data'), 'after.txt'), 'w', encoding='utf-8') as handle:
        handle.write('too late')
    content = kubectl_json(cluster, 'get', 'volumesnapshotcontent')['items'][0]
    assert content['spec']['volumeSnapshotRef']['name'] == 'snap' and content['status']['readyToUse']
    apply(cluster, pvc('restored', data_source='snap'))
    wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'restored')['status'].get('phase') == 'Bound', what='restore binding')
    assert sorted(os.listdir(volume_path(cluster, 'restored'))) == ['before.txt']
    kubectl(cluster, 'delete', 'volumesnapshot', 'snap')
    wait_for(lambda: not kubectl_json(cluster, 'get', 'volumesnapshotcontent')['items'], what='content deletion')


def test_deleted_volumes_and_snapshots_are_reclaimed_after_the_delete_returns(sandbox_cluster):
    cluster = sandbox_cluster()
    apply(cluster, pvc('scratch'))
    wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'scratch')['status'].get('phase') == 'Bound', what='binding')
    directory = volume_path(cluster, 'scratch')
    for number in range(200):
        with open(os.path.join(directory, 'file-%d' % number), 'w', encoding='utf-8') as handle:
            handle.write('data')
    apply(cluster, snapshot('snap', 'scratch'))
    kubectl(cluster, 'wait', '--for=jsonpath={.status.readyToUse}=true', 'volumesnapshot/snap', '--timeout=30s')
    snapshots = os.path.join(cluster.state_dir, 'snapshots')
    assert os.listdir(snapshots)
    kubectl(cluster, 'delete', 'volumesnapshot', 'snap')
    kubectl(cluster, 'delete', 'pvc', 'scratch')
    assert not os.path.exists(directory)  # gone from its place when the DELETE returns; its files go after
    wait_for(lambda: not os.listdir(snapshots) and not os.listdir(os.path.dirname(directory)), what='the files to be reclaimed')


def test_snapshot_without_a_class_for_the_driver_fails_like_the_real_controller(sandbox_cluster):
    cluster = sandbox_cluster()
    apply(cluster, pvc('plain', storage_class='nosnap'))
    wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'plain')['status'].get('phase') == 'Bound', what='binding')
    apply(cluster, snapshot('bad', 'plain'))
    error = wait_for(lambda: kubectl_json(cluster, 'get', 'volumesnapshot', 'bad').get('status', {}).get('error'), what='snapshot error')
    assert 'nosnap.sandbox.ferry.dev' in error['message']


@pytest.fixture
def btrfs_dir(tmp_path):
    """A btrfs file system on a loop device (root and btrfs-progs, which `make setup` installs)."""
    if os.geteuid() != 0 or not shutil.which('mkfs.btrfs') or not shutil.which('btrfs'):
        pytest.skip('needs root and btrfs-progs (make setup installs them)')
    image, mountpoint = tmp_path / 'btrfs.img', tmp_path / 'btrfs'
    with open(image, 'wb') as handle:
        handle.truncate(256 * 2 ** 20)
    subprocess.run(['mkfs.btrfs', '-q', '-f', str(image)], check=True, stdout=subprocess.DEVNULL)
    mountpoint.mkdir()
    if subprocess.run(['mount', '-o', 'loop', str(image), str(mountpoint)], check=False, capture_output=True).returncode != 0:
        pytest.skip('this machine cannot mount a loop device')
    try:
        yield mountpoint
    finally:
        subprocess.run(['umount', '-l', str(mountpoint)], check=False)


def test_on_btrfs_volumes_are_subvolumes_and_snapshots_are_subvolume_snapshots(btrfs_dir):
    cluster = Cluster('source', str(btrfs_dir / 'state'), local_images=default_images())
    cluster.start()
    try:
        apply(cluster, pvc('data'))
        wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'data')['status'].get('phase') == 'Bound', what='binding')
        volume = volume_path(cluster, 'data')
        assert storage.is_subvolume(volume)
        with open(os.path.join(volume, 'before.txt'), 'w', encoding='utf-8') as handle:
            handle.write('kept')
        apply(cluster, snapshot('snap', 'data'))
        kubectl(cluster, 'wait', '--for=jsonpath={.status.readyToUse}=true', 'volumesnapshot/snap', '--timeout=30s')
        with open(os.path.join(volume, 'after.txt'), 'w', encoding='utf-8') as handle:
            handle.write('too late')
        content = kubectl_json(cluster, 'get', 'volumesnapshotcontent')['items'][0]['metadata']['name']
        assert storage.is_subvolume(os.path.join(cluster.state_dir, 'snapshots', content))
        apply(cluster, pvc('restored', data_source='snap'))
        wait_for(lambda: kubectl_json(cluster, 'get', 'pvc', 'restored')['status'].get('phase') == 'Bound', what='restore binding')
        restored = volume_path(cluster, 'restored')
        assert storage.is_subvolume(restored) and sorted(os.listdir(restored)) == ['before.txt']
        with open(os.path.join(restored, 'before.txt'), 'w', encoding='utf-8') as handle:
            handle.write('changed in the clone')
        with open(os.path.join(volume, 'before.txt'), encoding='utf-8') as handle:
            assert handle.read() == 'kept'  # the clone shares extents, not the data's future
        kubectl(cluster, 'delete', 'volumesnapshot', 'snap')
        kubectl(cluster, 'delete', 'pvc', 'restored', 'data')
        wait_for(lambda: not subprocess.run(['btrfs', 'subvolume', 'list', str(btrfs_dir)], check=True, capture_output=True,
                                            text=True).stdout.strip(), what='the subvolumes to be deleted')
    finally:
        cluster.stop()
