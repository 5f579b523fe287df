"""Restore transforms on plain objects: namespaces, storage classes, images, replicas, labels, patches."""

import copy

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import (
    ORIGINAL_REPLICAS, ORIGINAL_SUSPEND, Transforms, merge_patch)
from kube_objects import obj, pod_spec, workload

MAPPING = {'shop': 'shop-dr', 'db': 'db-dr'}
NAME_LABEL = 'kubernetes.io/metadata.name'


def mapped(item, **options):
    return Transforms(namespace_mapping=MAPPING, **options).apply(copy.deepcopy(item))


# -- namespaces -------------------------------------------------------------------------------------

def test_objects_move_to_their_mapped_namespace():
    assert mapped(obj('ConfigMap', 'c', namespace='shop'))['metadata']['namespace'] == 'shop-dr'
    assert mapped(obj('ConfigMap', 'c', namespace='other'))['metadata']['namespace'] == 'other'
    assert 'namespace' not in mapped(obj('StorageClass', 'fast'))['metadata']
    transforms = Transforms(namespace_mapping=MAPPING)
    assert transforms.target_namespace('shop') == 'shop-dr' and transforms.target_namespace('x') == 'x'
    assert transforms.target_namespace('') == '' and transforms.target_namespace(None) is None


def test_a_namespace_is_renamed_with_its_name_label():
    namespace = mapped(obj('Namespace', 'shop', labels={NAME_LABEL: 'shop', 'team': 'shop'}))
    assert namespace['metadata'] == {'name': 'shop-dr', 'labels': {NAME_LABEL: 'shop-dr', 'team': 'shop'}}
    assert mapped(obj('Namespace', 'shop'))['metadata'] == {'name': 'shop-dr'}, 'no name label is added'
    assert mapped(obj('Namespace', 'other', labels={NAME_LABEL: 'other'}))['metadata']['labels'] == {NAME_LABEL: 'other'}


@pytest.mark.parametrize('kind', ['RoleBinding', 'ClusterRoleBinding'])
def test_binding_subjects_follow_the_mapping(kind):
    binding = obj(kind, 'b', namespace='shop', roleRef={'kind': 'ClusterRole', 'name': 'view'},
                  subjects=[{'kind': 'ServiceAccount', 'name': 'web', 'namespace': 'shop'},
                            {'kind': 'ServiceAccount', 'name': 'x', 'namespace': 'other'},
                            {'kind': 'User', 'name': 'alice'},
                            {'kind': 'Group', 'name': 'system:serviceaccounts:shop'}])
    assert [s.get('namespace') for s in mapped(binding)['subjects']] == ['shop-dr', 'other', None, None]


def test_a_volume_claim_reference_follows_the_mapping():
    volume = obj('PersistentVolume', 'pv', spec={'claimRef': {'namespace': 'shop', 'name': 'data'}, 'nfs': {'server': 'n', 'path': '/'}})
    assert mapped(volume)['spec']['claimRef'] == {'namespace': 'shop-dr', 'name': 'data'}
    assert mapped(obj('PersistentVolume', 'free', spec={}))['spec'] == {}


def test_network_policy_namespace_selectors_by_name_follow_the_mapping():
    policy = obj('NetworkPolicy', 'p', namespace='shop', spec={
        'podSelector': {},
        'ingress': [{'from': [{'namespaceSelector': {'matchLabels': {NAME_LABEL: 'db'}}},
                              {'namespaceSelector': {'matchLabels': {'team': 'shop'}}},
                              {'namespaceSelector': {'matchExpressions': [{'key': NAME_LABEL, 'operator': 'In', 'values': ['shop', 'other']},
                                                                          {'key': 'team', 'operator': 'In', 'values': ['shop']}]}},
                              {'podSelector': {'matchLabels': {'app': 'web'}}},
                              {'ipBlock': {'cidr': '10.0.0.0/8'}}]}],
        'egress': [{'to': [{'namespaceSelector': {'matchLabels': {NAME_LABEL: 'shop'}}, 'podSelector': {}}]},
                   {'ports': [{'port': 53}]}]})
    spec = mapped(policy)['spec']
    peers = spec['ingress'][0]['from']
    assert peers[0] == {'namespaceSelector': {'matchLabels': {NAME_LABEL: 'db-dr'}}}
    assert peers[1] == {'namespaceSelector': {'matchLabels': {'team': 'shop'}}}, 'other labels are not names'
    assert peers[2]['namespaceSelector']['matchExpressions'] == [{'key': NAME_LABEL, 'operator': 'In', 'values': ['shop-dr', 'other']},
                                                                 {'key': 'team', 'operator': 'In', 'values': ['shop']}]
    assert peers[3:] == policy['spec']['ingress'][0]['from'][3:]
    assert spec['egress'][0]['to'][0]['namespaceSelector'] == {'matchLabels': {NAME_LABEL: 'shop-dr'}}


