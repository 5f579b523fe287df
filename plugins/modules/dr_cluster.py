#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: dr_cluster
short_description: Create or delete the cluster a failover restores to, through a pluggable provider
version_added: 0.1.0
description:
  - With on-demand DR no cluster waits at the DR site; a failover first creates one, restores into it, and a later
    clean-up deletes it. This module is that provisioning step. It returns O(ferry.kube.cluster_info#module:cluster)
    connection options for the new cluster, which the other modules take as their C(cluster), C(source) or C(target).
  - V(eks) creates an Amazon EKS cluster and its managed node groups through the EKS API and waits until they are
    C(ACTIVE). Credentials are those of an C(eks) connection (O(eks.profile), keys, O(eks.role_arn), endpoints); the
    returned connection holds none of them, only where the cluster is. What Ferry creates is tagged
    C(ferry.dev/managed=true), and O(state=absent) deletes only clusters with that tag, node groups first.
  - V(command) runs commands that create and delete the cluster (an on-premises installer, Terraform, or anything
    else), without a shell. The create command must leave a kubeconfig at O(command.kubeconfig_path); the returned
    connection uses it.
  - An existing cluster is reported unchanged and never modified. Where it differs from the options (version, roles,
    subnets, node group sizes...) the difference is returned in RV(drift) and as a warning.
author:
  - Ferry developers (@ferry)
options:
  provider:
    description: How the cluster is made.
    type: str
    choices: [command, eks]
    required: true
  name:
    description: Name of the cluster (the EKS cluster name with V(eks)).
    type: str
    required: true
  state:
    description: V(present) creates the cluster if it does not exist and waits until it can be used; V(absent) deletes it and waits until it is gone.
    type: str
    choices: [present, absent]
    default: present
  wait_timeout:
    description:
      - Seconds the whole run may take, commands and waits included. EKS takes 10 to 15 minutes for a cluster and a few
        more for its node groups.
      - When it runs out, the error gives the current status; running again goes on waiting.
    type: int
    default: 1800
  eks:
    description: The EKS cluster (with O(provider=eks)), and the AWS credentials to manage it.
    type: dict
    suboptions:
      region:
        description: AWS region. Falls back to E(AWS_REGION), E(AWS_DEFAULT_REGION).
        type: str
      profile:
        description: AWS profile. Falls back to E(AWS_PROFILE).
        type: str
      access_key:
        description: AWS access key ID. Falls back to E(AWS_ACCESS_KEY_ID).
        type: str
        aliases: [aws_access_key_id]
      secret_key:
        description: AWS secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY).
        type: str
        aliases: [aws_secret_access_key]
      session_token:
        description: AWS session token. Falls back to E(AWS_SESSION_TOKEN), E(AWS_SECURITY_TOKEN).
        type: str
      role_arn:
        description: IAM role to assume for every AWS call (and in the returned connection), not the cluster's role.
        type: str
      endpoint_url:
        description: EKS API endpoint, for private endpoints or emulators.
        type: str
      sts_endpoint_url:
        description: STS endpoint, for private endpoints or emulators.
        type: str
      cluster_role_arn:
        description: The IAM role EKS assumes for the cluster (with the C(AmazonEKSClusterPolicy) managed policy). Required to create it.
        type: str
      subnet_ids:
        description: Subnets of the cluster, in two availability zones or more. Required to create it; node groups use them by default.
        type: list
        elements: str
      security_group_ids:
        description: Additional security groups of the cluster's network interfaces.
        type: list
        elements: str
      version:
        description: Kubernetes version (C(1.30)). Default is the EKS default version.
        type: str
      endpoint_public_access:
        description: Whether the API server endpoint is reachable from the internet. Default is the EKS default (V(true)).
        type: bool
      endpoint_private_access:
        description: Whether the API server endpoint is reachable from the VPC. Default is the EKS default (V(false)).
        type: bool
      tags:
        description: Tags of the cluster and node groups, besides C(ferry.dev/managed=true).
        type: dict
        default: {}
      nodegroups:
        description: Managed node groups to create in the cluster.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name of the node group.
            type: str
            required: true
          node_role_arn:
            description:
              - IAM role of the nodes, with the managed policies C(AmazonEKSWorkerNodePolicy), C(AmazonEKS_CNI_Policy)
                and C(AmazonEC2ContainerRegistryReadOnly). Required to create the node group.
            type: str
          subnet_ids:
            description: Subnets of the nodes. Default is O(eks.subnet_ids), or the cluster's subnets.
            type: list
            elements: str
          instance_types:
            description: EC2 instance types of the nodes.
            type: list
            elements: str
            default: [m5.large]
          min_size:
            description: Fewest nodes.
            type: int
            default: 1
          max_size:
            description: Most nodes.
            type: int
            default: 3
          desired_size:
            description: Nodes to start with.
            type: int
            default: 2
          disk_size:
            description: Root volume size of each node, in GiB.
            type: int
            default: 20
          capacity_type:
            description: On-demand or spot instances.
            type: str
            choices: [ON_DEMAND, SPOT]
            default: ON_DEMAND
          ami_type:
            description: AMI type (C(AL2023_x86_64_STANDARD), C(BOTTLEROCKET_x86_64)...). Default is the EKS default for the instance types.
            type: str
          labels:
            description: Kubernetes labels of the nodes.
            type: dict
            default: {}
  command:
    description: The commands that make and delete the cluster (with O(provider=command), where it is required).
    type: dict
    suboptions:
      create_command:
        description: Creates the cluster and writes its kubeconfig to O(command.kubeconfig_path). An argument list, run without a shell. Required to create it.
        type: list
        elements: str
      delete_command:
        description: Deletes the cluster. An argument list, run without a shell. Required with O(state=absent).
        type: list
        elements: str
      check_command:
        description:
          - Says whether the cluster exists, exit code 0 when it does, 1 when it does not; others are errors.
            It also runs in check mode, so it must change nothing.
        type: list
        elements: str
      exists:
        description:
          - How to tell whether the cluster exists. V(api) when O(command.kubeconfig_path) exists and the cluster in it
            answers C(/version); V(kubeconfig) when O(command.kubeconfig_path) exists; V(command) by O(command.check_command).
          - Default is V(command) with O(command.check_command), otherwise V(api).
        type: str
        choices: [api, kubeconfig, command]
      kubeconfig_path:
        description: The kubeconfig the create command leaves behind. Relative to O(command.chdir) when relative.
        type: path
        required: true
      context:
        description: Context of the kubeconfig to use. Default is its current context.
        type: str
      chdir:
        description: Directory to run the commands in.
        type: path
      environment:
        description: Environment variables for the commands, besides the module's own. Not hidden in logs; pass secrets through the task's environment.
        type: dict
        default: {}
