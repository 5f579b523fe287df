# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the ``aws``, ``gcp`` and ``azure`` options: credentials for the clouds' own disk snapshots of volumes without a CSI snapshot class."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  aws:
    description: AWS credentials for EBS snapshots of volumes without a CSI snapshot class.
    type: dict
    suboptions:
      region:
        description: Region of the volumes. Falls back to E(AWS_REGION).
        type: str
      profile:
        description: AWS profile.
        type: str
      access_key:
        description: Access key ID. Falls back to E(AWS_ACCESS_KEY_ID).
        type: str
      secret_key:
        description: Secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY).
        type: str
      session_token:
        description: Session token.
        type: str
      endpoint_url:
        description: EC2 endpoint, for private endpoints or emulators.
        type: str
  gcp:
    description:
      - Google Cloud credentials for Compute Engine snapshots of GCE persistent disks (C(pd.csi.storage.gke.io), in-tree C(gce-pd))
        without a CSI snapshot class (mechanism C(gce-pd)).
      - The snapshot is restored into a new disk in the source disk's zone, which agents mount through a static PV; all are deleted after the sync.
      - Without O(gcp.credentials), O(gcp.credentials_file) or O(gcp.access_token), Application Default Credentials are used.
    type: dict
    suboptions:
      project:
        description: Project of the disks, where a PV's handle does not name one. Falls back to E(GCP_PROJECT) or E(GOOGLE_CLOUD_PROJECT).
        type: str
      credentials_file:
        description: Service-account key file. Falls back to E(GCP_SERVICE_ACCOUNT_FILE) or E(GOOGLE_APPLICATION_CREDENTIALS).
        type: path
      credentials:
        description: Service-account key, as JSON text.
        type: str
      access_token:
        description: An OAuth2 access token to use as it is.
        type: str
      compute_url:
        description: Compute Engine API endpoint, for private endpoints.
        type: str
        default: https://compute.googleapis.com
  azure:
    description:
      - Azure credentials for snapshots of Azure managed disks (C(disk.csi.azure.com), in-tree C(azure-disk)) without a CSI snapshot class
        (mechanism C(azure-disk)).
      - The snapshot (incremental) is restored into a new managed disk with the source's SKU and zone, which agents mount through a static PV;
        all are deleted after the sync.
      - Without O(azure.client_secret), the default Azure credential chain is used (environment, managed identity, Azure CLI).
      - Azure Files shares have no such snapshot provider; without a CSI snapshot class they are read live.
    type: dict
    suboptions:
      subscription_id:
        description: Subscription whose leftover temporary disks and snapshots a sweep removes. Falls back to E(AZURE_SUBSCRIPTION_ID).
        type: str
      tenant_id:
        description: Tenant of the service principal. Falls back to E(AZURE_TENANT) or E(AZURE_TENANT_ID).
        type: str
      client_id:
        description: Application (client) ID of the service principal. Falls back to E(AZURE_CLIENT_ID).
        type: str
      client_secret:
        description: Secret of the service principal. Falls back to E(AZURE_SECRET) or E(AZURE_CLIENT_SECRET).
        type: str
      authority_host:
        description: Azure AD authority host.
        type: str
        default: login.microsoftonline.com
      arm_url:
        description: Azure Resource Manager endpoint (sovereign clouds).
        type: str
        default: https://management.azure.com
'''
