"""The cloud options make the clouds' snapshot providers; a volume that needs a missing one names its option."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.providers import MECHANISMS, providers, providers_of
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume


def test_each_cloud_option_adds_its_provider_and_nothing_else():
    assert set(providers(None, 's1')) == {'csi-snapshot', 'live-read'}
    gcp = {'project': 'shop', 'access_token': 'ya29.token', 'credentials': None, 'credentials_file': None, 'compute_url': 'https://compute.example'}
    found = providers(None, 's1', gcp=gcp)
    assert set(found) == {'csi-snapshot', 'live-read', 'gce-pd'}
    assert found['gce-pd'].project == 'shop' and found['gce-pd'].compute_url == 'https://compute.example'
    assert found['gce-pd'].session.headers['Authorization'] == 'Bearer ya29.token'
    azure = {'subscription_id': 'sub-1', 'tenant_id': 'tenant', 'client_id': 'app', 'client_secret': 's3cret',
             'authority_host': 'login.microsoftonline.com', 'arm_url': 'https://management.example'}
    found = providers_of(None, 's1', {'aws': None, 'gcp': None, 'azure': azure})
    assert set(found) == {'csi-snapshot', 'live-read', 'azure-disk'}
    assert found['azure-disk'].arm_url == 'https://management.example'
    assert type(found['azure-disk'].credential).__name__ == 'ClientSecretCredential'
    assert MECHANISMS == ['auto', 'csi-snapshot', 'aws-ebs', 'gce-pd', 'azure-disk', 'live-read']


class NoSnapshotClasses:
    def find_resource(self, **_kwargs):
        return None


def test_a_forced_cloud_mechanism_without_its_option_names_the_option():
    pv = {'metadata': {'name': 'pv-1'}, 'spec': {'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': 'projects/p/zones/z/disks/d'},
                                                 'capacity': {'storage': '1Gi'}}}
    pvc = {'metadata': {'name': 'data', 'namespace': 'shop'}, 'spec': {'resources': {'requests': {'storage': '1Gi'}}}, 'status': {'phase': 'Bound'}}
    snapper = group.AppSnapshot(NoSnapshotClasses(), 's1', providers(None, 's1'))
    with pytest.raises(FerryError, match=r'volume shop/data needs the gce-pd snapshot API; give its credentials \(option "gcp"\)'):
        snapper.plan([Volume(pvc, pv)], forced='gce-pd')
