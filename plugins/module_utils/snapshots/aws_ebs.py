# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EBS snapshots through the EC2 API, for EBS volumes without a CSI snapshot class.

The snapshot is exposed to agent pods as a new EBS volume in the source volume's zone, with a
static PV (EBS CSI driver) and a PVC bound to it (static_claim.py); clean-up deletes all three and
the snapshot.
"""

from __future__ import annotations

import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.static_claim import expose_disk, remove_claim
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import SYNC_LABEL

try:
    import botocore.exceptions
except ImportError:  # pragma: no cover - EBS needs boto3, checked when used
    botocore = None


def volume_id(handle):
    """``vol-...`` from an EBS CSI handle, or an in-tree ``aws://zone/vol-...`` URL."""
    if not handle:
        return None
    return handle.rsplit('/', 1)[-1]


class EbsSnapshots:
    mechanism = 'aws-ebs'

    def __init__(self, cluster, sync_id, session, endpoint_url=None):
        self.cluster = cluster
        self.sync_id = sync_id
        self.ec2 = session.client('ec2', endpoint_url=endpoint_url)

    def _tags(self, volume):
        return [{'Key': 'ferry.dev/sync-id', 'Value': self.sync_id}, {'Key': 'ferry.dev/source-pvc', 'Value': volume.key},
                {'Key': 'ferry.dev/temporary', 'Value': 'true'}]

    def take(self, volume, _snapshot_class=None):
        vol = volume_id(volume.handle)
        if not vol:
            raise FerryError('volume %s: its PV names no EBS volume ID' % volume.key)
        existing = self.ec2.describe_snapshots(Filters=[{'Name': 'tag:ferry.dev/sync-id', 'Values': [self.sync_id]},
                                                        {'Name': 'volume-id', 'Values': [vol]}], OwnerIds=['self'])['Snapshots']
        if existing:  # an interrupted run of this sync took it already
            snap = existing[0]['SnapshotId']
        else:
            try:
                snap = self.ec2.create_snapshot(VolumeId=vol, Description='Ferry sync %s of %s' % (self.sync_id, volume.key),
                                                TagSpecifications=[{'ResourceType': 'snapshot', 'Tags': self._tags(volume)}])['SnapshotId']
            except botocore.exceptions.ClientError as exc:
                raise FerryError('cannot snapshot EBS volume %s of %s: %s' % (vol, volume.key, exc)) from None
        return {'mechanism': self.mechanism, 'namespace': volume.namespace, 'snapshot': snap, 'source_volume': vol, 'zone': volume.zone}

    def wait_cut(self, ref, timeout):
        # EBS fixes the point in time when CreateSnapshot returns: post-hooks may run at once.
        ref['creation_time'] = ref.get('creation_time') or time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())

    def wait_ready(self, ref, timeout):
        waiter = self.ec2.get_waiter('snapshot_completed')
        try:
            waiter.wait(SnapshotIds=[ref['snapshot']], WaiterConfig={'Delay': 2, 'MaxAttempts': max(1, int(timeout / 2))})
        except botocore.exceptions.WaiterError as exc:
            raise FerryError('EBS snapshot %s did not complete within %ss: %s' % (ref['snapshot'], timeout, exc)) from None

    def expose(self, ref, volume):
        zone = ref.get('zone') or volume.zone
        if not zone:
            raise FerryError('volume %s: cannot tell its availability zone (no topology on the PV) to restore the EBS snapshot into' % volume.key)
        new_volume = self.ec2.create_volume(SnapshotId=ref['snapshot'], AvailabilityZone=zone,
                                            TagSpecifications=[{'ResourceType': 'volume', 'Tags': self._tags(volume)}])['VolumeId']
        ref['volume'] = new_volume
        self.ec2.get_waiter('volume_available').wait(VolumeIds=[new_volume], WaiterConfig={'Delay': 2, 'MaxAttempts': 150})
        return expose_disk(self.cluster, self.sync_id, volume, ref, 'ebs.csi.aws.com', new_volume, zone)

    def cleanup(self, ref):
        removed = remove_claim(self.cluster, ref)
        for call, key, kwargs in ((self.ec2.delete_volume, 'volume', 'VolumeId'), (self.ec2.delete_snapshot, 'snapshot', 'SnapshotId')):
            if ref.get(key):
                try:
                    call(**{kwargs: ref[key]})
                    removed.append('%s %s' % (key, ref[key]))
                except botocore.exceptions.ClientError as exc:
                    if 'NotFound' not in str(exc):
                        raise FerryError('cannot delete temporary EBS %s %s: %s' % (key, ref[key], exc)) from None
        return removed

    def sweep(self, keep_sync_ids=()):
        """Delete temporary EBS volumes and snapshots of finished or crashed syncs."""
        removed = []
        flt = [{'Name': 'tag:ferry.dev/temporary', 'Values': ['true']}]
        for vol in self.ec2.describe_volumes(Filters=flt)['Volumes']:
            if _tag(vol, SYNC_LABEL) not in keep_sync_ids and vol.get('State') == 'available':
                self.ec2.delete_volume(VolumeId=vol['VolumeId'])
                removed.append('volume %s' % vol['VolumeId'])
        for snap in self.ec2.describe_snapshots(Filters=flt, OwnerIds=['self'])['Snapshots']:
            if _tag(snap, SYNC_LABEL) not in keep_sync_ids:
                self.ec2.delete_snapshot(SnapshotId=snap['SnapshotId'])
                removed.append('snapshot %s' % snap['SnapshotId'])
        return removed


def _tag(resource, key):
    return next((t['Value'] for t in resource.get('Tags') or [] if t['Key'] == key), None)
