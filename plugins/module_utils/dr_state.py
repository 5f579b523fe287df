# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state of a DR policy that must outlive a run: its syncs, which site is active, failovers,
drills and failbacks. It lives in the policy's pool (sealed like restore points), so any control
node or AWX job picks it up.
"""

from __future__ import annotations

import datetime

from ansible_collections.ferry.kube.plugins.module_utils import policy as policy_rules
from ansible_collections.ferry.kube.plugins.module_utils import report

KEEP_SYNCS = 200
KEEP_EVENTS = 100
SITES = ('primary', 'dr')


def state_name(policy_name):
    return 'policy-%s' % policy_name


def empty_state(policy_name):
    return {'policy': policy_name, 'site': 'primary', 'syncs': [], 'events': []}


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def last_success(state):
    done = [s for s in state['syncs'] if s.get('ok')]
    return done[-1]['finished'] if done else None


def gate(state, policy, now, force=False):
    """Whether a forward sync runs now: not after a failover (until failback), not in an exclude window, when due."""
    decision = policy_rules.gate(policy, now, last_success(state), force)
    if state['site'] == 'dr':  # not even forced: a forward sync would overwrite the live DR copy with the old source
        event = next((e for e in reversed(state['events']) if e['kind'] == 'failover'), {})
        decision.update(run=False, reason='failed over to the DR site at %s: forward syncs stop until failback' % event.get('time', '?'))
    return decision


def record_sync(state, outcome, now):
    entry = {'started': outcome.get('started') or iso(now), 'finished': outcome.get('finished') or iso(now), 'ok': bool(outcome.get('ok')),
             'mode': outcome.get('mode'), 'point': outcome.get('point'), 'bytes_sent': int(outcome.get('bytes_sent') or 0),
             'error': outcome.get('error') if not outcome.get('ok') else None}
    state['syncs'] = (state['syncs'] + [entry])[-KEEP_SYNCS:]
    return entry


def record_event(state, kind, now, details=None):
    """A failover, drill or failback; failover and failback move the active site."""
    entry = dict(details or {}, kind=kind, time=iso(now))
    if kind == 'failover':
        state['site'] = 'dr'
    elif kind == 'failback':
        state['site'] = 'primary'
    state['events'] = (state['events'] + [entry])[-KEEP_EVENTS:]
    return entry


def summary(state, policy, points, now):
    """The report's view of one policy (report.summarize's input, then its output plus site and events)."""
    rpo = policy_rules.parse_duration(policy.get('rpo') or policy.get('frequency') or '1h', 'rpo')
    summarized = report.summarize({'name': state['policy'], 'rpo_target_seconds': rpo, 'now': iso(now), 'syncs': state['syncs'],
                                   'points': points})
    summarized.update(site=state['site'], events=state['events'][-10:])
    return summarized
