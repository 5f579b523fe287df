"""Retention rules: restic's semantics, per group, with reasons."""

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.pool import retention


def points(hours, group='g', start=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    """One point every ``hours`` hours, the newest last; ids sort by time."""
    result = []
    for number in range(hours[1]):
        moment = start + timedelta(hours=number * hours[0])
        result.append({'id': '%s-%04d' % (group, number), 'time_unix': moment.timestamp(), 'group': group})
    return result


def kept(decisions):
    return sorted(point['id'] for point, keep, _reasons in decisions if keep)


def test_keep_last():
    assert kept(retention.apply(points((1, 10)), {'last': 3})) == ['g-0007', 'g-0008', 'g-0009']


def test_keep_daily_takes_the_newest_point_of_each_day():
    decisions = retention.apply(points((6, 12)), {'daily': 2})  # three days, four points a day
    assert kept(decisions) == ['g-0007', 'g-0011']


def test_rules_combine_and_give_reasons():
    decisions = retention.apply(points((24, 60)), {'last': 2, 'weekly': 2, 'monthly': 3})
    reasons = {point['id']: why for point, keep, why in decisions if keep}
    assert reasons['g-0059'][:2] == ['newest', 'last']
    assert any(r.startswith('monthly') for r in reasons['g-0030'])  # the last day of January
    assert kept(decisions) == ['g-0030', 'g-0052', 'g-0058', 'g-0059']


def test_within_is_measured_from_the_newest_point():
    assert kept(retention.apply(points((12, 10)), {'within': '1d'})) == ['g-0007', 'g-0008', 'g-0009']


def test_groups_are_independent_and_never_emptied():
    both = points((1, 3), 'a') + points((1, 5), 'b')
    assert kept(retention.apply(both, {'last': 1})) == ['a-0002', 'b-0004']
    assert kept(retention.apply(points((1, 3)), {'hourly': 0, 'within': '1h'})) == ['g-0001', 'g-0002']


@pytest.mark.parametrize('policy, message', [({}, 'keeps nothing'), ({'dayly': 1}, 'unknown retention'),
                                             ({'last': -1}, 'whole number'), ({'within': 'soon'}, 'not a duration')])
def test_bad_policies_are_named(policy, message):
    with pytest.raises(retention.PolicyError, match=message):
        retention.apply(points((1, 2)), policy)
