# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the ``aws`` option: credentials for EBS snapshots of volumes without a CSI snapshot class."""

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
'''
