# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure managed-disk snapshots through the Azure Resource Manager REST API, for Azure disks without a CSI snapshot class.

The source is the managed disk a PV names (``disk.csi.azure.com`` volume handle, or the in-tree
``azureDisk.diskURI``): its ARM id ``/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/disks/D``.
Calls, all with an Azure AD bearer token for ``https://management.azure.com/.default`` and
``api-version`` ``API_VERSION``:

- ``take``: GET the disk (location, sku, zones); GET the sync's snapshot, and if it is not there,
  PUT ``.../snapshots/<name>`` (an incremental copy of the disk, in its resource group and location);
- ``wait_ready``: GET the snapshot until it has Succeeded and copied 100%;
- ``expose``: PUT ``.../disks/<name>``, a new disk copied from the snapshot with the source's sku and
  zone, GET it until it has Succeeded, then a static PV and PVC for it (static_claim.py);
- ``cleanup``: DELETE the disk (retried for a while when ARM answers 409 because the node has not
  detached it yet), then the snapshot; after a 202 GET each until ARM answers 404; what is already
  gone (404, or ARM's 204 for a missing resource) is skipped;
- ``sweep``: GET ``/subscriptions/S/providers/Microsoft.Compute/{disks,snapshots}`` (following
  ``nextLink``, only on ``arm_url``), DELETE the temporary ones of other syncs, except attached disks.

Point in time: Azure fixes a snapshot's content when it accepts the PUT (incremental snapshots copy
that content in the background afterwards), so post-hooks may run as soon as ``take`` returns.

Clean-up deletes the PVC, the PV, the disk made from the snapshot, and the snapshot. Everything
Ferry creates in Azure carries the tags ``ferry.dev-temporary: true``, ``ferry.dev-sync-id`` and
``ferry.dev-source-pvc`` (the Kubernetes label names with ``-`` for ``/``: ARM rejects ``/`` in tag
names), by which ``sweep`` finds the leftovers of crashed syncs.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

try:
    import requests
except ImportError:  # pragma: no cover - a dependency of the collection; guarded for ansible-test's import check
    requests = None

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError, first_line
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.static_claim import expose_disk, remove_claim
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import SOURCE_LABEL, SYNC_LABEL, TEMP_LABEL, temp_name

API_VERSION = '2023-04-02'  # Microsoft.Compute disks and snapshots
ARM_URL = 'https://management.azure.com'  # the public cloud's; the azure option's arm_url may name a sovereign cloud's
DRIVER = 'disk.csi.azure.com'
HTTP_TIMEOUT = 60  # seconds per ARM call
POLL_SECONDS = 2
EXPOSE_TIMEOUT = 600  # seconds for a disk made from a snapshot to be created
DELETE_TIMEOUT = 300  # seconds for an accepted (202) DELETE to finish
DETACH_TIMEOUT = 180  # seconds for a node to detach an exposed disk after its PV is gone
TOKEN_MARGIN = 300  # renew the ARM token this many seconds before it expires

# ARM tag names cannot contain / (nor < > % & \ ?): '/' becomes '-', as in the Azure Disk CSI driver's kubernetes.io-created-for-pvc-name.
TEMP_TAG, SYNC_TAG, SOURCE_TAG = (label.replace('/', '-') for label in (TEMP_LABEL, SYNC_LABEL, SOURCE_LABEL))

_RESOURCE_ID = re.compile(r'/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/(disks|snapshots)/([^/]+)/?',
                          re.IGNORECASE)


def disk_id_parts(volume):
    """(subscription, resource group, disk name) of the managed disk a volume's PV names.

    The CSI handle and the in-tree ``diskURI`` are the disk's ARM id; AKS often writes ``resourcegroups``.
    """
    match = _RESOURCE_ID.fullmatch(volume.handle or '')
    if not match or match.group(3).lower() != 'disks':
        raise FerryError('volume %s: its PV names no Azure managed disk (handle %r is not '
                         '/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/disks/<name>)' % (volume.key, volume.handle))
    return match.group(1), match.group(2), match.group(4)


