# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole packs in memory for a restore: one read per pack instead of one per blob.

A whole-point restore needs nearly every blob of the packs it touches, in about the order the
backup wrote them, so reading each pack once (one GET on object storage, one direct read on a
local disk) beats thousands of ranged reads. A few packs stay cached in reused aligned buffers;
threads that need the same pack wait for the one that reads it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager

from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io


class PackCache:
    def __init__(self, backend, pack_bytes, capacity=6):
        self.backend = backend
        self.capacity = capacity
        self.buffers = direct_io.AlignedBuffers(-(-pack_bytes // direct_io.BLOCK) * direct_io.BLOCK, keep=capacity + 2)
        self.entries = OrderedDict()  # key -> _Entry
        self.lock = threading.Lock()

    @contextmanager
    def pack(self, key):
        """The bytes of a pack (a memoryview valid inside the ``with`` block)."""
        with self.lock:
            entry = self.entries.get(key)
            loader = entry is None
            if loader:
                entry = self.entries[key] = _Entry()
                self._evict()
            else:
                self.entries.move_to_end(key)
            entry.users += 1
        try:
            if loader:
                entry.load(self.backend, key, self.buffers)
            else:
                entry.ready.wait()
            if entry.error is not None:
                raise entry.error
            yield entry.view
        finally:
            with self.lock:
                entry.users -= 1
                self._evict()

    def _evict(self):
        while len(self.entries) > self.capacity:
            for key, entry in self.entries.items():
                if entry.users == 0 and entry.ready.is_set():
                    del self.entries[key]
                    entry.free(self.buffers)
                    break
            else:
                return  # every cached pack is in use: go over capacity for a moment


class _Entry:
    def __init__(self):
        self.ready = threading.Event()
        self.users = 0
        self.buffer = None
        self.view = None
        self.error = None

    def load(self, backend, key, buffers):
        try:
            path = backend.local_path(key) if hasattr(backend, 'local_path') else None
            if path is not None and backend.size(key) <= buffers.size:
                self.buffer = buffers.get()
                size = direct_io.read_file(path, self.buffer)
                self.view = memoryview(self.buffer)[:size]
            else:
                self.view = memoryview(backend.read(key))
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc  # every thread waiting for this pack raises it
        finally:
            self.ready.set()

    def free(self, buffers):
        if self.view is not None:
            self.view.release()
        if self.buffer is not None:
            buffers.put(self.buffer)
