"""Exclude windows, due syncs and RPO."""

import datetime

import pytest

from ansible_collections.ferry.kube.plugins.module_utils import policy

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


BUSINESS = {'name': 'business peak', 'days': 'mon-fri', 'start': '08:00', 'end': '18:00', 'timezone': 'Europe/Berlin'}
NIGHTLY = {'days': 'sat', 'start': '22:00', 'end': '02:00'}


def test_window_is_local_to_its_timezone():
    window = policy.Window(BUSINESS)
    assert window.contains(at('2026-11-24T07:30:00'))  # Tuesday 08:30 in Berlin (UTC+1)
    assert not window.contains(at('2026-11-24T06:30:00'))  # 07:30 in Berlin
    assert not window.contains(at('2026-11-28T10:00:00'))  # Saturday


def test_window_past_midnight_belongs_to_the_day_it_started():
    window = policy.Window(NIGHTLY)
    assert window.contains(at('2026-11-28T23:00:00'))  # Saturday 23:00
    assert window.contains(at('2026-11-29T01:30:00'))  # Sunday 01:30, still Saturday's window
    assert not window.contains(at('2026-11-29T23:00:00'))  # Sunday 23:00
    assert not window.contains(at('2026-11-28T01:30:00'))  # Saturday 01:30 belongs to Friday


def test_gate_skips_inside_a_window_and_says_until_when():
    decision = policy.gate({'frequency': '15m', 'exclude_windows': [BUSINESS]}, at('2026-11-24T09:00:00'), '2026-11-24T06:00:00Z')
    assert decision['run'] is False
    assert 'inside exclude window business peak' in decision['reason']
    assert decision['next_allowed'] == '2026-11-24T17:00:00+00:00'
    assert policy.gate({'exclude_windows': [BUSINESS]}, at('2026-11-24T09:00:00'), force=True)['run'] is True


def test_gate_runs_when_due_and_not_before():
    pol = {'frequency': '1h', 'rpo': '2h'}
    early = policy.gate(pol, at('2026-11-24T01:30:00'), '2026-11-24T01:00:00Z')
    assert early['run'] is False and 'next due at 2026-11-24T02:00:00+00:00' in early['reason']
    due = policy.gate(pol, at('2026-11-24T02:00:10'), '2026-11-24T01:00:00Z')
    assert due['run'] is True and due['rpo_met'] is True
    first = policy.gate(pol, at('2026-11-24T02:00:00'))
    assert first['run'] is True and first['reason'] == 'no successful sync yet'


def test_rpo_report():
    report = policy.rpo_report(at('2026-11-24T05:00:00'), '2026-11-24T02:00:00Z', 3600)
    assert report['achieved_seconds'] == 3 * 3600 and report['met'] is False
    assert policy.rpo_report(at('2026-11-24T05:00:00'), None, 3600)['met'] is False


@pytest.mark.parametrize('spec, message', [
    ({'days': 'mon-fry', 'start': '08:00', 'end': '18:00'}, 'not a day range'),
    ({'days': 'mon', 'start': '8am', 'end': '18:00'}, 'not a time of day'),
    ({'days': 'mon', 'start': '08:00', 'end': '08:00'}, 'needs a length'),
    ({'days': 'mon', 'start': '08:00', 'end': '09:00', 'timezone': 'Mars/Olympus'}, 'unknown timezone'),
])
def test_bad_windows_are_explained(spec, message):
    with pytest.raises(policy.PolicyError, match=message):
        policy.Window(spec)


def test_durations():
    assert policy.parse_duration('15m', 'f') == 900
    assert policy.parse_duration('4h', 'f') == 14400
    assert policy.parse_duration(30, 'f') == 1800
    with pytest.raises(policy.PolicyError, match='write it like 15m'):
        policy.parse_duration('soon', 'frequency')
