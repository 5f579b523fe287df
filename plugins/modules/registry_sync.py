#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: registry_sync
short_description: Replicate container images from one registry to another, so apps can start at the DR site
version_added: 0.1.0
description:
  - Copies images between registries with the OCI distribution API, so that the images an app runs can be pulled at
    the DR site. Give the exact images an app uses (O(images), as C(ferry.kube.discover) lists them), or repositories
    and tags (O(repositories)).
  - Copies image manifests, multi-arch indexes and manifest lists with their children (all platforms, or those in
    O(platforms)), and the blobs they use. Manifests are copied byte for byte, so digests stay the same and references
    pinned by digest keep working at the replica.
  - Skips what the target already has. An image whose tag already has the source's digest at the target costs two
    HEAD requests; blobs the target holds in another repository are mounted rather than copied; others stream from
    source to target without being stored locally, in one request or in O(chunk_size) chunks, verified against their
    digest as they pass.
  - Keeps a record of the images it verified at the target or copied there, in O(state_dir) on the host that runs it.
    An image whose source digest has not changed since it was recorded (less than a day ago) is taken as present
    with one HEAD request at the source and none at the target; one recorded image per run, chosen at random, is
    still checked at the target, and if the target disagrees every image is checked. An image deleted at the target
    behind Ferry's back is therefore noticed only with O(verify), once its record is a day old, when the source
    changes, or by the spot check.
  - Returns RV(rewrites) and RV(digests), which object restore takes to point workloads at the replica, pinned by digest.
  - Images on a registry other than O(source) are read anonymously (public images).
author:
  - Ferry developers (@ferry)
