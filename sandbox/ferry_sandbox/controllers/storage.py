"""Storage: default classes and CSI drivers, PVC provisioning (a directory per PV), binding, reclaim,
and a CSI snapshot controller (a point-in-time copy of the PV directory per snapshot).

Where the state directory is on btrfs, volumes are subvolumes and a snapshot or a claim restored from
one is a subvolume snapshot: made in constant time and sharing every extent, as a copy-on-write CSI
driver's (LVM thin, Ceph RBD, EBS) are. Elsewhere each is a copy of the directory (``cp -a``, with
reflinks where the file system has them), which costs time in proportion to the files.
"""

import copy
import ctypes
import ctypes.util
import functools
import os
import shutil
import struct
import subprocess
import threading

from ..errors import ApiError
from ..store import now_iso
from .manager import record_event

SNAPSHOT_DRIVER = 'csi.sandbox.ferry.dev'
PROVISIONERS = {SNAPSHOT_DRIVER, 'nosnap.sandbox.ferry.dev', 'ebs.csi.aws.com', 'pd.csi.storage.gke.io'}
SNAPSHOT_GROUP = 'snapshot.storage.k8s.io'


def install_defaults(cluster):
    classes = [('standard', SNAPSHOT_DRIVER, True), ('nosnap', 'nosnap.sandbox.ferry.dev', False),
               ('gp3', 'ebs.csi.aws.com', False), ('pd-ssd', 'pd.csi.storage.gke.io', False)]
    for name, provisioner, default in classes:
        annotations = {'storageclass.kubernetes.io/is-default-class': 'true'} if default else {}
        _ensure(cluster, 'storage.k8s.io', 'storageclasses', {'metadata': {'name': name, 'annotations': annotations}, 'provisioner': provisioner,
                                                              'reclaimPolicy': 'Delete', 'volumeBindingMode': 'Immediate', 'allowVolumeExpansion': True})
        _ensure(cluster, 'storage.k8s.io', 'csidrivers', {'metadata': {'name': provisioner},
                                                          'spec': {'attachRequired': False, 'podInfoOnMount': False, 'volumeLifecycleModes': ['Persistent']}})
    if any(t.group == SNAPSHOT_GROUP for t in cluster.store.types()):
        _ensure(cluster, SNAPSHOT_GROUP, 'volumesnapshotclasses', {'metadata': {'name': 'standard-snapclass'}, 'driver': SNAPSHOT_DRIVER,
                                                                  'deletionPolicy': 'Delete'})


def _ensure(cluster, group, resource, obj):
    try:
        cluster.store.create(group, resource, obj)
    except ApiError as exc:
        if exc.code != 409:
            raise


def volume_dir(cluster, pv_name):
    return os.path.join(cluster.state_dir, 'volumes', pv_name)


def snapshot_dir(cluster, content_name):
    return os.path.join(cluster.state_dir, 'snapshots', content_name)


BTRFS_MAGIC = 0x9123683E  # statfs(2) f_type of btrfs
SUBVOLUME_INODE = 256  # the root directory of every btrfs subvolume has this inode number


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


@functools.lru_cache(maxsize=64)
def subvolumes_in(directory):
    """True where new volumes in ``directory`` can be btrfs subvolumes (btrfs, and its tool installed)."""
    if not shutil.which('btrfs'):
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs begins with its f_type (a long)
    if _libc().statfs(os.fsencode(directory), buf) != 0:
        return False
    return struct.unpack_from('l', buf.raw)[0] == BTRFS_MAGIC


def is_subvolume(path):
    try:
        return os.lstat(path).st_ino == SUBVOLUME_INODE and subvolumes_in(os.path.dirname(path))
    except OSError:
        return False


def _btrfs(*args, check=True):
    """``btrfs subvolume ARGS``; without ``check``, whether it succeeded."""
    return subprocess.run(['btrfs', '-q', 'subvolume'] + list(args), check=check, stdout=subprocess.DEVNULL,
                          stderr=None if check else subprocess.DEVNULL).returncode == 0