def resource_id(subscription, group, kind, name):
    """The ARM id of a Microsoft.Compute ``disks`` or ``snapshots`` resource."""
    return '/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s' % (subscription, group, kind, name)


def _id_parts(arm_id):
    match = _RESOURCE_ID.fullmatch(arm_id or '')
    if not match:
        raise FerryError('%r is not the ARM id of an Azure disk or snapshot' % (arm_id,))
    return match.group(1), match.group(2), match.group(3).lower(), match.group(4)


class AzureDiskSnapshots:
    """Snapshots of Azure managed disks, and disks made from them for agent pods.

    ``credential``: an azure-identity credential (``get_token(scope)``). ``sweep`` lists the
    subscription ``subscription_id`` and every subscription of a disk this provider snapshotted.
    """
    mechanism = 'azure-disk'

    def __init__(self, cluster, sync_id, credential, arm_url=ARM_URL, session=None, subscription_id=None):
        if requests is None:
            raise FerryError('Azure disk snapshots need the Python library requests: pip install requests')
        self.cluster = cluster
        self.sync_id = sync_id
        self.credential = credential
        self.arm_url = arm_url.rstrip('/')
        self.session = session if session is not None else requests.Session()
        self.subscription_id = subscription_id
        self._subscriptions = set()
        self._token = None
        self._time_created = {}  # snapshot id -> its timeCreated, for wait_cut without another call

    # -- ARM calls ---------------------------------------------------------------------------------

    def _bearer(self):
        if self._token is None or self._token.expires_on - TOKEN_MARGIN < time.time():
            try:
                # the token's audience is the ARM endpoint itself (sovereign clouds have their own)
                self._token = self.credential.get_token(self.arm_url + '/.default')
            except Exception as exc:  # pylint: disable=broad-except
                raise FerryError('cannot get an Azure AD token for Azure Resource Manager: %s' % first_line(exc)) from None
        return self._token.token

    def _absolute(self, url):
        if url.startswith('/'):
            return self.arm_url + url
        # nextLink and similar come from ARM's answers: never send the token to another host
        if urlsplit(url)[:2] != urlsplit(self.arm_url)[:2]:
            raise FerryError('Azure Resource Manager answered with a link to %s, not to %s: not following it' % (urlsplit(url).netloc, self.arm_url))
        return url

    def _call(self, method, url, what, body=None):
        """(HTTP status, JSON answer) of one ARM call; ``url``: a path with query, or an absolute URL on ``arm_url``."""
        headers = {'Authorization': 'Bearer ' + self._bearer(), 'Accept': 'application/json'}
        try:
            response = self.session.request(method, self._absolute(url), headers=headers, json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise FerryError('cannot %s: no answer from Azure Resource Manager at %s (%s)' % (what, self.arm_url, first_line(exc))) from None
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}

    def _request(self, method, arm_id, what, body=None, missing_ok=False):
        """The answer to ``method`` on resource ``arm_id``; None for a 404 when ``missing_ok``."""
        status, payload = self._call(method, _url(arm_id), what, body)
        if status == 404 and missing_ok:
            return None
        if not 200 <= status < 300:
            raise _arm_error(what, status, payload)
        return payload

    def _list(self, subscription, kind):
        url = _url('/subscriptions/%s/providers/Microsoft.Compute/%s' % (subscription, kind))
        what = 'list the Azure %s of subscription %s' % (kind, subscription)
        while url:
            status, payload = self._call('GET', url, what)
            if not 200 <= status < 300:
                raise _arm_error(what, status, payload)
            yield from payload.get('value') or []
            url = payload.get('nextLink')

    def _wait(self, arm_id, what, timeout, done):
        """GET ``arm_id`` until ``done(properties)``; a Failed provisioning state or the timeout raise."""
        deadline = time.monotonic() + timeout
        while True:
            props = self._request('GET', arm_id, 'read %s' % what).get('properties') or {}
            state = props.get('provisioningState')
            if state == 'Failed':
                raise FerryError('%s failed in Azure (provisioningState Failed)' % what)
            if done(props):
                return props
            if time.monotonic() >= deadline:
                progress = '' if props.get('completionPercent') is None else ', %s%% copied' % props['completionPercent']
                raise FerryError('%s is not ready after %ss (provisioningState %s%s)' % (what, timeout, state, progress))
            time.sleep(POLL_SECONDS)

    def _delete(self, arm_id):
        """Delete a disk or snapshot and wait until it is gone; False when it was gone already."""
        kind, name = _id_parts(arm_id)[2:]
        what = 'delete temporary Azure %s %s' % (kind[:-1], name)
        detached_by = time.monotonic() + DETACH_TIMEOUT
        status, payload = self._call('DELETE', _url(arm_id), what)
        while status == 409 and kind == 'disks' and time.monotonic() < detached_by:
            time.sleep(POLL_SECONDS)  # OperationNotAllowed: still attached, the node detaches it once the pod and PV are gone
            status, payload = self._call('DELETE', _url(arm_id), what)
        if status in (404, 204):  # 204: ARM's answer for a resource that does not exist
            return False
        if status not in (200, 202):
            raise _arm_error(what, status, payload)
        if status == 202:  # accepted: the resource goes away when the operation ends
            deadline = time.monotonic() + DELETE_TIMEOUT
            while self._request('GET', arm_id, 'read Azure %s %s being deleted' % (kind[:-1], name), missing_ok=True) is not None:
                if time.monotonic() >= deadline:
                    raise FerryError('Azure %s %s is still there %ss after its deletion was accepted' % (kind[:-1], name, DELETE_TIMEOUT))
                time.sleep(POLL_SECONDS)
        return True

    # -- provider ----------------------------------------------------------------------------------

    def _tags(self, volume):
        return {TEMP_TAG: 'true', SYNC_TAG: self.sync_id, SOURCE_TAG: volume.key}

    def take(self, volume, _snapshot_class=None):
        subscription, group, disk_name = disk_id_parts(volume)
        source = resource_id(subscription, group, 'disks', disk_name)
        disk = self._request('GET', source, 'read Azure disk %s (resource group %s) of %s' % (disk_name, group, volume.key))
        name = temp_name(self.sync_id, volume.namespace, volume.name)  # also a valid snapshot name: 1-63 of [a-z0-9-]
        snapshot_id = resource_id(subscription, group, 'snapshots', name)
        snapshot = self._request('GET', snapshot_id, 'read Azure snapshot %s' % name, missing_ok=True)
        if snapshot is None:  # else an interrupted run of this sync took it already: reuse it
            body = {'location': disk['location'], 'tags': self._tags(volume),
                    'properties': {'creationData': {'createOption': 'Copy', 'sourceResourceId': source}, 'incremental': True}}
            snapshot = self._request('PUT', snapshot_id, 'snapshot Azure disk %s of %s as %s' % (disk_name, volume.key, name), body)
        self._subscriptions.add(subscription)
        created = (snapshot.get('properties') or {}).get('timeCreated')
        if created:
            self._time_created[snapshot_id] = created
        sku = (disk.get('sku') or {}).get('name')
        return {'mechanism': self.mechanism, 'namespace': volume.namespace, 'snapshot': snapshot_id, 'source_disk': source,
                'location': disk['location'], 'zone': _disk_zone(disk, volume), 'sku': sku}

    def wait_cut(self, ref, timeout):
        # Azure fixes the point in time when it accepts the PUT: post-hooks may run at once.
        ref['creation_time'] = ref.get('creation_time') or _utc(self._time_created.get(ref['snapshot'])) or \
            time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())

    def wait_ready(self, ref, timeout):
        # incremental snapshots copy in the background: completionPercent reaches 100 after Succeeded
        self._wait(ref['snapshot'], 'Azure snapshot %s' % _id_parts(ref['snapshot'])[3], timeout,
                   lambda p: p.get('provisioningState') == 'Succeeded' and float(_or(p.get('completionPercent'), 100)) >= 100)

    def expose(self, ref, volume):
        subscription, group = _id_parts(ref['snapshot'])[:2]
        name = temp_name(self.sync_id, volume.namespace, volume.name, 'ro')
        disk_id = resource_id(subscription, group, 'disks', name)
        if self._request('GET', disk_id, 'read Azure disk %s' % name, missing_ok=True) is None:
            body = {'location': ref['location'], 'tags': self._tags(volume),
                    'properties': {'creationData': {'createOption': 'Copy', 'sourceResourceId': ref['snapshot']}}}
            if ref.get('sku'):
                body['sku'] = {'name': ref['sku']}
            if ref.get('zone'):
                body['zones'] = [ref['zone']]
            self._request('PUT', disk_id, 'create Azure disk %s from snapshot %s' % (name, _id_parts(ref['snapshot'])[3]), body)
        ref['disk'] = disk_id  # recorded before the wait, so clean-up removes it if the wait fails
        self._wait(disk_id, 'Azure disk %s' % name, EXPOSE_TIMEOUT, lambda p: p.get('provisioningState') == 'Succeeded')
        # AKS nodes carry topology.kubernetes.io/zone=<location>-<zone>; a regional disk attaches in any zone
        zone = '%s-%s' % (ref['location'], ref['zone']) if ref.get('zone') else None
        return expose_disk(self.cluster, self.sync_id, volume, ref, DRIVER, disk_id, zone)

    def cleanup(self, ref):
        removed = remove_claim(self.cluster, ref)
        for key in ('disk', 'snapshot'):  # the disk first: it was copied from the snapshot
            if ref.get(key) and self._delete(ref[key]):
                removed.append('%s %s' % (key, _id_parts(ref[key])[3]))
        return removed

    def sweep(self, keep_sync_ids=()):
        """Delete the temporary disks and snapshots of finished or crashed syncs, except disks still attached to a VM."""
        subscriptions = sorted(self._subscriptions | ({self.subscription_id} if self.subscription_id else set()))
        if not subscriptions:
            raise FerryError('cannot sweep Azure disk snapshots: no subscription known (give subscription_id)')
        removed = []
        for subscription in subscriptions:
            for kind in ('disks', 'snapshots'):
                for item in list(self._list(subscription, kind)):
                    if _tag(item, TEMP_TAG) != 'true' or _tag(item, SYNC_TAG) in keep_sync_ids:
                        continue
                    if kind == 'disks' and (item.get('properties') or {}).get('diskState') != 'Unattached':
                        continue  # in use by an agent pod still running, or being detached: a later sweep gets it
                    if self._delete(item['id']):
                        removed.append('%s %s' % (kind[:-1], item['name']))
        return removed