def test_no_mapping_changes_nothing():
    binding = obj('RoleBinding', 'b', namespace='shop', subjects=[{'kind': 'ServiceAccount', 'name': 'web', 'namespace': 'shop'}])
    assert Transforms().apply(copy.deepcopy(binding)) == binding


# -- storage classes --------------------------------------------------------------------------------

STORAGE = {'gp3': 'managed-csi', 'old': 'new'}


@pytest.mark.parametrize('item, path', [
    (obj('PersistentVolumeClaim', 'data', spec={'storageClassName': 'gp3'}), ('spec', 'storageClassName')),
    (obj('PersistentVolume', 'pv', spec={'storageClassName': 'gp3'}), ('spec', 'storageClassName')),
    (workload('StatefulSet', 'db', volumeClaimTemplates=[{'metadata': {'name': 'data'}, 'spec': {'storageClassName': 'gp3'}}]),
     ('spec', 'volumeClaimTemplates', 0, 'spec', 'storageClassName')),
    (obj('PersistentVolumeClaim', 'legacy', annotations={'volume.beta.kubernetes.io/storage-class': 'gp3'}, spec={}),
     ('metadata', 'annotations', 'volume.beta.kubernetes.io/storage-class')),
], ids=['claim', 'volume', 'claim-template', 'legacy-annotation'])
def test_storage_classes_are_mapped(item, path):
    result = Transforms(storage_class_mapping=STORAGE).apply(copy.deepcopy(item))
    for step in path:
        result = result[step]
    assert result == 'managed-csi'


def test_unmapped_or_absent_storage_classes_stay():
    transforms = Transforms(storage_class_mapping=STORAGE)
    for item in (obj('PersistentVolumeClaim', 'a', spec={'storageClassName': 'standard'}), obj('PersistentVolumeClaim', 'b', spec={}),
                 obj('PersistentVolumeClaim', 'c', spec={'storageClassName': ''}),
                 workload('StatefulSet', 'db', volumeClaimTemplates=[{'metadata': {'name': 'data'}}]),
                 obj('StorageClass', 'gp3', provisioner='ebs.csi.aws.com')):
        assert transforms.apply(copy.deepcopy(item)) == item


# -- images -----------------------------------------------------------------------------------------

REWRITES = [{'from': 'registry.prod.example.com', 'to': 'registry.dr.example.com:5000'}, {'from': 'docker.io/library', 'to': 'mirror.example.com/hub'}]
SPEC = pod_spec({'name': 'web', 'image': 'registry.prod.example.com/shop/web:1.4'}, {'name': 'proxy', 'image': 'nginx:1.25'},
                {'name': 'other', 'image': 'quay.io/x/y:1'},
                initContainers=[{'name': 'init', 'image': 'registry.prod.example.com/shop/init:1'}])
REWRITTEN = ['registry.dr.example.com:5000/shop/init:1', 'registry.dr.example.com:5000/shop/web:1.4', 'mirror.example.com/hub/nginx:1.25',
             'quay.io/x/y:1']


def images(item):
    spec = item['spec']
    if item['kind'] == 'CronJob':
        spec = spec['jobTemplate']['spec']
    if item['kind'] != 'Pod':
        spec = spec['template']['spec']
    return [c['image'] for c in spec.get('initContainers', []) + spec['containers']]


