# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which restore points a retention policy keeps, per group, and why.

The rules are restic's and Borg's: ``last`` keeps the newest N points; ``hourly``, ``daily``,
``weekly``, ``monthly`` and ``yearly`` keep the newest point of each of the last N such periods
that have points; ``within`` keeps everything newer than a duration (``36h``, ``7d``, ``2w``,
``6m``, ``1y``) before the newest point. A point is kept if any rule keeps it, and the newest point
of a group is always kept, so a policy can never empty a group.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

RULES = ('last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')
PERIODS = {
    'hourly': lambda t: t.strftime('%Y-%m-%d %H'),
    'daily': lambda t: t.strftime('%Y-%m-%d'),
    'weekly': lambda t: '%d-W%02d' % t.isocalendar()[:2],
    'monthly': lambda t: t.strftime('%Y-%m'),
    'yearly': lambda t: t.strftime('%Y'),
}
UNITS = {'h': 3600, 'd': 86400, 'w': 7 * 86400, 'm': 30 * 86400, 'y': 365 * 86400}


class PolicyError(ValueError):
    pass


def parse_duration(text):
    """Seconds in '1y6m', '7d', '36h' (months are 30 days, years 365)."""
    text = str(text).strip().lower()
    parts = re.findall(r'(\d+)\s*([hdwmy])', text)
    if not parts or re.sub(r'(\d+)\s*([hdwmy])', '', text).strip():
        raise PolicyError('keep within %r is not a duration: write e.g. 36h, 7d, 2w, 6m, 1y or 1y6m' % text)
    return sum(int(number) * UNITS[unit] for number, unit in parts)


def validate(policy):
    policy = {k: v for k, v in (policy or {}).items() if v not in (None, 0, '')}
    unknown = set(policy) - set(RULES) - {'within'}
    if unknown:
        raise PolicyError('unknown retention rules: %s (known: %s, within)' % (', '.join(sorted(unknown)), ', '.join(RULES)))
    for rule in RULES:
        if rule in policy and (not isinstance(policy[rule], int) or policy[rule] < 0):
            raise PolicyError('keep %s must be a whole number of points, not %r' % (rule, policy[rule]))
    if 'within' in policy:
        parse_duration(policy['within'])
    if not policy:
        raise PolicyError('the retention policy keeps nothing: give at least one of keep last/hourly/daily/weekly/monthly/yearly/within')
    return policy


def apply(points, policy):
    """[(point, keep, reasons)] for every point, newest first."""
    policy = validate(policy)
    groups = {}
    for point in points:
        groups.setdefault(point.get('group') or 'default', []).append(point)
    decisions = []
    for _group, members in sorted(groups.items()):
        members.sort(key=lambda p: (p['time_unix'], p['id']), reverse=True)
        reasons = {p['id']: [] for p in members}
        reasons[members[0]['id']].append('newest')
        for rule in RULES:
            budget = policy.get(rule, 0)
            last_period = None
            for point in members:
                if budget <= 0:
                    break
                period = point['id'] if rule == 'last' else PERIODS[rule](_time(point))
                if period != last_period:
                    reasons[point['id']].append(rule if rule == 'last' else '%s %s' % (rule, period))
                    last_period = period
                    budget -= 1
        if 'within' in policy:
            horizon = members[0]['time_unix'] - parse_duration(policy['within'])
            for point in members:
                if point['time_unix'] >= horizon:
                    reasons[point['id']].append('within %s' % policy['within'])
        decisions.extend((point, bool(reasons[point['id']]), reasons[point['id']]) for point in members)
    return decisions


def _time(point):
    return datetime.fromtimestamp(point['time_unix'], timezone.utc)
