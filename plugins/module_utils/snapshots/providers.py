# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot mechanisms a module can use, and the ``aws`` option that enables EBS snapshots
(shared by ``ferry.kube.snapshot`` and ``ferry.kube.sync``)."""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import env
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import CsiSnapshots

MECHANISMS = ['auto', 'csi-snapshot', 'aws-ebs', 'live-read']


def aws_option():
    return dict(type='dict', options=dict(
        region=dict(type='str', fallback=env('AWS_REGION', 'AWS_DEFAULT_REGION')),
        profile=dict(type='str', fallback=env('AWS_PROFILE')),
        access_key=dict(type='str', no_log=False, fallback=env('AWS_ACCESS_KEY_ID')),
        secret_key=dict(type='str', no_log=True, fallback=env('AWS_SECRET_ACCESS_KEY')),
        session_token=dict(type='str', no_log=True, fallback=env('AWS_SESSION_TOKEN')),
        endpoint_url=dict(type='str'),
    ))


def providers(cluster, sync_id, aws=None):
    """mechanism -> provider: CSI snapshots and live reads always, EBS when AWS credentials are given."""
    found = {'csi-snapshot': CsiSnapshots(cluster, sync_id), 'live-read': group.LiveRead(cluster, sync_id)}
    if aws and any(aws.values()):
        from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import eks_session  # pylint: disable=import-outside-toplevel
        from ansible_collections.ferry.kube.plugins.module_utils.snapshots.aws_ebs import EbsSnapshots  # pylint: disable=import-outside-toplevel
        session = eks_session(dict(aws, cluster_name='(EBS snapshots)'))
        found['aws-ebs'] = EbsSnapshots(cluster, sync_id, session, endpoint_url=aws.get('endpoint_url'))
    return found
