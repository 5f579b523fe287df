# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot mechanisms a module can use, and the ``aws``, ``gcp`` and ``azure`` options that enable
the clouds' own disk snapshots (shared by ``ferry.kube.snapshot`` and ``ferry.kube.sync``)."""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import env
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import group
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.azure_disk import ARM_URL, AzureDiskSnapshots
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.csi import CsiSnapshots
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.gce_pd import COMPUTE_URL, GcePdSnapshots
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import CLOUD_MECHANISMS, CLOUD_OPTION

MECHANISMS = ['auto', 'csi-snapshot'] + list(CLOUD_MECHANISMS) + ['live-read']
CLOUD_OPTIONS = tuple(CLOUD_OPTION.values())  # aws, gcp, azure


def aws_option():
    return dict(type='dict', options=dict(
        region=dict(type='str', fallback=env('AWS_REGION', 'AWS_DEFAULT_REGION')),
        profile=dict(type='str', fallback=env('AWS_PROFILE')),
        access_key=dict(type='str', no_log=False, fallback=env('AWS_ACCESS_KEY_ID')),
        secret_key=dict(type='str', no_log=True, fallback=env('AWS_SECRET_ACCESS_KEY')),
        session_token=dict(type='str', no_log=True, fallback=env('AWS_SESSION_TOKEN')),
        endpoint_url=dict(type='str'),
    ))


def gcp_option():
    return dict(type='dict', options=dict(
        project=dict(type='str', fallback=env('GCP_PROJECT', 'GOOGLE_CLOUD_PROJECT')),
        credentials_file=dict(type='path', fallback=env('GCP_SERVICE_ACCOUNT_FILE', 'GOOGLE_APPLICATION_CREDENTIALS')),
        credentials=dict(type='str', no_log=True),
        access_token=dict(type='str', no_log=True),
        compute_url=dict(type='str', default=COMPUTE_URL),
    ))


def azure_option():
    return dict(type='dict', options=dict(
        subscription_id=dict(type='str', fallback=env('AZURE_SUBSCRIPTION_ID')),
        tenant_id=dict(type='str', fallback=env('AZURE_TENANT', 'AZURE_TENANT_ID')),
        client_id=dict(type='str', fallback=env('AZURE_CLIENT_ID')),
        client_secret=dict(type='str', no_log=True, fallback=env('AZURE_SECRET', 'AZURE_CLIENT_SECRET')),
        authority_host=dict(type='str', default='login.microsoftonline.com'),
        arm_url=dict(type='str', default=ARM_URL),
    ))


def cloud_options():
    """The three options, for a module's argument_spec."""
    return {'aws': aws_option(), 'gcp': gcp_option(), 'azure': azure_option()}


def providers(cluster, sync_id, aws=None, gcp=None, azure=None):
    """mechanism -> provider: CSI snapshots and live reads always; a cloud's disk snapshots when its option is given."""
    # each cloud's client library (boto3, google-auth, azure-identity) is imported only when its option is given
    found = {'csi-snapshot': CsiSnapshots(cluster, sync_id), 'live-read': group.LiveRead(cluster, sync_id)}
    if aws and any(aws.values()):
        from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import eks_session  # pylint: disable=import-outside-toplevel
        from ansible_collections.ferry.kube.plugins.module_utils.snapshots.aws_ebs import EbsSnapshots  # pylint: disable=import-outside-toplevel
        session = eks_session(dict(aws, cluster_name='(EBS snapshots)'))
        found['aws-ebs'] = EbsSnapshots(cluster, sync_id, session, endpoint_url=aws.get('endpoint_url'))
    if gcp:
        from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import google_session  # pylint: disable=import-outside-toplevel
        found['gce-pd'] = GcePdSnapshots(cluster, sync_id, google_session(gcp, 'gcp'), gcp.get('project'),
                                         compute_url=gcp.get('compute_url') or COMPUTE_URL)
    if azure:
        from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import azure_credential  # pylint: disable=import-outside-toplevel
        found['azure-disk'] = AzureDiskSnapshots(cluster, sync_id, azure_credential(azure, 'azure'), subscription_id=azure.get('subscription_id'),
                                                 arm_url=azure.get('arm_url') or ARM_URL)
    return found


def providers_of(cluster, sync_id, params):
    """``providers`` with the cloud options of a module's ``params``."""
    return providers(cluster, sync_id, **{name: params.get(name) for name in CLOUD_OPTIONS})
