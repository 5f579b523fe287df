#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: cluster_info
short_description: Report what a Kubernetes or OpenShift cluster is and what Ferry can do with it
version_added: 0.1.0
description:
  - Connects to a cluster and reports its server version, platform (vanilla, OpenShift, EKS, GKE, AKS, OKE, ...),
    served API group versions, namespaces, storage classes with provisioners, CSI drivers and VolumeSnapshotClasses.
  - For every storage class it tells which snapshot mechanism Ferry would use (CSI snapshot, the cloud's own
    snapshot API, or a live read).
  - Tells whether Ferry's footprint (service account, ClusterRole and binding, agent image setting) is installed
    and which of the permissions Ferry needs the connected identity holds.
  - Reads only; never changes the cluster.
author:
  - Ferry developers (@ferry)
options:
  check_permissions:
    description: Ask the API server (SelfSubjectAccessReview) whether the connected identity holds each permission Ferry needs.
    type: bool
    default: true
extends_documentation_fragment:
  - ferry.kube.cluster
  - ferry.kube.attributes
  - ferry.kube.attributes.INFO_MODULE
notes:
  - The platform is a best guess from API groups, the server version string and node provider IDs.
seealso:
  - module: ferry.kube.footprint
'''

EXAMPLES = r'''
- name: Describe the DR cluster
  ferry.kube.cluster_info:
    cluster:
      kubeconfig: ~/.kube/dr.yaml
      context: dr
  register: dr

- name: Use a service-account token, as the footprint role returns it
  ferry.kube.cluster_info:
    cluster:
      host: https://api.prod.example.com:6443
      api_key: "{{ vault_ferry_token }}"
      ca_cert: /etc/ferry/prod-ca.crt

- name: EKS with AWS credentials from the environment
  ferry.kube.cluster_info:
    cluster:
      eks:
        cluster_name: prod
        region: eu-west-1

- name: Fail early when snapshots are not possible
  ansible.builtin.assert:
    that: dr.storage_classes | selectattr('snapshot_mechanism', 'eq', 'csi-snapshot') | list | length > 0
    fail_msg: The DR cluster has no CSI snapshot class
'''

RETURN = r'''
name:
  description: Display name of the cluster (context, host or cloud cluster name).
  returned: always
  type: str
  sample: source
host:
  description: API server URL.
  returned: always
  type: str
  sample: https://127.0.0.1:6443
version:
  description: Server version.
  returned: always
  type: dict
  sample: {git_version: v1.31.2, major: "1", minor: "31", platform: linux/amd64}
platform:
  description: Distribution guess.
  returned: always
  type: str
  sample: openshift
api_group_versions:
  description: Every served C(group/version) (C(v1) for the core group).
  returned: always
  type: list
  elements: str
  sample: [v1, apps/v1, route.openshift.io/v1]
namespaces:
  description: Namespace names, or null when the identity may not list them.
  returned: always
  type: list
  elements: str
  sample: [default, shop]
nodes:
  description: Number of nodes (0 when they may not be listed).
  returned: always
  type: int
  sample: 3
storage_classes:
  description: Storage classes and how Ferry would snapshot their volumes.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Storage class name.
      type: str
    provisioner:
      description: Provisioner (CSI driver or in-tree plugin).
      type: str
    default:
      description: Whether it is the default class.
      type: bool
    csi:
      description: Whether a CSIDriver object exists for the provisioner.
      type: bool
    snapshot_classes:
      description: VolumeSnapshotClasses whose driver is this provisioner.
      type: list
      elements: str
    snapshot_mechanism:
      description: C(csi-snapshot), a cloud API (C(aws-ebs), C(gce-pd), C(azure-disk), C(azure-file)) or C(live-read).
      type: str
    reclaim_policy:
      description: Reclaim policy of provisioned volumes.
      type: str
    volume_binding_mode:
      description: C(Immediate) or C(WaitForFirstConsumer).
      type: str
    allow_volume_expansion:
      description: Whether volumes of the class may grow.
      type: bool
  sample: [{name: standard, provisioner: csi.example.com, default: true, csi: true, snapshot_classes: [standard-snapclass],
            snapshot_mechanism: csi-snapshot, reclaim_policy: Delete, volume_binding_mode: Immediate, allow_volume_expansion: false}]
csi_drivers:
  description: Names of the CSIDriver objects.
  returned: always
  type: list
  elements: str
  sample: [ebs.csi.aws.com]
snapshot_api:
  description: Whether the cluster serves the snapshot.storage.k8s.io API (and Ferry may read it).
  returned: always
  type: bool
  sample: true
volume_snapshot_classes:
  description: VolumeSnapshotClasses.
  returned: always
  type: list
  elements: dict
  sample: [{name: standard-snapclass, driver: csi.example.com, deletion_policy: Delete, default: false}]
ferry:
  description: State of Ferry's footprint in the cluster.
  returned: always
  type: dict
  sample: {namespace: ferry-system, service_account: true, cluster_role: true, cluster_role_current: true,
           cluster_role_binding: true, agent_image: "registry.example.com/ferry/agent:0.1.0"}
permissions:
  description: Each permission Ferry needs and whether the connected identity holds it (null when it cannot tell).
  returned: when O(check_permissions=true)
  type: list
  elements: dict
  sample: [{verb: create, group: "", resource: pods, allowed: true}]
missing_permissions:
  description: The permissions the identity lacks, as C(verb group/resource).
  returned: when O(check_permissions=true)
  type: list
  elements: str
  sample: ["create snapshot.storage.k8s.io/volumesnapshots"]
'''

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.capabilities import gather
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule


def run(module):
    cluster = module.connect()
    report = gather(cluster, check_permissions=module.params['check_permissions'])
    report['changed'] = False
    return report


def main():
    module = FerryModule(argument_spec=dict(cluster=cluster_option(), check_permissions=dict(type='bool', default=True)))
    module.run(run)


if __name__ == '__main__':
    main()