@pytest.mark.parametrize('kind', ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'Pod', 'DeploymentConfig'])
def test_images_are_rewritten_in_every_container(kind):
    item = workload(kind, 'web', spec=copy.deepcopy(SPEC))
    assert images(Transforms(image_rewrites=REWRITES).apply(item)) == REWRITTEN


def test_rewritten_images_are_pinned_by_the_digests_given():
    digest = 'sha256:' + '1f' * 32
    item = workload('Deployment', 'web', spec=copy.deepcopy(SPEC))
    result = Transforms(image_rewrites=REWRITES, image_digests={'registry.prod.example.com/shop/web:1.4': digest}).apply(item)
    assert images(result)[1] == 'registry.dr.example.com:5000/shop/web:1.4@' + digest


def test_objects_without_pods_and_without_rewrites_are_untouched():
    config = obj('ConfigMap', 'c', data={'image': 'registry.prod.example.com/x:1'})
    assert Transforms(image_rewrites=REWRITES).apply(copy.deepcopy(config)) == config
    item = workload('Deployment', 'web', spec=copy.deepcopy(SPEC))
    assert images(Transforms().apply(item)) == images(workload('Deployment', 'web', spec=SPEC))


@pytest.mark.parametrize('rewrites', [[{'from': 'registry.prod.example.com'}], [{'to': 'x'}], [{'from': '', 'to': 'x'}],
                                      [{'from': 'Registry..Example', 'to': 'x'}], [{'from': 'a.example.com/x:1', 'to': 'b.example.com'}]])
def test_invalid_image_rewrites_are_refused_up_front(rewrites):
    with pytest.raises(FerryError, match='image_rewrites'):
        Transforms(image_rewrites=rewrites)


# -- replicas ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['Deployment', 'StatefulSet', 'ReplicaSet', 'ReplicationController', 'DeploymentConfig'])
def test_replicas_are_overridden_and_the_original_recorded(kind):
    result = Transforms(replicas=0).apply(workload(kind, 'web', replicas=3))
    assert result['spec']['replicas'] == 0
    assert result['metadata']['annotations'] == {ORIGINAL_REPLICAS: '3'}
    assert Transforms(replicas=2).apply(workload(kind, 'web'))['metadata']['annotations'] == {ORIGINAL_REPLICAS: '1'}, 'the API default'


def test_a_standby_restored_again_keeps_the_first_original():
    once = Transforms(replicas=0).apply(workload('Deployment', 'web', replicas=4))
    again = Transforms(replicas=0).apply(copy.deepcopy(once))
    assert again['spec']['replicas'] == 0 and again['metadata']['annotations'][ORIGINAL_REPLICAS] == '4'
    scaled = Transforms(replicas=1).apply(copy.deepcopy(once))
    assert scaled['spec']['replicas'] == 1 and scaled['metadata']['annotations'][ORIGINAL_REPLICAS] == '4'


def test_kinds_without_replicas_are_not_scaled():
    for item in (workload('DaemonSet', 'agent'), workload('Job', 'once'), obj('ConfigMap', 'c')):
        assert Transforms(replicas=0, suspend_cron_jobs=False).apply(copy.deepcopy(item)) == item
    assert Transforms().apply(workload('Deployment', 'web', replicas=3))['spec']['replicas'] == 3


@pytest.mark.parametrize('replicas, suspend, original, suspended, recorded', [
    (0, None, {}, True, 'false'),  # a standby suspends CronJobs by default
    (0, None, {'suspend': True}, True, 'true'),
    (0, False, {}, None, None),
    (2, None, {}, None, None),
    (2, True, {}, True, 'false'),
    (None, True, {'suspend': False}, True, 'false'),  # suspension alone, without a replicas override
    (None, None, {}, None, None),
])
def test_cron_jobs_are_suspended_with_a_standby(replicas, suspend, original, suspended, recorded):
    result = Transforms(replicas=replicas, suspend_cron_jobs=suspend).apply(workload('CronJob', 'report', **original))
    assert result['spec'].get('suspend') is (suspended if suspended is not None else original.get('suspend'))
    assert (result['metadata'].get('annotations') or {}).get(ORIGINAL_SUSPEND) == recorded


