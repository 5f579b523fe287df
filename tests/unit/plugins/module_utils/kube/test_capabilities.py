"""Platform detection and the per-storage-class snapshot mechanism."""

from ansible_collections.ferry.kube.plugins.module_utils.kube import capabilities


def sc(name, provisioner, default=False):
    annotations = {'storageclass.kubernetes.io/is-default-class': 'true'} if default else {}
    return {'metadata': {'name': name, 'annotations': annotations}, 'provisioner': provisioner}


def named(name, **fields):
    return dict({'metadata': {'name': name}}, **fields)


def test_openshift_is_recognised_by_its_api_groups():
    groups = ['v1', 'apps/v1', 'route.openshift.io/v1']
    assert capabilities.detect_platform({'gitVersion': 'v1.29.5'}, groups, []) == 'openshift'


def test_managed_clouds_by_version_string_then_provider_id():
    assert capabilities.detect_platform({'gitVersion': 'v1.30.4-eks-a737599'}, ['v1'], []) == 'eks'
    assert capabilities.detect_platform({'gitVersion': 'v1.30.5-gke.1014001'}, ['v1'], []) == 'gke'
    aks_node = {'spec': {'providerID': 'azure:///subscriptions/x/resourceGroups/y/vm-0'}}
    assert capabilities.detect_platform({'gitVersion': 'v1.30.3'}, ['v1'], [aks_node]) == 'aks'
    assert capabilities.detect_platform({'gitVersion': 'v1.31.0'}, ['v1'], [{'spec': {}}]) == 'vanilla'


def test_snapshot_mechanism_prefers_csi_then_cloud_then_live_read():
    classes = [sc('standard', 'csi.sandbox.ferry.dev', default=True), sc('gp3', 'ebs.csi.aws.com'),
               sc('nosnap', 'nosnap.sandbox.ferry.dev'), sc('legacy-disk', 'kubernetes.io/azure-disk')]
    drivers = [named('csi.sandbox.ferry.dev'), named('ebs.csi.aws.com')]
    snap_classes = [dict(named('standard-snapclass'), driver='csi.sandbox.ferry.dev')]
    report = {r['name']: r for r in capabilities.storage_report(classes, drivers, snap_classes)}
    assert report['standard']['snapshot_mechanism'] == 'csi-snapshot'
    assert report['standard']['snapshot_classes'] == ['standard-snapclass']
    assert report['standard']['default'] is True
    assert report['gp3']['snapshot_mechanism'] == 'aws-ebs'
    assert report['gp3']['csi'] is True
    assert report['legacy-disk']['snapshot_mechanism'] == 'azure-disk'
    assert report['nosnap']['snapshot_mechanism'] == 'live-read'
    assert [r['name'] for r in capabilities.storage_report(classes, drivers, snap_classes)] == ['gp3', 'legacy-disk', 'nosnap', 'standard']


def test_served_group_versions_are_unique_and_sorted():
    discovery = [{'group_version': 'v1'}, {'group_version': 'apps/v1'}, {'group_version': 'v1'}]
    assert capabilities.served_group_versions(discovery) == ['apps/v1', 'v1']
