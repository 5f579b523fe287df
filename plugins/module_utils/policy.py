# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DR policy timing: exclude windows, whether a sync is due, and the RPO achieved.

Times are timezone-aware; windows are local to their own timezone (business peaks are local),
and may run past midnight (``22:00``-``02:00``).
"""

from __future__ import annotations

import datetime
import re

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None
    ZoneInfoNotFoundError = KeyError

DAYS = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')
_DURATION = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$')
_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


class PolicyError(ValueError):
    """A policy field is malformed; the message names it and shows a valid example."""


def parse_duration(text, field):
    """Seconds of ``15m``, ``4h``, ``1d``, ``90s`` or a number of minutes."""
    if isinstance(text, (int, float)):
        return float(text) * 60
    match = _DURATION.match(str(text or ''))
    if not match:
        raise PolicyError('%s: %r is not a duration; write it like 15m, 4h or 1d' % (field, text))
    return float(match.group(1)) * _SECONDS[match.group(2) or 'm']


def _days(spec, field):
    """``mon-fri``, ``sat,sun``, ``daily`` or a list -> set of weekday numbers (Monday 0)."""
    if spec in (None, '', 'daily', 'all', '*'):
        return set(range(7))
    parts = spec if isinstance(spec, list) else str(spec).split(',')
    days = set()
    for part in parts:
        part = str(part).strip().lower()[:7]
        if '-' in part:
            first, last = (p.strip()[:3] for p in part.split('-', 1))
            if first not in DAYS or last not in DAYS:
                raise PolicyError('%s: %r is not a day range; write it like mon-fri' % (field, part))
            index = DAYS.index(first)
            while True:
                days.add(index)
                if index == DAYS.index(last):
                    break
                index = (index + 1) % 7
        elif part[:3] in DAYS:
            days.add(DAYS.index(part[:3]))
        else:
            raise PolicyError('%s: %r is not a day; use mon, tue, wed, thu, fri, sat, sun' % (field, part))
    return days


def _clock(text, field):
    match = re.fullmatch(r'\s*(\d{1,2}):(\d{2})\s*', str(text or ''))
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        raise PolicyError('%s: %r is not a time of day; write it like 08:30' % (field, text))
    return int(match.group(1)) * 60 + int(match.group(2))


def _zone(name, field):
    if not name or name.upper() == 'UTC':
        return datetime.timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError('%s: unknown timezone %r; use an IANA name like Europe/Berlin' % (field, name)) from None


class Window:
    """A weekly exclude window: days, start, end (end before start means it ends the next day)."""

    def __init__(self, spec, index=0):
        field = 'exclude_windows[%d]' % index
        if not isinstance(spec, dict):
            raise PolicyError('%s must be a mapping like {days: mon-fri, start: "08:00", end: "18:00", timezone: Europe/Berlin}' % field)
        self.name = spec.get('name') or 'window %d' % (index + 1)
        self.days = _days(spec.get('days'), field + '.days')
        self.start = _clock(spec.get('start'), field + '.start')
        self.end = _clock(spec.get('end'), field + '.end')
        self.zone = _zone(spec.get('timezone'), field + '.timezone')
        if self.start == self.end:
            raise PolicyError('%s: start and end are both %s; an exclude window needs a length' % (field, spec.get('start')))

    def contains(self, moment):
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= minute < self.end
        # Past midnight: the part after midnight belongs to the previous day's window.
        if minute >= self.start:
            return local.weekday() in self.days
        return minute < self.end and (local.weekday() - 1) % 7 in self.days

    def describe(self):
        return '%s (%s %02d:%02d-%02d:%02d %s)' % (self.name, ','.join(DAYS[d] for d in sorted(self.days)), self.start // 60, self.start % 60,
                                                   self.end // 60, self.end % 60, getattr(self.zone, 'key', 'UTC'))


def windows(specs):
    return [Window(spec, i) for i, spec in enumerate(specs or [])]


def active_window(moment, window_list):
    return next((w for w in window_list if w.contains(moment)), None)


def window_end(moment, window_list, step=datetime.timedelta(minutes=1), horizon=datetime.timedelta(days=8)):
    """When the exclude window(s) around ``moment`` end (minute resolution)."""
    probe = moment
    while active_window(probe, window_list) and probe - moment < horizon:
        probe += step
    return probe.replace(second=0, microsecond=0)


def parse_time(value):
    if value in (None, ''):
        return None
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value).replace('Z', '+00:00'))
        except ValueError:
            raise PolicyError('%r is not an ISO 8601 time like 2026-11-24T01:00:00Z' % (value,)) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def gate(policy, now, last_success=None, force=False):
    """Whether a sync of ``policy`` should run at ``now``, and why (the run's first decision)."""
    frequency = parse_duration(policy.get('frequency', '1h'), 'frequency')
    rpo_target = parse_duration(policy.get('rpo', policy.get('frequency', '1h')), 'rpo')
    window_list = windows(policy.get('exclude_windows'))
    last = parse_time(last_success)
    age = (now - last).total_seconds() if last else None
    decision = {'run': True, 'reason': '', 'rpo_target_seconds': rpo_target, 'frequency_seconds': frequency,
                'seconds_since_last_success': age, 'rpo_met': age is not None and age <= rpo_target, 'next_allowed': None}
    window = active_window(now, window_list)
    if window and not force:
        decision.update(run=False, reason='inside exclude window %s: no sync until %s' % (window.describe(), window_end(now, window_list).isoformat()),
                        next_allowed=window_end(now, window_list).isoformat())
    elif last is None:
        decision['reason'] = 'no successful sync yet'
    elif age + 30 < frequency and not force:  # 30 s of slack: a scheduler firing early must not skip a run
        due = last + datetime.timedelta(seconds=frequency)
        decision.update(run=False, reason='last successful sync %s ago; next due at %s' % (_human(age), due.isoformat()), next_allowed=due.isoformat())
    else:
        decision['reason'] = 'due: last successful sync %s ago (frequency %s)%s' % (_human(age), _human(frequency), ', forced' if force else '')
    return decision


def rpo_report(now, last_success, target_seconds):
    last = parse_time(last_success)
    achieved = (now - last).total_seconds() if last else None
    return {'target_seconds': target_seconds, 'achieved_seconds': achieved, 'met': achieved is not None and achieved <= target_seconds,
            'last_success': last.isoformat() if last else None}


def _human(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return '%ds' % seconds
    if seconds < 7200:
        return '%dm' % (seconds // 60)
    if seconds < 172800:
        return '%.1fh' % (seconds / 3600.0)
    return '%.1fd' % (seconds / 86400.0)
