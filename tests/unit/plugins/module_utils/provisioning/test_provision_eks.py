"""The EKS provider: against moto's EKS emulator (real boto3 calls over HTTP), and against scripted clients for
what moto does not do (it makes clusters and node groups ACTIVE, and deletes them, at once)."""

import base64
from types import SimpleNamespace

import boto3
import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.provisioning import ProvisioningError, provider
from ansible_collections.ferry.kube.plugins.module_utils.provisioning.eks import Provider
from provisioning_helpers import AWS, CLUSTER_ROLE, NODE_ROLE, eks_params

SUBNETS = ['subnet-0aaa', 'subnet-0bbb']
WORKERS = {'name': 'workers', 'node_role_arn': NODE_ROLE, 'instance_types': ['m6i.large'], 'min_size': 2, 'max_size': 5,
           'desired_size': 3, 'disk_size': 50, 'labels': {'role': 'dr'}}


def full_options(moto, **values):
    settings = dict(cluster_role_arn=CLUSTER_ROLE, subnet_ids=SUBNETS, security_group_ids=['sg-0ccc'], version='1.29',
                    tags={'team': 'shop'}, nodegroups=[WORKERS])
    settings.update(values)
    return eks_params(moto, **settings)


def aws_client(moto):
    return boto3.client('eks', endpoint_url=moto.url, region_name=AWS['region'],
                        aws_access_key_id=AWS['access_key'], aws_secret_access_key=AWS['secret_key'])


# -- against moto ---------------------------------------------------------------------------------

def test_creates_cluster_and_nodegroup_then_reports_unchanged(moto):
    options = full_options(moto)
    result = provider('eks', 'dr-create', options, 60).ensure('present')
    assert result['changed'] is True
    assert result['actions'] == ['create cluster dr-create', 'create nodegroup workers']
    assert result['status'] == 'ACTIVE' and result['version'] == '1.29' and result['endpoint'].startswith('https://')
    assert [(ng['name'], ng['status'], ng['desired_size']) for ng in result['nodegroups']] == [('workers', 'ACTIVE', 3)]
    assert result['drift'] == [] and result['warnings'] == []

    made = aws_client(moto).describe_cluster(name='dr-create')['cluster']
    assert made['roleArn'] == CLUSTER_ROLE and made['version'] == '1.29'
    assert made['resourcesVpcConfig']['subnetIds'] == SUBNETS and made['resourcesVpcConfig']['securityGroupIds'] == ['sg-0ccc']
    assert made['tags'] == {'team': 'shop', 'ferry.dev/managed': 'true'}
    group = aws_client(moto).describe_nodegroup(clusterName='dr-create', nodegroupName='workers')['nodegroup']
    assert group['nodeRole'] == NODE_ROLE and group['subnets'] == SUBNETS and group['instanceTypes'] == ['m6i.large']
    assert group['scalingConfig'] == {'minSize': 2, 'maxSize': 5, 'desiredSize': 3} and group['diskSize'] == 50
    assert group['labels'] == {'role': 'dr'} and group['tags']['ferry.dev/managed'] == 'true'

    again = provider('eks', 'dr-create', options, 60).ensure('present')
    assert again['changed'] is False and again['actions'] == [] and again['drift'] == []
    assert again['cluster'] == result['cluster']


def test_returned_connection_is_credentials_free_and_connects(moto):
    options = full_options(moto, nodegroups=[], profile=None)
    result = provider('eks', 'dr-connect', options, 60).ensure('present')
    connection = result['cluster']
    assert connection == {'eks': {'cluster_name': 'dr-connect', 'region': 'eu-west-1', 'endpoint_url': moto.url, 'sts_endpoint_url': moto.url}}
    assert AWS['secret_key'] not in repr(result) and AWS['access_key'] not in repr(result)
    checked = ArgumentSpecValidator({'cluster': cluster_option()}).validate({'cluster': connection})
    assert not checked.error_messages, checked.error_messages
    # What connection.connect does with it, given the credentials the way a playbook gives them (AWS_* variables).
    endpoint = cloud_auth.eks_endpoint(dict(connection['eks'], access_key=AWS['access_key'], secret_key=AWS['secret_key']), {})
    described = aws_client(moto).describe_cluster(name='dr-connect')['cluster']
    assert endpoint['host'] == described['endpoint'] == result['endpoint']
    assert endpoint['ca_data'] == base64.b64decode(described['certificateAuthority']['data'])
    assert endpoint['token'].startswith('k8s-aws-v1.')


