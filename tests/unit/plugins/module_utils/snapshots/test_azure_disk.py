"""Azure managed-disk snapshots against an in-memory fake of the ARM Microsoft.Compute routes: take, wait, expose as PV+PVC, clean up, sweep.

No emulator of Azure Compute exists, so FakeArm answers with the shapes ARM returns (resources,
``{'error': {'code', 'message'}}`` errors, 202 DELETEs, ``nextLink`` pages) and checks the bearer
token and the ``api-version`` of every call.
"""

import json
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from azure.core.credentials import AccessToken

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import azure_disk
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.azure_disk import AzureDiskSnapshots, disk_id_parts
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume
from fake_http import ScriptedServer
from recording_cluster import RecordingCluster

SUB = '0b1f6471-1bf0-4dda-aec3-111122223333'
RG = 'MC_shop_aks_westeurope'
LOCATION = 'westeurope'
TOKEN = 'eyJ0eXAiOiJKV1QiLCJhbGciOi.arm-secret-token'
API = '2023-04-02'
CREATED = '2024-05-02T10:11:12.1234567+00:00'


def arm_id(kind, name, subscription=SUB, group=RG):
    return '/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s' % (subscription, group, kind, name)


def arm_error(status, code, message):
    return status, {'error': {'code': code, 'message': message}}


