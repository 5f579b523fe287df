"""Sanitising captured objects for another cluster, and what is not restored at all (and why)."""

import copy
import json

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.restore.sanitize import sanitize, skip_reason
from kube_objects import obj, owner, workload

LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'


def server_metadata(**extra):
    meta = {'name': 'web', 'namespace': 'ns', 'uid': 'u1', 'resourceVersion': '42', 'generation': 3, 'creationTimestamp': '2026-01-01T00:00:00Z',
            'selfLink': '/api/v1/x', 'deletionTimestamp': '2026-01-02T00:00:00Z', 'deletionGracePeriodSeconds': 30,
            'managedFields': [{'manager': 'kubectl'}], 'ownerReferences': [owner('Deployment', 'web', 'd1')],
            'labels': {'app': 'web'}, 'finalizers': ['example.com/keep'], 'generateName': 'web-'}
    meta.update(extra)
    return meta


def test_server_assigned_metadata_and_status_are_dropped():
    captured = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': server_metadata(), 'data': {'a': '1'}, 'status': {'x': 1}}
    assert sanitize(captured) == {'apiVersion': 'v1', 'kind': 'ConfigMap', 'data': {'a': '1'},
                                  'metadata': {'name': 'web', 'namespace': 'ns', 'labels': {'app': 'web'}, 'finalizers': ['example.com/keep'],
                                               'generateName': 'web-'}}


@pytest.mark.parametrize('annotation', [
    'deployment.kubernetes.io/revision', 'pv.kubernetes.io/bind-completed', 'pv.kubernetes.io/bound-by-controller',
    'volume.kubernetes.io/selected-node', 'volume.beta.kubernetes.io/storage-provisioner', 'volume.kubernetes.io/storage-provisioner',
    'control-plane.alpha.kubernetes.io/leader', 'openshift.io/sa.scc.mcs', 'openshift.io/sa.scc.supplemental-groups',
    'openshift.io/sa.scc.uid-range'])
def test_cluster_assigned_annotations_are_dropped(annotation):
    only = sanitize(obj('ConfigMap', 'c', annotations={annotation: 'x'}))
    assert 'annotations' not in only['metadata'], 'an emptied annotation map goes too'
    kept = sanitize(obj('ConfigMap', 'c', annotations={annotation: 'x', 'team': 'shop', LAST_APPLIED: '{}'}))
    assert kept['metadata']['annotations'] == {'team': 'shop', LAST_APPLIED: '{}'}


def test_sanitize_does_not_change_its_input():
    captured = [
        obj('Service', 'web', spec={'clusterIP': '10.0.0.1', 'clusterIPs': ['10.0.0.1'], 'ports': [{'port': 80, 'nodePort': 30001}]},
            annotations={'deployment.kubernetes.io/revision': '2'}, uid='u1', status={'loadBalancer': {}}),
        obj('PersistentVolumeClaim', 'data', spec={'volumeName': 'pv-1', 'dataSource': {'kind': 'VolumeSnapshot', 'name': 's'}}),
        obj('PersistentVolume', 'pv-1', spec={'claimRef': {'name': 'data', 'namespace': 'ns', 'uid': 'c1', 'resourceVersion': '9'}}),
        workload('Job', 'once', pod_labels={'app': 'once', 'controller-uid': 'j1'}, owners=[owner('CronJob', 'c', 'c1')]),
        obj('ServiceAccount', 'web', secrets=[{'name': 'web-token-abcde'}]),
        obj('Namespace', 'ns', spec={'finalizers': ['kubernetes']}),
        obj('Pod', 'p', spec={'nodeName': 'node-1', 'containers': []}),
        obj('Route', 'web', annotations={'openshift.io/host.generated': 'true'}, spec={'host': 'web-ns.apps.example.com'}),
    ]
    before = copy.deepcopy(captured)
    for item in captured:
        assert sanitize(item, pv_restored=lambda name: False) is not item
    assert captured == before


# -- Services ---------------------------------------------------------------------------------------

