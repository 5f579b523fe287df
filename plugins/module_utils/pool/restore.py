# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a point's volume trees, whole or selected paths, into directories.

Every chunk is authenticated, decompressed and checked against its keyed hash before it is
written, and every file's size is checked after, so a restore either gives back the bytes that
were backed up or names the file it could not. Chunks of zeros become holes (sparse files come
back sparse): without being read when they were stored compressed, else as a big file's writer
finds their zero blocks. Directory times are set last, after their contents, and each target's
file system is synced before the restore returns: a restore is done when its data is on disk.
"""

from __future__ import annotations

import bisect
import gc
import os
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as walk
from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io, format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.packcache import SPAN_BYTES, PackCache
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
from ansible_collections.ferry.kube.plugins.module_utils.workers import usable_cpus

HOLE_MIN = 64 * 1024
# zeros compress to almost nothing: only a chunk stored this many times smaller than it is may be the zero
# chunk of its length (hashing a zero chunk of every length met would hash nearly every chunk twice)
ZEROS_SHRINK = 64
# chunks of a batch this close share a read; what lies between is another file's: a small file's chunk or a
# file's short last chunk, which its own batch may read again (less than chunk_min: never a big file's chunk)
SPAN_GAP = 64 * 1024


def selected(path, prefixes):
    if not prefixes:
        return True
    return any(path == p or path.startswith(p + '/') or p.startswith(path + '/') for p in prefixes)


def default_workers(lanes):
    """How many workers a restore runs. Twice the cores where they read the packs themselves (a local pool's, an
    object store's) and wait for them as much as they compute (measured on 2 cores: 4 beat 2, 3 and 6). Fed on
    lanes, a worker seldom waits (its spans are asked for ahead, its big files written behind): one more than
    the cores, since more only contend for them (stage 2 on 2 cores, in turns: 3 workers 6.12 s, 4 6.74 s)."""
    cpus = usable_cpus()
    return max(2, min(8, cpus + 1 if lanes else 2 * cpus))


class Restore:
    def __init__(self, pool, point, targets, paths=None, verify=True, workers=None, progress=None, owner=True, worker_backends=None):
        """``targets`` maps volume names of ``point`` to directories.

        ``worker_backends(count)``, where the pool's backend cannot be shared by processes (the agent's
        relay), gives ``count`` callables that each make a backend of its own in a worker process.
        """
        self.pool = pool
        self.point = point
        self.targets = dict(targets)
        self.paths = [p.strip('/') for p in paths or [] if p.strip('/')]
        self.verify = verify
        # worker processes with a backend each (the agent's lanes) read only the ranges their files need:
        # whole packs would cross several times
        self.lanes = worker_backends is not None and not self.paths and hasattr(os, 'fork') and not isinstance(pool.backend, LocalBackend)
        self.workers = workers or default_workers(self.lanes)
        self.progress = progress or Progress('restore')
        self.owner = owner
        self.worker_backends = worker_backends
        self._zero_ids = {}
        self._groups = {}  # directory -> the group of files created in it
        # a whole point needs nearly every blob of its packs: read each pack once (selected paths: by range)
        # (each worker process has its own cache: two packs; threads share one)
        largest_chunk = max(pool.config['chunk_max'], 4 * 1024 * 1024)
        largest_pack = pool.config['pack_size'] + largest_chunk + fmt.HEADER_RESERVE + 65536
        capacity = 2 if isinstance(pool.backend, LocalBackend) else self.workers + 2
        largest_blob = largest_chunk + 64
        self.pack_cache = None if self.paths else PackCache(pool.backend, largest_pack, capacity=capacity, largest_blob=largest_blob)
        self.ranged = self.pack_cache is not None and (self.pack_cache.ranges_direct() or self.lanes)
        missing = sorted(set(self.targets) - set(point['volumes']))
        if missing:
            raise PoolError('restore point %s has no volume %s (it has: %s)' % (point['id'], ', '.join(missing), ', '.join(sorted(point['volumes']))))

    def run(self):
        self.pool.load_index()
        totals = [self.point['volumes'][name] for name in self.targets]
        if not self.paths:
            self.progress.set_total(sum(v['bytes'] for v in totals), sum(v['files'] for v in totals))
        results = {}
        # what is still in the page cache would be lost with the node (a DR restore is then followed
        # by a failover onto it); syncfs, not sync: only the file systems written, once each, opened
        # before anything is written so that their syncfs reports any write-back error of the restore
        syncs = {}
        try:
            for target in self.targets.values():
                os.makedirs(target, exist_ok=True)
            for target in self.targets.values():
                device = os.stat(target).st_dev
                if device not in syncs:
                    syncs[device] = walk.FileSystemSync(target)
            with self.progress, self._executor() as executor:
                for name, target in sorted(self.targets.items()):
                    results[name] = self._volume(name, target, executor)
            for syncing in syncs.values():
                syncing.sync()
        except OSError as exc:
            raise PoolError('cannot restore into %s: %s' % (', '.join(sorted(self.targets.values())), exc.strerror or exc)) from None
        finally:
            for syncing in syncs.values():
                syncing.close()
        return results

    def _volume(self, name, target, executor):
        target = os.path.abspath(target)  # (made by run, before its syncfs was opened)
        stats = {'files': 0, 'dirs': 0, 'links': 0, 'bytes': 0, 'target': target}
        dirs, links = [], []
        batches = _Batches(executor, self.progress, self.workers)
        for entry in read_tree(self.pool, self.point['volumes'][name]['tree']):
            if not selected(entry['path'], self.paths):
                continue
            full = os.path.join(target, entry['path'])
            kind = entry['type']
            if kind == 'dir':
                _make_dir(full)
                dirs.append((full, entry))
                stats['dirs'] += 1
            elif kind == 'file':
                batches.add(full, entry)
                stats['files'] += 1
                stats['bytes'] += entry['size']
            elif kind == 'symlink':
                walk.remove_entry(full)
                os.symlink(entry['target'], full)
                walk.apply_metadata(full, entry, self.owner)
                stats['links'] += 1
            elif kind == 'link':
                links.append((full, entry))
        batches.finish()
        for full, entry in links:  # after every file: a hard link needs its first name in place
            walk.remove_entry(full)
            first = os.path.join(target, entry['target'])
            if not os.path.exists(first):
                raise PoolError('cannot restore hard link %s: %s was not restored (select it too)' % (entry['path'], entry['target']))
            os.link(first, full)
            stats['links'] += 1
        for full, entry in reversed(dirs):
            walk.apply_metadata(full, entry, self.owner)
        return stats

    def _executor(self):
        """Worker processes where the pool is a local directory or each worker can have a backend of its
        own (Python threads share one interpreter lock, and a restore of many files is mostly per-file
        Python work); threads otherwise, since cloud clients are not made to survive a fork."""
        global _ACTIVE  # pylint: disable=global-statement
        _ACTIVE = self  # what the workers restore with (forked ones get a copy)
        if not hasattr(os, 'fork'):
            return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-restore')
        context = multiprocessing.get_context('fork')
        if isinstance(self.pool.backend, LocalBackend):
            return ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_forked)
        if self.lanes:
            claimed = context.Value('i', 0)
            return ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_forked,
                                       initargs=(self.worker_backends(self.workers), claimed))
        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-restore')

    def use_backend(self, backend):
        self.pool.backend = backend
        self.pack_cache.backend = backend

    def restore_files(self, jobs):
        pieces = self._pieces(jobs)
        if self.ranged:
            reads = [(key, location, span) for file_pieces in pieces for _id, location, hole, key, span in file_pieces if key is not None and not hole]
            self.pool.ask_for_sessions(key for key, _location, _span in reads)  # (before the ranges: needed first)
            self.pack_cache.plan((key, location[1], location[2], span) for key, location, span in reads)
        for (full, entry), file_pieces in zip(jobs, pieces):
            self._file(full, entry, file_pieces)
        return sum(entry['size'] for _full, entry in jobs), len(jobs)

    def _pieces(self, jobs):
        """Per file of ``jobs``, what restoring it takes, each looked up once: [(blob id, location (None: missing),
        whether it is a hole, its pack's key and the span to read it in (where ranged, else None))].

        Files of one chunk share reads; a file of many reads its own chunks in order (two big files
        backed up side by side share packs: one span for both would be read again for the second)."""
        blobs = self.pool.blobs
        located = [[(blob_id, blobs.get(blob_id)) for blob_id in entry.get('chunks') or ()] for _full, entry in jobs]
        shared = self._spans(chunks for chunks in located if len(chunks) == 1) if self.ranged else None
        pieces = []
        for chunks in located:
            spans = (shared if len(chunks) == 1 else self._spans([chunks])) if self.ranged else None
            file_pieces = []
            for blob_id, location in chunks:
                hole = location is not None and self._is_hole(blob_id, location)
                ranged = self.ranged and location is not None
                file_pieces.append((blob_id, location, hole, self._pack_key(location[0]) if ranged else None,
                                    self._span_around(spans, location) if ranged else None))
            pieces.append(file_pieces)
        return pieces

    @staticmethod
    def _spans(files):
        """{pack number: sorted [(start, end)]}: the chunks of ``files`` (each a list of (blob id, location)), in
        reads of up to SPAN_BYTES over gaps of up to SPAN_GAP (one read for many small files or many chunks of a
        big one; what other batches need is read again only where it lies in such a gap)."""
        ranges = {}
        for chunks in files:
            for _blob_id, location in chunks:
                if location is not None:  # (a missing one is named when the file is restored)
                    ranges.setdefault(location[0], []).append((location[1], location[1] + location[2]))
        spans = {}
        for number, found in ranges.items():
            merged = spans[number] = []
            for start, end in sorted(found):
                if merged and start - merged[-1][1] <= SPAN_GAP and max(end, merged[-1][1]) - merged[-1][0] <= SPAN_BYTES:
                    merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
                else:
                    merged.append((start, end))
        return spans

    @staticmethod
    def _span_around(spans, location):
        """The span of ``spans`` (a pack's) that holds the blob at ``location``, if any."""
        found = spans.get(location[0])
        if found:
            index = bisect.bisect_right(found, (location[1], float('inf'))) - 1
            if index >= 0 and found[index][1] >= location[1] + location[2]:
                return found[index]
        return None

    def _is_hole(self, blob_id, location):
        """A chunk of zeros, known without reading it (only large ones matter for sparseness; small ones are written)."""
        raw_length = location[3]
        if raw_length < HOLE_MIN or location[2] * ZEROS_SHRINK > raw_length:
            return False
        zero_id = self._zero_ids.get(raw_length)
        if zero_id is None:
            zero_id = self._zero_ids[raw_length] = self.pool.keys.chunk_id(bytes(raw_length))
        return blob_id == zero_id

    def _file(self, full, entry, pieces):
        written = 0
        try:
            big = entry['size'] >= direct_io.DIRECT_MIN
            # (a hard-linked old file is not written through)
            handle = walk.create_file(full, mode=walk.creation_mode(entry, self.owner, reopened=big, group=self._new_file_group(full)))
            try:
                sequential = direct_io.SequentialWriter(full, handle) if big else None
                position = 0
                for blob_id, location, hole, key, span in pieces:
                    if location is None:
                        raise PoolError('%s: chunk %s is missing from the pool (run ferry pool check)' % (entry['path'], blob_id.hex()))
                    raw_length = location[3]
                    data = None if hole else self._read(blob_id, entry, location, key, span)
                    if sequential is not None:
                        sequential.write(raw_length if hole else data, zeros=hole)
                    elif not hole:
                        position = written + os.pwrite(handle, data, written)
                    written += raw_length
                    self.progress.add(raw_length)
                if sequential is not None:
                    position = sequential.finish()[1]
                if position != written:
                    os.ftruncate(handle, written)  # a trailing hole
                walk.apply_metadata(handle, entry, self.owner, current=os.fstat(handle))
            finally:
                os.close(handle)
        except OSError as exc:
            raise PoolError('cannot write %s: %s' % (full, exc.strerror or exc)) from None
        if written != entry['size']:
            raise PoolError('%s: restored %d bytes, the point recorded %d' % (entry['path'], written, entry['size']))
        self.progress.add(0, 1)

    def _new_file_group(self, full):
        """The group a file created at ``full`` gets, known per directory (a restore sets directories' modes,
        set-group-ID among them, after their files)."""
        directory = os.path.dirname(full)
        group = self._groups.get(directory)
        if group is None:
            group = self._groups[directory] = walk.new_file_group(directory)
        return group

    def _read(self, blob_id, entry, location, key, span):
        try:
            if key is not None:  # ranged: the span around it is read once for the chunks in it
                _number, offset, length, _raw_length, flags, blob_type = location
                sealed = self.pack_cache.read_range(key, offset, length, span)
                return self.pool.open_blob(blob_id, blob_type, flags, sealed, self.pool.pack_session(key), self.verify)
            return self.pool.read_blob(blob_id, self.verify, self.pack_cache)
        except fmt.FormatError as exc:
            raise PoolError('%s: %s' % (entry['path'], exc)) from None

    def _pack_key(self, number):
        pack_id, kind = self.pool.packs[number]
        return fmt.pack_key(kind, pack_id)


_ACTIVE = None  # the Restore that worker processes run (set before they fork)


class _NoProgress:
    def add(self, nbytes=0, files=0):
        pass


def _forked(backends=None, claimed=None):
    """In a worker process: progress is counted by the parent, from each batch's result; with
    ``backends``, the worker makes the first one no other worker has claimed its own."""
    _ACTIVE.progress = _NoProgress()
    if backends is not None:
        with claimed.get_lock():
            index = claimed.value
            claimed.value += 1
        _ACTIVE.use_backend(backends[index]())
    # the objects inherited from the parent (the index among them) are never garbage: the collector's
    # full passes need not walk them for every few thousand chunks restored (measured: 2-3% of the CPU)
    gc.freeze()


def _restore_files(jobs):
    return _ACTIVE.restore_files(jobs)


class _Batches:
    """Files handed to the workers in batches (a task per small file costs more than the file)."""

    # Each batch is pickled to a worker and back, and its first read waits for a round trip (through
    # a relay lane, to the control node): stage 2 of the reference data (20k small files), in turns,
    # 6.98 s with 32 files a batch, 6.65 s with 128 (medians of four; 256 measured the same as 128).
    FILES = 128
    BYTES = 16 * 1024 * 1024

    def __init__(self, executor, progress, workers):
        self.executor = executor
        self.progress = progress
        self.limit = 3 * workers
        self.jobs, self.bytes, self.pending = [], 0, set()
        self.counted = isinstance(executor, ProcessPoolExecutor)

    def add(self, full, entry):
        self.jobs.append((full, entry))
        self.bytes += entry['size']
        if len(self.jobs) >= self.FILES or self.bytes >= self.BYTES:
            self._submit()

    def _submit(self):
        if len(self.pending) >= self.limit:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            self._collect(done)
        self.pending.add(self.executor.submit(_restore_files, self.jobs))
        self.jobs, self.bytes = [], 0

    def _collect(self, futures):
        for future in futures:
            nbytes, files = future.result()
            if self.counted:
                self.progress.add(nbytes, files)

    def finish(self):
        if self.jobs:
            self._submit()
        done, self.pending = wait(self.pending), set()
        self._collect(done.done)


def _make_dir(path):
    if os.path.lexists(path) and not os.path.isdir(path) or os.path.islink(path):
        os.remove(path)
    os.makedirs(path, exist_ok=True)
