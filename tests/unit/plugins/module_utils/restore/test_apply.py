"""The pure parts of applying: shapes, containment, the three-way merge patch and what a diff shows."""

import json

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.restore.apply import (
    HIDDEN, LAST_APPLIED, SHAPE_ANNOTATION, contained, for_diff, recorded_shape, shape, three_way_patch, with_shape, without_shape)
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import merge_patch
from kube_objects import obj


def test_shape_keeps_field_names_only():
    document = {'metadata': {'name': 'web', 'labels': {'app': 'web'}}, 'data': {'password': 's3cret'}, 'ports': [{'port': 80}], 'n': 1}
    assert shape(document) == {'metadata': {'name': None, 'labels': {'app': None}}, 'data': {'password': None}, 'ports': None, 'n': None}
    assert 's3cret' not in json.dumps(shape(document))
    assert shape([1]) is None and shape('x') is None and shape({}) == {}


@pytest.mark.parametrize('desired, live, expected', [
    ({'a': 1}, {'a': 1, 'b': 2}, True),  # extra live fields are fine
    ({'a': {'b': 1}}, {'a': {'b': 1, 'c': 2}}, True),
    ({'a': 1, 'b': 2}, {'a': 1}, False),
    ({'a': 1}, {'a': 2}, False),
    ({'a': {'b': 1}}, {'a': 'x'}, False),
    ([{'name': 'web'}], [{'name': 'web', 'imagePullPolicy': 'Always'}], True),  # lists by position, items contained
    ([{'name': 'a'}, {'name': 'b'}], [{'name': 'b'}, {'name': 'a'}], False),
    ([1], [1, 2], False),
    ([1, 2], [1], False),
    ([], [], True),
    ([1], {'0': 1}, False),
    (1, 1.0, True),  # numbers compare as numbers
    (0.5, 0.5, True),
    (3, 4, False),
    (True, 1, False),  # but a boolean is not a number
    (1, True, False),
    (False, 0, False),
    (True, True, True),
    ('1', 1, False),
    (None, None, True),
    ({'a': None}, {}, True),  # null means absent, as in a merge patch
    ({'a': None}, {'a': 1}, False),
    ({}, {'anything': 1}, True),
    ({}, None, False),
])
def test_contained(desired, live, expected):
    assert contained(desired, live) is expected


@pytest.mark.parametrize('last, desired, live, patch', [
    # sets what is desired and differs
    ({}, {'a': 1, 'b': 2}, {'a': 1}, {'b': 2}),
    ({}, {'a': 1}, {'a': 2}, {'a': 1}),
    # removes what Ferry set last time and no longer wants
    ({'a': None, 'b': None}, {'a': 1}, {'a': 1, 'b': 2}, {'b': None}),
    # keeps what others set
    ({'a': None}, {'a': 1}, {'a': 1, 'c': 3}, {}),
    # removals already done are not repeated
    ({'gone': None}, {'a': 1}, {'a': 1}, {}),
    # nested dicts merge field by field
    ({'data': {'x': None, 'y': None}}, {'data': {'x': '1'}}, {'data': {'x': '0', 'y': '2', 'z': '3'}}, {'data': {'x': '1', 'y': None}}),
    ({'data': {'x': None}}, {'data': {'x': '1'}}, {'data': {'x': '1', 'z': '3'}}, {}),
    ({'spec': None}, {'spec': {'a': 1}}, {'spec': {'a': 1, 'b': 2}}, {}),
    # a dict whose live counterpart is not a dict, and lists, are set whole
    ({}, {'spec': {'a': 1}}, {'spec': 'x'}, {'spec': {'a': 1}}),
    ({}, {'spec': {'a': 1}}, {}, {'spec': {'a': 1}}),
    ({'ports': None}, {'ports': [{'port': 80}]}, {'ports': [{'port': 81}]}, {'ports': [{'port': 80}]}),
    ({'ports': None}, {'ports': [{'port': 80}]}, {'ports': [{'port': 80, 'protocol': 'TCP'}]}, {}),
    # a whole sub-document Ferry no longer sets goes
    ({'data': {'x': None}}, {}, {'data': {'x': '1', 'z': '2'}}, {'data': None}),
    # a malformed last shape counts as none
    ('garbage', {'a': 1}, {'a': 1, 'b': 2}, {}),
    ({}, {'a': 1}, None, {'a': 1}),
])
def test_three_way_patch(last, desired, live, patch):
    assert three_way_patch(last, desired, live) == patch