class FakeArm:
    """The ARM routes AzureDiskSnapshots uses, as a ScriptedServer routes callable; resources by lower-cased id.

    ``snapshot_states`` / ``disk_states``: the (provisioningState, completionPercent) successive GETs of a
    new snapshot or disk show, the last one staying. A DELETE answers 202; the next GET shows the resource
    Deleting, the one after 404.
    """

    def __init__(self):
        self.server = None
        self.resources = {}
        self.groups = {RG.lower()}
        self.snapshot_states = [('Creating', 0.0), ('Updating', 35.0), ('Succeeded', 80.0), ('Succeeded', 100.0)]
        self.disk_states = [('Updating', None), ('Succeeded', None)]
        self.progress = {}
        self.detach_after = {}  # disk id -> DELETEs refused (409, still attached) before it is Unattached
        self.page_size = 2
        self.next_link_base = None
        self.puts = []

    def add_disk(self, name, zones=('1',), sku='Premium_LRS', disk_state='Attached', tags=None, group=RG):
        rid = arm_id('disks', name, group=group)
        props = {'provisioningState': 'Succeeded', 'diskState': disk_state, 'diskSizeGB': 5, 'creationData': {'createOption': 'Empty'},
                 'timeCreated': CREATED}
        self.resources[rid.lower()] = {'id': rid, 'name': name, 'type': 'Microsoft.Compute/disks', 'location': LOCATION,
                                       'sku': {'name': sku, 'tier': sku.split('_')[0]}, 'tags': dict(tags or {}), 'properties': props}
        if zones:
            self.resources[rid.lower()]['zones'] = list(zones)
        return rid

    def get(self, rid):
        return self.resources.get(rid.lower())

    def __call__(self, method, path, headers, body):
        if headers.get('Authorization') != 'Bearer ' + TOKEN:
            return arm_error(401, 'AuthenticationFailed', 'Authentication failed. The Authorization header is missing or has an invalid token.')
        # ScriptedServer hands routes the path without its query: the request it just recorded has it (the client is sequential)
        query = parse_qs(urlsplit(self.server.requests[-1]['path']).query)
        if query.get('api-version') != [API]:
            return arm_error(400, 'MissingApiVersionParameter', "The api-version query parameter (?api-version=) is required for all requests.")
        parts = unquote(path).strip('/').split('/')
        low = [p.lower() for p in parts]
        if len(parts) == 5 and low[0] == 'subscriptions' and low[2:4] == ['providers', 'microsoft.compute'] and method == 'GET':
            return self._list(path, parts[1], low[4], query)
        if len(parts) != 8 or low[0] != 'subscriptions' or low[2] != 'resourcegroups' or low[4:6] != ['providers', 'microsoft.compute'] \
                or low[6] not in ('disks', 'snapshots'):
            return arm_error(404, 'InvalidResourceType', 'no route %s %s' % (method, path))
        sub, group, kind, name = parts[1], parts[3], low[6], parts[7]
        if group.lower() not in self.groups:
            return arm_error(404, 'ResourceGroupNotFound', "Resource group '%s' could not be found." % group)
        rid = arm_id(kind, name, sub, group)
        handler = {'GET': self._get, 'PUT': self._put, 'DELETE': self._delete}[method]
        return handler(rid, kind, name, group, body)

    def _missing(self, kind, name, group):
        return arm_error(404, 'ResourceNotFound', "The Resource 'Microsoft.Compute/%s/%s' under resource group '%s' was not found. "
                         "For more details please go to https://aka.ms/ARMResourceNotFoundFix" % (kind, name, group))

    def _get(self, rid, kind, name, group, _body):
        resource = self.get(rid)
        if resource is None:
            return self._missing(kind, name, group)
        props = resource['properties']
        if props['provisioningState'] == 'Deleting':
            self.resources.pop(rid.lower())  # gone at the next GET
            return 200, resource
        states = self.progress.get(rid.lower())
        if states:
            state, percent = states.pop(0) if len(states) > 1 else states[0]
            props['provisioningState'] = state
            if percent is not None:
                props['completionPercent'] = percent
        return 200, resource

    def _put(self, rid, kind, name, _group, body):
        request = json.loads(body)
        self.puts.append((rid, request))
        bad = [t for t in request.get('tags') or {} if set(t) & set('<>%&\\?/')]
        if bad:
            return arm_error(400, 'InvalidTagNameCharacters', "The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or control characters."
                             % ','.join(bad))
        source_id = request['properties']['creationData']['sourceResourceId']
        source = self.get(source_id)
        if source is None:
            return arm_error(404, 'NotFound', "Resource %s is not found." % source_id)
        if source['location'] != request['location']:
            return arm_error(400, 'InvalidParameter', 'The source and the target must be in the same location.')
        states = list(self.snapshot_states if kind == 'snapshots' else self.disk_states)
        state, percent = states[0]
        props = {'provisioningState': state, 'creationData': request['properties']['creationData'], 'diskSizeGB': source['properties']['diskSizeGB'],
                 'timeCreated': CREATED}
        if kind == 'snapshots':
            props.update(incremental=request['properties'].get('incremental', False), completionPercent=percent)
            sku = {'name': 'Standard_LRS', 'tier': 'Standard'}
        else:
            props['diskState'] = 'Unattached'
            sku = request.get('sku') or {'name': 'Standard_LRS'}
        resource = {'id': rid, 'name': name, 'type': 'Microsoft.Compute/%s' % kind, 'location': request['location'], 'sku': sku,
                    'tags': request.get('tags') or {}, 'properties': props}
        if request.get('zones'):
            resource['zones'] = request['zones']
        self.resources[rid.lower()] = resource
        self.progress[rid.lower()] = states
        return 202, resource

    def _delete(self, rid, _kind, name, _group, _body):
        resource = self.get(rid)
        if resource is None:
            return 204, {}  # ARM: the resource does not exist
        if resource['properties'].get('diskState') == 'Attached':
            if self.detach_after.get(rid.lower(), 0) <= 0:
                return arm_error(409, 'OperationNotAllowed', 'Disk %s is attached to VM aks-nodepool1-12345678-vmss_0.' % name)
            self.detach_after[rid.lower()] -= 1
            if self.detach_after[rid.lower()] == 0:
                resource['properties']['diskState'] = 'Unattached'
            return arm_error(409, 'OperationNotAllowed', 'Disk %s is attached to VM aks-nodepool1-12345678-vmss_0.' % name)
        resource['properties']['provisioningState'] = 'Deleting'
        return 202, {}

    def _list(self, path, sub, kind, query):
        items = sorted((r for r in self.resources.values() if r['id'].lower().startswith('/subscriptions/%s/' % sub.lower())
                        and r['type'].lower() == 'microsoft.compute/' + kind), key=lambda r: r['id'])
        start = int(query.get('$skiptoken', ['0'])[0])
        page = {'value': items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            page['nextLink'] = '%s%s?api-version=%s&%%24skiptoken=%d' % (self.next_link_base or self.server.url, path, API, start + self.page_size)
        return 200, page


class FakeCredential:
    """An azure-identity credential: ``get_token(*scopes)`` -> AccessToken."""

    def __init__(self, token=TOKEN, lifetime=3600):
        self.token = token
        self.lifetime = lifetime
        self.scopes = []

    def get_token(self, *scopes, **_kwargs):
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime)


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(azure_disk, 'POLL_SECONDS', 0.001)
    monkeypatch.setattr(azure_disk, 'DETACH_TIMEOUT', 2)
    monkeypatch.setattr(azure_disk, 'DELETE_TIMEOUT', 2)


