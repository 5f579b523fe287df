"""Label selectors as Kubernetes evaluates them: strings, Service selector maps and LabelSelector objects."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.discovery import selectors
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError


@pytest.mark.parametrize('text, requirements', [
    ('app=web', [('app', 'In', ['web'])]),
    ('app==web', [('app', 'In', ['web'])]),
    (' app = web ', [('app', 'In', ['web'])]),
    ('app!=web', [('app', 'NotIn', ['web'])]),
    ('app=', [('app', 'In', [''])]),
    ('tier in (front, api)', [('tier', 'In', ['front', 'api'])]),
    ('tier notin (a,b)', [('tier', 'NotIn', ['a', 'b'])]),
    ('tier in ()', [('tier', 'In', [])]),
    ('legacy', [('legacy', 'Exists', [])]),
    ('!legacy', [('legacy', 'DoesNotExist', [])]),
    ('! legacy', [('legacy', 'DoesNotExist', [])]),
    ('app.kubernetes.io/name=shop', [('app.kubernetes.io/name', 'In', ['shop'])]),
    ('app=web,tier in (a,b),!legacy', [('app', 'In', ['web']), ('tier', 'In', ['a', 'b']), ('legacy', 'DoesNotExist', [])]),
    ('app=web,,', [('app', 'In', ['web'])]),
    ('', []),
    (None, []),
])
def test_parse_selector(text, requirements):
    assert selectors.parse_selector(text) == requirements


@pytest.mark.parametrize('text', ['app in web', 'a=b=c', 'tier in (a,b', 'app=we b', 'app>1', '=web'])
def test_unreadable_selectors_are_named(text):
    with pytest.raises(FerryError, match='cannot read') as raised:
        selectors.parse_selector(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize('text, labels, expected', [
    ('app=web', {'app': 'web'}, True),
    ('app=web', {'app': 'db'}, False),
    ('app=web', {}, False),
    ('app!=web', {'app': 'db'}, True),
    ('app!=web', {}, True),  # as Kubernetes: != matches objects without the label
    ('app!=web', {'app': 'web'}, False),
    ('tier in (a,b)', {'tier': 'b'}, True),
    ('tier in (a,b)', {'tier': 'c'}, False),
    ('tier in (a,b)', {}, False),
    ('tier notin (a,b)', {}, True),
    ('tier notin (a,b)', {'tier': 'a'}, False),
    ('legacy', {'legacy': ''}, True),
    ('legacy', {}, False),
    ('!legacy', {}, True),
    ('!legacy', {'legacy': 'x'}, False),
    ('app=web,!legacy', {'app': 'web'}, True),
    ('app=web,!legacy', {'app': 'web', 'legacy': '1'}, False),
    ('', {'anything': 'x'}, True),
])
def test_matches(text, labels, expected):
    assert selectors.matches(selectors.parse_selector(text), labels) is expected


@pytest.mark.parametrize('selector, labels, expected', [
    (None, {'app': 'web'}, False),  # a null LabelSelector selects nothing
    ({}, {'app': 'web'}, True),  # an empty one selects everything
    ({}, None, True),
    ({'matchLabels': {'app': 'web'}}, {'app': 'web', 'x': 'y'}, True),
    ({'matchLabels': {'app': 'web'}}, {'app': 'db'}, False),
    ({'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['a']}]}, {'tier': 'a'}, True),
    ({'matchExpressions': [{'key': 'tier', 'operator': 'NotIn', 'values': ['a']}]}, {'tier': 'a'}, False),
    ({'matchExpressions': [{'key': 'tier', 'operator': 'Exists'}]}, {'tier': 'a'}, True),
    ({'matchExpressions': [{'key': 'tier', 'operator': 'DoesNotExist'}]}, {'tier': 'a'}, False),
    ({'matchLabels': {'app': 'web'}, 'matchExpressions': [{'key': 'tier', 'operator': 'Exists'}]}, {'app': 'web'}, False),
])
def test_label_selector_objects(selector, labels, expected):
    assert selectors.selects(selector, labels) is expected


def test_label_selector_requirements():
    assert selectors.label_selector_requirements(None) is None
    assert selectors.label_selector_requirements({'matchLabels': {'a': 'b'}, 'matchExpressions': [{'key': 'c', 'operator': 'Exists'}]}) == [
        ('a', 'In', ['b']), ('c', 'Exists', [])]


@pytest.mark.parametrize('selector_map, labels, expected', [
    ({'app': 'web'}, {'app': 'web', 'tier': 'x'}, True),
    ({'app': 'web', 'tier': 'x'}, {'app': 'web'}, False),
    ({}, {'app': 'web'}, False),  # a Service without a selector selects no pods
    (None, {'app': 'web'}, False),
    ({'app': 'web'}, None, False),
])
def test_service_selector_maps(selector_map, labels, expected):
    assert selectors.map_selects(selector_map, labels) is expected
