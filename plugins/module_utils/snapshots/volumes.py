# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volumes of an app and the snapshot mechanism each one gets, with the reason why."""

from __future__ import annotations

import hashlib
import re

from ansible_collections.ferry.kube.plugins.module_utils.kube.capabilities import CLOUD_PROVISIONERS
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError

# In-tree volume sources in PV specs, and the driver name they correspond to.
_IN_TREE = {
    'awsElasticBlockStore': ('kubernetes.io/aws-ebs', 'volumeID'),
    'gcePersistentDisk': ('kubernetes.io/gce-pd', 'pdName'),
    'azureDisk': ('kubernetes.io/azure-disk', 'diskURI'),
    'azureFile': ('kubernetes.io/azure-file', 'shareName'),
}
_ZONE_KEYS = ('topology.kubernetes.io/zone', 'topology.ebs.csi.aws.com/zone', 'topology.gke.io/zone',
              'failure-domain.beta.kubernetes.io/zone', 'topology.disk.csi.azure.com/zone')

# the clouds' own disk snapshot APIs Ferry uses, and the module option that gives each its credentials
CLOUD_OPTION = {'aws-ebs': 'aws', 'gce-pd': 'gcp', 'azure-disk': 'azure'}
CLOUD_MECHANISMS = tuple(CLOUD_OPTION)

TEMP_LABEL = 'ferry.dev/temporary'
SYNC_LABEL = 'ferry.dev/sync-id'
SOURCE_LABEL = 'ferry.dev/source-pvc'
MANAGED_BY = {'app.kubernetes.io/managed-by': 'ferry'}

_UNITS = {'Ki': 2 ** 10, 'Mi': 2 ** 20, 'Gi': 2 ** 30, 'Ti': 2 ** 40, 'Pi': 2 ** 50, 'Ei': 2 ** 60,
          'k': 10 ** 3, 'K': 10 ** 3, 'M': 10 ** 6, 'G': 10 ** 9, 'T': 10 ** 12, 'P': 10 ** 15, 'E': 10 ** 18, 'm': 10 ** -3, '': 1}


def parse_quantity(text):
    """Bytes of a Kubernetes quantity such as ``10Gi``, ``500M`` or ``1e9``."""
    match = re.fullmatch(r'\s*([0-9.eE+-]+?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?\s*', str(text))
    if not match:
        raise FerryError('%r is not a Kubernetes quantity (for example 10Gi)' % (text,))
    return int(float(match.group(1)) * _UNITS[match.group(2) or ''])


def temp_name(sync_id, *parts):
    """A DNS-1123 name of at most 63 characters, unique per sync and source, for temporary objects."""
    base = '-'.join(['ferry', sync_id] + list(parts)).lower()
    base = re.sub(r'[^a-z0-9-]', '-', base)
    if len(base) <= 63:
        return base.strip('-')
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return '%s-%s' % (base[:54].rstrip('-'), digest)


