# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of a long pool operation: bytes, files, rate and ETA, reported about once a second."""

from __future__ import annotations

import os
import threading
import time


def human_bytes(count):
    value = float(count)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return ('%.0f %s' if unit == 'B' else '%.1f %s') % (value, unit)
        value /= 1024
    return '%d B' % count  # pragma: no cover


def human_seconds(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return '%dh%02dm' % (seconds // 3600, seconds % 3600 // 60)
    if seconds >= 60:
        return '%dm%02ds' % (seconds // 60, seconds % 60)
    return '%ds' % seconds


class Progress:
    """Counts done work against a total that may arrive later; ``report`` gets a dict and a line."""

    def __init__(self, operation, report=None, interval=1.0):
        self.operation = operation
        self.report = report
        self.interval = interval
        self.bytes_done = 0
        self.files_done = 0
        self.bytes_total = None
        self.files_total = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def add(self, nbytes=0, files=0):
        with self._lock:
            self.bytes_done += nbytes
            self.files_done += files

    def set_total(self, nbytes, files):
        self.bytes_total, self.files_total = nbytes, files

    def snapshot(self):
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes_done / elapsed
        state = {'operation': self.operation, 'bytes': self.bytes_done, 'files': self.files_done, 'elapsed': round(elapsed, 1),
                 'rate': rate, 'bytes_total': self.bytes_total, 'files_total': self.files_total, 'eta': None}
        if self.bytes_total and rate > 0:
            state['eta'] = max(self.bytes_total - self.bytes_done, 0) / rate
        return state

    def line(self, state=None):
        state = state or self.snapshot()
        total = ' / %s' % human_bytes(state['bytes_total']) if state['bytes_total'] is not None else ''
        files = ' / %d' % state['files_total'] if state['files_total'] is not None else ''
        eta = ' ETA %s' % human_seconds(state['eta']) if state['eta'] is not None else ''
        return '%s: %s%s, %d%s files, %s/s%s' % (state['operation'], human_bytes(state['bytes']), total, state['files'], files,
                                                 human_bytes(state['rate']), eta)

    def __enter__(self):
        if self.report is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            state = self.snapshot()
            self.report(state, self.line(state) + ' (done)')

    def _run(self):
        while not self._stop.wait(self.interval):
            state = self.snapshot()
            self.report(state, self.line(state))


def count_trees(roots, progress, skip=()):
    """Set ``progress``'s total from a quick walk of ``roots``, in a background thread."""

    def walk():
        nbytes = files = 0
        for root in roots:
            for top, dirs, names in os.walk(root):
                if top == root:
                    dirs[:] = [d for d in dirs if d not in skip]
                for name in names:
                    try:
                        nbytes += os.lstat(os.path.join(top, name)).st_size
                    except OSError:
                        continue
                    files += 1
        progress.set_total(nbytes, files)

    thread = threading.Thread(target=walk, daemon=True)
    thread.start()
    return thread
