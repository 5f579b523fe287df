"""Sharing work between control nodes, and licence units."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils import scaleout


def apps(count, clusters=2, namespaces=10):
    return [{'name': 'svc-%d' % i, 'namespace': 'ns-%d' % (i % namespaces), 'cluster': 'c%d' % (i % clusters), 'gb': (i * 37) % 500}
            for i in range(count)]


def placement(assignment):
    return {(a['cluster'], a['namespace'], a['name']): node for node, items in assignment.items() for a in items}


def test_every_app_is_assigned_exactly_once_and_balanced():
    work = apps(300)
    result = scaleout.assign(work, ['cn1', 'cn2', 'cn3'])
    assert sum(len(v) for v in result.values()) == 300
    assert len(placement(result)) == 300
    assert max(len(v) for v in result.values()) <= 300 / 3 * 1.15 + 1


def test_stable_across_runs_and_adding_a_node_moves_little():
    work = apps(600)
    before = placement(scaleout.assign(work, ['cn1', 'cn2', 'cn3']))
    assert before == placement(scaleout.assign(list(reversed(work)), ['cn3', 'cn1', 'cn2']))
    after = placement(scaleout.assign(work, ['cn1', 'cn2', 'cn3', 'cn4']))
    moved = sum(1 for key in before if before[key] != after[key])
    # An ideal scheme moves 1/4 of the apps (those the new node takes); allow some spill for balance.
    assert moved <= 600 * 0.35
    assert sum(1 for key in after if after[key] == 'cn4') >= 600 / 4 * 0.8


def test_gb_criterion_balances_volume_size():
    work = apps(200)
    result = scaleout.assign(work, ['a', 'b'], criterion='gb')
    sizes = [sum(i['gb'] for i in items) for items in result.values()]
    even = sum(sizes) / 2
    # the bound: no node above an even share plus the slack (15 %)
    assert max(sizes) <= even * 1.15 + 1e-6
    assert min(sizes) >= even * 0.85 - 1e-6


def test_namespaces_and_clusters_stay_together():
    work = apps(120)
    by_ns = scaleout.assign(work, ['a', 'b', 'c'], criterion='namespaces')
    owners = {}
    for node, items in by_ns.items():
        for item in items:
            owners.setdefault((item['cluster'], item['namespace']), set()).add(node)
    assert all(len(nodes) == 1 for nodes in owners.values())
    by_cluster = scaleout.assign(work, ['a', 'b', 'c'], criterion='clusters')
    assert sorted(len({i['cluster'] for i in items}) for items in by_cluster.values()) == [0, 1, 1]


def test_capacity_is_respected_and_overflow_is_a_clear_error():
    work = apps(30)
    result = scaleout.assign(work, ['small', 'big'], capacity={'small': 5})
    assert len(result['small']) <= 5
    with pytest.raises(scaleout.AssignmentError, match='can take 10 apps in all, but there are 30'):
        scaleout.assign(work, ['a', 'b'], capacity={'a': 5, 'b': 5})
    with pytest.raises(scaleout.AssignmentError, match='capacity names hosts that are not control nodes: z'):
        scaleout.assign(work, ['a'], capacity={'z': 1})
    with pytest.raises(scaleout.AssignmentError, match='no control nodes'):
        scaleout.assign(work, [])


def test_licence_units_follow_the_pooled_model():
    assert scaleout.licence_units([{'gb': 300}, {'gb': 100}]) == {'apps': 2, 'gb': 400.0, 'app_units': 2, 'included_gb': 400, 'storage_units': 0}
    assert scaleout.licence_units([{'gb': 300}, {'gb': 101}])['storage_units'] == 1
    assert scaleout.licence_units([{'gb': 1000}])['storage_units'] == 4
    assert scaleout.licence_units([])['app_units'] == 0


def test_limits_stop_with_a_message():
    units = scaleout.licence_units([{'gb': 300}, {'gb': 100}])
    assert scaleout.check_limits(units, max_apps=2, max_gb=400) == []
    problems = scaleout.check_limits(units, max_apps=1, max_gb=250)
    assert problems[0].startswith('2 apps replicate but the policy allows at most 1')
    assert '400 GB of volumes replicate but the policy allows at most 250 GB' in problems[1]