@pytest.fixture(name='server', scope='module')
def server_fixture():
    with ScriptedServer(lambda *request: arm_error(500, 'InternalServerError', 'no fake ARM')) as server:
        yield server


@pytest.fixture(name='arm')
def arm_fixture(server):
    """A fresh FakeArm behind the module's server (shutting a server down costs half a second)."""
    fake = FakeArm()
    server.routes, server.requests, fake.server = fake, [], server
    return fake


def provider(arm, sync_id='s1', credential=None, **kwargs):
    return AzureDiskSnapshots(RecordingCluster(), sync_id, credential or FakeCredential(), arm_url=arm.server.url, **kwargs)


def azure_volume(handle, in_tree=False, zone=LOCATION + '-1'):
    pvc = {'metadata': {'name': 'db-data', 'namespace': 'shop'}, 'spec': {'storageClassName': 'managed-csi', 'resources': {'requests': {'storage': '5Gi'}}},
           'status': {'phase': 'Bound', 'capacity': {'storage': '5Gi'}}}
    source = {'azureDisk': {'diskName': handle.rsplit('/', 1)[-1], 'diskURI': handle, 'kind': 'Managed', 'fsType': 'xfs'}} if in_tree else \
        {'csi': {'driver': 'disk.csi.azure.com', 'volumeHandle': handle, 'fsType': 'ext4'}}
    spec = dict(source, capacity={'storage': '5Gi'})
    if zone:
        spec['nodeAffinity'] = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
            {'key': 'topology.disk.csi.azure.com/zone', 'operator': 'In', 'values': [zone]}]}]}}
    return Volume(pvc, {'metadata': {'name': 'pvc-1'}, 'spec': spec})