def service(spec, declared_spec=None):
    annotations = {LAST_APPLIED: json.dumps({'apiVersion': 'v1', 'kind': 'Service', 'spec': declared_spec})} if declared_spec is not None else None
    return obj('Service', 'web', spec=spec, annotations=annotations)


@pytest.mark.parametrize('spec, declared, expected', [
    ({'type': 'ClusterIP', 'clusterIP': '10.0.0.1', 'clusterIPs': ['10.0.0.1'], 'ports': [{'port': 80}]}, None,
     {'type': 'ClusterIP', 'ports': [{'port': 80}]}),
    ({'clusterIP': 'None', 'clusterIPs': ['None'], 'selector': {'app': 'db'}}, None,
     {'clusterIP': 'None', 'selector': {'app': 'db'}}),
    ({'type': 'NodePort', 'clusterIP': '10.0.0.1', 'ports': [{'port': 80, 'nodePort': 30001}, {'port': 443, 'nodePort': 30002}]}, None,
     {'type': 'NodePort', 'ports': [{'port': 80}, {'port': 443}]}),
    ({'type': 'NodePort', 'ports': [{'port': 80, 'nodePort': 30001}, {'port': 443, 'nodePort': 30002}]},
     {'type': 'NodePort', 'ports': [{'port': 80, 'nodePort': 30001}, {'port': 443}]},
     {'type': 'NodePort', 'ports': [{'port': 80, 'nodePort': 30001}, {'port': 443}]}),
    ({'type': 'LoadBalancer', 'healthCheckNodePort': 31000, 'externalTrafficPolicy': 'Local', 'ports': [{'port': 80, 'nodePort': 30001}]}, {},
     {'type': 'LoadBalancer', 'externalTrafficPolicy': 'Local', 'ports': [{'port': 80}]}),
    ({'type': 'ExternalName', 'externalName': 'db.example.com'}, None, {'type': 'ExternalName', 'externalName': 'db.example.com'}),
], ids=['cluster-ip', 'headless', 'node-ports-assigned', 'node-port-declared', 'load-balancer', 'external-name'])
def test_services_lose_what_the_cluster_assigned(spec, declared, expected):
    assert sanitize(service(spec, declared))['spec'] == expected


def test_unreadable_last_applied_declares_nothing():
    broken = obj('Service', 'web', spec={'ports': [{'port': 80, 'nodePort': 30001}]}, annotations={LAST_APPLIED: '{not json'})
    assert sanitize(broken)['spec'] == {'ports': [{'port': 80}]}


# -- volumes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('restored, expected', [
    (None, {'storageClassName': 'fast'}),
    (lambda name: False, {'storageClassName': 'fast'}),
    (lambda name: name == 'pv-1', {'storageClassName': 'fast', 'volumeName': 'pv-1'}),
])
def test_a_claim_keeps_its_volume_name_only_with_its_volume_restored(restored, expected):
    claim = obj('PersistentVolumeClaim', 'data', spec={'storageClassName': 'fast', 'volumeName': 'pv-1',
                                                       'dataSource': {'kind': 'VolumeSnapshot', 'name': 'snap'},
                                                       'dataSourceRef': {'kind': 'VolumeSnapshot', 'name': 'snap'}},
                annotations={'pv.kubernetes.io/bind-completed': 'yes', 'volume.kubernetes.io/selected-node': 'node-1'})
    cleaned = sanitize(claim, pv_restored=restored)
    assert cleaned['spec'] == expected
    assert 'annotations' not in cleaned['metadata']


def test_a_volume_keeps_its_claim_reference_without_the_old_claim_identity():
    volume = obj('PersistentVolume', 'pv-1', spec={'claimRef': {'kind': 'PersistentVolumeClaim', 'namespace': 'ns', 'name': 'data',
                                                                'uid': 'c1', 'resourceVersion': '9'}, 'nfs': {'server': 'n', 'path': '/'}})
    assert sanitize(volume)['spec'] == {'claimRef': {'kind': 'PersistentVolumeClaim', 'namespace': 'ns', 'name': 'data'},
                                        'nfs': {'server': 'n', 'path': '/'}}
    assert sanitize(obj('PersistentVolume', 'pv-2', spec={'hostPath': {'path': '/x'}}))['spec'] == {'hostPath': {'path': '/x'}}


