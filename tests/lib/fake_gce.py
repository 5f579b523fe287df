"""An in-memory Compute Engine v1 API (the routes Ferry's GCE PD snapshot provider calls), for ScriptedServer.

No GCE emulator exists, so FakeCompute answers with the shapes the real API returns (recorded
exchanges): Operation objects for inserts and deletes, snapshots stepping CREATING -> UPLOADING ->
READY and disks CREATING -> READY over successive GETs, Google error bodies, selfLinks naming
www.googleapis.com, label and name validation, filtered and paged lists.
"""

import json
import re
from urllib.parse import parse_qs, urlsplit

from ansible_collections.ferry.kube.plugins.module_utils.snapshots import gce_pd

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
