# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the ``pool`` option: a storage pool's location, backend settings and passphrase."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  pool:
    description:
      - The storage pool, its backend settings and its passphrase.
      - Give exactly one of O(pool.passphrase) and O(pool.passphrase_secret).
      - Required by M(ferry.kube.pool) and M(ferry.kube.restore_point_info); optional where a module says so.
    type: dict
    suboptions:
      location:
        description:
          - A local directory (DR-local block storage), C(s3://bucket/prefix) (S3 or any S3-compatible store),
            C(gs://bucket/prefix) (Google Cloud Storage) or C(azure://container/prefix) (Azure Blob Storage).
        type: str
        required: true
      passphrase:
        description:
          - The pool passphrase, for example from an Ansible-vault variable or an AWX credential.
          - Never shown in results or logs.
        type: str
      passphrase_secret:
        description:
          - A Kubernetes Secret holding the passphrase, read through the module's cluster connection
            (for M(ferry.kube.sync), the target's, else the source's).
        type: dict
        suboptions:
          namespace:
            description: Namespace of the Secret.
            type: str
            required: true
          name:
            description: Name of the Secret.
            type: str
            required: true
          key:
            description: Key of the Secret's data holding the passphrase.
            type: str
            default: passphrase
      options:
        description:
          - Backend settings. Without credentials the backend's own defaults apply (AWS environment and profiles,
            Google application default credentials, Azure C(DefaultAzureCredential) with O(pool.options.use_identity)).
        type: dict
        suboptions:
          endpoint_url:
            description: S3 endpoint of an S3-compatible store (MinIO, Ceph RGW, ...).
            type: str
          region:
            description: S3 region.
            type: str
          access_key:
            description: S3 access key id.
            type: str
          secret_key:
            description: S3 secret access key.
            type: str
          session_token:
            description: S3 session token of temporary credentials.
            type: str
          profile:
            description: AWS profile name.
            type: str
          ca_bundle:
            description: CA bundle to verify the S3 endpoint with.
            type: path
          verify:
            description: Verify the S3 endpoint's certificate.
            type: bool
          addressing_style:
            description: S3 bucket addressing.
            type: str
            choices: [path, virtual, auto]
          endpoint:
            description: Google Cloud Storage JSON API endpoint (an emulator's URL, for example).
            type: str
          credentials_file:
            description: Google service-account or authorized-user JSON key file.
            type: path
          anonymous:
            description: Talk to Google Cloud Storage without credentials (emulators).
            type: bool
          project:
            description: Google Cloud project.
            type: str
          account_url:
            description: Azure Blob service URL, for example C(https://account.blob.core.windows.net).
            type: str
          account_name:
            description: Azure storage account name.
            type: str
          account_key:
            description: Azure storage account key.
            type: str
          sas_token:
            description: Azure shared access signature.
            type: str
          connection_string:
            description: Azure storage connection string.
            type: str
          use_identity:
            description: Authenticate to Azure with C(DefaultAzureCredential) (workload or managed identity).
            type: bool
          max_attempts:
            description: Attempts per storage request before giving up.
            type: int
requirements:
  - cryptography >= 44, zstandard, blake3, pyfastcdc, msgpack
  - boto3 (for C(s3://) pools)
  - google-auth and requests (for C(gs://) pools)
  - azure-storage-blob and azure-identity (for C(azure://) pools)
'''
