# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon EKS clusters made on demand: a cluster and its managed node groups, through the EKS API.

Credentials are those of the ``eks`` connection option (``cloud_auth.eks_spec``: profile, keys,
assumed role, endpoints), so the cluster made is reached the way it was made. Ferry tags what it
makes ``ferry.dev/managed=true`` and deletes only clusters with that tag. An existing cluster or
node group is never changed: where it differs from the options, the difference is reported as drift.
"""

from __future__ import annotations

import re

from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth
from ansible_collections.ferry.kube.plugins.module_utils.provisioning import ProvisioningError
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.wait import Deadline, WaitTimeout

MANAGED_TAG = 'ferry.dev/managed'
POLL_SECONDS = 15.0
_CLUSTER_NAME = re.compile(r'^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$')

# IAM permissions an operation needs besides its own eks: action, for AccessDenied messages.
_ALSO_NEEDED = {
    'CreateCluster': ['eks:TagResource', 'iam:PassRole on eks.cluster_role_arn'],
    'CreateNodegroup': ['eks:TagResource', 'iam:PassRole on the node group\'s node_role_arn',
                        'iam:CreateServiceLinkedRole (the first node group of the account)'],
}
_DENIED = ('AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation', 'UnauthorizedException')
_BAD_CREDENTIALS = ('UnrecognizedClientException', 'InvalidClientTokenId', 'InvalidSignatureException', 'SignatureDoesNotMatch',
                    'ExpiredTokenException', 'ExpiredToken')
_WHAT_TO_CHECK = {
    'CreateCluster': 'eks.cluster_role_arn, eks.subnet_ids (two availability zones or more), eks.security_group_ids and eks.version',
    'CreateNodegroup': 'node_role_arn, subnet_ids, instance_types, sizes and disk_size of the node group',
}
_NODE_ROLE_POLICIES = 'AmazonEKSWorkerNodePolicy, AmazonEKS_CNI_Policy and AmazonEC2ContainerRegistryReadOnly'


def nodegroup_spec():
    """Suboptions of one managed node group."""
    return dict(
        name=dict(type='str', required=True),
        node_role_arn=dict(type='str'),
        subnet_ids=dict(type='list', elements='str'),
        instance_types=dict(type='list', elements='str', default=['m5.large']),
        min_size=dict(type='int', default=1),
        max_size=dict(type='int', default=3),
        desired_size=dict(type='int', default=2),
        disk_size=dict(type='int', default=20),
        capacity_type=dict(type='str', choices=['ON_DEMAND', 'SPOT'], default='ON_DEMAND'),
        ami_type=dict(type='str'),
        labels=dict(type='dict', default={}),
    )


def eks_options():
    """Suboptions of the module's ``eks`` option: the connection credentials plus what to create."""
    spec = cloud_auth.eks_spec()
    del spec['cluster_name']  # the module's name option
    spec.update(
        cluster_role_arn=dict(type='str'),
        subnet_ids=dict(type='list', elements='str'),
        security_group_ids=dict(type='list', elements='str'),
        version=dict(type='str'),
        endpoint_public_access=dict(type='bool'),
        endpoint_private_access=dict(type='bool'),
        tags=dict(type='dict', default={}),
        nodegroups=dict(type='list', elements='dict', options=nodegroup_spec(), default=[]),
    )
    return spec


