# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The RPO/status report: per policy the last successful sync, RPO achieved vs target, restore
points, sizes, failures with reasons; as a JSON-able dict, Markdown, and HTML with an SVG chart.

Input is a list of policy states::

    {name, rpo_target_seconds, now, syncs: [{started, finished, ok, bytes_sent, error}], points: [{id, time, size}]}
"""

from __future__ import annotations

import html

from ansible_collections.ferry.kube.plugins.module_utils.policy import parse_time, rpo_report

CHART_WIDTH, CHART_HEIGHT = 640, 160


def summarize(state):
    syncs = sorted(state.get('syncs') or [], key=lambda s: s.get('started') or '')
    successes = [s for s in syncs if s.get('ok')]
    failures = [s for s in syncs if not s.get('ok')]
    last = successes[-1] if successes else None
    now = parse_time(state['now'])
    rpo = rpo_report(now, last and last.get('finished'), state.get('rpo_target_seconds') or 3600)
    points = state.get('points') or []
    return {
        'policy': state['name'],
        'last_success': rpo['last_success'],
        'rpo': rpo,
        'syncs': len(syncs),
        'failures': [{'started': f.get('started'), 'error': f.get('error') or 'unknown'} for f in failures[-10:]],
        'restore_points': len(points),
        'stored_bytes': sum(p.get('size') or 0 for p in points),
        'last_duration_seconds': _duration(last) if last else None,
        'history': [{'started': s.get('started'), 'ok': bool(s.get('ok')), 'duration_seconds': _duration(s), 'bytes_sent': s.get('bytes_sent') or 0}
                    for s in syncs[-50:]],
    }


def _duration(sync):
    start, end = parse_time(sync.get('started')), parse_time(sync.get('finished'))
    return round((end - start).total_seconds(), 1) if start and end else None


def _human_seconds(value):
    if value is None:
        return 'never'
    value = int(value)
    if value < 120:
        return '%ds' % value
    if value < 7200:
        return '%dm' % (value // 60)
    return '%.1fh' % (value / 3600.0)


def _human_bytes(value):
    value = float(value or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%d B' % value


def markdown(summaries, title='Ferry DR status'):
    lines = ['# %s' % title, '', '| policy | last success | RPO achieved / target | met | restore points | stored | failures |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for s in summaries:
        lines.append('| %s | %s | %s / %s | %s | %d | %s | %d |' % (
            s['policy'], s['last_success'] or 'never', _human_seconds(s['rpo']['achieved_seconds']), _human_seconds(s['rpo']['target_seconds']),
            'yes' if s['rpo']['met'] else '**no**', s['restore_points'], _human_bytes(s['stored_bytes']), len(s['failures'])))
    for s in summaries:
        if s['failures']:
            lines += ['', '## Failures of %s' % s['policy'], '']
            lines += ['- %s: %s' % (f['started'], f['error']) for f in s['failures']]
    return '\n'.join(lines) + '\n'


def svg_chart(history):
    """Bars of sync durations, green for success and red for failure, oldest left."""
    if not history:
        return '<svg width="%d" height="%d"><text x="10" y="20">no syncs yet</text></svg>' % (CHART_WIDTH, 30)
    longest = max((h['duration_seconds'] or 0) for h in history) or 1
    slot = CHART_WIDTH / float(len(history))
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="sync history">' % (CHART_WIDTH, CHART_HEIGHT + 20)]
    for i, h in enumerate(history):
        height = max(2, (h['duration_seconds'] or 0) / longest * CHART_HEIGHT)
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s, %s</title></rect>' % (
            i * slot + 1, CHART_HEIGHT - height, max(1, slot - 2), height, '#2e7d32' if h['ok'] else '#c62828',
            html.escape(h['started'] or ''), 'ok' if h['ok'] else 'failed', _human_seconds(h['duration_seconds'])))
    parts.append('<text x="0" y="%d" font-size="11">duration per sync (longest %s)</text>' % (CHART_HEIGHT + 15, _human_seconds(longest)))
    parts.append('</svg>')
    return ''.join(parts)


def html_report(summaries, title='Ferry DR status'):
    rows = []
    for s in summaries:
        rows.append('<tr><td>%s</td><td>%s</td><td>%s / %s</td><td class="%s">%s</td><td>%d</td><td>%s</td><td>%d</td></tr>' % (
            html.escape(s['policy']), html.escape(s['last_success'] or 'never'), _human_seconds(s['rpo']['achieved_seconds']),
            _human_seconds(s['rpo']['target_seconds']), 'ok' if s['rpo']['met'] else 'bad', 'yes' if s['rpo']['met'] else 'no',
            s['restore_points'], _human_bytes(s['stored_bytes']), len(s['failures'])))
    sections = []
    for s in summaries:
        failures = ''.join('<li>%s: %s</li>' % (html.escape(f['started'] or ''), html.escape(f['error'])) for f in s['failures'])
        failure_list = '<h3>Failures</h3><ul>%s</ul>' % failures if failures else ''
        sections.append('<h2>%s</h2>%s%s' % (html.escape(s['policy']), svg_chart(s['history']), failure_list))
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title><style>'
            'body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}'
            '.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}</style></head><body><h1>%s</h1>'
            '<table><tr><th>policy</th><th>last success</th><th>RPO achieved / target</th><th>met</th><th>restore points</th>'
            '<th>stored</th><th>failures</th></tr>%s</table>%s</body></html>\n') % (html.escape(title), html.escape(title), ''.join(rows), ''.join(sections))