def test_take_expose_cleanup(arm):
    source = arm.add_disk('pvc-5f1c8a2e-disk')
    snaps = provider(arm)
    vol = azure_volume(source)
    ref = snaps.take(vol)
    snapshot_id = arm_id('snapshots', 'ferry-s1-shop-db-data')
    assert ref == {'mechanism': 'azure-disk', 'namespace': 'shop', 'snapshot': snapshot_id, 'source_disk': source,
                   'location': LOCATION, 'zone': '1', 'sku': 'Premium_LRS'}
    (put_id, put_body), = arm.puts
    assert put_id == snapshot_id and put_body['location'] == LOCATION
    assert put_body['properties'] == {'creationData': {'createOption': 'Copy', 'sourceResourceId': source}, 'incremental': True}
    assert put_body['tags'] == {'ferry.dev-temporary': 'true', 'ferry.dev-sync-id': 's1', 'ferry.dev-source-pvc': 'shop/db-data'}
    assert snaps.take(vol)['snapshot'] == snapshot_id and len(arm.puts) == 1  # a re-run of the sync reuses its snapshot

    snaps.wait_cut(ref, 10)
    assert ref['creation_time'] == '2024-05-02T10:11:12Z'  # the snapshot's timeCreated
    snaps.wait_ready(ref, 30)
    assert arm.get(snapshot_id)['properties']['completionPercent'] == 100.0

    pvc_name = snaps.expose(ref, vol)
    disk_id = arm_id('disks', 'ferry-s1-shop-db-data-ro')
    assert ref['disk'] == disk_id
    disk = arm.get(disk_id)
    assert disk['properties']['creationData'] == {'createOption': 'Copy', 'sourceResourceId': snapshot_id}
    assert disk['sku']['name'] == 'Premium_LRS' and disk['zones'] == ['1'] and disk['location'] == LOCATION
    assert disk['tags']['ferry.dev-sync-id'] == 's1' and disk['properties']['provisioningState'] == 'Succeeded'
    pv = snaps.cluster.objects['/api/v1/persistentvolumes/%s' % pvc_name]
    assert pv['spec']['csi'] == {'driver': 'disk.csi.azure.com', 'volumeHandle': disk_id, 'fsType': 'ext4'}
    assert pv['spec']['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'] == [
        {'key': 'topology.kubernetes.io/zone', 'operator': 'In', 'values': ['westeurope-1']}]
    assert pv['spec']['claimRef'] == {'namespace': 'shop', 'name': pvc_name}
    assert '/api/v1/namespaces/shop/persistentvolumeclaims/%s' % pvc_name in snaps.cluster.objects

    removed = snaps.cleanup(ref)
    assert removed[2:] == ['disk ferry-s1-shop-db-data-ro', 'snapshot ferry-s1-shop-db-data'] and len(removed) == 4
    assert snaps.cluster.objects == {}
    assert arm.get(disk_id) is None and arm.get(snapshot_id) is None and arm.get(source) is not None
    for request in arm.server.requests:  # the fake answers 401/400 otherwise; check the client anyway
        assert request['headers']['authorization'] == 'Bearer ' + TOKEN
        assert parse_qs(urlsplit(request['path']).query)['api-version'] == [API]


def test_lowercase_resourcegroups_in_tree_handle(arm):
    source = arm.add_disk('legacy-disk')
    handle = source.replace('resourceGroups', 'resourcegroups').replace('Microsoft.Compute', 'microsoft.compute')
    vol = azure_volume(handle, in_tree=True)
    assert disk_id_parts(vol) == (SUB, RG, 'legacy-disk')
    snaps = provider(arm)
    ref = snaps.take(vol)
    assert ref['source_disk'] == source and arm.get(ref['snapshot'])['properties']['creationData']['sourceResourceId'] == source
    snaps.wait_ready(ref, 30)
    name = snaps.expose(ref, vol)
    assert snaps.cluster.objects['/api/v1/persistentvolumes/%s' % name]['spec']['csi']['fsType'] == 'xfs'  # the in-tree PV's


@pytest.mark.parametrize('handle', ['pvc-5f1c8a2e', 'https://acct.blob.core.windows.net/vhds/pvc-1.vhd',
                                    '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/x', None])
def test_a_handle_that_is_no_managed_disk_id_is_refused(arm, handle):
    pv_spec = {'csi': {'driver': 'disk.csi.azure.com', 'volumeHandle': handle}, 'capacity': {'storage': '1Gi'}}
    vol = Volume({'metadata': {'name': 'db-data', 'namespace': 'shop'}, 'spec': {'resources': {'requests': {'storage': '1Gi'}}}}, {'spec': pv_spec})
    with pytest.raises(FerryError, match=r'volume shop/db-data: its PV names no Azure managed disk'):
        provider(arm).take(vol)
    assert arm.server.requests == []