def test_existing_cluster_with_other_settings_is_drift_not_change(moto):
    provider('eks', 'dr-drift', full_options(moto), 60).ensure('present')
    changed_group = dict(WORKERS, desired_size=4, instance_types=['m6i.xlarge'])
    result = provider('eks', 'dr-drift', full_options(moto, version='1.30', nodegroups=[changed_group]), 60).ensure('present')
    assert result['changed'] is False and result['actions'] == []
    assert {(d['resource'], d['field'], str(d['wanted']), str(d['actual'])) for d in result['drift']} == {
        ('cluster/dr-drift', 'version', '1.30', '1.29'),
        ('nodegroup/workers', 'instanceTypes', "['m6i.xlarge']", "['m6i.large']"),
        ('nodegroup/workers', 'desiredSize', '4', '3'),
    }
    assert any('version 1.29, not 1.30 as eks.version asks' in w and 'Ferry does not change existing clusters' in w for w in result['warnings'])
    group = aws_client(moto).describe_nodegroup(clusterName='dr-drift', nodegroupName='workers')['nodegroup']
    assert group['scalingConfig']['desiredSize'] == 3


def test_adds_a_missing_nodegroup_to_an_existing_cluster_and_reports_extra_ones(moto):
    provider('eks', 'dr-add', full_options(moto), 60).ensure('present')
    spare = dict(WORKERS, name='spare', labels={})
    result = provider('eks', 'dr-add', full_options(moto, nodegroups=[spare]), 60).ensure('present')
    assert result['changed'] is True and result['actions'] == ['create nodegroup spare']
    assert [ng['name'] for ng in result['nodegroups']] == ['spare', 'workers']
    assert result['drift'] == [{'resource': 'nodegroup/workers', 'field': 'exists', 'wanted': False, 'actual': True}]
    assert 'Ferry leaves it as it is' in result['warnings'][0]


def test_an_existing_cluster_needs_no_creation_options(moto):
    provider('eks', 'dr-adopt', full_options(moto), 60).ensure('present')
    result = provider('eks', 'dr-adopt', eks_params(moto), 60).ensure('present')
    assert result['changed'] is False and result['status'] == 'ACTIVE' and result['drift'] == []


def test_check_mode_plans_and_creates_nothing(moto):
    result = provider('eks', 'dr-plan', full_options(moto), 60).ensure('present', check_mode=True)
    assert result['changed'] is True and result['cluster'] is None
    assert result['actions'] == ['create cluster dr-plan', 'create nodegroup workers']
    assert result['after'] == {'exists': True, 'version': '1.29', 'nodegroups': ['workers']}
    assert 'dr-plan' not in aws_client(moto).list_clusters()['clusters']

    provider('eks', 'dr-plan', full_options(moto), 60).ensure('present')
    planned = provider('eks', 'dr-plan', eks_params(moto), 60).ensure('absent', check_mode=True)
    assert planned['changed'] is True and planned['actions'] == ['delete nodegroup workers', 'delete cluster dr-plan']
    assert aws_client(moto).describe_cluster(name='dr-plan')['cluster']['status'] == 'ACTIVE'


def test_absent_deletes_nodegroups_then_cluster(moto):
    provider('eks', 'dr-delete', full_options(moto), 60).ensure('present')
    result = provider('eks', 'dr-delete', eks_params(moto), 60).ensure('absent')
    assert result['changed'] is True and result['cluster'] is None and result['status'] is None
    assert result['actions'] == ['delete nodegroup workers', 'delete cluster dr-delete']
    assert 'dr-delete' not in aws_client(moto).list_clusters()['clusters']
    again = provider('eks', 'dr-delete', eks_params(moto), 60).ensure('absent')
    assert again['changed'] is False and again['actions'] == []


def test_absent_leaves_clusters_ferry_did_not_make(moto):
    aws_client(moto).create_cluster(name='prod-main', roleArn=CLUSTER_ROLE, resourcesVpcConfig={'subnetIds': SUBNETS})
    with pytest.raises(ProvisioningError, match='prod-main has no tag ferry.dev/managed=true: Ferry deletes only clusters it made'):
        provider('eks', 'prod-main', eks_params(moto), 60).ensure('absent')
    assert aws_client(moto).describe_cluster(name='prod-main')['cluster']['status'] == 'ACTIVE'


