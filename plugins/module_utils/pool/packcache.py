# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole packs in memory for a restore: one read per pack instead of one per blob.

A whole-point restore needs nearly every blob of the packs it touches, in about the order the
backup wrote them, so reading each pack once (one GET on object storage, one direct read on a
local disk) beats thousands of ranged reads. A few packs stay cached in reused aligned buffers;
threads that need the same pack wait for the one that reads it.

From a local pool, blobs are read by range instead (``read_range``): two big files backed up side by
side share their packs half and half, and the small files of a pack go to several worker processes,
so whole packs were read up to four times (measured: a restore of the reference data read 235 packs
for the pool's 84, 3.8 GB for 1.4). The chunks of a batch of files are read in spans of up to
SPAN_BYTES (restore.py decides them), each byte about once. Worker processes that reach the pool
through a relay lane of their own (agent/relay.py) read the same way, one request per span.
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict, deque
from contextlib import contextmanager

from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io

SPAN_BYTES = 8 * 1024 * 1024  # the most read at once for a batch of small files
READ_AHEAD_BYTES = 24 * 1024 * 1024  # asked for ahead of a worker's reads, where the backend can (plan)


class PackCache:
    def __init__(self, backend, pack_bytes, capacity=6, largest_blob=None):
        self.backend = backend
        self.capacity = capacity
        self.buffers = direct_io.AlignedBuffers(-(-pack_bytes // direct_io.BLOCK) * direct_io.BLOCK, keep=capacity + 2)
        self.entries = OrderedDict()  # key -> _Entry
        self.lock = threading.Lock()
        range_bytes = max(largest_blob or pack_bytes, SPAN_BYTES)
        self.range_bytes = -(-range_bytes // direct_io.BLOCK) * direct_io.BLOCK + 2 * direct_io.BLOCK
        self.local = threading.local()  # each thread's loaded span and planned reads

    def ranges_direct(self):
        """Whether ``read_range`` reads a local pool direct (elsewhere whole packs, one request each, are better)."""
        return hasattr(self.backend, 'read_view') and direct_io.O_DIRECT != 0

    def read_range(self, key, offset, length, span=None):
        """``length`` bytes of a pack at ``offset`` (a memoryview valid until this thread's next ``read_range``).

        ``span`` (start, end), around the range, is what the caller will read of this pack soon (the chunks of
        a batch of small files): it is read in one request, and later ranges inside it come from memory.
        """
        loaded = getattr(self.local, 'span', None)
        if not _holds(loaded, key, offset, length):
            start, end = self._load_for(offset, length, span)
            loaded = self.local.span = None
            view = self._read_direct(key, start, end)
            if view is None:  # not a local pack: one request for the span (asked for ahead, when planned)
                view = memoryview(self._planned(key, start, end) or self.backend.read(key, start, end - start))
                if len(view) < end - start:
                    raise OSError(errno.EIO, 'pack %s is shorter than its index says (truncated?)' % key)
            loaded = self.local.span = (key, start, end, view)
        return loaded[3][offset - loaded[1]:offset - loaded[1] + length]

    def _load_for(self, offset, length, span):
        """(start, end) that ``read_range`` loads for a range it does not hold: its span where that fits the buffer."""
        if span is not None and span[1] - span[0] + 2 * direct_io.BLOCK <= self.range_bytes:
            return span
        return offset, offset + length

    def plan(self, ranges):
        """``ranges``: the (key, offset, length, span) this thread will call ``read_range`` with next, in order.
        A backend that can read ahead (a relay lane) is asked for what those calls will load up to
        READ_AHEAD_BYTES ahead, so the round trips to the control node overlap the work instead of
        adding to it (a DR link's latency is milliseconds)."""
        if not hasattr(self.backend, 'read_ahead'):
            return
        self.local.plan, self.local.pending, self.local.pending_bytes = self._loads(ranges), deque(), 0
        self._ask_ahead()

    def _loads(self, ranges):
        """The (key, start, end) that ``read_range`` will load for ``ranges``, in order (from the span this thread
        holds now, as ``read_range`` goes: a planned load it skipped would leave every later one unused)."""
        loaded = getattr(self.local, 'span', None)
        for key, offset, length, span in ranges:
            if not _holds(loaded, key, offset, length):
                loaded = (key,) + self._load_for(offset, length, span)
                yield loaded

    def _ask_ahead(self):
        pending = self.local.pending
        while not pending or self.local.pending_bytes < READ_AHEAD_BYTES:
            read = next(self.local.plan, None)
            if read is None:
                return
            key, start, end = read
            pending.append((read, self.backend.read_ahead(key, start, end - start)))
            self.local.pending_bytes += end - start

    def _planned(self, key, start, end):
        """The planned read of this range, if it is the next one planned (else None: read it now)."""
        pending = getattr(self.local, 'pending', None)
        if not pending or pending[0][0] != (key, start, end):
            return None
        _read, wait = pending.popleft()
        self.local.pending_bytes -= end - start
        self._ask_ahead()
        return wait()

    def _read_direct(self, key, offset, end):
        """Bytes ``offset`` to ``end`` of a local pack, read around the page cache (None: not a local pool)."""
        if not hasattr(self.backend, 'read_view'):
            return None
        return memoryview(self.backend.read_view(key, offset, end - offset))

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


def _holds(loaded, key, offset, length):
    """Whether the loaded span (key, start, end, ...) holds ``length`` bytes of ``key`` at ``offset``."""
    return loaded is not None and loaded[0] == key and loaded[1] <= offset and offset + length <= loaded[2]


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