options:
  source:
    description:
      - The registry images are copied from, and its credentials.
      - Images on other registries (O(images) may name several) are read without credentials.
    type: dict
    suboptions: &registry
      url:
        description:
          - Registry host with optional port (V(registry.example.com:5000)), or a URL (V(https://registry.example.com),
            V(http://127.0.0.1:5000) for a plain-HTTP registry). V(docker.io) is Docker Hub.
          - May be left out for Amazon ECR with O(target.ecr), whose authorization names the registry.
        type: str
        aliases: [host]
      username:
        description: User name (Docker Hub, Harbor, Quay, OCIR's C(<tenancy-namespace>/<user>), an ACR admin user or token...).
        type: str
      password:
        description: Password, or access token used as one (Docker Hub access token, OCIR auth token, GitHub token...).
        type: str
      token:
        description: A ready registry bearer token, sent as it is with every request (no token service is asked).
        type: str
      auth:
        description:
          - How to authenticate. V(auto) follows the registry's challenge (Basic, or Bearer through its token service, as
            Docker Hub does), and picks the cloud flow from O(target.ecr), O(target.gcr), O(target.acr) or from the registry
            host (C(*.dkr.ecr.*.amazonaws.com), C(gcr.io), C(*-docker.pkg.dev), C(*.azurecr.io)).
          - V(basic) sends the user name and password with every request, without waiting for a challenge.
          - V(bearer) uses the challenge's token service with the user name and password, or anonymously.
          - V(ecr) asks Amazon ECR for an authorization token with AWS credentials (O(target.ecr)).
          - V(gcr) uses a Google access token (O(target.gcr)) as user C(oauth2accesstoken).
          - V(acr) exchanges an Azure AD token (O(target.acr)) for an ACR refresh token.
          - V(ocir) is V(bearer) with a check of OCIR's user name form.
        type: str
        choices: [auto, basic, bearer, ecr, gcr, acr, ocir]
        default: auto
      ca_file:
        description: CA bundle (PEM) that signed the registry's certificate, for registries with a private CA.
        type: path
      validate_certs:
        description: Verify the registry's TLS certificate. Turn off only for throwaway test registries.
        type: bool
        default: true
      ecr:
        description: AWS credentials for Amazon ECR. Without keys or a profile, boto3's defaults apply (environment, instance role).
        type: dict
        suboptions:
          region:
            description: AWS region of the registry. Defaults to the region in the registry host, then to boto3's.
            type: str
          registry_id:
            description: AWS account ID of the registry. Defaults to the account in the registry host.
            type: str
          profile:
            description: AWS profile.
            type: str
          access_key:
            description: AWS access key ID.
            type: str
          secret_key:
            description: AWS secret access key.
            type: str
          session_token:
            description: AWS session token of temporary credentials.
            type: str
          endpoint_url:
            description: ECR API endpoint, for private endpoints or emulators.
            type: str
      gcr:
        description:
          - Google credentials for Google Container Registry and Artifact Registry. Without any, application default
            credentials are used (workload identity, C(GOOGLE_APPLICATION_CREDENTIALS)).
        type: dict
        suboptions:
          credentials_file:
            description: Service-account key file.
            type: path
          credentials:
            description: Service-account key as JSON text.
            type: str
          access_token:
            description: A ready OAuth2 access token.
            type: str
      acr:
        description:
          - Azure AD (Entra ID) identity for Azure Container Registry. Without a secret or token, the default Azure credential
            chain is used (managed or workload identity, environment, CLI).
          - An admin user or repository-scoped token goes in O(target.username) and O(target.password) instead.
        type: dict
        suboptions:
          tenant_id:
            description: Azure AD tenant.
            type: str
          client_id:
            description: Application (client) ID of the service principal.
            type: str
          client_secret:
            description: Secret of the service principal.
            type: str
          access_token:
            description: A ready Azure AD access token (audience C(https://management.azure.com)).
            type: str
          authority_host:
            description: Azure AD authority host.
            type: str
            default: login.microsoftonline.com
  target:
    description:
      - The registry images are copied to, and its credentials; the same suboptions as O(source).
      - The credentials need pull and push permission on the target repositories.
    type: dict
    required: true
    suboptions: *registry
  images:
    description:
      - Image references to copy, as Kubernetes writes them (V(nginx:1.25), V(quay.io/team/app@sha256:...)); Docker Hub's
        defaults apply (V(nginx) is V(docker.io/library/nginx:latest)).
      - A reference with a digest copies exactly that manifest (and tags it at the target when it also has a tag).
    type: list
    elements: str
  repositories:
    description: Repositories of O(source) to copy, with the tags to copy.
    type: list
    elements: dict
    suboptions:
      name:
        description: Repository path at the source registry (V(team/app)), or a full name with registry (V(quay.io/team/app)).
        type: str
        required: true
      tags:
        description:
          - Tags to copy; shell-style patterns (V(1.*), V(v[0-9]*)) match the source's tags.
          - Without tags, every tag is copied.
        type: list
        elements: str
      all_tags:
        description: Copy every tag of the repository.
        type: bool
        default: false
  target_prefix:
    description:
      - Repository path prefix at the target. With V(mirror), C(docker.io/library/nginx) goes to C(<target>/mirror/library/nginx).
      - Without it, the target repository has the source repository's path.
    type: str
  mapping:
    description:
      - Target repository for source name prefixes, the longest matching prefix winning over O(target_prefix).
    type: list
    elements: dict
    suboptions:
      from:
        description: Source name prefix, normalised as an image name (V(docker.io/library), V(quay.io/team), V(nginx)).
        type: str
        required: true
      to:
        description: Repository path prefix at the target that replaces it (V(mirror/hub)).
        type: str
        required: true
  platforms:
    description:
      - Copy only these platforms of multi-arch images, as V(os/arch[/variant]) (V(linux/amd64), V(linux/arm64)).
        The target then gets an index that lists only them, with a digest of its own (reported, and used in RV(digests)).
      - Default is every platform; the index keeps its digest.
    type: list
    elements: str
  concurrency:
    description: Blobs copied at once (and images planned at once).
    type: int
    default: 4
  chunk_size:
    description: Blobs larger than this many bytes are uploaded in chunks of this size (PATCH requests); smaller ones in one request.
    type: int
    default: 67108864
  timeout:
    description: Seconds to wait for one registry request to answer.
    type: float
    default: 60.0
  state_dir:
    description:
      - Directory of the record of verified replications, one JSON file per target registry. It is state of the host
        that runs Ferry, not of the registries; losing it only costs a run that checks every image at the target.
      - An empty string keeps no record; every image is then checked at the target on every run.
    type: path
    default: ~/.cache/ferry/registry
  verify:
    description:
      - Check every image at the target (a HEAD of its manifest, and what follows from it) instead of trusting the record
        of earlier runs. The record is updated with what was found.
      - Use it on a schedule (or after maintenance of the target registry) to notice manifests deleted or garbage-collected
        at the target; without it they are noticed when their record is a day old or when the source changes.
    type: bool
    default: false
extends_documentation_fragment:
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details:
      - Plans the copy (reads manifests and checks which blobs the target has) and reports what would be copied, without writing.
        The record in O(state_dir) is read but not written.
  diff_mode:
    support: none
requirements:
  - boto3 (for Amazon ECR)
  - google-auth (for Google Container/Artifact Registry)
  - azure-identity (for Azure Container Registry with Azure AD)
notes:
  - Docker schema 1 manifests are not copied (registries no longer accept them). Foreign (non-distributable) layers, such
    as Windows base layers, are not copied; the target serves their URLs as the source does.
  - Tags the target has and the source does not are left alone; nothing is deleted at the target.
'''

EXAMPLES = r'''
- name: Replicate the images the shop app runs to the DR registry
  ferry.kube.registry_sync:
    target:
      url: dr-registry.example.com:5000
      username: ferry
      password: "{{ vault_dr_registry_password }}"
      ca_file: /etc/ferry/dr-registry-ca.pem
    target_prefix: mirror
    images: "{{ shop.images }}"
  register: replicated

- name: Mirror two tags and every 1.x tag of an internal repository
  ferry.kube.registry_sync:
    source: {url: registry.example.com, username: ferry, password: "{{ vault_registry_password }}"}
    target: {url: dr-registry.example.com:5000, username: ferry, password: "{{ vault_dr_registry_password }}"}
    repositories:
      - {name: team/api, tags: [stable, latest, "1.*"]}

- name: Docker Hub to Amazon ECR, amd64 and arm64 only
  ferry.kube.registry_sync:
    source: {url: docker.io, username: ferrybot, password: "{{ vault_dockerhub_token }}"}
    target:
      url: 123456789012.dkr.ecr.eu-west-1.amazonaws.com
      ecr: {profile: dr}
    mapping:
      - {from: docker.io/library, to: hub}
    images: [nginx:1.25, redis:7.2]
    platforms: [linux/amd64, linux/arm64]

- name: Artifact Registry to Azure Container Registry with a service principal
  ferry.kube.registry_sync:
    source:
      url: europe-docker.pkg.dev
      gcr: {credentials_file: /etc/ferry/gcp-reader.json}
    target:
      url: ferrydr.azurecr.io
      acr: {tenant_id: "{{ azure_tenant }}", client_id: "{{ azure_client }}", client_secret: "{{ vault_azure_secret }}"}
    repositories:
      - {name: shop-prod/images/web, all_tags: true}

- name: What would be copied
  ferry.kube.registry_sync:
    target: {url: dr-registry.example.com:5000, username: ferry, password: "{{ vault_dr_registry_password }}"}
    images: [quay.io/prometheus/prometheus:v2.53.0]
  check_mode: true
'''

RETURN = r'''
images:
  description:
    - One entry per image. Its C(status) is V(copied) (something was written), V(present) (the target had it all),
      V(would copy) (check mode) or V(failed) (with the reason in C(error)).
    - C(from_record) is true for an image taken as present from the record of an earlier run (its source digest
      unchanged) without asking the target; its counters are the recorded ones.
  returned: always
  type: list
  elements: dict
  sample:
    - source: docker.io/library/nginx:1.25
      target: dr-registry.example.com:5000/mirror/library/nginx:1.25@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31
      digest: sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31
      target_digest: sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31
      media_type: application/vnd.oci.image.index.v1+json
      platforms: [linux/amd64, linux/arm64/v8]
      status: copied
      manifests_copied: 3
      blobs_copied: 10
      blobs_mounted: 2
      blobs_skipped: 0
      blobs_foreign: 0
      bytes_copied: 142000000
      bytes_mounted: 3000000
      bytes_skipped: 0
      from_record: false
bytes_copied:
  description: Bytes of blobs copied (or to copy, in check mode).
  returned: always
  type: int
bytes_skipped:
  description: Bytes of blobs the target already had, counted for the images looked at.
  returned: always
  type: int
bytes_mounted:
  description: Bytes of blobs mounted from another repository of the target instead of copied.
  returned: always
  type: int
blobs_copied:
  description: Blobs copied (or to copy).
  returned: always
  type: int
blobs_skipped:
  description: Blobs the target already had.
  returned: always
  type: int
blobs_mounted:
  description: Blobs mounted from another repository of the target (or to mount).
  returned: always
  type: int
blobs_foreign:
  description: Foreign (non-distributable) layers, which are not copied.
  returned: always
  type: int
manifests_copied:
  description: Manifests and indexes written at the target (or to write).
  returned: always
  type: int
rewrites:
  description:
    - One rule per copied repository, from the source name to the target name, as object restore takes them
      to rewrite image references.
  returned: always
  type: list
  elements: dict
  sample: [{from: docker.io/library/nginx, to: dr-registry.example.com:5000/mirror/library/nginx}]
digests:
  description:
    - The digest at the target of each copied tag, keyed by normalised source reference, so that rewritten
      references are pinned by digest. Also C(<source>@<digest>) keys where the target's digest differs (O(platforms)).
  returned: always
  type: dict
  sample: {docker.io/library/nginx:1.25: "sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"}
seconds:
  description: Wall time of the replication.
  returned: always
  type: float
'''

from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.registry.auth import AUTH_KINDS
from ansible_collections.ferry.kube.plugins.module_utils.registry.client import DEFAULT_CHUNK_SIZE
from ansible_collections.ferry.kube.plugins.module_utils.registry.record import DEFAULT_STATE_DIR
from ansible_collections.ferry.kube.plugins.module_utils.registry.sync import sync


def registry_option(required=False):
    return dict(type='dict', required=required, options=dict(
        url=dict(type='str', aliases=['host']),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        token=dict(type='str', no_log=True),
        auth=dict(type='str', choices=list(AUTH_KINDS), default='auto'),
        ca_file=dict(type='path'),
        validate_certs=dict(type='bool', default=True),
        ecr=dict(type='dict', options=dict(
            region=dict(type='str'),
            registry_id=dict(type='str'),
            profile=dict(type='str'),
            access_key=dict(type='str', no_log=False),
            secret_key=dict(type='str', no_log=True),
            session_token=dict(type='str', no_log=True),
            endpoint_url=dict(type='str'),
        )),
        gcr=dict(type='dict', options=dict(
            credentials_file=dict(type='path'),
            credentials=dict(type='str', no_log=True),
            access_token=dict(type='str', no_log=True),
        )),
        acr=dict(type='dict', options=dict(
            tenant_id=dict(type='str'),
            client_id=dict(type='str'),
            client_secret=dict(type='str', no_log=True),
            access_token=dict(type='str', no_log=True),
            authority_host=dict(type='str', default='login.microsoftonline.com'),
        )),
    ))


def run(module):
    return sync(module.params, check_mode=module.check_mode, secret_sink=module.ansible.no_log_values.add)


def main():
    module = FerryModule(argument_spec=dict(
        source=registry_option(),
        target=registry_option(required=True),
        images=dict(type='list', elements='str'),
        repositories=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            tags=dict(type='list', elements='str'),
            all_tags=dict(type='bool', default=False),
        )),
        target_prefix=dict(type='str'),
        mapping=dict(type='list', elements='dict', options={
            'from': dict(type='str', required=True),
            'to': dict(type='str', required=True),
        }),
        platforms=dict(type='list', elements='str'),
        concurrency=dict(type='int', default=4),
        chunk_size=dict(type='int', default=DEFAULT_CHUNK_SIZE),
        timeout=dict(type='float', default=60.0),
        state_dir=dict(type='path', default=DEFAULT_STATE_DIR),
        verify=dict(type='bool', default=False),
    ), requires_kubernetes=False, required_one_of=[('images', 'repositories')])
    module.run(run)


if __name__ == '__main__':
    main()