class Provider:
    """An EKS cluster named ``name`` with the node groups of ``options['nodegroups']``."""

    def __init__(self, name, options, wait_timeout, client=None, clock=None, sleep=None):
        if not _CLUSTER_NAME.match(name or ''):
            raise ProvisioningError('name "%s" is not a valid EKS cluster name: use up to 100 letters, digits, hyphens and '
                                    'underscores, starting with a letter or a digit' % name)
        self.name = name
        self.options = dict(options)
        self.wait_timeout = wait_timeout
        self.clock, self.sleep = clock, sleep
        self.poll_seconds = POLL_SECONDS
        self._client = client
        self._region = self.options.get('region')
        self.actions, self.drift, self.warnings = [], [], []

    @property
    def client(self):
        if self._client is None:
            session = cloud_auth.eks_session(dict(self.options, cluster_name=self.name))
            self._region = session.region_name
            self._client = session.client('eks', endpoint_url=self.options.get('endpoint_url'))
        return self._client

    @property
    def region(self):
        return self._region or self.client.meta.region_name

    # -- the two states -------------------------------------------------------------------------
    def ensure(self, state, check_mode=False):
        deadline = Deadline(self.wait_timeout, self.clock, self.sleep)
        cluster = self._describe_cluster()
        nodegroups = self._describe_nodegroups(cluster)
        before = _summary(cluster, nodegroups)
        if state == 'absent':
            cluster, nodegroups, after = self._absent(cluster, nodegroups, check_mode, deadline)
        else:
            cluster, nodegroups, after = self._present(cluster, nodegroups, check_mode, deadline)
        exists = cluster is not None and cluster.get('status') != 'DELETING'
        return {
            'changed': before != after,
            'cluster': self.connection() if exists else None,
            'endpoint': (cluster or {}).get('endpoint') if exists else None,
            'status': (cluster or {}).get('status') if exists else None,
            'version': (cluster or {}).get('version') if exists else None,
            'nodegroups': [_nodegroup_summary(nodegroups[n]) for n in sorted(nodegroups)] if exists else [],
            'actions': self.actions,
            'drift': self.drift,
            'warnings': self.warnings,
            'before': before,
            'after': after,
        }

    def connection(self):
        """The Ferry connection dict of the cluster: where it is and how to authenticate, never a secret."""
        eks = {'cluster_name': self.name, 'region': self.region}
        for key in ('profile', 'role_arn', 'endpoint_url', 'sts_endpoint_url'):
            if self.options.get(key):
                eks[key] = self.options[key]
        return {'eks': eks}

    def _present(self, cluster, nodegroups, check_mode, deadline):
        wanted = self.options.get('nodegroups') or []
        missing = [ng for ng in wanted if ng['name'] not in nodegroups]
        if cluster is None:
            self._require_cluster_options()
        else:
            self._check_cluster_usable(cluster)
            self._cluster_drift(cluster)
        subnets = self.options.get('subnet_ids') or ((cluster or {}).get('resourcesVpcConfig') or {}).get('subnetIds') or []
        for ng in missing:
            self._require_nodegroup_options(ng, subnets)
        for ng in wanted:
            if ng['name'] in nodegroups:
                self._check_nodegroup_usable(nodegroups[ng['name']])
                self._nodegroup_drift(ng, nodegroups[ng['name']])
        for name in sorted(set(nodegroups) - {ng['name'] for ng in wanted}) if wanted else ():
            self._note_drift('nodegroup/%s' % name, 'exists', False, True,
                             'node group %s of EKS cluster %s is not in eks.nodegroups: Ferry leaves it as it is' % (name, self.name))
        if cluster is None:
            self.actions.append('create cluster %s' % self.name)
        self.actions.extend('create nodegroup %s' % ng['name'] for ng in missing)
        if check_mode:
            version = (cluster or {}).get('version') or self.options.get('version')
            return cluster, nodegroups, {'exists': True, 'version': version, 'nodegroups': sorted(set(nodegroups) | {ng['name'] for ng in wanted})}

        if cluster is None:
            self._call('CreateCluster', self.client.create_cluster, **self._cluster_request())
        if cluster is None or cluster.get('status') != 'ACTIVE':
            cluster = self._wait_cluster_active(deadline)
        for ng in missing:
            self._call('CreateNodegroup', self.client.create_nodegroup, **self._nodegroup_request(ng, subnets))
        waiting = [ng['name'] for ng in wanted if ng['name'] not in nodegroups or nodegroups[ng['name']].get('status') != 'ACTIVE']
        if waiting:
            nodegroups.update(self._wait_nodegroups_active(waiting, deadline))
        return cluster, nodegroups, _summary(cluster, nodegroups)

    def _absent(self, cluster, nodegroups, check_mode, deadline):
        if cluster is None:
            return None, {}, _summary(None, {})
        if (cluster.get('tags') or {}).get(MANAGED_TAG) != 'true':
            raise ProvisioningError('EKS cluster %s has no tag %s=true: Ferry deletes only clusters it made. Delete it yourself, '
                                    'or tag it %s=true to let Ferry delete it' % (self.name, MANAGED_TAG, MANAGED_TAG))
        to_delete = sorted(n for n, ng in nodegroups.items() if ng.get('status') != 'DELETING')
        self.actions.extend('delete nodegroup %s' % n for n in to_delete)
        if cluster.get('status') != 'DELETING':
            self.actions.append('delete cluster %s' % self.name)
        if check_mode:
            return None, {}, _summary(None, {})
        for name in to_delete:
            self._call('DeleteNodegroup', self.client.delete_nodegroup, clusterName=self.name, nodegroupName=name, missing_ok=True)
        if nodegroups:
            self._wait_nodegroups_gone(sorted(nodegroups), deadline)
        if cluster.get('status') != 'DELETING':
            self._call('DeleteCluster', self.client.delete_cluster, name=self.name, missing_ok=True)
        self._wait_cluster_gone(deadline)
        return None, {}, _summary(None, {})

    # -- requests ---------------------------------------------------------------------------------
    def _require_cluster_options(self):
        missing = [key for key in ('cluster_role_arn', 'subnet_ids') if not self.options.get(key)]
        if missing:
            raise ProvisioningError('EKS cluster %s does not exist and creating it needs %s: the IAM role EKS assumes for the cluster '
                                    '(with the AmazonEKSClusterPolicy managed policy) and subnets of its VPC in two availability zones '
                                    'or more' % (self.name, ' and '.join('eks.' + key for key in missing)), missing=missing)

    def _require_nodegroup_options(self, ng, subnets):
        if not ng.get('node_role_arn'):
            raise ProvisioningError('node group %s needs node_role_arn: the IAM role of its EC2 nodes (with the managed policies %s)'
                                    % (ng['name'], _NODE_ROLE_POLICIES), missing=['node_role_arn'])
        if not (ng.get('subnet_ids') or subnets):
            raise ProvisioningError('node group %s needs subnets: set its subnet_ids or eks.subnet_ids' % ng['name'], missing=['subnet_ids'])
        if not ng['min_size'] <= ng['desired_size'] <= ng['max_size'] or ng['max_size'] < 1:
            raise ProvisioningError('node group %s: sizes must satisfy min_size <= desired_size <= max_size and max_size >= 1 (got %d, %d, %d)'
                                    % (ng['name'], ng['min_size'], ng['desired_size'], ng['max_size']))

    def _tags(self):
        tags = {str(k): str(v) for k, v in (self.options.get('tags') or {}).items()}
        tags[MANAGED_TAG] = 'true'
        return tags

    def _cluster_request(self):
        vpc = {'subnetIds': list(self.options['subnet_ids'])}
        if self.options.get('security_group_ids'):
            vpc['securityGroupIds'] = list(self.options['security_group_ids'])
        if self.options.get('endpoint_public_access') is not None:
            vpc['endpointPublicAccess'] = self.options['endpoint_public_access']
        if self.options.get('endpoint_private_access') is not None:
            vpc['endpointPrivateAccess'] = self.options['endpoint_private_access']
        request = {'name': self.name, 'roleArn': self.options['cluster_role_arn'], 'resourcesVpcConfig': vpc, 'tags': self._tags()}
        if self.options.get('version'):
            request['version'] = self.options['version']
        return request

    def _nodegroup_request(self, ng, subnets):
        request = {
            'clusterName': self.name,
            'nodegroupName': ng['name'],
            'nodeRole': ng['node_role_arn'],
            'subnets': list(ng.get('subnet_ids') or subnets),
            'instanceTypes': list(ng['instance_types']),
            'scalingConfig': {'minSize': ng['min_size'], 'maxSize': ng['max_size'], 'desiredSize': ng['desired_size']},
            'diskSize': ng['disk_size'],
            'capacityType': ng['capacity_type'],
            'labels': {str(k): str(v) for k, v in (ng.get('labels') or {}).items()},
            'tags': self._tags(),
        }
        if ng.get('ami_type'):
            request['amiType'] = ng['ami_type']
        return request

    # -- reading --------------------------------------------------------------------------------
    def _describe_cluster(self):
        return (self._call('DescribeCluster', self.client.describe_cluster, name=self.name, missing_ok=True) or {}).get('cluster')

    def _describe_nodegroup(self, name):
        found = self._call('DescribeNodegroup', self.client.describe_nodegroup, clusterName=self.name, nodegroupName=name, missing_ok=True)
        return (found or {}).get('nodegroup')

    def _nodegroup_names(self):
        names, kwargs = [], {'clusterName': self.name}
        while True:
            page = self._call('ListNodegroups', self.client.list_nodegroups, missing_ok=True, **kwargs) or {}
            names.extend(page.get('nodegroups') or [])
            if not page.get('nextToken'):
                return names
            kwargs['nextToken'] = page['nextToken']

    def _describe_nodegroups(self, cluster):
        if cluster is None:
            return {}
        found = {}
        for name in self._nodegroup_names():
            described = self._describe_nodegroup(name)
            if described is not None:
                found[name] = described
        return found

    # -- waiting --------------------------------------------------------------------------------
    def _wait_cluster_active(self, deadline):
        def check():
            cluster = self._describe_cluster()
            if cluster is None:
                raise ProvisioningError('EKS cluster %s disappeared while Ferry waited for it to become ACTIVE: it was deleted; run again'
                                        % self.name)
            self._check_cluster_usable(cluster)
            return cluster.get('status') == 'ACTIVE', cluster
        try:
            return deadline.poll(check, self.poll_seconds)
        except WaitTimeout as exc:
            status = exc.last.get('status')
            raise ProvisioningError('EKS cluster %s is still %s after %d seconds (wait_timeout): EKS takes 10 to 15 minutes to make a '
                                    'cluster; raise wait_timeout, or run again to go on waiting' % (self.name, status, self.wait_timeout),
                                    status=status) from None

    def _wait_nodegroups_active(self, names, deadline):
        current = {}

        def check():
            for name in names:
                if (current.get(name) or {}).get('status') == 'ACTIVE':
                    continue
                described = self._describe_nodegroup(name)
                if described is None:
                    raise ProvisioningError('node group %s of EKS cluster %s disappeared while Ferry waited for it to become ACTIVE: '
                                            'it was deleted; run again' % (name, self.name))
                self._check_nodegroup_usable(described)
                current[name] = described
            return all(ng.get('status') == 'ACTIVE' for ng in current.values()), current
        try:
            return deadline.poll(check, self.poll_seconds)
        except WaitTimeout:
            pending = ', '.join('%s is %s' % (n, current[n].get('status')) for n in names if current[n].get('status') != 'ACTIVE')
            raise ProvisioningError('node groups of EKS cluster %s are not ACTIVE after %d seconds (wait_timeout): %s. Raise wait_timeout, '
                                    'or run again to go on waiting' % (self.name, self.wait_timeout, pending), status=pending) from None

    def _wait_nodegroups_gone(self, names, deadline):
        def check():
            left = {}
            for name in names:
                described = self._describe_nodegroup(name)
                if described is None:
                    continue
                if described.get('status') == 'DELETE_FAILED':
                    raise ProvisioningError('EKS could not delete node group %s of cluster %s: %s. Fix that, then run again'
                                            % (name, self.name, _health(described) or 'no reason given'), status='DELETE_FAILED')
                left[name] = described.get('status')
            return not left, left
        try:
            deadline.poll(check, self.poll_seconds)
        except WaitTimeout as exc:
            raise ProvisioningError('node groups of EKS cluster %s are still there after %d seconds (wait_timeout): %s. Raise wait_timeout, '
                                    'or run again to go on waiting' % (self.name, self.wait_timeout,
                                                                       ', '.join('%s is %s' % item for item in sorted(exc.last.items()))),
                                    status=exc.last) from None

    def _wait_cluster_gone(self, deadline):
        def check():
            cluster = self._describe_cluster()
            return cluster is None, (cluster or {}).get('status')
        try:
            deadline.poll(check, self.poll_seconds)
        except WaitTimeout as exc:
            raise ProvisioningError('EKS cluster %s is still %s after %d seconds (wait_timeout): raise wait_timeout, or run again to go on '
                                    'waiting' % (self.name, exc.last, self.wait_timeout), status=exc.last) from None

    # -- states that stop a run -------------------------------------------------------------------
    def _check_cluster_usable(self, cluster):
        status = cluster.get('status')
        if status == 'FAILED':
            raise ProvisioningError('EKS cluster %s FAILED: %s. Delete it (state=absent), fix the cause and run again'
                                    % (self.name, _health(cluster) or 'EKS gives no reason; see the cluster in the AWS console'), status=status)
        if status == 'DELETING':
            raise ProvisioningError('EKS cluster %s is being deleted: wait until it is gone (state=absent waits for it), then run again'
                                    % self.name, status=status)

    def _check_nodegroup_usable(self, ng):
        status, name = ng.get('status'), ng.get('nodegroupName')
        if status in ('CREATE_FAILED', 'DEGRADED'):
            raise ProvisioningError('node group %s of EKS cluster %s is %s: %s. Nodes that do not join usually lack the node role policies (%s) '
                                    'or a route from their subnets to the cluster endpoint and ECR; delete the node group, fix the cause '
                                    'and run again' % (name, self.name, status, _health(ng) or 'EKS gives no reason', _NODE_ROLE_POLICIES),
                                    status=status)
        if status in ('DELETING', 'DELETE_FAILED'):
            raise ProvisioningError('node group %s of EKS cluster %s is %s: wait until it is gone, then run again' % (name, self.name, status),
                                    status=status)

    # -- drift ----------------------------------------------------------------------------------
    def _note_drift(self, resource, field, wanted, actual, message):
        self.drift.append({'resource': resource, 'field': field, 'wanted': wanted, 'actual': actual})
        self.warnings.append(message)

    def _compare(self, resource, field, option, wanted, actual):
        if wanted is None or wanted == actual:
            return
        kind, name = resource.split('/', 1)
        where = 'EKS cluster %s' % self.name if kind == 'cluster' else 'node group %s of EKS cluster %s' % (name, self.name)
        self._note_drift(resource, field, wanted, actual,
                         '%s has %s %s, not %s as %s asks: Ferry does not change existing clusters; change it yourself, '
                         'or delete it (state=absent) and run again' % (where, field, _shown(actual), _shown(wanted), option))

    def _cluster_drift(self, cluster):
        vpc = cluster.get('resourcesVpcConfig') or {}
        resource = 'cluster/%s' % self.name
        self._compare(resource, 'version', 'eks.version', self.options.get('version'), cluster.get('version'))
        self._compare(resource, 'roleArn', 'eks.cluster_role_arn', self.options.get('cluster_role_arn'), cluster.get('roleArn'))
        self._compare(resource, 'subnetIds', 'eks.subnet_ids', _sorted(self.options.get('subnet_ids')), _sorted(vpc.get('subnetIds') or []))
        self._compare(resource, 'securityGroupIds', 'eks.security_group_ids', _sorted(self.options.get('security_group_ids')),
                      _sorted(vpc.get('securityGroupIds') or []))
        for option, field in (('endpoint_public_access', 'endpointPublicAccess'), ('endpoint_private_access', 'endpointPrivateAccess')):
            if field in vpc:
                self._compare(resource, field, 'eks.' + option, self.options.get(option), vpc[field])
        tags = cluster.get('tags') or {}
        wanted_tags = self._tags()
        differing = {k: v for k, v in wanted_tags.items() if tags.get(k) != v}
        if differing:
            self._compare(resource, 'tags', 'eks.tags (and Ferry\'s %s=true)' % MANAGED_TAG, differing, {k: tags.get(k) for k in differing})

    def _nodegroup_drift(self, ng, actual):
        resource = 'nodegroup/%s' % ng['name']
        option = 'eks.nodegroups[%s]' % ng['name']
        scaling = actual.get('scalingConfig') or {}
        self._compare(resource, 'nodeRole', option + '.node_role_arn', ng.get('node_role_arn'), actual.get('nodeRole'))
        self._compare(resource, 'subnets', option + '.subnet_ids', _sorted(ng.get('subnet_ids')), _sorted(actual.get('subnets') or []))
        self._compare(resource, 'instanceTypes', option + '.instance_types', _sorted(ng.get('instance_types')), _sorted(actual.get('instanceTypes') or []))
        self._compare(resource, 'minSize', option + '.min_size', ng.get('min_size'), scaling.get('minSize'))
        self._compare(resource, 'maxSize', option + '.max_size', ng.get('max_size'), scaling.get('maxSize'))
        self._compare(resource, 'desiredSize', option + '.desired_size', ng.get('desired_size'), scaling.get('desiredSize'))
        if actual.get('diskSize') is not None:  # None when the node group uses a launch template
            self._compare(resource, 'diskSize', option + '.disk_size', ng.get('disk_size'), actual.get('diskSize'))
        self._compare(resource, 'capacityType', option + '.capacity_type', ng.get('capacity_type'), actual.get('capacityType') or 'ON_DEMAND')
        self._compare(resource, 'amiType', option + '.ami_type', ng.get('ami_type'), actual.get('amiType'))
        labels = actual.get('labels') or {}
        differing = {str(k): str(v) for k, v in (ng.get('labels') or {}).items() if labels.get(str(k)) != str(v)}
        if differing:
            self._compare(resource, 'labels', option + '.labels', differing, {k: labels.get(k) for k in differing})

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, operation, method, missing_ok=False, **kwargs):
        """``method(**kwargs)``, with AWS errors turned into messages that name the fix; None if not found and ``missing_ok``."""
        aws_errors = cloud_auth._aws()[1]  # pylint: disable=protected-access
        try:
            return method(**kwargs)
        except aws_errors.ClientError as exc:
            error = exc.response.get('Error') or {}
            if missing_ok and error.get('Code') == 'ResourceNotFoundException':
                return None
            raise self._client_error(operation, error.get('Code') or '', error.get('Message') or str(exc)) from None
        except aws_errors.NoCredentialsError:
            raise ProvisioningError('no AWS credentials to manage EKS cluster %s: set eks.access_key and eks.secret_key, eks.profile, '
                                    'or the AWS_* environment variables' % self.name) from None
        except aws_errors.EndpointConnectionError as exc:
            raise ProvisioningError('cannot reach the EKS API: %s; check eks.region, eks.endpoint_url and the network' % exc) from None
        except aws_errors.BotoCoreError as exc:
            raise ProvisioningError('EKS %s for cluster %s failed: %s' % (operation, self.name, exc), operation=operation) from None

    def _client_error(self, operation, code, message):
        details = {'operation': operation, 'aws_error_code': code}
        if code in _DENIED:
            needed = ['eks:%s' % operation] + _ALSO_NEEDED.get(operation, [])
            return ProvisioningError('AWS denied %s on EKS cluster %s: the AWS identity Ferry uses needs the IAM permission%s %s '
                                     '(AWS says: %s)' % (operation, self.name, 's' if len(needed) > 1 else '', ', '.join(needed), message),
                                     permissions=needed, **details)
        if code in _BAD_CREDENTIALS:
            return ProvisioningError('AWS rejected the credentials for EKS %s (%s: %s): check eks.access_key, eks.secret_key and '
                                     'eks.session_token, or eks.profile' % (operation, code, message), **details)
        if code == 'ResourceInUseException':
            return ProvisioningError('EKS cluster %s is busy, %s was refused: %s. Another create, update or delete is in progress (or node '
                                     'groups or Fargate profiles are still attached); wait for it to end and run again'
                                     % (self.name, operation, message), **details)
        if code == 'InvalidParameterException' or code == 'InvalidRequestException':
            return ProvisioningError('EKS rejected %s for cluster %s: %s. Check %s' % (operation, self.name, message,
                                                                                       _WHAT_TO_CHECK.get(operation, 'the eks options')), **details)
        if code == 'UnsupportedAvailabilityZoneException':
            return ProvisioningError('EKS cannot use an availability zone of the subnets of cluster %s: %s. Choose subnets in other zones'
                                     % (self.name, message), **details)
        if code == 'ResourceLimitExceededException':
            return ProvisioningError('the EKS quota of the account is reached (%s for cluster %s): %s. Delete unused clusters or node groups, '
                                     'or ask AWS for a higher quota' % (operation, self.name, message), **details)
        if code == 'ResourceNotFoundException':
            return ProvisioningError('EKS %s for cluster %s: %s' % (operation, self.name, message), **details)
        return ProvisioningError('EKS %s for cluster %s failed: %s: %s' % (operation, self.name, code, message), **details)


def _summary(cluster, nodegroups):
    """What a run changes, compared before and after: existence, version and node groups (not the status)."""
    if cluster is None or cluster.get('status') == 'DELETING':
        return {'exists': False, 'version': None, 'nodegroups': []}
    return {'exists': True, 'version': cluster.get('version'), 'nodegroups': sorted(nodegroups)}


def _nodegroup_summary(ng):
    scaling = ng.get('scalingConfig') or {}
    return {
        'name': ng.get('nodegroupName'),
        'status': ng.get('status'),
        'version': ng.get('version'),
        'instance_types': ng.get('instanceTypes') or [],
        'capacity_type': ng.get('capacityType'),
        'min_size': scaling.get('minSize'),
        'max_size': scaling.get('maxSize'),
        'desired_size': scaling.get('desiredSize'),
        'disk_size': ng.get('diskSize'),
    }


def _health(resource):
    issues = ((resource.get('health') or {}).get('issues')) or []
    return '; '.join('%s: %s' % (issue.get('code'), issue.get('message')) for issue in issues)


def _sorted(values):
    return None if values is None else sorted(values)


def _shown(value):
    return ', '.join(value) if isinstance(value, list) else str(value)