def test_regional_disk_is_exposed_without_zone(arm):
    source = arm.add_disk('zrs-disk', zones=(), sku='Premium_ZRS')
    snaps = provider(arm)
    vol = azure_volume(source, zone=LOCATION + '-2')  # a ZRS disk has no zone, whatever the PV says
    ref = snaps.take(vol)
    assert ref['zone'] is None
    snaps.wait_ready(ref, 30)
    name = snaps.expose(ref, vol)
    assert 'zones' not in arm.get(ref['disk']) and arm.get(ref['disk'])['sku']['name'] == 'Premium_ZRS'
    assert 'nodeAffinity' not in snaps.cluster.objects['/api/v1/persistentvolumes/%s' % name]['spec']


def test_failed_snapshot(arm):
    arm.snapshot_states = [('Creating', 0.0), ('Failed', 10.0)]
    snaps = provider(arm)
    ref = snaps.take(azure_volume(arm.add_disk('d1')))
    with pytest.raises(FerryError, match=r'Azure snapshot ferry-s1-shop-db-data failed in Azure \(provisioningState Failed\)'):
        snaps.wait_ready(ref, 30)


def test_snapshot_timeout_names_snapshot_and_seconds(arm):
    arm.snapshot_states = [('Succeeded', 42.0)]  # copying in the background, never finishing
    snaps = provider(arm)
    ref = snaps.take(azure_volume(arm.add_disk('d1')))
    with pytest.raises(FerryError) as info:
        snaps.wait_ready(ref, 0.05)
    assert str(info.value) == 'Azure snapshot ferry-s1-shop-db-data is not ready after 0.05s (provisioningState Succeeded, 42.0% copied)'


def test_arm_error_reaches_ferry_error_without_token(arm):
    snaps = provider(arm)
    with pytest.raises(FerryError) as info:
        snaps.take(azure_volume(arm_id('disks', 'gone-disk')))
    message = str(info.value)
    assert message.startswith('cannot read Azure disk gone-disk (resource group %s) of shop/db-data: Azure Resource Manager answered HTTP 404 '
                              "ResourceNotFound: The Resource 'Microsoft.Compute/disks/gone-disk' under resource group '%s' was not found." % (RG, RG))
    assert info.value.details == {'status': 404, 'code': 'ResourceNotFound'}
    assert TOKEN not in message and 'Bearer' not in message


def test_rejected_token_is_reported_without_it(arm):
    wrong = 'eyJ-expired-token-value'
    snaps = provider(arm, credential=FakeCredential(token=wrong))
    with pytest.raises(FerryError, match='HTTP 401 AuthenticationFailed: Authentication failed') as info:
        snaps.take(azure_volume(arm.add_disk('d1')))
    assert wrong not in str(info.value) and 'Bearer' not in str(info.value)


def test_token_is_cached_until_it_nearly_expires(arm):
    source = arm.add_disk('d1')
    lasting = FakeCredential()
    provider(arm, credential=lasting).take(azure_volume(source))
    assert lasting.scopes == [(arm.server.url + '/.default',)]  # three calls, one token, for the ARM endpoint's audience
    expiring = FakeCredential(lifetime=60)  # inside the renewal margin: a new token per call
    provider(arm, 's2', credential=expiring).take(azure_volume(source))
    assert len(expiring.scopes) == 3


def test_cleanup_of_deleted_resources_is_quiet(arm):
    snaps = provider(arm)
    ref = {'mechanism': 'azure-disk', 'namespace': 'shop', 'pvc': 'ferry-s1-db-data-ro', 'pv': 'ferry-s1-db-data-ro',
           'snapshot': arm_id('snapshots', 'ferry-s1-shop-db-data'),  # resource group there, snapshot not: ARM answers 204
           'disk': arm_id('disks', 'ferry-s1-shop-db-data-ro', group='rg-deleted')}  # resource group gone: ARM answers 404
    assert snaps.cleanup(ref) == []
    assert [r['method'] for r in arm.server.requests] == ['DELETE', 'DELETE']