def _url(path):
    return '%s?api-version=%s' % (quote(path, safe='/'), API_VERSION)


def _arm_error(what, status, payload):
    error = payload.get('error') if isinstance(payload.get('error'), dict) else {}
    code, message = error.get('code') or 'no error code', error.get('message') or 'no message'
    return FerryError('cannot %s: Azure Resource Manager answered HTTP %s %s: %s' % (what, status, code, message), status=status, code=code)


def _disk_zone(disk, volume):
    """The availability zone number ('1') of a zonal disk; None for a regional one."""
    if disk.get('zones'):
        return str(disk['zones'][0])
    # ARM lists zones for every zonal disk; the PV's <location>-<n> is a fallback. ZRS disks have no zone.
    if str((disk.get('sku') or {}).get('name', '')).upper().endswith('_ZRS'):
        return None
    match = re.fullmatch(r'%s-(\d+)' % re.escape(disk.get('location') or ''), volume.zone or '', re.IGNORECASE)
    return match.group(1) if match else None


def _tag(resource, name):
    # ARM tag names are case-insensitive
    return next((value for key, value in (resource.get('tags') or {}).items() if key.lower() == name.lower()), None)


def _utc(timestamp):
    """ARM's ``2024-05-02T10:11:12.1234567+00:00`` as ``2024-05-02T10:11:12Z``; None if absent or unreadable."""
    try:
        moment = datetime.fromisoformat(timestamp) if timestamp else None
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # ARM writes an offset; without one, it is UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _or(value, default):
    return default if value is None else value
