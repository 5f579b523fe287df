# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCE Persistent Disk snapshots through the Compute Engine REST API v1, for PD volumes without a CSI snapshot class.

The disk is named by its PV: the PD CSI driver's handle ``projects/P/zones/Z/disks/D`` (or
``projects/P/regions/R/disks/D`` for a regional disk; its project wins over the provider's default
project), or the in-tree ``gcePersistentDisk`` name with the zone from the PV's topology.

API calls (all relative to ``{compute_url}/compute/v1/``):

* take: ``GET projects/P/global/snapshots/S`` (a re-run of the sync reuses its snapshot), else
  ``POST projects/P/global/snapshots`` with ``sourceDisk``, ``labels`` and ``description``;
* wait_cut / wait_ready: ``GET projects/P/global/snapshots/S`` until its ``status`` is ``UPLOADING``
  (the point in time is fixed: GCE has read the disk's blocks as of that moment, post-hooks may run)
  or ``READY``; ``FAILED`` and ``DELETING`` are errors, and while the snapshot is not there yet its
  insert operation (``GET .../operations/O``) says whether it failed;
* expose: ``GET`` the source disk (its ``type``; ``replicaZones`` of a regional disk), ``POST
  projects/P/zones/Z/disks`` (or ``regions/R/disks`` with the same replica zones) with
  ``sourceSnapshot``, ``GET`` it until ``READY``, then a static PV for the PD CSI driver pinned to
  the zone and a PVC bound to it (static_claim.py). A regional disk is restored as a regional disk;
  its PV is pinned to one replica zone (the source PV's zone when it is one of them);
* cleanup: the PVC and PV, then ``DELETE`` the restored disk and the snapshot (waiting for each
  delete operation; a disk the node is still detaching is retried for a while); what is already gone
  is skipped;
* sweep: ``GET projects/P/global/snapshots`` and ``GET projects/P/aggregated/disks`` filtered on the
  label ``ferry-temporary=true`` (following ``nextPageToken``), deleting those of other syncs and
  leaving disks that are attached to an instance. Sweep covers the default project only.

Every resource made carries the labels ``ferry-temporary``, ``ferry-sync-id`` and ``ferry-source-pvc``
(sanitised: GCE labels allow only lowercase letters, digits, ``_`` and ``-``). Answers other than
2xx become FerryErrors with the HTTP status and Google's message; no header or token is ever quoted.
"""

from __future__ import annotations

import hashlib
import re
import time

try:
    import requests
except ImportError:  # pragma: no cover - the session given (requests-based) needs it anyway; guarded for ansible-test's import check
    requests = None

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.static_claim import expose_disk, remove_claim
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import temp_name

COMPUTE_URL = 'https://compute.googleapis.com'  # the public cloud's; the gcp option's compute_url may name another
CSI_DRIVER = 'pd.csi.storage.gke.io'
IN_TREE_DRIVER = 'kubernetes.io/gce-pd'
TEMP_LABEL = 'ferry-temporary'
SYNC_LABEL = 'ferry-sync-id'
SOURCE_LABEL = 'ferry-source-pvc'
LABEL_FILTER = 'labels.%s="true"' % TEMP_LABEL

HTTP_TIMEOUT = 60  # seconds per API call
POLL_SECONDS = 2  # between status polls (tests make it small)
OPERATION_SECONDS = 300  # for a delete operation to finish
DISK_READY_SECONDS = 900  # for a disk restored from a snapshot to be READY
DETACH_SECONDS = 180  # for a node to detach a restored disk after its PV is gone

NAME_RE = re.compile(r'[a-z]([-a-z0-9]*[a-z0-9])?')
_HANDLE_RE = re.compile(r'(?:^|/)projects/([^/]+)/(zones|regions)/([^/]+)/disks/([^/]+)$')
_IN_USE = ('resourceInUseByAnotherResource', 'RESOURCE_IN_USE_BY_ANOTHER_RESOURCE')


def label_value(text):
    """``text`` as a GCE label value: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    value = re.sub(r'[^a-z0-9_-]', '-', str(text).lower())
    if len(value) <= 63:
        return value
    # keep long values unique (sweep compares sync IDs through this same function)
    return '%s-%s' % (value[:54], hashlib.sha256(value.encode()).hexdigest()[:8])


def disk_location(volume, default_project):
    """(project, 'zones' or 'regions', zone or region, disk name) of a GCE PD volume."""
    handle = volume.handle or ''
    if volume.driver not in (CSI_DRIVER, IN_TREE_DRIVER):
        raise FerryError('volume %s: driver %s does not make GCE persistent disks' % (volume.key, volume.driver))
    match = _HANDLE_RE.search(handle)
    if match:
        return match.group(1), match.group(2), match.group(3), match.group(4)
    if not handle or '/' in handle:
        raise FerryError('volume %s: cannot tell its GCE disk from the PV handle %r (expected projects/P/zones/Z/disks/NAME)' % (volume.key, handle))
    if not volume.zone:
        raise FerryError('volume %s: the PV names GCE disk %s but no zone (no topology label or node affinity)' % (volume.key, handle))
    if not default_project:
        raise FerryError('volume %s: the PV names GCE disk %s without its project; give the GCP project' % (volume.key, handle))
    if '__' in volume.zone:  # in-tree regional disks are labelled with both zones: europe-west1-b__europe-west1-c
        return default_project, 'regions', volume.zone.split('__')[0].rsplit('-', 1)[0], handle
    return default_project, 'zones', volume.zone, handle


def _relative(link):
    """``projects/...`` from a selfLink (whatever host it names) or a path already relative."""
    return link.split('/compute/v1/', 1)[-1]


def _operation_error(operation):
    """(code, message) of a failed Compute operation, or None."""
    errors = ((operation or {}).get('error') or {}).get('errors') or []
    if not errors:
        return None
    return errors[0].get('code'), '; '.join(e.get('message') or e.get('code') or 'unknown error' for e in errors)


class GcePdSnapshots:
    mechanism = 'gce-pd'

    def __init__(self, cluster, sync_id, session, project, compute_url=COMPUTE_URL):
        self.cluster = cluster
        self.sync_id = sync_id
        self.session = session  # authenticates its requests (google.auth AuthorizedSession in production)
        self.project = project
        self.compute_url = compute_url.rstrip('/')

    def _labels(self, volume):
        return {TEMP_LABEL: 'true', SYNC_LABEL: label_value(self.sync_id), SOURCE_LABEL: label_value('%s-%s' % (volume.namespace, volume.name))}

    def _call(self, method, path, doing, body=None, params=None, accept=()):
        """(HTTP status, JSON answer) of one API call; statuses other than 2xx and ``accept`` raise FerryError."""
        url = '%s/compute/v1/%s' % (self.compute_url, _relative(path))
        try:
            response = self.session.request(method, url, json=body, params=params, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise FerryError('cannot %s: %s' % (doing, exc)) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if 200 <= response.status_code < 300 or response.status_code in accept:
            return response.status_code, payload
        error = payload.get('error') if isinstance(payload.get('error'), dict) else {}
        reason = next((e.get('reason') for e in error.get('errors') or [] if isinstance(e, dict) and e.get('reason')), None)
        # Google's message only: the request (and so its Authorization header) is never quoted
        message = error.get('message') or response.reason or 'no error message'
        raise FerryError('cannot %s: HTTP %s: %s' % (doing, response.status_code, message), status=response.status_code, reason=reason)

    def _check_operation(self, operation, doing):
        failed = _operation_error(operation)
        if failed:
            raise FerryError('cannot %s: %s' % (doing, failed[1]), reason=failed[0])

    def _finish(self, operation, doing, timeout):
        """Wait for a Compute operation to be DONE; raise its error."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_operation(operation, doing)
            if operation.get('status') == 'DONE' or not operation.get('selfLink'):
                return operation
            if time.monotonic() >= deadline:
                raise FerryError('cannot %s: operation %s not done after %ss' % (doing, operation.get('name'), timeout))
            time.sleep(POLL_SECONDS)
            operation = self._call('GET', operation['selfLink'], doing)[1]

    def _wait(self, path, what, wanted, timeout, operation=None):
        """GET ``path`` until its status is one of ``wanted``; the resource."""
        doing = 'read %s' % what
        deadline = time.monotonic() + timeout
        state = 'absent'
        while True:
            status, found = self._call('GET', path, doing, accept=(404,))
            if status == 404:
                # not there yet right after its insert, or the insert failed: the operation says which
                if not operation:
                    raise FerryError('%s does not exist (deleted outside Ferry?)' % what)
                op = self._call('GET', operation, 'read the operation creating %s' % what)[1]
                self._check_operation(op, 'create %s' % what)
                if op.get('status') == 'DONE':
                    raise FerryError('%s does not exist although its creation finished (deleted outside Ferry?)' % what)
            else:
                state = found.get('status')
                if state in wanted:
                    return found
                if state in ('FAILED', 'DELETING'):
                    detail = ''
                    if operation:
                        failed = _operation_error(self._call('GET', operation, 'read the operation creating %s' % what)[1])
                        detail = ': %s' % failed[1] if failed else ''
                    raise FerryError('%s is %s%s' % (what, state, detail))
            if time.monotonic() >= deadline:
                raise FerryError('%s is still %s after %ss (waiting for %s); a large disk takes longer: raise the timeout'
                                 % (what, state, timeout, ' or '.join(wanted)))
            time.sleep(POLL_SECONDS)

    def _delete(self, kind, path, name, in_use_seconds=0):
        """DELETE a disk or snapshot and wait for its operation; False when it was already gone."""
        doing = 'delete temporary GCE %s %s' % (kind, name)
        deadline = time.monotonic() + in_use_seconds
        while True:
            try:
                status, operation = self._call('DELETE', path, doing, accept=(404,))
                if status == 404:
                    return False
                self._finish(operation, doing, OPERATION_SECONDS)
                return True
            except FerryError as exc:
                # the node may still be detaching a disk whose PV was just deleted
                if exc.details.get('reason') not in _IN_USE or time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_SECONDS)

    def take(self, volume, _snapshot_class=None):
        """Start the snapshot of the volume's disk (the point in time is fixed later: see ``wait_cut``)."""
        project, scope, location, disk = disk_location(volume, self.project)
        source = 'projects/%s/%s/%s/disks/%s' % (project, scope, location, disk)
        name = temp_name(self.sync_id, volume.namespace, volume.name)
        if not NAME_RE.fullmatch(name):
            raise FerryError('volume %s: %r is not a valid GCE snapshot name' % (volume.key, name))
        ref = {'mechanism': self.mechanism, 'namespace': volume.namespace, 'snapshot': name, 'project': project, 'source_disk': source,
               ('zone' if scope == 'zones' else 'region'): location}
        path = 'projects/%s/global/snapshots' % project
        doing = 'snapshot GCE disk %s of %s' % (source, volume.key)
        if self._call('GET', '%s/%s' % (path, name), doing, accept=(404,))[0] == 404:
            body = {'name': name, 'sourceDisk': source, 'labels': self._labels(volume),
                    'description': 'Ferry sync %s of %s (temporary)' % (self.sync_id, volume.key)}
            status, operation = self._call('POST', path, doing, body=body, accept=(409,))
            if status != 409:  # 409: an interrupted run of this sync took it already
                self._check_operation(operation, doing)
                if operation.get('selfLink'):
                    ref['operation'] = _relative(operation['selfLink'])
        return ref

    def _snapshot_path(self, ref):
        return 'projects/%s/global/snapshots/%s' % (ref['project'], ref['snapshot'])

    def wait_cut(self, ref, timeout):
        """Wait until GCE has fixed the point in time (UPLOADING): post-hooks may then run."""
        snap = self._wait(self._snapshot_path(ref), 'GCE snapshot %s' % ref['snapshot'], ('UPLOADING', 'READY'), timeout, ref.get('operation'))
        ref['creation_time'] = snap.get('creationTimestamp')

    def wait_ready(self, ref, timeout):
        snap = self._wait(self._snapshot_path(ref), 'GCE snapshot %s' % ref['snapshot'], ('READY',), timeout, ref.get('operation'))
        ref['creation_time'] = ref.get('creation_time') or snap.get('creationTimestamp')

    def expose(self, ref, volume):
        """Restore the snapshot as a new disk next to the source disk; its PV and PVC; the PVC's name."""
        project = ref['project']
        name = temp_name(self.sync_id, volume.namespace, volume.name, 'disk')
        status, source = self._call('GET', ref['source_disk'], 'read GCE disk %s' % ref['source_disk'], accept=(404,))
        source = source if status != 404 else {}
        body = {'name': name, 'sourceSnapshot': 'projects/%s/global/snapshots/%s' % (project, ref['snapshot']), 'labels': self._labels(volume),
                'description': 'Ferry sync %s: snapshot of %s for reading (temporary)' % (self.sync_id, volume.key)}
        if source.get('type'):  # same type: some machine types attach only hyperdisks, say
            body['type'] = source['type']
        if ref.get('region'):
            zones = [z.rsplit('/', 1)[-1] for z in source.get('replicaZones') or []]
            if not zones:
                raise FerryError('cannot restore GCE snapshot %s as a regional disk: source disk %s (gone?) lists no replica zones'
                                 % (ref['snapshot'], ref['source_disk']))
            body['replicaZones'] = source['replicaZones']
            location = 'regions/%s' % ref['region']
            zone = volume.zone if volume.zone in zones else zones[0]
        else:
            location = 'zones/%s' % ref['zone']
            zone = ref['zone']
        path = 'projects/%s/%s/disks' % (project, location)
        doing = 'create GCE disk %s from snapshot %s' % (name, ref['snapshot'])
        ref['disk'], ref['disk_path'] = name, '%s/%s' % (path, name)  # recorded first: a failure below still cleans it up
        status, operation = self._call('POST', path, doing, body=body, accept=(409,))
        if status == 409:  # made by an interrupted run of this sync
            operation = {}
        self._check_operation(operation, doing)
        self._wait(ref['disk_path'], 'GCE disk %s' % name, ('READY',), DISK_READY_SECONDS,
                   _relative(operation['selfLink']) if operation.get('selfLink') else None)
        return expose_disk(self.cluster, self.sync_id, volume, ref, CSI_DRIVER, ref['disk_path'], zone)

    def cleanup(self, ref):
        """Delete the PVC, the PV, the restored disk and the snapshot; what is already gone is skipped."""
        removed = remove_claim(self.cluster, ref)
        if ref.get('disk') and self._delete('disk', ref['disk_path'], ref['disk'], in_use_seconds=DETACH_SECONDS):
            removed.append('disk %s' % ref['disk'])
        if ref.get('snapshot') and self._delete('snapshot', self._snapshot_path(ref), ref['snapshot']):
            removed.append('snapshot %s' % ref['snapshot'])
        return removed

    def _list(self, path, doing):
        """Every item of a (possibly aggregated) list carrying ``ferry-temporary=true``, across pages."""
        params = {'filter': LABEL_FILTER}
        while True:
            page = self._call('GET', path, doing, params=params)[1]
            items = page.get('items') or []
            if isinstance(items, dict):  # aggregated: {'zones/Z': {'disks': [...]} or {'warning': ...}}
                items = [item for scoped in items.values() for item in scoped.get('disks') or []]
            for item in items:
                if (item.get('labels') or {}).get(TEMP_LABEL) == 'true':  # the filter already did; be sure
                    yield item
            if not page.get('nextPageToken'):
                return
            params = {'filter': LABEL_FILTER, 'pageToken': page['nextPageToken']}

    def sweep(self, keep_sync_ids=()):
        """Delete temporary GCE disks and snapshots of finished or crashed syncs (disks attached to an instance stay)."""
        if not self.project:
            raise FerryError('sweeping temporary GCE disks and snapshots needs the GCP project')
        keep = {label_value(s) for s in keep_sync_ids}
        removed = []
        disks = list(self._list('projects/%s/aggregated/disks' % self.project, 'list temporary GCE disks of project %s' % self.project))
        for disk in disks:
            if disk['labels'].get(SYNC_LABEL) not in keep and not disk.get('users'):
                if self._delete('disk', disk['selfLink'], disk['name']):
                    removed.append('disk %s' % disk['name'])
        snapshots = list(self._list('projects/%s/global/snapshots' % self.project, 'list temporary GCE snapshots of project %s' % self.project))
        for snap in snapshots:
            if snap['labels'].get(SYNC_LABEL) not in keep:
                if self._delete('snapshot', snap['selfLink'], snap['name']):
                    removed.append('snapshot %s' % snap['name'])
        return removed