def make_volume(path):
    """An empty volume at ``path`` (kept if there is one): a subvolume on btrfs, else a directory."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if subvolumes_in(parent):
        _btrfs('create', path)
    else:
        os.makedirs(path)


def copy_tree(source, target):
    """A real, independent copy: later writes to the source must not show.

    A subvolume snapshot where ``source`` is a subvolume and nothing is at ``target`` yet, else
    ``cp -a`` (reflinks where the filesystem has them).
    """
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target) and is_subvolume(source):
        _btrfs('snapshot', source, target)
        return
    os.makedirs(target, exist_ok=True)
    if os.listdir(source):
        subprocess.run(['cp', '-a', '--reflink=auto', source + '/.', target], check=True)


def _reclaim(trash):
    if is_subvolume(trash) and _btrfs('delete', trash, check=False):
        return
    subprocess.run(['rm', '-rf', trash], check=False)  # also a subvolume still mounted in a pod's namespace


def discard_tree(path):
    """Remove a deleted volume's or snapshot's directory after the DELETE call has returned.

    A CSI driver reclaims storage asynchronously; removing thousands of files inside the API call
    made every client wait for it. The directory is renamed out of the way at once (its name is
    free again) and removed (``btrfs subvolume delete`` or ``rm``) in a process of its own, off the
    API server's interpreter.
    """
    if not os.path.lexists(path):
        return
    trash = os.path.join(os.path.dirname(path), '.deleting-%s' % os.path.basename(path))
    try:
        os.rename(path, trash)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    threading.Thread(target=_reclaim, args=(trash,), name='discard', daemon=True).start()


def _storage_class(cluster, name):
    if name == '':
        return None
    if name is None:
        return next((sc for sc in cluster.store.list_refs('storage.k8s.io', 'storageclasses')
                     if (sc['metadata'].get('annotations') or {}).get('storageclass.kubernetes.io/is-default-class') == 'true'), None)
    return cluster.store.get_ref('storage.k8s.io', 'storageclasses', None, name)


def _pod_uses(cluster, namespace, claim):
    for pod in cluster.store.list_refs('', 'pods', namespace):
        for volume in (pod.get('spec') or {}).get('volumes') or []:
            if (volume.get('persistentVolumeClaim') or {}).get('claimName') == claim:
                return True
    return False


def _bind(cluster, pvc, pv):
    pv = copy.deepcopy(pv)
    pv['spec']['claimRef'] = {'kind': 'PersistentVolumeClaim', 'namespace': pvc['metadata']['namespace'], 'name': pvc['metadata']['name'],
                              'uid': pvc['metadata']['uid'], 'apiVersion': 'v1'}
    pv = cluster.store.update('', 'persistentvolumes', pv)
    cluster.store.patch_status('', 'persistentvolumes', None, pv['metadata']['name'], {'phase': 'Bound'})
    claim = copy.deepcopy(pvc)
    claim['spec']['volumeName'] = pv['metadata']['name']
    claim['metadata'].setdefault('annotations', {})['pv.kubernetes.io/bind-completed'] = 'yes'
    claim = cluster.store.update('', 'persistentvolumeclaims', claim)
    cluster.store.patch_status('', 'persistentvolumeclaims', pvc['metadata']['namespace'], pvc['metadata']['name'],
                               {'phase': 'Bound', 'accessModes': pv['spec'].get('accessModes') or pvc['spec']['accessModes'],
                                'capacity': pv['spec'].get('capacity') or {}})


def reconcile_pvc(cluster, pvc, key):
    if pvc is None or pvc['metadata'].get('deletionTimestamp'):
        return
    if (pvc.get('status') or {}).get('phase') == 'Bound':
        return
    namespace, name = key
    spec = pvc['spec']
    if spec.get('volumeName'):  # statically bound
        pv = cluster.store.get_ref('', 'persistentvolumes', None, spec['volumeName'])
        if pv is not None and (not pv['spec'].get('claimRef') or pv['spec']['claimRef'].get('name') == name):
            _bind(cluster, pvc, pv)
        return
    for pv in cluster.store.list_refs('', 'persistentvolumes'):  # a PV pre-bound to this claim (claimRef)
        ref = pv['spec'].get('claimRef') or {}
        if ref.get('name') == name and ref.get('namespace') == namespace and (pv.get('status') or {}).get('phase') != 'Bound':
            _bind(cluster, pvc, pv)
            return
    storage_class = _storage_class(cluster, spec.get('storageClassName'))
    if storage_class is None or storage_class.get('provisioner') not in PROVISIONERS:
        return  # waits for a matching PV, as on a real cluster
    if storage_class.get('volumeBindingMode') == 'WaitForFirstConsumer' and not _pod_uses(cluster, namespace, name):
        return
    source = spec.get('dataSource') or spec.get('dataSourceRef')
    pv_name = 'pvc-%s' % pvc['metadata']['uid']
    directory = volume_dir(cluster, pv_name)
    if source:
        if not _fill_from_source(cluster, pvc, source, directory, storage_class):
            return
    else:
        make_volume(directory)
    pv = {'metadata': {'name': pv_name, 'annotations': {'pv.kubernetes.io/provisioned-by': storage_class['provisioner']}},
          'spec': {'capacity': {'storage': spec['resources']['requests']['storage']}, 'accessModes': spec['accessModes'],
                   'persistentVolumeReclaimPolicy': storage_class.get('reclaimPolicy', 'Delete'), 'storageClassName': storage_class['metadata']['name'],
                   'volumeMode': spec.get('volumeMode', 'Filesystem'),
                   'csi': {'driver': storage_class['provisioner'], 'volumeHandle': pv_name if storage_class['provisioner'] != 'ebs.csi.aws.com'
                           else 'vol-%s' % pvc['metadata']['uid'].replace('-', '')[:17], 'fsType': 'ext4'},
                   'nodeAffinity': {'required': {'nodeSelectorTerms': [{'matchExpressions': [
                       {'key': 'topology.kubernetes.io/zone', 'operator': 'In', 'values': ['sandbox-a']}]}]}}}}
    try:
        pv = cluster.store.create('', 'persistentvolumes', pv)
    except ApiError as exc:
        if exc.code != 409:
            raise
        pv = cluster.store.get_ref('', 'persistentvolumes', None, pv_name)
    record_event(cluster, pvc, 'ProvisioningSucceeded', 'Successfully provisioned volume %s' % pv_name, component=storage_class['provisioner'])
    _bind(cluster, pvc, pv)


def _fill_from_source(cluster, pvc, source, directory, storage_class):
    namespace = pvc['metadata']['namespace']
    if source.get('kind') == 'VolumeSnapshot':
        snap = cluster.store.get_ref(SNAPSHOT_GROUP, 'volumesnapshots', namespace, source.get('name'))
        if snap is None or not (snap.get('status') or {}).get('readyToUse'):
            return False  # waits for the snapshot, as the external provisioner does
        content = cluster.store.get_ref(SNAPSHOT_GROUP, 'volumesnapshotcontents', None, snap['status']['boundVolumeSnapshotContentName'])
        if content is None or content['spec'].get('driver') != storage_class['provisioner']:
            record_event(cluster, pvc, 'ProvisioningFailed', 'snapshot %s was taken by another driver' % source.get('name'), 'Warning')
            return False
        copy_tree(snapshot_dir(cluster, content['metadata']['name']), directory)
        return True
    if source.get('kind') == 'PersistentVolumeClaim':
        origin = cluster.store.get_ref('', 'persistentvolumeclaims', namespace, source.get('name'))
        if origin is None or (origin.get('status') or {}).get('phase') != 'Bound':
            return False
        copy_tree(volume_dir(cluster, origin['spec']['volumeName']), directory)
        return True
    make_volume(directory)
    return True


def on_pvc_deleted(cluster):
    def handler(event, pvc):
        if event != 'DELETED' or not (pvc.get('spec') or {}).get('volumeName'):
            return
        pv = cluster.store.get_ref('', 'persistentvolumes', None, pvc['spec']['volumeName'])
        if pv is None:
            return
        if pv['spec'].get('persistentVolumeReclaimPolicy') == 'Delete':
            try:
                cluster.store.delete('', 'persistentvolumes', None, pv['metadata']['name'])
            except ApiError:
                pass
            discard_tree(volume_dir(cluster, pv['metadata']['name']))
        else:
            cluster.store.patch_status('', 'persistentvolumes', None, pv['metadata']['name'], {'phase': 'Released'})
    return handler


def on_pod_added(manager):
    """WaitForFirstConsumer claims bind once a pod uses them."""
    def handler(event, pod):
        if event != 'ADDED':
            return
        for volume in (pod.get('spec') or {}).get('volumes') or []:
            claim = (volume.get('persistentVolumeClaim') or {}).get('claimName')
            if claim:
                manager.enqueue('', 'persistentvolumeclaims', pod['metadata']['namespace'], claim)
    return handler


# -- snapshots -----------------------------------------------------------------------------------------------

def reconcile_snapshot(cluster, snap, key):
    if snap is None:
        return
    namespace, name = key
    status = snap.get('status') or {}
    if status.get('readyToUse') or status.get('error'):
        return
    source = (snap.get('spec') or {}).get('source') or {}
    claim_name = source.get('persistentVolumeClaimName')
    if not claim_name:
        return  # pre-provisioned content: nothing to take
    pvc = cluster.store.get_ref('', 'persistentvolumeclaims', namespace, claim_name)
    if pvc is None or (pvc.get('status') or {}).get('phase') != 'Bound':
        return  # waits for the claim, as the snapshot controller does
    pv = cluster.store.get_ref('', 'persistentvolumes', None, pvc['spec']['volumeName'])
    driver = ((pv or {}).get('spec') or {}).get('csi', {}).get('driver')
    class_name = snap['spec'].get('volumeSnapshotClassName')
    snap_class = cluster.store.get_ref(SNAPSHOT_GROUP, 'volumesnapshotclasses', None, class_name) if class_name else next(
        (c for c in cluster.store.list_refs(SNAPSHOT_GROUP, 'volumesnapshotclasses') if c.get('driver') == driver), None)
    if snap_class is None or snap_class.get('driver') != driver:
        message = ('Failed to create snapshot content with error cannot find CSI PersistentVolumeSource for volume %s: '
                   'no VolumeSnapshotClass for driver %s' % (pvc['spec']['volumeName'], driver))
        cluster.store.patch_status(SNAPSHOT_GROUP, 'volumesnapshots', namespace, name,
                                   {'readyToUse': False, 'error': {'message': message, 'time': now_iso()}})
        record_event(cluster, snap, 'SnapshotContentCreationFailed', message, 'Warning', 'snapshot-controller')
        return
    content_name = 'snapcontent-%s' % snap['metadata']['uid']
    copy_tree(volume_dir(cluster, pv['metadata']['name']), snapshot_dir(cluster, content_name))
    size = pv['spec']['capacity']['storage']
    now = now_iso()
    try:
        cluster.store.create(SNAPSHOT_GROUP, 'volumesnapshotcontents', {
            'metadata': {'name': content_name},
            'spec': {'deletionPolicy': snap_class.get('deletionPolicy', 'Delete'), 'driver': driver, 'volumeSnapshotClassName': snap_class['metadata']['name'],
                     'source': {'volumeHandle': pv['spec']['csi']['volumeHandle']},
                     'volumeSnapshotRef': {'apiVersion': 'snapshot.storage.k8s.io/v1', 'kind': 'VolumeSnapshot', 'name': name, 'namespace': namespace,
                                           'uid': snap['metadata']['uid']}}})
    except ApiError as exc:
        if exc.code != 409:
            raise
    cluster.store.patch_status(SNAPSHOT_GROUP, 'volumesnapshotcontents', None, content_name,
                               {'readyToUse': True, 'restoreSize': _bytes(size), 'snapshotHandle': 'snap-%s' % snap['metadata']['uid'],
                                'creationTime': int(os.path.getmtime(snapshot_dir(cluster, content_name)) * 1e9)})
    cluster.store.patch_status(SNAPSHOT_GROUP, 'volumesnapshots', namespace, name,
                               {'boundVolumeSnapshotContentName': content_name, 'creationTime': now, 'readyToUse': True, 'restoreSize': size})
    record_event(cluster, snap, 'SnapshotReady', 'Snapshot %s/%s is ready to use.' % (namespace, name), component='snapshot-controller')


def _bytes(quantity):
    units = {'Ki': 2 ** 10, 'Mi': 2 ** 20, 'Gi': 2 ** 30, 'Ti': 2 ** 40}
    for suffix, factor in units.items():
        if str(quantity).endswith(suffix):
            return int(float(str(quantity)[:-2]) * factor)
    return int(float(quantity))


def on_snapshot_deleted(cluster):
    def handler(event, snap):
        if event != 'DELETED':
            return
        content_name = (snap.get('status') or {}).get('boundVolumeSnapshotContentName')
        content = cluster.store.get_ref(SNAPSHOT_GROUP, 'volumesnapshotcontents', None, content_name) if content_name else None
        if content is not None and content['spec'].get('deletionPolicy') == 'Delete':
            try:
                cluster.store.delete(SNAPSHOT_GROUP, 'volumesnapshotcontents', None, content_name)
            except ApiError:
                pass
            discard_tree(snapshot_dir(cluster, content_name))
    return handler


def install(manager):
    cluster = manager.cluster
    install_defaults(cluster)
    manager.register('', 'persistentvolumeclaims', reconcile_pvc)
    manager.watch('', 'persistentvolumeclaims', on_pvc_deleted(cluster))
    manager.watch('', 'pods', on_pod_added(manager))
    if any(t.group == SNAPSHOT_GROUP for t in cluster.store.types()):
        manager.register(SNAPSHOT_GROUP, 'volumesnapshots', reconcile_snapshot)
        manager.watch(SNAPSHOT_GROUP, 'volumesnapshots', on_snapshot_deleted(cluster))
        manager.watch('', 'persistentvolumeclaims', lambda event, pvc: [manager.enqueue(SNAPSHOT_GROUP, 'volumesnapshots', s['metadata']['namespace'],
                                                                                        s['metadata']['name'])
                                                                        for s in cluster.store.list_refs(SNAPSHOT_GROUP, 'volumesnapshots',
                                                                                                         pvc['metadata']['namespace'])
                                                                        if not (s.get('status') or {}).get('readyToUse')])
        manager.watch(SNAPSHOT_GROUP, 'volumesnapshots', lambda event, snap: [
            manager.enqueue('', 'persistentvolumeclaims', c['metadata']['namespace'], c['metadata']['name'])
            for c in cluster.store.list_refs('', 'persistentvolumeclaims', snap['metadata']['namespace'])
            if (c.get('status') or {}).get('phase') != 'Bound'])