def test_a_suspended_standby_restored_again_keeps_the_first_original():
    once = Transforms(replicas=0).apply(workload('CronJob', 'report'))
    again = Transforms(replicas=0).apply(copy.deepcopy(once))
    assert again['metadata']['annotations'] == {ORIGINAL_SUSPEND: 'false'} and again['spec']['suspend'] is True


# -- labels and annotations -------------------------------------------------------------------------

def test_labels_and_annotations_are_added_to_every_object():
    transforms = Transforms(add_labels={'ferry.dev/restored': 'yes', 'app': 'override'}, add_annotations={'ferry.dev/from': 'prod'})
    result = transforms.apply(workload('Deployment', 'web', labels={'app': 'web', 'tier': 'front'}, annotations={'a': '1'}))
    assert result['metadata']['labels'] == {'app': 'override', 'tier': 'front', 'ferry.dev/restored': 'yes'}
    assert result['metadata']['annotations'] == {'a': '1', 'ferry.dev/from': 'prod'}
    assert result['spec']['template']['metadata']['labels'] == {'app': 'web'}, 'pod templates keep their labels (selectors depend on them)'
    bare = transforms.apply({'apiVersion': 'v1', 'kind': 'ConfigMap'})
    assert bare['metadata'] == {'labels': {'ferry.dev/restored': 'yes', 'app': 'override'}, 'annotations': {'ferry.dev/from': 'prod'}}


# -- patches ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('target, patch', [
    ({'a': 1, 'b': {'c': 2, 'd': 3}}, {'b': {'c': None, 'e': 4}, 'f': [1]}),
    ({'a': 1}, {'a': None}),
    ({'a': [1, 2]}, {'a': [3]}),
    ({'a': {'b': 1}}, {'a': 'flat'}),
    ('not a dict', {'a': 1}),
    ({'a': 1}, 'replaced'),
])
def test_merge_patch_follows_rfc_7386(target, patch):
    expected = {
        repr(({'a': 1, 'b': {'c': 2, 'd': 3}}, {'b': {'c': None, 'e': 4}, 'f': [1]})): {'a': 1, 'b': {'d': 3, 'e': 4}, 'f': [1]},
        repr(({'a': 1}, {'a': None})): {},
        repr(({'a': [1, 2]}, {'a': [3]})): {'a': [3]},
        repr(({'a': {'b': 1}}, {'a': 'flat'})): {'a': 'flat'},
        repr(('not a dict', {'a': 1})): {'a': 1},
        repr(({'a': 1}, 'replaced')): 'replaced',
    }[repr((target, patch))]
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == expected
    assert target == before, 'the target is not changed'


def shop_objects():
    return [
        workload('Deployment', 'web', namespace='shop', labels={'tier': 'front'}, replicas=2),
        workload('Deployment', 'worker', namespace='shop', labels={'tier': 'back'}, replicas=1),
        workload('StatefulSet', 'db', namespace='db', labels={'tier': 'back'}),
        obj('ConfigMap', 'web-config', namespace='shop', data={'a': '1'}),
        obj('Service', 'web', namespace='shop', labels={'tier': 'front'}, spec={'ports': [{'port': 80}]}),
        obj('Route', 'web', namespace='shop', spec={'host': 'a'}),
        obj('ClusterRole', 'reader'),
    ]


def targeted(target, namespace_mapping=None):
    """Names of the shop objects a merge patch with ``target`` changes."""
    transforms = Transforms(namespace_mapping=namespace_mapping, patches=[{'target': target, 'merge_patch': {'metadata': {'labels': {'hit': 'y'}}}}])
    return sorted('%s/%s' % (o['kind'], o['metadata']['name']) for o in map(transforms.apply, shop_objects())
                  if o['metadata'].get('labels', {}).get('hit'))