# -- workloads --------------------------------------------------------------------------------------

def test_a_pod_loses_its_node():
    assert sanitize(obj('Pod', 'p', spec={'nodeName': 'node-1', 'nodeSelector': {'zone': 'a'}, 'containers': []}))['spec'] == {
        'nodeSelector': {'zone': 'a'}, 'containers': []}


def test_a_job_loses_its_generated_selector_and_controller_labels():
    labels = {'app': 'once', 'controller-uid': 'j1', 'batch.kubernetes.io/controller-uid': 'j1', 'job-name': 'once',
              'batch.kubernetes.io/job-name': 'once'}
    job = workload('Job', 'once', pod_labels=labels)
    job['spec']['selector'] = {'matchLabels': {'batch.kubernetes.io/controller-uid': 'j1'}}
    cleaned = sanitize(job)
    assert 'selector' not in cleaned['spec']
    assert cleaned['spec']['template']['metadata']['labels'] == {'app': 'once'}
    manual = workload('Job', 'manual', pod_labels=labels, manualSelector=True)
    assert sanitize(manual)['spec'] == manual['spec'], 'a selector the user chose is kept'


def test_service_account_token_secrets_are_left_to_the_target():
    account = obj('ServiceAccount', 'web', secrets=[{'name': 'web-token-abcde'}, {'name': 'web-dockercfg-xyz'}, {'name': 'web-extra'}],
                  imagePullSecrets=[{'name': 'regcred'}])
    cleaned = sanitize(account)
    assert cleaned['secrets'] == [{'name': 'web-extra'}] and cleaned['imagePullSecrets'] == [{'name': 'regcred'}]
    assert 'secrets' not in sanitize(obj('ServiceAccount', 'web', secrets=[{'name': 'web-token-abcde'}]))
    assert 'secrets' not in sanitize(obj('ServiceAccount', 'web', secrets=[]))
    assert sanitize(obj('ServiceAccount', 'web', secrets=[{'name': 'other-token-abcde'}]))['secrets'] == [{'name': 'other-token-abcde'}]


def test_a_namespace_loses_its_spec():
    assert sanitize(obj('Namespace', 'ns', spec={'finalizers': ['kubernetes']}, labels={'team': 'a'})) == obj('Namespace', 'ns', labels={'team': 'a'})


@pytest.mark.parametrize('generated, host', [('true', None), ('false', 'web.example.com'), (None, 'web.example.com')])
def test_a_route_loses_a_generated_host(generated, host):
    route = obj('Route', 'web', annotations={'openshift.io/host.generated': generated} if generated else None,
                spec={'host': 'web.example.com', 'to': {'kind': 'Service', 'name': 'web'}})
    assert sanitize(route)['spec'].get('host') == host


# -- what is not restored ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind, owner_kind', [
    ('ReplicaSet', 'Deployment'), ('Pod', 'ReplicaSet'), ('Pod', 'StatefulSet'), ('Pod', 'DaemonSet'), ('Pod', 'Job'), ('Job', 'CronJob'),
    ('ControllerRevision', 'StatefulSet'), ('ControllerRevision', 'DaemonSet'), ('ReplicationController', 'DeploymentConfig'),
    ('Pod', 'ReplicationController'), ('EndpointSlice', 'Service')])
def test_objects_their_controllers_make_are_skipped(kind, owner_kind):
    made = obj(kind, 'child', owners=[owner(owner_kind, 'parent', 'p1')])
    assert skip_reason(made, {}) == 'made by its %s parent on the target' % owner_kind


