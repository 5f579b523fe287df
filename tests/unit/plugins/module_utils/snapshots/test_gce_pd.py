"""GCE PD snapshots against an in-memory Compute Engine API: take, wait, expose as PV+PVC, clean up, sweep.

No GCE emulator exists, so FakeCompute answers the v1 routes the provider uses with the shapes the
real API returns (recorded exchanges): Operation objects for inserts and deletes, snapshots stepping
CREATING -> UPLOADING -> READY and disks CREATING -> READY over successive GETs, Google error bodies,
selfLinks naming www.googleapis.com, label and name validation, filtered and paged lists.
"""

import json
import re
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import gce_pd
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.gce_pd import GcePdSnapshots, disk_location, label_value
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import Volume
from fake_http import ScriptedServer
from recording_cluster import RecordingCluster

TOKEN = 'ya29.a0-test-token-never-to-be-quoted'
PROJECT = 'shop-prod'
REGION = 'europe-west1'
ZONE = REGION + '-b'
ZONE_C = REGION + '-c'
GOOGLE = 'https://www.googleapis.com/compute/v1/'
SOURCE = 'projects/%s/zones/%s/disks/pvc-1234' % (PROJECT, ZONE)
REGIONAL_SOURCE = 'projects/%s/regions/%s/disks/pvc-regional' % (PROJECT, REGION)
NODE = GOOGLE + 'projects/%s/zones/%s/instances/gke-shop-default-pool-1a2b' % (PROJECT, ZONE)
NAME_RE = re.compile(r'[a-z]([-a-z0-9]{0,61}[a-z0-9])?')
LABEL_KEY_RE = re.compile(r'[a-z][a-z0-9_-]{0,62}')
LABEL_VALUE_RE = re.compile(r'[a-z0-9_-]{0,63}')
ROUTE = re.compile(r'/compute/v1/projects/(?P<project>[^/]+)/(?:'
                   r'(?P<global>global/snapshots)(?:/(?P<snapshot>[^/]+))?'
                   r'|(?P<scope>zones|regions)/(?P<location>[^/]+)/disks(?:/(?P<disk>[^/]+))?'
                   r'|(?P<aggregated>aggregated/disks)'
                   r'|(?:global|(?:zones|regions)/[^/]+)/operations/(?P<operation>[^/]+))$')


def google_error(code, message, reason):
    return code, {'error': {'code': code, 'message': message, 'errors': [{'message': message, 'domain': 'global', 'reason': reason}]}}