class Volume:
    """A bound PVC and its PV, with what snapshotting it needs to know."""

    def __init__(self, pvc, pv):
        self.pvc = pvc
        self.pv = pv or {}
        meta = pvc['metadata']
        self.namespace = meta['namespace']
        self.name = meta['name']
        spec = self.pv.get('spec') or {}
        self.storage_class = (pvc.get('spec') or {}).get('storageClassName') or spec.get('storageClassName')
        self.volume_mode = (pvc.get('spec') or {}).get('volumeMode', 'Filesystem')
        capacity = (pvc.get('status') or {}).get('capacity') or spec.get('capacity') or (pvc['spec'].get('resources') or {}).get('requests') or {}
        self.size = parse_quantity(capacity.get('storage', '0'))
        self.driver, self.handle = self._driver_and_handle(spec)
        self.fs_type = self._fs_type(spec)
        self.zone = self._zone(spec)

    @staticmethod
    def _driver_and_handle(spec):
        if spec.get('csi'):
            return spec['csi'].get('driver'), spec['csi'].get('volumeHandle')
        for key, (driver, handle_field) in _IN_TREE.items():
            if spec.get(key):
                return driver, spec[key].get(handle_field)
        return None, None

    @staticmethod
    def _fs_type(spec):
        """The filesystem on the volume (a disk copied from its snapshot holds the same one), ext4 when unsaid."""
        for key in ('csi',) + tuple(_IN_TREE):
            if spec.get(key):
                return spec[key].get('fsType') or 'ext4'
        return 'ext4'

    def _zone(self, spec):
        for term in (((spec.get('nodeAffinity') or {}).get('required') or {}).get('nodeSelectorTerms') or []):
            for expression in term.get('matchExpressions') or []:
                if expression.get('key') in _ZONE_KEYS and expression.get('values'):
                    return expression['values'][0]
        labels = self.pv.get('metadata', {}).get('labels') or {}
        return next((labels[k] for k in _ZONE_KEYS if k in labels), None)

    @property
    def key(self):
        return '%s/%s' % (self.namespace, self.name)

    def summary(self):
        return {'namespace': self.namespace, 'pvc': self.name, 'pv': self.pv.get('metadata', {}).get('name'),
                'storage_class': self.storage_class, 'driver': self.driver, 'size': self.size, 'volume_mode': self.volume_mode}


def choose_mechanism(volume, snapshot_classes, cloud_providers=(), forced=None):
    """(mechanism, snapshot class or None, reason) for one volume.

    Preference: CSI VolumeSnapshot when the driver has a class (crash-consistent, no copy outside
    the storage system); else the cloud's own snapshot API for its disks, when credentials for that
    cloud were given; else a live read of the volume, with the app's quiesce hooks if it has any.
    """
    classes = [c for c in snapshot_classes if c.get('driver') == volume.driver]
    default = next((c for c in classes if (c['metadata'].get('annotations') or {}).get('snapshot.storage.kubernetes.io/is-default-class') == 'true'),
                   classes[0] if classes else None)
    cloud = CLOUD_PROVISIONERS.get(volume.driver)
    if forced:
        if forced == 'csi-snapshot' and default is None:
            raise FerryError('volume %s: csi-snapshot was asked for, but driver %s has no VolumeSnapshotClass' % (volume.key, volume.driver))
        if forced not in ('csi-snapshot', 'live-read') and forced != cloud:
            raise FerryError('volume %s: mechanism %s was asked for, but its driver %s is not a %s disk' % (volume.key, forced, volume.driver, forced))
        return forced, (default['metadata']['name'] if forced == 'csi-snapshot' else None), 'asked for'
    if volume.volume_mode == 'Block' and default is None and cloud is None:
        raise FerryError('volume %s is a raw block volume of driver %s with neither a snapshot class nor a cloud snapshot API; '
                         'Ferry cannot read it live' % (volume.key, volume.driver))
    if default is not None:
        return 'csi-snapshot', default['metadata']['name'], 'driver %s has VolumeSnapshotClass %s' % (volume.driver, default['metadata']['name'])
    if cloud and cloud in cloud_providers:
        return cloud, None, 'no VolumeSnapshotClass for %s; using the %s snapshot API' % (volume.driver, cloud)
    if cloud in CLOUD_OPTION:
        return 'live-read', None, ('no VolumeSnapshotClass for %s and no %s credentials given; reading the live volume '
                                   '(give the %s option for a point-in-time copy)' % (volume.driver, cloud, CLOUD_OPTION[cloud]))
    if cloud:  # (Azure Files: its share snapshots cannot be mounted as a volume of their own)
        return 'live-read', None, ('no VolumeSnapshotClass for %s and Ferry has no %s snapshot provider; reading the live volume'
                                   % (volume.driver, cloud))
    return 'live-read', None, 'driver %s has no VolumeSnapshotClass and no cloud snapshot API; reading the live volume' % (volume.driver or 'unknown')