def test_cleanup_waits_for_the_node_to_detach_the_disk(arm):
    snaps = provider(arm)
    vol = azure_volume(arm.add_disk('d1'))
    ref = snaps.take(vol)
    snaps.wait_ready(ref, 30)
    snaps.expose(ref, vol)
    arm.get(ref['disk'])['properties']['diskState'] = 'Attached'  # the agent pod's node still holds it
    arm.detach_after[ref['disk'].lower()] = 2
    assert snaps.cleanup(ref)[2:] == ['disk ferry-s1-shop-db-data-ro', 'snapshot ferry-s1-shop-db-data']
    assert [r['method'] for r in arm.server.requests].count('DELETE') == 4  # two refused, then the disk, then the snapshot


def test_cleanup_reports_a_disk_that_stays_attached(arm, monkeypatch):
    monkeypatch.setattr(azure_disk, 'DETACH_TIMEOUT', 0.01)
    disk = arm.add_disk('ferry-s1-shop-db-data-ro', disk_state='Attached')
    with pytest.raises(FerryError, match='cannot delete temporary Azure disk ferry-s1-shop-db-data-ro: Azure Resource Manager answered HTTP 409 '
                                         'OperationNotAllowed: Disk ferry-s1-shop-db-data-ro is attached to VM'):
        provider(arm).cleanup({'mechanism': 'azure-disk', 'namespace': 'shop', 'disk': disk})


def test_sweep_removes_leftovers_of_dead_syncs_only(arm):
    source = arm.add_disk('app-disk')
    other_subscription_disk = arm_id('disks', 'x', subscription='another-subscription')
    dead = provider(arm, 'dead')
    dead_ref = dead.take(azure_volume(source))
    dead.wait_ready(dead_ref, 30)
    dead.expose(dead_ref, azure_volume(source))
    alive = provider(arm, 'alive', subscription_id=SUB)
    alive_ref = alive.take(azure_volume(source))
    tags = {'ferry.dev-temporary': 'true', 'ferry.dev-sync-id': 'crashed', 'ferry.dev-source-pvc': 'shop/other'}
    attached = arm.add_disk('ferry-crashed-shop-other-ro', disk_state='Attached', tags=tags)
    unattached = arm.add_disk('ferry-crashed-shop-cache-ro', disk_state='Unattached', tags=tags)
    arm.add_disk('unrelated', disk_state='Unattached')  # no Ferry tags
    arm.resources[other_subscription_disk.lower()] = dict(arm.get(unattached), id=other_subscription_disk, name='x')

    removed = alive.sweep(keep_sync_ids={'alive'})
    assert sorted(removed) == sorted(['disk ferry-dead-shop-db-data-ro', 'disk ferry-crashed-shop-cache-ro', 'snapshot ferry-dead-shop-db-data'])
    assert arm.get(alive_ref['snapshot']) is not None and arm.get(attached) is not None and arm.get(source) is not None
    assert arm.get(dead_ref['snapshot']) is None and arm.get(unattached) is None
    assert arm.get(arm_id('disks', 'unrelated')) is not None and arm.get(other_subscription_disk) is not None  # another subscription
    assert any('%24skiptoken=2' in r['path'] for r in arm.server.requests)  # the pages after the first were read


def test_sweep_needs_a_subscription(arm):
    with pytest.raises(FerryError, match='no subscription known'):
        provider(arm).sweep()


def test_next_link_to_another_host_is_not_followed(arm):
    arm.next_link_base = 'https://attacker.example'
    for name in ('a', 'b', 'c'):
        arm.add_disk(name)
    with pytest.raises(FerryError, match='link to attacker.example'):
        provider(arm, subscription_id=SUB).sweep()
    assert len(arm.server.requests) == 1
