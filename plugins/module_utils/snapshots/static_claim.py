# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cloud disk made from a snapshot, given to agent pods as a static PV and the PVC bound to it.

Cloud snapshot APIs (EBS, GCE PD, Azure Disk) restore a snapshot into a new disk outside the
cluster; the cluster learns of it through a PV naming the disk for the cloud's CSI driver, pinned
to the disk's zone, and a PVC bound to that PV in the app's namespace. Clean-up deletes both (the
PV's reclaim policy is Retain: the provider deletes the disk itself).
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import delete_path, temp_labels
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import temp_name

ZONE_KEY = 'topology.kubernetes.io/zone'


def expose_disk(cluster, sync_id, volume, ref, driver, handle, zone):
    """Create the PV of disk ``handle`` (driver ``driver``, the source volume's filesystem) and its PVC; record
    both in ``ref``; return the PVC's name."""
    name = temp_name(sync_id, volume.name, 'ro')
    labels = temp_labels(sync_id, volume)
    storage = '%dGi' % max(1, -(-volume.size // 2 ** 30))
    source = {'driver': driver, 'volumeHandle': handle, 'fsType': volume.fs_type}
    pv = {'apiVersion': 'v1', 'kind': 'PersistentVolume', 'metadata': {'name': name, 'labels': labels},
          'spec': {'capacity': {'storage': storage}, 'accessModes': ['ReadWriteOnce'], 'persistentVolumeReclaimPolicy': 'Retain',
                   'storageClassName': '', 'volumeMode': volume.volume_mode, 'csi': source,
                   'claimRef': {'namespace': volume.namespace, 'name': name}}}
    if zone:
        pv['spec']['nodeAffinity'] = {'required': {'nodeSelectorTerms': [{'matchExpressions': [
            {'key': ZONE_KEY, 'operator': 'In', 'values': [zone]}]}]}}
    pvc = {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': name, 'namespace': volume.namespace, 'labels': labels},
           'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': '', 'volumeName': name, 'volumeMode': volume.volume_mode,
                    'resources': {'requests': {'storage': storage}}}}
    for path, body in (('/api/v1/persistentvolumes', pv), ('/api/v1/namespaces/%s/persistentvolumeclaims' % volume.namespace, pvc)):
        try:
            cluster.request('POST', path, body=body)
        except ApiError as exc:
            if exc.status != 409:  # made by an interrupted run of this sync
                raise
    ref['pvc'], ref['pv'] = name, name
    return name


def remove_claim(cluster, ref):
    """Delete the PVC and PV ``expose_disk`` made (what is already gone is skipped); the paths deleted."""
    removed = []
    if ref.get('pvc'):
        removed += delete_path(cluster, '/api/v1/namespaces/%s/persistentvolumeclaims/%s' % (ref['namespace'], ref['pvc']))
    if ref.get('pv'):
        removed += delete_path(cluster, '/api/v1/persistentvolumes/%s' % ref['pv'])
    return removed
