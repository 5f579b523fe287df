"""The RPO/status report in its three forms."""

from ansible_collections.ferry.kube.plugins.module_utils import report

STATE = {'name': 'shop', 'rpo_target_seconds': 3600, 'now': '2026-11-24T05:00:00Z',
         'syncs': [{'started': '2026-11-24T02:00:00Z', 'finished': '2026-11-24T02:01:30Z', 'ok': True, 'bytes_sent': 10 << 20},
                   {'started': '2026-11-24T03:00:00Z', 'finished': '2026-11-24T03:00:10Z', 'ok': False, 'error': 'source unreachable'},
                   {'started': '2026-11-24T04:30:00Z', 'finished': '2026-11-24T04:30:40Z', 'ok': True, 'bytes_sent': 1 << 20}],
         'points': [{'id': 'a', 'size': 3 << 30}, {'id': 'b', 'size': 1 << 30}]}


def test_summary_counts_rpo_points_and_failures():
    summary = report.summarize(STATE)
    assert summary['last_success'] == '2026-11-24T04:30:40+00:00'
    assert summary['rpo']['achieved_seconds'] == 1760 and summary['rpo']['met'] is True
    assert summary['restore_points'] == 2 and summary['stored_bytes'] == 4 << 30
    assert summary['failures'] == [{'started': '2026-11-24T03:00:00Z', 'error': 'source unreachable'}]
    assert [h['duration_seconds'] for h in summary['history']] == [90.0, 10.0, 40.0]


def test_markdown_and_html_show_the_same_facts():
    summary = report.summarize(STATE)
    text = report.markdown([summary])
    assert '| shop | 2026-11-24T04:30:40+00:00 | 29m / 60m | yes | 2 | 4.0 GiB | 1 |' in text
    assert '- 2026-11-24T03:00:00Z: source unreachable' in text
    page = report.html_report([summary])
    assert page.count('<rect') == 3 and '#c62828' in page and 'source unreachable' in page
    assert '<td class="ok">yes</td>' in page


def test_missed_rpo_is_flagged():
    late = dict(STATE, now='2026-11-24T09:00:00Z')
    summary = report.summarize(late)
    assert summary['rpo']['met'] is False
    assert '**no**' in report.markdown([summary]) and 'class="bad"' in report.html_report([summary])