class FakeCompute:
    """The Compute Engine v1 routes the provider calls, in memory; a ScriptedServer routes callable."""

    page_size = 2  # small, so lists span pages

    def __init__(self):
        self.server = None
        self.snapshots = {}  # 'projects/P/global/snapshots/N' -> resource
        self.disks = {}  # 'projects/P/zones/Z/disks/N' (or regions/R) -> resource
        self.operations = {}  # operation name -> operation
        self.steps = {}  # resource path -> statuses still to show, one per GET
        self.plans = {}  # snapshot name -> {'steps': [...]} and/or {'op_error': {...}, 'absent': True}
        self.hidden_once = set()  # paths whose next GET says 404 (another run inserting at the same time)
        self.in_use_deletes = {}  # disk path -> DELETEs refused as in use before the node lets go
        self.counter = 0

    # -- test set-up --
    def add_disk(self, path, **fields):
        project, scope, location, name = re.fullmatch(r'projects/([^/]+)/(zones|regions)/([^/]+)/disks/([^/]+)', path).groups()
        disk = {'kind': 'compute#disk', 'id': self._id(), 'name': name, 'sizeGb': '10', 'status': 'READY', 'selfLink': GOOGLE + path,
                'creationTimestamp': '2024-04-30T08:00:00.000-07:00', scope[:-1]: GOOGLE + 'projects/%s/%s/%s' % (project, scope, location),
                'type': GOOGLE + 'projects/%s/%s/%s/diskTypes/pd-standard' % (project, scope, location)}
        disk.update(fields)
        self.disks[path] = disk
        return disk

    def add_snapshot(self, project, name, labels=None):
        path = 'projects/%s/global/snapshots/%s' % (project, name)
        self.snapshots[path] = {'kind': 'compute#snapshot', 'id': self._id(), 'name': name, 'status': 'READY', 'labels': labels or {},
                                'selfLink': GOOGLE + path, 'sourceDisk': GOOGLE + SOURCE, 'creationTimestamp': '2024-04-01T00:00:00.000-07:00'}

    # -- the API --
    def __call__(self, method, path, headers, body):
        if headers.get('Authorization') != 'Bearer ' + TOKEN:
            return google_error(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other '
                                'valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
                                'authError')
        # the routes callable gets no query string; the request being answered is the last one recorded (the client is sequential)
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.server.requests[-1]['path']).query).items()}
        body = json.loads(body) if body else {}
        match = ROUTE.fullmatch(path)
        if not match:
            return 404, {'error': {'code': 404, 'message': 'Not Found'}}
        m = match.groupdict()
        if m['operation']:
            return self._get_operation(m['operation'])
        if m['global'] and m['snapshot']:
            return self._snapshot(method, 'projects/%s/global/snapshots/%s' % (m['project'], m['snapshot']))
        if m['global']:
            if method == 'POST':
                return self._insert_snapshot(m['project'], body)
            return self._list(self.snapshots, query, 'compute#snapshotList')
        if m['aggregated']:
            return self._list(self.disks, query, 'compute#diskAggregatedList', aggregated=True)
        base = 'projects/%s/%s/%s/disks' % (m['project'], m['scope'], m['location'])
        if m['disk']:
            return self._disk(method, '%s/%s' % (base, m['disk']))
        return self._insert_disk(m['project'], m['scope'], m['location'], body)

    def _id(self):
        self.counter += 1
        return str(4000000000000000000 + self.counter)

    def _operation(self, op_type, target, scope, error=None):
        name = 'operation-1714575845%03d-61a7b0c1d2e3f-%08x' % (self.counter, self.counter)
        self._id()
        operation = {'kind': 'compute#operation', 'id': self._id(), 'name': name, 'operationType': op_type, 'status': 'RUNNING',
                     'targetLink': GOOGLE + target, 'selfLink': GOOGLE + '%s/operations/%s' % (scope, name), 'progress': 0,
                     'insertTime': '2024-05-01T07:04:05.000-07:00', 'user': 'ferry@shop-prod.iam.gserviceaccount.com'}
        if '/zones/' in scope:
            operation['zone'] = GOOGLE + scope
        self.operations[name] = (operation, error)
        return 200, dict(operation)

    def _get_operation(self, name):
        if name not in self.operations:
            return google_error(404, "The resource 'operations/%s' was not found" % name, 'notFound')
        operation, error = self.operations[name]
        operation.update(status='DONE', progress=100, endTime='2024-05-01T07:04:09.000-07:00')  # done by the next look
        if error:
            operation.update(error={'errors': [error]}, httpErrorStatusCode=403, httpErrorMessage='FORBIDDEN')
        return 200, dict(operation)

    @staticmethod
    def _invalid(body):
        if not (NAME_RE.fullmatch(body.get('name') or '') and len(body['name']) <= 63):
            return google_error(400, "Invalid value for field 'resource.name': '%s'. Must be a match of regex "
                                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'" % body.get('name'), 'invalid')
        for key, value in (body.get('labels') or {}).items():
            if not (LABEL_KEY_RE.fullmatch(key) and LABEL_VALUE_RE.fullmatch(value)):
                return google_error(400, "Invalid value for field 'resource.labels': ''. Label '%s: %s' violates format constraints. "
                                    "The key must start with a lowercase character, can only contain lowercase letters, numeric "
                                    "characters, underscores and dashes." % (key, value), 'invalid')
        return None

    def _step(self, path, resource):
        steps = self.steps.get(path)
        if steps:
            resource['status'] = steps.pop(0) if len(steps) > 1 else steps[0]
        return resource

    def _insert_snapshot(self, project, body):
        invalid = self._invalid(body)
        if invalid:
            return invalid
        path = 'projects/%s/global/snapshots/%s' % (project, body['name'])
        source = gce_pd._relative(body.get('sourceDisk') or '')
        if source not in self.disks:
            return google_error(404, "The resource '%s' was not found" % source, 'notFound')
        if path in self.snapshots:
            return google_error(409, "The resource '%s' already exists" % path, 'alreadyExists')
        plan = self.plans.get(body['name'], {})
        if not plan.get('absent'):  # (an insert that fails later leaves no snapshot, only its operation's error)
            self.snapshots[path] = {'kind': 'compute#snapshot', 'id': self._id(), 'name': body['name'], 'description': body.get('description'),
                                    'status': 'CREATING', 'sourceDisk': GOOGLE + source, 'sourceDiskId': self.disks[source]['id'],
                                    'diskSizeGb': self.disks[source]['sizeGb'], 'storageBytes': '0', 'storageBytesStatus': 'UPDATING',
                                    'labels': body.get('labels') or {}, 'labelFingerprint': 'XhHGr3jAhd8=', 'selfLink': GOOGLE + path,
                                    'creationTimestamp': '2024-05-01T07:04:05.%03d-07:00' % self.counter, 'storageLocations': ['eu']}
            self.steps[path] = list(plan.get('steps') or ['CREATING', 'UPLOADING', 'READY'])
        return self._operation('createSnapshot', path, 'projects/%s/global' % project, plan.get('op_error'))

    def _snapshot(self, method, path):
        if path not in self.snapshots or (method == 'GET' and path in self.hidden_once):
            self.hidden_once.discard(path)
            return google_error(404, "The resource '%s' was not found" % path, 'notFound')
        if method == 'DELETE':
            del self.snapshots[path]
            return self._operation('delete', path, path.split('/snapshots/')[0])
        return 200, dict(self._step(path, self.snapshots[path]))

    def _insert_disk(self, project, scope, location, body):
        invalid = self._invalid(body)
        if invalid:
            return invalid
        path = 'projects/%s/%s/%s/disks/%s' % (project, scope, location, body['name'])
        snapshot = gce_pd._relative(body.get('sourceSnapshot') or '')
        if snapshot not in self.snapshots:
            return google_error(404, "The resource '%s' was not found" % snapshot, 'notFound')
        if self.snapshots[snapshot]['status'] != 'READY':
            return google_error(400, "The resource '%s' is not ready" % snapshot, 'resourceNotReady')
        if scope == 'regions' and len(body.get('replicaZones') or []) != 2:
            return google_error(400, "Invalid value for field 'resource.replicaZones': ''. Regional disks need 2 replica zones.", 'invalid')
        if path in self.disks:
            return google_error(409, "The resource '%s' already exists" % path, 'alreadyExists')
        self.add_disk(path, status='CREATING', sourceSnapshot=GOOGLE + snapshot, sourceSnapshotId=self.snapshots[snapshot]['id'],
                      labels=body.get('labels') or {}, description=body.get('description'), **{k: body[k] for k in ('type', 'replicaZones') if k in body})
        self.steps[path] = ['CREATING', 'READY']
        return self._operation('insert', path, 'projects/%s/%s/%s' % (project, scope, location))

    def _disk(self, method, path):
        if path not in self.disks:
            return google_error(404, "The resource '%s' was not found" % path, 'notFound')
        if method == 'DELETE':
            if self.disks[path].get('users'):
                if self.in_use_deletes.get(path):  # the node lets go after so many refusals
                    self.in_use_deletes[path] -= 1
                    if not self.in_use_deletes[path]:
                        self.disks[path].pop('users')
                return google_error(400, "The disk resource '%s' is already being used by '%s'" % (path, gce_pd._relative(NODE)),
                                    'resourceInUseByAnotherResource')
            del self.disks[path]
            return self._operation('delete', path, path.split('/disks/')[0])
        return 200, dict(self._step(path, self.disks[path]))

    def _list(self, store, query, kind, aggregated=False):
        items = list(store.values())
        if 'filter' in query:
            match = re.fullmatch(r'labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"', query['filter'])
            if not match:
                return google_error(400, "Invalid value for field 'filter': '%s'. Invalid list filter expression." % query['filter'], 'invalid')
            items = [i for i in items if (i.get('labels') or {}).get(match.group(1)) == match.group(2)]
        items.sort(key=lambda i: i['selfLink'])
        start = int(query.get('pageToken') or 0)
        page = {'kind': kind, 'id': 'projects/%s' % PROJECT, 'selfLink': GOOGLE + 'projects/%s/...' % PROJECT}
        chosen = items[start:start + self.page_size]
        if start + self.page_size < len(items):
            page['nextPageToken'] = str(start + self.page_size)
        if aggregated:
            scoped = {'zones/%s' % ZONE_C: {'warning': {'code': 'NO_RESULTS_ON_PAGE', 'message': 'There are no results for scope on this page.'}}}
            for disk in chosen:
                scope = '/'.join(gce_pd._relative(disk['selfLink']).split('/')[2:4])
                scoped.setdefault(scope, {}).setdefault('disks', []).append(disk)
            page['items'] = scoped
        elif chosen:  # (the real API leaves ``items`` out of an empty page)
            page['items'] = chosen
        return 200, page


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