extends_documentation_fragment:
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Finds whether the cluster exists and plans (RV(actions)); creates, deletes and runs nothing but O(command.check_command).
  diff_mode:
    support: full
    details: The cluster's existence, version and node groups before and after.
notes:
  - Ferry never changes an existing cluster; to change one, change it with the cloud's tools or delete and create it again.
  - IAM permissions for V(eks) are listed in the collection's C(docs/provisioning.md).
'''

EXAMPLES = r'''
- name: Create the DR cluster in eu-west-1 for the failover
  ferry.kube.dr_cluster:
    provider: eks
    name: shop-dr
    eks:
      region: eu-west-1
      cluster_role_arn: arn:aws:iam::123456789012:role/ferry-eks-cluster
      subnet_ids: [subnet-0a1b2c3d, subnet-4e5f6a7b]
      version: "1.30"
      tags: {team: shop}
      nodegroups:
        - name: workers
          node_role_arn: arn:aws:iam::123456789012:role/ferry-eks-node
          instance_types: [m6i.large]
          min_size: 2
          max_size: 6
          desired_size: 3
          disk_size: 50
  register: dr

- name: Restore into it
  ferry.kube.sync:
    mode: restore
    target: "{{ dr.cluster }}"
    pool: "{{ pool }}"
    namespace: shop