def test_the_patch_takes_live_to_desired_and_keeps_the_rest():
    desired = {'metadata': {'labels': {'app': 'web'}}, 'data': {'greeting': 'hello'}}
    live = {'metadata': {'labels': {'app': 'web', 'old': 'ferry', 'team': 'ops'}, 'uid': 'u1'}, 'data': {'greeting': 'hi', 'extra': 'kept'}}
    last = {'metadata': {'labels': {'app': None, 'old': None}}, 'data': {'greeting': None}}
    patched = merge_patch(live, three_way_patch(last, desired, live))
    assert patched == {'metadata': {'labels': {'app': 'web', 'team': 'ops'}, 'uid': 'u1'}, 'data': {'greeting': 'hello', 'extra': 'kept'}}
    assert contained(desired, patched)


def test_an_object_carries_its_shape():
    secret = obj('Secret', 'db', annotations={'team': 'shop'}, data={'password': 'czNjcmV0'})
    shaped = with_shape(secret)
    assert secret['metadata']['annotations'] == {'team': 'shop'}, 'the input is not changed'
    recorded = shaped['metadata']['annotations'][SHAPE_ANNOTATION]
    assert 'czNjcmV0' not in recorded
    assert json.loads(recorded) == {'apiVersion': None, 'kind': None, 'data': {'password': None},
                                    'metadata': {'name': None, 'namespace': None, 'annotations': {'team': None}}}
    assert recorded_shape(shaped) == json.loads(recorded)
    assert without_shape(shaped) == secret
    assert with_shape(shaped) == shaped, 'a stale shape annotation is not part of the shape'


def test_an_object_without_annotations_gets_only_its_shape():
    config = obj('ConfigMap', 'c', data={'a': '1'})
    shaped = with_shape(config)
    assert list(shaped['metadata']['annotations']) == [SHAPE_ANNOTATION]
    assert 'annotations' not in json.loads(shaped['metadata']['annotations'][SHAPE_ANNOTATION])['metadata']
    assert without_shape(shaped) == config
    assert without_shape(config) == config and without_shape(config) is not config


@pytest.mark.parametrize('live', [
    obj('ConfigMap', 'c'),
    obj('ConfigMap', 'c', annotations={SHAPE_ANNOTATION: '{not json'}),
    obj('ConfigMap', 'c', annotations={SHAPE_ANNOTATION: ''}),
])
def test_a_missing_or_unreadable_shape_is_empty(live):
    assert recorded_shape(live) == {}


def test_a_diff_shows_no_server_bookkeeping():
    live = obj('ConfigMap', 'c', uid='u1', annotations={SHAPE_ANNOTATION: '{}', 'team': 'shop'}, data={'a': '1'}, status={'x': 1})
    live['metadata'].update(resourceVersion='7', generation=2, creationTimestamp='t', selfLink='/x', managedFields=[{}])
    assert for_diff(live) == {'apiVersion': 'v1', 'kind': 'ConfigMap', 'data': {'a': '1'},
                              'metadata': {'name': 'c', 'namespace': 'ns', 'annotations': {'team': 'shop'}}}
    assert live['metadata']['uid'] == 'u1', 'the input is not changed'
    assert for_diff(None) == {}


def test_a_diff_hides_secret_values():
    secret = obj('Secret', 'db', data={'password': 'czNjcmV0'}, stringData={'token': 'plain'}, type='Opaque',
                 annotations={LAST_APPLIED: json.dumps({'stringData': {'token': 'plain'}}), 'team': 'shop'})
    shown = for_diff(secret)
    assert shown['data'] == {'password': HIDDEN} and shown['stringData'] == {'token': HIDDEN}
    assert shown['metadata']['annotations'] == {LAST_APPLIED: HIDDEN, 'team': 'shop'}
    assert 'plain' not in json.dumps(shown) and 'czNjcmV0' not in json.dumps(shown)
    assert secret['data'] == {'password': 'czNjcmV0'}
    config = obj('ConfigMap', 'c', data={'password': 'visible'}, annotations={LAST_APPLIED: '{"data": {}}'})
    assert for_diff(config)['data'] == {'password': 'visible'} and for_diff(config)['metadata']['annotations'][LAST_APPLIED] == '{"data": {}}'