@pytest.mark.parametrize('target, expected', [
    ({}, ['ClusterRole/reader', 'ConfigMap/web-config', 'Deployment/web', 'Deployment/worker', 'Route/web', 'Service/web', 'StatefulSet/db']),
    ({'kind': 'Deployment'}, ['Deployment/web', 'Deployment/worker']),
    ({'group': ''}, ['ConfigMap/web-config', 'Service/web']),
    ({'group': 'apps'}, ['Deployment/web', 'Deployment/worker', 'StatefulSet/db']),
    ({'group': 'route.openshift.io', 'kind': 'Route'}, ['Route/web']),
    ({'name': 'web'}, ['Deployment/web', 'Route/web', 'Service/web']),
    ({'name': 'w*'}, ['ConfigMap/web-config', 'Deployment/web', 'Deployment/worker', 'Route/web', 'Service/web']),
    ({'name': 'web-?onfig'}, ['ConfigMap/web-config']),
    ({'namespace': 'db'}, ['StatefulSet/db']),
    ({'namespace': 's*'}, ['ConfigMap/web-config', 'Deployment/web', 'Deployment/worker', 'Route/web', 'Service/web']),
    ({'label_selector': 'tier=back'}, ['Deployment/worker', 'StatefulSet/db']),
    ({'label_selector': 'tier in (front),!missing'}, ['Deployment/web', 'Service/web']),
    ({'label_selector': '!tier'}, ['ClusterRole/reader', 'ConfigMap/web-config', 'Route/web']),
    ({'jmespath': 'spec.replicas > `1`'}, ['Deployment/web']),
    ({'jmespath': "kind == 'Deployment' && metadata.namespace == 'shop'"}, ['Deployment/web', 'Deployment/worker']),
    ({'jmespath': 'spec.ports[?port == `80`]'}, ['Service/web']),
    ({'jmespath': 'data'}, ['ConfigMap/web-config']),
    ({'kind': 'Deployment', 'label_selector': 'tier=back', 'namespace': 'shop'}, ['Deployment/worker']),
    ({'kind': 'Secret'}, []),
])
def test_patch_targets(target, expected):
    assert targeted(target) == expected


def test_patch_targets_see_the_objects_as_the_earlier_transforms_left_them():
    assert targeted({'namespace': 'shop-dr'}, namespace_mapping={'shop': 'shop-dr'}) == [
        'ConfigMap/web-config', 'Deployment/web', 'Deployment/worker', 'Route/web', 'Service/web']
    replicas = Transforms(replicas=0, add_labels={'env': 'dr'}, patches=[
        {'target': {'label_selector': 'env=dr', 'jmespath': 'spec.replicas == `0`'}, 'merge_patch': {'metadata': {'labels': {'standby': 'y'}}}}])
    assert replicas.apply(workload('Deployment', 'web', replicas=3))['metadata']['labels'] == {'env': 'dr', 'standby': 'y'}


def test_patches_apply_in_order():
    transforms = Transforms(patches=[
        {'target': {'kind': 'ConfigMap'}, 'merge_patch': {'data': {'b': '2'}}},
        {'target': {'kind': 'ConfigMap'}, 'json_patch': [{'op': 'replace', 'path': '/data/b', 'value': '3'},
                                                         {'op': 'remove', 'path': '/data/a'},
                                                         {'op': 'add', 'path': '/metadata/labels', 'value': {'x': 'y'}}]},
        {'target': {'kind': 'ConfigMap', 'label_selector': 'x=y'}, 'merge_patch': {'data': {'c': '4'}}},
    ])
    result = transforms.apply(obj('ConfigMap', 'c', data={'a': '1'}))
    assert result['data'] == {'b': '3', 'c': '4'} and result['metadata']['labels'] == {'x': 'y'}