def test_missing_creation_options_are_named_also_in_check_mode(moto):
    for check_mode in (True, False):
        with pytest.raises(ProvisioningError, match=r'dr-bare does not exist and creating it needs eks.cluster_role_arn and eks.subnet_ids') as caught:
            provider('eks', 'dr-bare', eks_params(moto), 60).ensure('present', check_mode=check_mode)
        assert caught.value.details['missing'] == ['cluster_role_arn', 'subnet_ids']
    nameless = dict(WORKERS, node_role_arn=None)
    with pytest.raises(ProvisioningError, match='node group workers needs node_role_arn: the IAM role of its EC2 nodes'):
        provider('eks', 'dr-bare', full_options(moto, nodegroups=[nameless]), 60).ensure('present')
    assert 'dr-bare' not in aws_client(moto).list_clusters()['clusters']  # checked before anything is made
    with pytest.raises(ProvisioningError, match='min_size <= desired_size <= max_size'):
        provider('eks', 'dr-bare', full_options(moto, nodegroups=[dict(WORKERS, desired_size=9)]), 60).ensure('present')


def test_invalid_name_and_unknown_provider():
    with pytest.raises(ProvisioningError, match='"dr cluster" is not a valid EKS cluster name'):
        Provider('dr cluster', {}, 60)
    with pytest.raises(ProvisioningError, match='unknown provisioning provider "gke"'):
        provider('gke', 'x', {}, 60)