- name: An on-premises cluster made by an installer
  ferry.kube.dr_cluster:
    provider: command
    name: dr-onprem
    command:
      create_command: [/opt/installer/bin/install, --config, /etc/installer/dr.yaml]
      delete_command: [/opt/installer/bin/destroy, --config, /etc/installer/dr.yaml]
      kubeconfig_path: /var/lib/installer/dr/kubeconfig
  register: dr

- name: Delete the EKS DR cluster after the failback
  ferry.kube.dr_cluster:
    provider: eks
    name: shop-dr
    state: absent
    eks: {region: eu-west-1}
'''

RETURN = r'''
cluster:
  description:
    - 'Connection options of the cluster for the C(cluster), C(source) or C(target) option of the other modules:
      C({eks: {cluster_name, region, ...}}) with V(eks) (without credentials; give them as for any C(eks) connection,
      for example through the E(AWS_*) variables), C({kubeconfig, context}) with V(command).'
    - Null when the cluster does not exist, also in check mode before it is created.
  returned: always
  type: dict
  sample: {eks: {cluster_name: shop-dr, region: eu-west-1}}
endpoint:
  description: URL of the API server.
  returned: always
  type: str
  sample: https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com
status:
  description: Status of the cluster (C(ACTIVE) with V(eks), C(present) with V(command)); null when it does not exist.
  returned: always
  type: str
  sample: ACTIVE
version:
  description: Kubernetes version of the cluster, when known.
  returned: always
  type: str
  sample: "1.30"
nodegroups:
  description: The cluster's managed node groups (always empty with V(command)).
  returned: always
  type: list
  elements: dict
  sample: [{name: workers, status: ACTIVE, version: "1.30", instance_types: [m6i.large], capacity_type: ON_DEMAND,
            min_size: 2, max_size: 6, desired_size: 3, disk_size: 50}]
actions:
  description: What was done (or, in check mode, would be done).
  returned: always
  type: list
  elements: str
  sample: [create cluster shop-dr, create nodegroup workers]
drift:
  description: Where an existing cluster or node group differs from the options; Ferry changed nothing.
  returned: always
  type: list
  elements: dict
  sample: [{resource: nodegroup/workers, field: desiredSize, wanted: 3, actual: 2}]
commands:
  description: The commands run, with exit code and the tails of their output.
  returned: with O(provider=command)
  type: list
  elements: dict
  sample: [{command: create_command, argv: [/opt/installer/bin/install], rc: 0, stdout_tail: done, stderr_tail: "", duration: 312.5}]
duration:
  description: Seconds taken.
  returned: always
  type: float
  sample: 742.1
'''

import time

from ansible_collections.ferry.kube.plugins.module_utils import provisioning
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.command import command_options
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.eks import eks_options


def run(module):
    params = module.params
    started = time.monotonic()
    kind = params['provider']
    cluster = provisioning.provider(kind, params['name'], params.get(kind) or {}, params['wait_timeout'])
    result = cluster.ensure(params['state'], check_mode=module.check_mode)
    for warning in result.pop('warnings', []):
        module.ansible.warn(warning)
    before, after = result.pop('before'), result.pop('after')
    result['changed'] = before != after
    if module.diff_mode:
        result['diff'] = {'before': before, 'after': after}
    result['duration'] = round(time.monotonic() - started, 3)
    return result


def main():
    module = FerryModule(
        argument_spec=dict(
            provider=dict(type='str', required=True, choices=sorted(provisioning.PROVIDERS)),
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            wait_timeout=dict(type='int', default=1800),
            eks=dict(type='dict', options=eks_options(), apply_defaults=True),
            command=dict(type='dict', options=command_options()),
        ),
        required_if=[('provider', 'command', ['command'])],
        requires_kubernetes=False,
    )
    module.run(run)


if __name__ == '__main__':
    main()