@pytest.mark.parametrize('patch, message', [
    ({'target': {'jmespath': 'spec.[replicas'}}, r'patches\[1\]\.target\.jmespath .* is not a valid JMESPath expression'),
    ({'target': {'label_selector': 'tier in front'}, 'merge_patch': {}}, r'patches\[1\]\.target\.label_selector: .*cannot read'),
    ({'json_patch': [{'op': 'bogus', 'path': '/a'}]}, r'patches\[1\]\.json_patch is not a valid RFC 6902 patch: Unknown operation'),
    ({'json_patch': [{'op': 'add', 'value': 1}]}, r'patches\[1\]\.json_patch is not a valid RFC 6902 patch'),
    ({'json_patch': [{'op': 'add', 'path': 'no-slash', 'value': 1}]}, r'patches\[1\]\.json_patch is not a valid RFC 6902 patch'),
    ({'json_patch': ['add /a']}, r'patches\[1\]\.json_patch is not a valid RFC 6902 patch'),
    ({'target': {'kind': 'ConfigMap'}}, r'patches\[1\]: give exactly one of json_patch .* and merge_patch'),
    ({'json_patch': [], 'merge_patch': {}}, r'patches\[1\]: give exactly one of json_patch .* and merge_patch'),
])
def test_invalid_patches_are_refused_naming_the_patch(patch, message):
    with pytest.raises(FerryError, match=message):
        Transforms(patches=[{'merge_patch': {}}, patch])


@pytest.mark.parametrize('operations, message', [
    ([{'op': 'replace', 'path': '/data/missing', 'value': 'x'}], "can't replace a non-existent object 'missing'"),
    ([{'op': 'test', 'path': '/data/a', 'value': '2'}], 'is not equal to tested value'),
    ([{'op': 'add', 'path': '/data/a/b', 'value': 1}], 'non-container'),
    ([{'op': 'replace', 'path': '/data/a'}], "does not contain a 'value' member"),
])
def test_a_json_patch_that_does_not_apply_names_the_object(operations, message):
    transforms = Transforms(patches=[{'merge_patch': {}}, {'target': {'kind': 'ConfigMap'}, 'json_patch': operations}])
    with pytest.raises(FerryError, match=r'patches\[1\] does not apply to ConfigMap shop/web-config: .*' + message):
        transforms.apply(obj('ConfigMap', 'web-config', namespace='shop', data={'a': '1'}))
    assert transforms.apply(obj('Secret', 'not-targeted'))['metadata'] == {'name': 'not-targeted', 'namespace': 'ns'}


def test_a_jmespath_target_that_fails_on_an_object_names_both():
    transforms = Transforms(patches=[{'target': {'jmespath': 'length(spec.replicas) > `0`'}, 'merge_patch': {}}])
    with pytest.raises(FerryError, match=r'patches\[0\]\.target\.jmespath .* cannot be evaluated on Deployment ns/web: .*length\(\)'):
        transforms.apply(workload('Deployment', 'web', replicas=2))


def test_transforms_run_in_their_documented_order():
    digest = 'sha256:' + '2e' * 32
    transforms = Transforms(
        namespace_mapping={'shop': 'shop-dr'}, storage_class_mapping={'gp3': 'csi'}, replicas=0,
        image_rewrites=[{'from': 'registry.prod.example.com', 'to': 'registry.dr.example.com'}],
        image_digests={'registry.prod.example.com/web:1': digest}, add_labels={'env': 'dr'},
        patches=[{'target': {'namespace': 'shop-dr', 'label_selector': 'env=dr',
                             'jmespath': "spec.replicas == `0` && starts_with(spec.template.spec.containers[0].image, 'registry.dr')"},
                  'json_patch': [{'op': 'add', 'path': '/metadata/annotations/seen', 'value': 'all'}]}])
    item = workload('StatefulSet', 'db', namespace='shop', spec=pod_spec({'name': 'db', 'image': 'registry.prod.example.com/web:1'}), replicas=3,
                    volumeClaimTemplates=[{'metadata': {'name': 'data'}, 'spec': {'storageClassName': 'gp3'}}])
    result = transforms.apply(item)
    assert result['metadata']['annotations'] == {ORIGINAL_REPLICAS: '3', 'seen': 'all'}
    assert result['spec']['volumeClaimTemplates'][0]['spec']['storageClassName'] == 'csi'
    assert result['spec']['template']['spec']['containers'][0]['image'] == 'registry.dr.example.com/web:1@' + digest