@pytest.mark.parametrize('made', [
    obj('Secret', 's', owners=[owner('Certificate', 'c', 'c1')]),  # owned by a custom resource: restored, then re-linked
    obj('ConfigMap', 'c', owners=[owner('Deployment', 'd', 'd1')]),
    obj('Deployment', 'd'),
])
def test_other_owned_objects_are_restored(made):
    assert skip_reason(made, {}) is None


def test_token_secrets_and_published_config_maps_are_skipped():
    token = obj('Secret', 'web-token-abcde', type='kubernetes.io/service-account-token')
    assert skip_reason(token, {}) == 'service-account token: the target issues its own'
    assert skip_reason(obj('Secret', 'creds', type='Opaque'), {}) is None
    for name in ('kube-root-ca.crt', 'openshift-service-ca.crt'):
        assert skip_reason(obj('ConfigMap', name), {}) == 'published in every namespace by the target itself'
    assert skip_reason(obj('ConfigMap', 'web-config'), {}) is None


def test_endpoints_of_selector_services_are_skipped_and_others_restored():
    index = {('Service', 'ns', 'web'): obj('Service', 'web', spec={'selector': {'app': 'web'}}),
             ('Service', 'ns', 'external'): obj('Service', 'external', spec={'ports': [{'port': 5432}]})}
    assert skip_reason(obj('Endpoints', 'web'), index) == 'endpoints of a selector Service: the target computes them'
    assert skip_reason(obj('Endpoints', 'external'), index) is None, 'a selectorless Service keeps the endpoints someone wrote'
    assert skip_reason(obj('Endpoints', 'no-service'), index) is None
    assert skip_reason(obj('Endpoints', 'web', namespace='other'), index) is None


@pytest.mark.parametrize('managed_by, skipped', [('endpointslice-controller.k8s.io', True), ('endpointslicemirroring-controller.k8s.io', True),
                                                 ('my-operator', False), (None, False)])
def test_endpoint_slices_the_target_computes_are_skipped(managed_by, skipped):
    labels = {'kubernetes.io/service-name': 'web'}
    if managed_by:
        labels['endpointslice.kubernetes.io/managed-by'] = managed_by
    assert (skip_reason(obj('EndpointSlice', 'web-abc', labels=labels), {}) is not None) is skipped


@pytest.mark.parametrize('kind', ['Service', 'Endpoints', 'EndpointSlice'])
def test_the_api_servers_own_service_is_left_to_the_target(kind):
    labels = {'kubernetes.io/service-name': 'kubernetes'} if kind == 'EndpointSlice' else None
    published = obj(kind, 'kubernetes', namespace='default', labels=labels, spec={'ports': [{'port': 443}]})
    index = {('Service', 'default', 'kubernetes'): obj('Service', 'kubernetes', namespace='default', spec={'ports': [{'port': 443}]})}
    assert skip_reason(published, index) == "the API server's own Service: every cluster publishes its own"
    assert skip_reason(obj(kind, 'kubernetes', namespace='shop', labels=labels), index) is None


@pytest.mark.parametrize('restore_pvs, dynamic, static', [
    ('static', 'dynamically provisioned: its claim provisions a new volume on the target', None),
    ('all', None, None),
    ('none', 'restore_pvs=none', 'restore_pvs=none'),
])
def test_persistent_volumes_follow_restore_pvs(restore_pvs, dynamic, static):
    provisioned = obj('PersistentVolume', 'pvc-1', annotations={'pv.kubernetes.io/provisioned-by': 'ebs.csi.aws.com'})
    made_by_hand = obj('PersistentVolume', 'nfs-share', spec={'nfs': {'server': 'n', 'path': '/'}})
    assert skip_reason(provisioned, {}, restore_pvs) == dynamic
    assert skip_reason(made_by_hand, {}, restore_pvs) == static


def test_static_is_the_default_for_volumes():
    assert skip_reason(obj('PersistentVolume', 'pvc-1', annotations={'pv.kubernetes.io/provisioned-by': 'x'}), {}) is not None
    assert skip_reason(obj('PersistentVolume', 'nfs-share'), {}) is None
