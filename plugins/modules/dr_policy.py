#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: dr_policy
short_description: Decide, record and report the syncs, failovers, drills and failbacks of a DR policy
version_added: 0.1.0
description:
  - Keeps the state of a DR policy in its storage pool (sealed with the pool's keys), so any control node or AWX job
    continues where the last one stopped.
  - V(gate) says whether a forward sync runs now, and why not (inside an exclude window, not due yet for O(frequency),
    or the policy failed over to the DR site and waits for failback). It changes nothing.
  - V(record) adds a sync's outcome; V(failover), V(drill) and V(failback) add those events (failover and failback
    move the active site).
  - V(report) returns the RPO/status report (last success, RPO achieved against target, restore points and their
    size, failures with reasons, sync history) and with O(report_dir) writes it as Markdown and HTML with a chart.
author:
  - Ferry developers (@ferry)
options:
  name:
    description: Name of the policy (its state is kept under this name).
    type: str
    required: true
  action:
    description: What to do, see the description.
    type: str
    choices: [gate, record, failover, drill, failback, report]
    required: true
  frequency:
    description: How often forward syncs are due (C(15m), C(4h), C(1d)).
    type: str
    default: 1h
  rpo:
    description: RPO target. Default is O(frequency).
    type: str
  exclude_windows:
    description:
      - 'Weekly windows without syncs, each C({days, start, end, timezone, name}), for example
        C({days: mon-fri, start: "08:00", end: "18:00", timezone: Europe/Berlin}).'
    type: list
    elements: dict
    default: []
  force:
    description: With V(gate), run even inside an exclude window or before due (never after a failover, until failback).
    type: bool
    default: false
  outcome:
    description:
      - With V(record), the sync's outcome, C({ok, started, finished, mode, point, bytes_sent, error}); with
        V(failover), V(drill) and V(failback), details to keep with the event (C(point), C(rto_seconds), C(ok), C(note)).
    type: dict
    default: {}
  group:
    description: Restore point group of the policy, for the points in the report.
    type: str
  report_dir:
    description: With V(report), write C(<name>.md) and C(<name>.html) here.
    type: path
  now:
    description: The time to decide at (ISO 8601). Default is now.
    type: str
extends_documentation_fragment:
  - ferry.kube.pool
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Decides and reports; records nothing and writes no report files.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Is the shop's sync due?
  ferry.kube.dr_policy:
    name: shop
    action: gate
    frequency: 1h
    exclude_windows: [{days: mon-fri, start: "08:00", end: "18:00", timezone: Europe/Berlin}]
    pool: {location: /var/lib/ferry/pools/shop, passphrase: "{{ vault_pool_passphrase }}"}
  register: gate

- name: Record the sync
  ferry.kube.dr_policy:
    name: shop
    action: record
    outcome: {ok: true, mode: staged, point: "{{ sync.point }}", bytes_sent: "{{ sync.bytes_on_wire }}"}
    pool: {location: /var/lib/ferry/pools/shop, passphrase: "{{ vault_pool_passphrase }}"}
  when: gate.decision.run
'''

RETURN = r'''
decision:
  description: With V(gate), whether to run and why, the RPO target and whether it is met now.
  returned: always
  type: dict
  sample: {run: false, reason: "inside exclude window business (mon,tue,wed,thu,fri 08:00-18:00 Europe/Berlin): no sync until 2026-12-01T18:00:00+01:00"}
site:
  description: The active site, C(primary) or C(dr) (after a failover, until failback).
  returned: always
  type: str
recorded:
  description: The entry recorded by V(record), V(failover), V(drill) or V(failback).
  returned: when recorded
  type: dict
report:
  description: The policy's status report.
  returned: always
  type: dict
files:
  description: Report files written.
  returned: when O(report_dir) is given
  type: list
  elements: str
'''

import os

from ansible_collections.ferry.kube.plugins.module_utils import dr_state
from ansible_collections.ferry.kube.plugins.module_utils import report as report_format
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.policy import PolicyError, parse_time
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError


def run(module):
    params = module.params
    policy = {'frequency': params['frequency'], 'rpo': params['rpo'] or params['frequency'], 'exclude_windows': params['exclude_windows']}
    now = parse_time(params['now']) if params['now'] else dr_state.now_utc()
    pool = pool_options.open_pool(module, params['pool'])
    try:
        state = pool.read_state(dr_state.state_name(params['name'])) or dr_state.empty_state(params['name'])
        result = {'changed': False, 'site': state['site']}
        action = params['action']
        if action == 'gate':
            result['decision'] = dr_state.gate(state, policy, now, params['force'])
        elif action in ('record', 'failover', 'drill', 'failback'):
            if action == 'record':
                result['recorded'] = dr_state.record_sync(state, params['outcome'], now)
            else:
                if action == 'failback' and state['site'] != 'dr':
                    raise FerryError('policy %s is not failed over (its active site is %s): nothing to fail back' % (params['name'], state['site']))
                result['recorded'] = dr_state.record_event(state, action, now, params['outcome'])
            result['site'] = state['site']
            if not module.check_mode:
                pool.write_state(dr_state.state_name(params['name']), state)
            result['changed'] = True
        points = [{'id': p['id'], 'time': p['time'], 'size': (p.get('stats') or {}).get('bytes_stored') or 0}
                  for p in pool.points() if params['group'] is None or p.get('group') == params['group']]
        result['report'] = dr_state.summary(state, policy, points, now)
        if action == 'report' and params['report_dir']:
            result['files'] = write_reports(params['report_dir'], params['name'], result['report'], module.check_mode)
        return result
    except (PoolError, PolicyError) as exc:
        raise FerryError(str(exc)) from None
    finally:
        pool.close()


def write_reports(directory, name, summary, check_mode):
    if not os.path.isdir(directory):
        raise FerryError('report_dir %s is not a directory' % directory)
    files = {os.path.join(directory, '%s.md' % name): report_format.markdown([summary], 'Ferry DR status: %s' % name),
             os.path.join(directory, '%s.html' % name): report_format.html_report([summary], 'Ferry DR status: %s' % name)}
    if not check_mode:
        for path, text in files.items():
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(text)
    return sorted(files)


def main():
    module = FerryModule(argument_spec=dict(
        name=dict(type='str', required=True),
        action=dict(type='str', choices=['gate', 'record', 'failover', 'drill', 'failback', 'report'], required=True),
        frequency=dict(type='str', default='1h'),
        rpo=dict(type='str'),
        exclude_windows=dict(type='list', elements='dict', default=[]),
        force=dict(type='bool', default=False),
        outcome=dict(type='dict', default={}),
        group=dict(type='str'),
        report_dir=dict(type='path'),
        now=dict(type='str'),
        pool=pool_options.pool_option(),
        cluster=cluster_option(),
    ), requires_kubernetes=False)
    module.run(run)


if __name__ == '__main__':
    main()
