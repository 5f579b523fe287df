# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calls on a few threads: what registry replication and the passthrough mover need of ``concurrent.futures``,
without importing it (and ``logging``) at every run."""

from __future__ import annotations

import os
import threading


def usable_cpus():
    """CPUs this process may use: the machine's, narrowed by its CPU affinity and its cgroup's quota
    (a pod limited to 2 CPUs on a 64-core node gets 2: more workers would only be throttled)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota:
        count = min(count, max(1, -(-quota[0] // quota[1])))
    return max(1, count)


def _cgroup_quota():
    """(quota, period) in microseconds, or None for no CPU limit."""
    for path, v1_period in (('/sys/fs/cgroup/cpu.max', None), ('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu/cpu.cfs_period_us')):
        try:
            with open(path, encoding='ascii') as handle:
                fields = handle.read().split()
            if v1_period is not None:
                with open(v1_period, encoding='ascii') as handle:
                    fields.append(handle.read().strip())
            if fields[0] in ('max', '-1'):
                return None
            return int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    return None


class Background:
    """One call running on its own thread; ``result()`` waits for it and returns its value or raises its exception."""

    def __init__(self, function, *args):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(function, args), name='ferry-background', daemon=True)
        self._thread.start()

    def _run(self, function, args):
        try:
            self._value = function(*args)
        except BaseException as exc:  # pylint: disable=broad-except
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def parallel(function, items, workers):
    """``[function(item) for item in items]`` on up to ``workers`` threads, in order; the first exception is raised after all finished."""
    items = list(items)
    results = [None] * len(items)
    if len(items) <= 1 or workers <= 1:
        return [function(item) for item in items]
    errors = []
    position = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                return
            try:
                results[index] = function(items[index])
            except BaseException as exc:  # pylint: disable=broad-except
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, name='ferry-worker-%d' % number, daemon=True) for number in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
