# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CSI VolumeSnapshots, and read-only PVCs made from them for agent pods."""

from __future__ import annotations

import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import (
    MANAGED_BY, SOURCE_LABEL, SYNC_LABEL, TEMP_LABEL, temp_name,
)

SNAPSHOT_API = '/apis/snapshot.storage.k8s.io/v1'


def temp_labels(sync_id, volume):
    labels = dict(MANAGED_BY)
    labels.update({TEMP_LABEL: 'true', SYNC_LABEL: sync_id, SOURCE_LABEL: volume.name})
    return labels


class CsiSnapshots:
    mechanism = 'csi-snapshot'

    def __init__(self, cluster, sync_id):
        self.cluster = cluster
        self.sync_id = sync_id

    def take(self, volume, snapshot_class):
        """Create the VolumeSnapshot (the point in time is when the driver cuts it: see ``wait_cut``)."""
        name = temp_name(self.sync_id, volume.name)
        body = {'apiVersion': 'snapshot.storage.k8s.io/v1', 'kind': 'VolumeSnapshot',
                'metadata': {'name': name, 'namespace': volume.namespace, 'labels': temp_labels(self.sync_id, volume)},
                'spec': {'volumeSnapshotClassName': snapshot_class, 'source': {'persistentVolumeClaimName': volume.name}}}
        path = '%s/namespaces/%s/volumesnapshots' % (SNAPSHOT_API, volume.namespace)
        try:
            self.cluster.request('POST', path, body=body)
        except ApiError as exc:
            if exc.status != 409:  # already taken by an interrupted run of this sync: reuse it
                raise
        return {'mechanism': self.mechanism, 'namespace': volume.namespace, 'snapshot': name}

    def _get(self, ref):
        return self.cluster.get('%s/namespaces/%s/volumesnapshots/%s' % (SNAPSHOT_API, ref['namespace'], ref['snapshot']))

    def _wait(self, ref, done, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            status = self._get(ref).get('status') or {}
            error = status.get('error')
            if error:
                raise FerryError('VolumeSnapshot %s/%s failed: %s' % (ref['namespace'], ref['snapshot'], error.get('message') or error))
            if done(status):
                return status
            if time.monotonic() > deadline:
                raise FerryError('VolumeSnapshot %s/%s is not %s after %ss: check the CSI driver and the snapshot controller '
                                 '(kubectl describe volumesnapshot -n %s %s)' % (ref['namespace'], ref['snapshot'], what, timeout,
                                                                                 ref['namespace'], ref['snapshot']))
            time.sleep(0.2)

    def wait_cut(self, ref, timeout):
        """Wait until the driver has cut the snapshot (creationTime set): post-hooks may then run."""
        status = self._wait(ref, lambda s: s.get('creationTime') or s.get('readyToUse'), timeout, 'cut')
        ref['creation_time'] = status.get('creationTime')

    def wait_ready(self, ref, timeout):
        status = self._wait(ref, lambda s: s.get('readyToUse'), timeout, 'ready to use')
        ref['restore_size'] = status.get('restoreSize')
        ref['content'] = status.get('boundVolumeSnapshotContentName')

    def expose(self, ref, volume):
        """A PVC restored from the snapshot, in the app's namespace (snapshots cannot cross namespaces)."""
        name = temp_name(self.sync_id, volume.name, 'ro')
        size = ref.get('restore_size') or ((volume.pvc.get('status') or {}).get('capacity') or {}).get('storage') or \
            volume.pvc['spec']['resources']['requests']['storage']
        body = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
                'metadata': {'name': name, 'namespace': volume.namespace, 'labels': temp_labels(self.sync_id, volume)},
                'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': volume.storage_class, 'volumeMode': volume.volume_mode,
                         'resources': {'requests': {'storage': size}},
                         'dataSource': {'apiGroup': 'snapshot.storage.k8s.io', 'kind': 'VolumeSnapshot', 'name': ref['snapshot']}}}
        try:
            self.cluster.request('POST', '/api/v1/namespaces/%s/persistentvolumeclaims' % volume.namespace, body=body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        ref['pvc'] = name
        return name

    def cleanup(self, ref):
        """Delete the exposed PVC and the snapshot; already gone is fine."""
        removed = []
        if ref.get('pvc'):
            removed += delete_path(self.cluster, '/api/v1/namespaces/%s/persistentvolumeclaims/%s' % (ref['namespace'], ref['pvc']))
        removed += delete_path(self.cluster, '%s/namespaces/%s/volumesnapshots/%s' % (SNAPSHOT_API, ref['namespace'], ref['snapshot']))
        return removed


def delete_path(cluster, path):
    try:
        cluster.request('DELETE', path)
        return [path]
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise


def sweep(cluster, namespaces, keep_sync_ids=()):
    """Delete temporary PVCs and VolumeSnapshots Ferry left behind (a crashed run), except those of running syncs."""
    removed = []
    selector = '%s=true,app.kubernetes.io/managed-by=ferry' % TEMP_LABEL
    for namespace in namespaces:
        for path in ('/api/v1/namespaces/%s/persistentvolumeclaims' % namespace, '%s/namespaces/%s/volumesnapshots' % (SNAPSHOT_API, namespace)):
            try:
                items = cluster.get(path, labelSelector=selector).get('items') or []
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in items:
                if (item['metadata'].get('labels') or {}).get(SYNC_LABEL) in keep_sync_ids:
                    continue
                removed += delete_path(cluster, '%s/%s' % (path, item['metadata']['name']))
    return removed
