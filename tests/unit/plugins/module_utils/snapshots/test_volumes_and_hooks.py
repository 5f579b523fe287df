"""Mechanism choice per volume, temporary names, quantities and hook annotations."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import hooks
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume, choose_mechanism, parse_quantity, temp_name


def volume(driver='csi.sandbox.ferry.dev', mode='Filesystem', in_tree=None, zone=None):
    pv_spec = {'capacity': {'storage': '5Gi'}}
    if in_tree:
        pv_spec[in_tree[0]] = in_tree[1]
    else:
        pv_spec['csi'] = {'driver': driver, 'volumeHandle': 'vol-0abc'}
    if zone:
        pv_spec['nodeAffinity'] = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
            {'key': 'topology.ebs.csi.aws.com/zone', 'operator': 'In', 'values': [zone]}]}]}}
    pvc = {'metadata': {'name': 'data', 'namespace': 'shop'}, 'spec': {'storageClassName': 'x', 'volumeMode': mode,
                                                                       'resources': {'requests': {'storage': '5Gi'}}},
           'status': {'phase': 'Bound', 'capacity': {'storage': '5Gi'}}}
    return Volume(pvc, {'metadata': {'name': 'pv-1'}, 'spec': pv_spec})


CLASSES = [{'metadata': {'name': 'standard-snapclass'}, 'driver': 'csi.sandbox.ferry.dev'}]


def test_csi_class_wins():
    assert choose_mechanism(volume(), CLASSES)[:2] == ('csi-snapshot', 'standard-snapclass')


def test_cloud_api_needs_credentials_else_live_read_with_a_hint():
    ebs = volume('ebs.csi.aws.com', zone='eu-west-1a')
    assert ebs.zone == 'eu-west-1a'
    assert choose_mechanism(ebs, CLASSES, cloud_providers=['aws-ebs'])[0] == 'aws-ebs'
    mechanism, _cls, reason = choose_mechanism(ebs, CLASSES)
    assert mechanism == 'live-read' and 'give the aws option' in reason
    for driver, mechanism, option in (('pd.csi.storage.gke.io', 'gce-pd', 'gcp'), ('kubernetes.io/azure-disk', 'azure-disk', 'azure')):
        disk = volume(driver)
        assert choose_mechanism(disk, CLASSES, cloud_providers=[mechanism])[0] == mechanism
        assert 'give the %s option' % option in choose_mechanism(disk, CLASSES)[2]
    share = choose_mechanism(volume('file.csi.azure.com'), CLASSES, cloud_providers=['aws-ebs', 'gce-pd', 'azure-disk'])
    assert share[0] == 'live-read' and 'Ferry has no azure-file snapshot provider' in share[2]


def test_in_tree_disks_are_recognised():
    legacy = volume(in_tree=('awsElasticBlockStore', {'volumeID': 'aws://eu-west-1a/vol-0123', 'fsType': 'xfs'}))
    assert legacy.driver == 'kubernetes.io/aws-ebs'
    assert legacy.fs_type == 'xfs' and volume('ebs.csi.aws.com').fs_type == 'ext4', 'a disk copied from its snapshot is mounted as the source was'
    assert choose_mechanism(legacy, [], cloud_providers=['aws-ebs'])[0] == 'aws-ebs'


def test_block_volume_without_snapshots_is_refused():
    with pytest.raises(FerryError, match='raw block volume'):
        choose_mechanism(volume('nosnap.sandbox.ferry.dev', mode='Block'), CLASSES)


def test_forcing_an_impossible_mechanism_is_explained():
    with pytest.raises(FerryError, match='has no VolumeSnapshotClass'):
        choose_mechanism(volume('nosnap.sandbox.ferry.dev'), CLASSES, forced='csi-snapshot')
    assert choose_mechanism(volume(), CLASSES, forced='live-read')[0] == 'live-read'


def test_quantities_and_names():
    assert parse_quantity('5Gi') == 5 * 2 ** 30
    assert parse_quantity('500M') == 500 * 10 ** 6
    assert parse_quantity('1e3') == 1000
    with pytest.raises(FerryError):
        parse_quantity('lots')
    long_name = temp_name('20261124-010000', 'a-very-long-persistent-volume-claim-name-of-some-app', 'ro')
    assert len(long_name) <= 63 and long_name.startswith('ferry-20261124-010000-a-very')
    assert long_name == temp_name('20261124-010000', 'a-very-long-persistent-volume-claim-name-of-some-app', 'ro')


def pod(annotations, containers=('db', 'sidecar'), phase='Running', claim='data'):
    return {'metadata': {'name': 'db-0', 'namespace': 'shop', 'annotations': annotations},
            'spec': {'containers': [{'name': c} for c in containers], 'volumes': [{'name': 'v', 'persistentVolumeClaim': {'claimName': claim}}]},
            'status': {'phase': phase}}


def test_ferry_and_velero_hook_annotations():
    ours = hooks.hooks_of(pod({'pre.hook.ferry.dev/command': '["/bin/sh", "-c", "sync"]', 'pre.hook.ferry.dev/container': 'sidecar',
                               'pre.hook.ferry.dev/on-error': 'Continue'}), 'pre')
    assert (ours.command, ours.container, ours.on_error) == (['/bin/sh', '-c', 'sync'], 'sidecar', 'Continue')
    velero = hooks.hooks_of(pod({'post.hook.backup.velero.io/command': 'fsfreeze --unfreeze /data'}), 'post')
    assert velero.command == ['fsfreeze', '--unfreeze', '/data'] and velero.container == 'db'
    assert hooks.hooks_of(pod({}), 'pre') is None


def test_bad_hook_annotations_are_named():
    with pytest.raises(FerryError, match="hook container 'web' is not one of its containers"):
        hooks.hooks_of(pod({'pre.hook.ferry.dev/command': 'sync', 'pre.hook.ferry.dev/container': 'web'}), 'pre')
    with pytest.raises(FerryError, match='must be Fail or Continue'):
        hooks.hooks_of(pod({'pre.hook.ferry.dev/command': 'sync', 'pre.hook.ferry.dev/on-error': 'Ignore'}), 'pre')
    with pytest.raises(FerryError, match='not a JSON list'):
        hooks.hooks_of(pod({'pre.hook.ferry.dev/command': '[oops'}), 'pre')


def test_hooks_only_in_running_pods_that_mount_the_volumes():
    volumes = [volume()]
    pods = [pod({}), pod({}, phase='Pending'), pod({}, claim='other')]
    assert hooks.pods_using(pods, volumes) == [pods[0]]


def test_a_recorded_hook_comes_back_whole():
    hook = hooks.hooks_of(pod({'post.hook.ferry.dev/command': 'sync', 'post.hook.ferry.dev/timeout': '90',
                               'post.hook.ferry.dev/on-error': 'Continue'}), 'post')
    again = hooks.Hook.from_record(hook.describe())
    assert again.describe() == hook.describe() and again.timeout == 90.0
