# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One deadline for a whole provisioning run, and polling against it.

Clock and sleep are attributes so that tests can script a slow cloud without waiting for it.
"""

from __future__ import annotations

import time


class WaitTimeout(Exception):
    """The deadline passed; ``last`` is the last value ``check`` returned."""

    def __init__(self, last):
        super().__init__('timed out')
        self.last = last


class Deadline:
    def __init__(self, seconds, clock=None, sleep=None):
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.seconds = seconds
        self.started = self.clock()
        self.ends = self.started + seconds

    def remaining(self):
        return max(0.0, self.ends - self.clock())

    def elapsed(self):
        return self.clock() - self.started

    def poll(self, check, interval):
        """Call ``check() -> (done, value)`` every ``interval`` seconds until done; return the value.

        Raises ``WaitTimeout`` (with the last value) when the deadline passes first. ``check`` runs
        at least once, also with no time left.
        """
        while True:
            done, value = check()
            if done:
                return value
            remaining = self.remaining()
            if remaining <= 0:
                raise WaitTimeout(value)
            self.sleep(min(interval, remaining))