def test_missing_region_is_named(monkeypatch):
    for var in ('AWS_REGION', 'AWS_DEFAULT_REGION'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('AWS_CONFIG_FILE', '/nonexistent')
    with pytest.raises(Exception, match='eks.region is not set'):
        Provider('dr-x', {'access_key': 'a', 'secret_key': 'b'}, 60).ensure('present')


# -- scripted: waiting, failures, errors --------------------------------------------------------

def not_found(operation):
    return ClientError({'Error': {'Code': 'ResourceNotFoundException', 'Message': 'not found'}}, operation)


class ScriptedEks:
    """An EKS client whose resources move through scripted statuses, one per describe call (None: gone)."""

    def __init__(self, cluster=None, nodegroups=None):
        self.meta = SimpleNamespace(region_name='eu-west-1')
        self.calls = []
        self.cluster = cluster
        self.nodegroups = dict(nodegroups or {})
        self.scripts = {}

    def _step(self, key):
        target = self.cluster if key == 'cluster' else self.nodegroups.get(key)
        script = self.scripts.get(key)
        if target is None or not script:
            return
        status = script.pop(0)
        if status is None and key == 'cluster':
            self.cluster = None
        elif status is None:
            del self.nodegroups[key]
        else:
            target['status'] = status

    def describe_cluster(self, name):
        self.calls.append('DescribeCluster')
        self._step('cluster')
        if self.cluster is None:
            raise not_found('DescribeCluster')
        return {'cluster': dict(self.cluster)}

    def create_cluster(self, **request):
        self.calls.append('CreateCluster')
        self.cluster = {'name': request['name'], 'status': 'CREATING', 'version': request.get('version', '1.31'), 'roleArn': request['roleArn'],
                        'resourcesVpcConfig': request['resourcesVpcConfig'], 'tags': request['tags']}
        return {'cluster': dict(self.cluster)}

    def delete_cluster(self, name):
        self.calls.append('DeleteCluster')
        assert not self.nodegroups, 'the cluster is deleted after its node groups are gone'
        self.cluster['status'] = 'DELETING'
        return {'cluster': dict(self.cluster)}

    def list_nodegroups(self, clusterName, nextToken=None):
        self.calls.append('ListNodegroups')
        names = sorted(self.nodegroups)
        if nextToken is None and len(names) > 1:
            return {'nodegroups': names[:1], 'nextToken': 'page2'}
        return {'nodegroups': names[1:] if nextToken else names}

    def describe_nodegroup(self, clusterName, nodegroupName):
        self.calls.append('DescribeNodegroup')
        self._step(nodegroupName)
        if nodegroupName not in self.nodegroups:
            raise not_found('DescribeNodegroup')
        return {'nodegroup': dict(self.nodegroups[nodegroupName])}

    def create_nodegroup(self, **request):
        self.calls.append('CreateNodegroup')
        self.nodegroups[request['nodegroupName']] = {'nodegroupName': request['nodegroupName'], 'status': 'CREATING', 'nodeRole': request['nodeRole'],
                                                     'subnets': request['subnets'], 'instanceTypes': request['instanceTypes'],
                                                     'scalingConfig': request['scalingConfig'], 'diskSize': request['diskSize'],
                                                     'capacityType': request['capacityType'], 'labels': request['labels']}
        return {'nodegroup': dict(self.nodegroups[request['nodegroupName']])}

    def delete_nodegroup(self, clusterName, nodegroupName):
        self.calls.append('DeleteNodegroup')
        self.nodegroups[nodegroupName]['status'] = 'DELETING'
        return {'nodegroup': dict(self.nodegroups[nodegroupName])}


def scripted(client, fake_time, wait_timeout=1800, **values):
    options = dict(cluster_role_arn=CLUSTER_ROLE, subnet_ids=SUBNETS, nodegroups=[WORKERS])
    options.update(values)
    return Provider('dr-slow', eks_params(**options), wait_timeout, client=client, clock=fake_time.clock, sleep=fake_time.sleep)


def test_waits_for_cluster_then_nodegroup_to_become_active(fake_time):
    client = ScriptedEks()
    client.scripts = {'cluster': ['CREATING', 'CREATING', 'CREATING', 'ACTIVE'], 'workers': ['CREATING', 'CREATING', 'ACTIVE']}
    result = scripted(client, fake_time).ensure('present')
    assert result['changed'] is True and result['status'] == 'ACTIVE'
    assert [ng['status'] for ng in result['nodegroups']] == ['ACTIVE']
    assert fake_time.sleeps == [15.0] * 5  # 3 polls before the cluster is ACTIVE, 2 before the node group is
    assert client.calls.index('CreateNodegroup') > len(client.calls) - 5 > client.calls.index('CreateCluster')
    assert client.calls[:3] == ['DescribeCluster', 'CreateCluster', 'DescribeCluster']


def test_waits_for_a_cluster_another_run_is_creating(fake_time):
    client = ScriptedEks(cluster={'name': 'dr-slow', 'status': 'CREATING', 'version': '1.31', 'tags': {'ferry.dev/managed': 'true'}})
    client.scripts = {'cluster': ['CREATING', 'CREATING', 'ACTIVE'], 'workers': ['ACTIVE']}
    result = scripted(client, fake_time, nodegroups=[]).ensure('present')
    assert result['changed'] is False and result['status'] == 'ACTIVE' and 'CreateCluster' not in client.calls
    assert len(fake_time.sleeps) == 1


def test_timeout_names_the_current_status(fake_time):
    client = ScriptedEks()
    client.scripts = {'cluster': ['CREATING'] * 1000}
    with pytest.raises(ProvisioningError, match=r'EKS cluster dr-slow is still CREATING after 60 seconds \(wait_timeout\): .* raise wait_timeout') as caught:
        scripted(client, fake_time, wait_timeout=60).ensure('present')
    assert caught.value.details['status'] == 'CREATING'
    assert sum(fake_time.sleeps) == 60

    client = ScriptedEks()
    client.scripts = {'cluster': ['ACTIVE'], 'workers': ['CREATING'] * 1000}
    with pytest.raises(ProvisioningError, match=r'node groups of EKS cluster dr-slow are not ACTIVE after 100 seconds \(wait_timeout\): workers is CREATING'):
        scripted(client, fake_time, wait_timeout=100).ensure('present')


def test_failed_cluster_and_nodegroup_give_the_health_issue(fake_time):
    client = ScriptedEks()
    client.scripts = {'cluster': ['CREATING', 'FAILED']}
    original = client.describe_cluster

    def with_health(name):
        found = original(name)
        if found['cluster']['status'] == 'FAILED':
            found['cluster']['health'] = {'issues': [{'code': 'Ec2SubnetInvalidConfiguration', 'message': 'subnet-0aaa has no free IP addresses'}]}
        return found
    client.describe_cluster = with_health
    with pytest.raises(ProvisioningError, match='dr-slow FAILED: Ec2SubnetInvalidConfiguration: subnet-0aaa has no free IP addresses. Delete it'):
        scripted(client, fake_time).ensure('present')

    client = ScriptedEks()
    client.scripts = {'cluster': ['ACTIVE'], 'workers': ['CREATING', 'CREATE_FAILED']}
    original_ng = client.describe_nodegroup

    def ng_with_health(clusterName, nodegroupName):
        found = original_ng(clusterName, nodegroupName)
        found['nodegroup']['health'] = {'issues': [{'code': 'NodeCreationFailure', 'message': 'Instances failed to join the kubernetes cluster'}]}
        return found
    client.describe_nodegroup = ng_with_health
    with pytest.raises(ProvisioningError, match='node group workers of EKS cluster dr-slow is CREATE_FAILED: NodeCreationFailure: Instances failed '
                                                'to join the kubernetes cluster. .*AmazonEKSWorkerNodePolicy'):
        scripted(client, fake_time).ensure('present')


def test_absent_waits_for_nodegroups_then_for_the_cluster(fake_time):
    managed = {'name': 'dr-slow', 'status': 'ACTIVE', 'version': '1.31', 'tags': {'ferry.dev/managed': 'true'}}
    client = ScriptedEks(cluster=managed, nodegroups={'a': {'nodegroupName': 'a', 'status': 'ACTIVE'}, 'b': {'nodegroupName': 'b', 'status': 'ACTIVE'}})
    client.scripts = {'a': ['ACTIVE', 'ACTIVE', 'DELETING', None], 'b': ['ACTIVE', 'ACTIVE', None], 'cluster': ['ACTIVE', 'DELETING', 'DELETING', None]}
    result = scripted(client, fake_time).ensure('absent')
    assert result['changed'] is True and result['actions'] == ['delete nodegroup a', 'delete nodegroup b', 'delete cluster dr-slow']
    deletes = [c for c in client.calls if c.startswith('Delete')]
    assert deletes == ['DeleteNodegroup', 'DeleteNodegroup', 'DeleteCluster']
    assert client.calls.count('ListNodegroups') == 2  # two pages
    assert client.cluster is None and len(fake_time.sleeps) >= 2


def test_a_cluster_being_deleted_stops_present(fake_time):
    client = ScriptedEks(cluster={'name': 'dr-slow', 'status': 'DELETING', 'tags': {}})
    with pytest.raises(ProvisioningError, match='dr-slow is being deleted: wait until it is gone'):
        scripted(client, fake_time).ensure('present')


def stubbed(fake_time):
    client = boto3.client('eks', region_name='eu-west-1', aws_access_key_id='a', aws_secret_access_key='b')
    return client, Stubber(client)


def test_access_denied_names_the_permissions(fake_time):
    client, stub = stubbed(fake_time)
    stub.add_client_error('describe_cluster', service_error_code='ResourceNotFoundException', http_status_code=404)
    stub.add_client_error('create_cluster', service_error_code='AccessDeniedException', http_status_code=403,
                          service_message='User: arn:aws:iam::123456789012:user/ferry is not authorized to perform: iam:PassRole on resource: ' + CLUSTER_ROLE)
    with stub, pytest.raises(ProvisioningError) as caught:
        scripted(client, fake_time).ensure('present')
    message = caught.value.message
    assert message.startswith('AWS denied CreateCluster on EKS cluster dr-slow: the AWS identity Ferry uses needs the IAM permissions '
                              'eks:CreateCluster, eks:TagResource, iam:PassRole on eks.cluster_role_arn')
    assert 'not authorized to perform: iam:PassRole' in message
    assert caught.value.details['permissions'][0] == 'eks:CreateCluster'

    client, stub = stubbed(fake_time)
    stub.add_client_error('describe_cluster', service_error_code='AccessDeniedException', http_status_code=403, service_message='denied')
    with stub, pytest.raises(ProvisioningError, match='AWS denied DescribeCluster on EKS cluster dr-slow: .* permission eks:DescribeCluster '):
        scripted(client, fake_time).ensure('absent', check_mode=True)


def test_resource_in_use_and_invalid_parameters(fake_time):
    client, stub = stubbed(fake_time)
    stub.add_client_error('describe_cluster', service_error_code='ResourceNotFoundException', http_status_code=404)
    stub.add_client_error('create_cluster', service_error_code='ResourceInUseException', http_status_code=409,
                          service_message='Cluster already exists with name: dr-slow')
    with stub, pytest.raises(ProvisioningError, match='EKS cluster dr-slow is busy, CreateCluster was refused: Cluster already exists .*run again'):
        scripted(client, fake_time).ensure('present')

    client, stub = stubbed(fake_time)
    stub.add_client_error('describe_cluster', service_error_code='ResourceNotFoundException', http_status_code=404)
    stub.add_client_error('create_cluster', service_error_code='InvalidParameterException', http_status_code=400,
                          service_message='Subnets specified must be in at least two different AZs')
    with stub, pytest.raises(ProvisioningError, match='EKS rejected CreateCluster for cluster dr-slow: Subnets specified must be in at least two '
                                                      'different AZs. Check eks.cluster_role_arn, eks.subnet_ids'):
        scripted(client, fake_time).ensure('present')


def test_unreachable_endpoint_is_named(moto):
    options = eks_params(moto)
    options['endpoint_url'] = 'http://127.0.0.1:9'  # nothing listens there
    with pytest.raises(ProvisioningError, match='cannot reach the EKS API: .*check eks.region, eks.endpoint_url'):
        provider('eks', 'dr-offline', options, 60).ensure('present')
