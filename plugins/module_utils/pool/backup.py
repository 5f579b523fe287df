# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back up directories (volume trees) and metadata blobs into a new restore point.

The walk runs in a child process (``walker``); files that changed since the parent point (size,
mtime, ctime, inode) are cut into content-defined chunks by worker threads, which hash, compress,
seal and pack the chunks the pool does not hold yet. Unchanged files keep the parent's chunk list
without being read, and their entries are written back as the parent's packed bytes. Entries are
written to the tree in walk order while later files are still being chunked, so memory stays
bounded by the number of workers and packs in flight, not by the size of the tree. Every point is
logically full: it lists every file's chunks, so restoring or deleting a point never depends on
another point.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as walk
from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io, format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.compression import CompressionProbe
from ansible_collections.ferry.kube.plugins.module_utils.pool.engine import release_freed_memory
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress, count_trees
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import ParentTree, TreeWriter, read_tree_records
from ansible_collections.ferry.kube.plugins.module_utils.pool.walker import TreeWalk
from ansible_collections.ferry.kube.plugins.module_utils.pool.writer import BlobWriter
from ansible_collections.ferry.kube.plugins.module_utils.workers import usable_cpus

try:
    from pyfastcdc.cy import FastCDC
except ImportError:  # pragma: no cover
    FastCDC = None

METADATA_PIECE = 4 * 1024 * 1024
WINDOW_ENTRIES = 8192        # entries waiting for an earlier file's chunks before the walk pauses (a few MB)
# an unchanged entry waits as its packed bytes (a few hundred bytes, not a dictionary): the walk goes on
# four times as far, so a big changed file late in the tree is found, and read, while earlier ones are still cut
PACKED_PER_ENTRY = 4
IN_FLIGHT_PER_WORKER = 4     # files handed to the chunking workers ahead of them
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_BYTES = 512 * 1024 * 1024  # stored bytes between checkpoints at most


class Backup:
    """One backup run; ``run`` returns the new point's manifest."""

    def __init__(self, pool, volumes, group='default', tags=None, parent='latest', metadata=None,
                 workers=None, progress=None, compare_identity=True, skip=(walk.STATE_DIR_NAME,), checkpoint_seconds=None, walks=None):
        """``walks``: {volume name: TreeWalk} started ahead (``start_walks``), so the walk runs while the pool opens."""
        self.pool = pool
        self.volumes = dict(volumes)
        self.group = group
        self.tags = dict(tags or {})
        self.parent_ref = parent
        self.metadata = dict(metadata or {})
        # one more than the cores: a worker waiting for the disk leaves its core to another (measured on
        # 2 cores: a full backup about 10% faster with 3 than with 2)
        self.workers = workers or min(4, usable_cpus() + 1)
        self.progress = progress or Progress('backup')
        self.compare_identity = compare_identity
        self.skip = tuple(skip)
        self.checkpoint_seconds = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
        self.walks = dict(walks or {})
        config = pool.config
        self.chunk_params = (config['chunk_avg'], config['chunk_min'], config['chunk_max'])
        for name, path in self.volumes.items():
            if not os.path.isdir(path):
                raise PoolError('volume %s: %s is not a directory to back up' % (name, path))

    def run(self):
        with self.pool.lock('backup'):
            self.pool.load_index()
            parent = self._parent()
            writer = BlobWriter(self.pool)
            started = time.time()
            try:
                if self.progress.report is not None:  # the total only serves the ETA; its walk costs a few percent
                    count_trees(list(self.volumes.values()), self.progress, self.skip)
                volumes = {}
                with self.progress:
                    for name, path in sorted(self.volumes.items()):
                        parent_tree = None
                        if parent and name in parent['volumes']:
                            parent_tree = ParentTree(read_tree_records(self.pool, parent['volumes'][name]['tree']))
                        volumes[name] = self._volume(writer, path, parent_tree, self._walk(name, path))
                metadata = {name: self._metadata(writer, blob) for name, blob in sorted(self.metadata.items())}
                writer.checkpoint()
            finally:
                writer.close()
                for tree_walk in self.walks.values():
                    tree_walk.close()
            manifest = self._manifest(parent, volumes, metadata, writer.stats, started)
            self.pool.write_point(manifest)
            return manifest

    def _parent(self):
        if not self.parent_ref:
            return None
        try:
            return self.pool.resolve_point(self.parent_ref, self.group)
        except PoolError:
            if self.parent_ref == 'latest':
                return None  # the group's first point
            raise

    def _walk(self, name, root):
        """The walk started ahead for this volume if it walks what this backup needs, else a new one."""
        options = (self.skip, True, not self.compare_identity)
        tree_walk = self.walks.get(name)
        if tree_walk is not None and not tree_walk.matches(root, *options):
            tree_walk.close()
            tree_walk = None
        if tree_walk is None:
            tree_walk = self.walks[name] = TreeWalk(root, *options)
        return tree_walk

    def _volume(self, writer, root, parent_tree, entries):
        stats = {'files': 0, 'dirs': 0, 'links': 0, 'bytes': 0, 'files_changed': 0, 'files_unchanged': 0, 'bytes_read': 0}
        trees = TreeWriter(writer)
        window, in_flight = deque(), set()
        held = 0  # the window's weight: an entry counts PACKED_PER_ENTRY, a packed one 1
        limit = WINDOW_ENTRIES * PACKED_PER_ENTRY
        batch = _Batch()
        unchanged_bytes = unchanged_files = 0
        self._last_checkpoint = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-chunk') as executor:

            def submit(function, *args):
                nonlocal in_flight
                if len(in_flight) >= IN_FLIGHT_PER_WORKER * self.workers:
                    in_flight = wait(in_flight, return_when=FIRST_COMPLETED).not_done
                future = executor.submit(function, *args)
                in_flight.add(future)
                return future

            for entry in entries:
                slot = packed = None
                previous, previous_packed = parent_tree.find_record(entry['path']) if parent_tree is not None else (None, None)
                if entry['type'] == 'file':
                    stats['files'] += 1
                    stats['bytes'] += entry['size']
                    if self._unchanged(previous, entry):
                        entry['chunks'] = previous['chunks']
                        if self.compare_identity and previous.get('xattrs'):
                            entry['xattrs'] = previous['xattrs']  # xattrs cannot change without the ctime
                        entry.pop('blocks', None)
                        if entry == previous:
                            packed = previous_packed  # written back as it was read: no packing
                        stats['files_unchanged'] += 1
                        unchanged_bytes += entry['size']
                        unchanged_files += 1
                        if unchanged_files >= 256:
                            self.progress.add(unchanged_bytes, unchanged_files)
                            unchanged_bytes = unchanged_files = 0
                    else:
                        stats['files_changed'] += 1
                        stats['bytes_read'] += entry['size']
                        path = os.path.join(root, entry['path'])
                        if self.compare_identity:
                            entry['xattrs'] = walk.read_xattrs(path)
                            if not entry['xattrs']:
                                del entry['xattrs']
                        if entry['size'] <= self.chunk_params[1]:
                            # files of one chunk go to the workers in batches: one task per file
                            # would make the walk, not the workers, the bottleneck
                            slot = batch.add(path, entry['size'])
                            # and the disk reads them while the batches ahead are worked on: a worker
                            # that reads a small file itself waits for the disk, with its core idle
                            walk.read_ahead(path)
                            if batch.full():
                                batch.submit(submit(self._chunk_small_files, writer, batch.paths))
                                batch = _Batch()
                        else:
                            slot = _Slot(submit(self._chunk_file, writer, path, entry, self._old_chunks(previous)))
                else:
                    stats['dirs' if entry['type'] == 'dir' else 'links'] += 1
                    if entry == previous:
                        packed = previous_packed
                # entries wait here in walk order while a big file ahead of them is still being cut;
                # the workers go on with the files behind it meanwhile
                if packed is None:
                    window.append((entry, slot, None))
                    held += PACKED_PER_ENTRY
                else:
                    window.append((entry['path'], None, packed))
                    held += 1
                while window and (window[0][1] is None or window[0][1].done() or held > limit):
                    if window[0][1] is not None and not window[0][1].submitted():
                        break  # its batch is still being filled
                    held -= self._emit(trees, writer, *window.popleft())
            self.progress.add(unchanged_bytes, unchanged_files)
            if batch.paths:
                batch.submit(submit(self._chunk_small_files, writer, batch.paths))
            while window:
                self._emit(trees, writer, *window.popleft())
        stats['tree'] = trees.finish()
        return stats

    def _emit(self, trees, writer, entry, slot, packed):
        """Write one entry of the window to the tree (``entry`` is its path when ``packed``); returns its weight."""
        if packed is not None:
            trees.add_packed(packed, entry)
            weight = 1
        else:
            if slot is not None:
                entry['chunks'] = slot.result()
            entry.pop('blocks', None)  # sparseness comes back from zero chunks
            trees.add(entry)
            weight = PACKED_PER_ENTRY
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds or writer.unindexed_bytes() >= CHECKPOINT_BYTES:
            # what is uploaded so far survives a crash from here on; and the writer's list of what
            # awaits indexing stays short, so memory does not grow with the size of the backup
            writer.checkpoint(flush_open_packs=False)
            release_freed_memory()
            self._last_checkpoint = time.monotonic()
        return weight

    def _chunk_small_files(self, writer, paths):
        return [self._chunk_file(writer, path, None) for path in paths]

    def _unchanged(self, previous, entry):
        if previous is None or previous.get('type') != 'file' or 'chunks' not in previous:
            return False
        if previous['size'] != entry['size'] or previous['mtime_ns'] != entry['mtime_ns']:
            return False
        if self.compare_identity and (previous.get('ino') != entry['ino'] or previous.get('ctime_ns') != entry['ctime_ns']):
            return False
        return True

    def _chunk_file(self, writer, path, entry, old=None):
        keys = self.pool.keys
        chunks = []
        try:
            if entry is None:  # a file of one chunk
                with open(path, 'rb', buffering=0) as stream:
                    data = stream.read()
                if data:
                    chunks.append(self._store(writer, keys, data))
                self.progress.add(len(data), 1)
                return chunks
            probe = CompressionProbe()  # a file of media or compressed data is not compressed chunk after chunk
            if old:
                chunks = self._rechunk(writer, path, old, probe)
                self.progress.add(0, 1)
                return chunks
            cutter = self._cutter()
            with direct_io.DirectReader(path) as stream:
                for chunk in cutter.cut_stream(stream):  # one reused buffer: no mmap, memory stays flat
                    chunks.append(self._store(writer, keys, chunk.data, probe))
                    self.progress.add(chunk.length)
            self.progress.add(0, 1)
        except OSError as exc:
            raise PoolError('cannot read %s: %s' % (path, exc.strerror or exc)) from None
        return chunks

    def _cutter(self):
        return FastCDC(self.chunk_params[0], min_size=self.chunk_params[1], max_size=self.chunk_params[2])

    def _old_chunks(self, previous):
        """[(blob id, length)] of the previous version of a changed file, when it had several chunks the index knows."""
        chunks = previous.get('chunks') if previous is not None and previous.get('type') == 'file' else None
        if not chunks or len(chunks) < 2:
            return None
        old = []
        for blob_id in chunks:
            location = self.pool.blobs.get(blob_id)
            if location is None:
                return None
            old.append((blob_id, location[3]))
        return old

    def _rechunk(self, writer, path, old, probe):
        """The chunks of a changed file whose previous version was cut into ``old`` (walk.recut): an old chunk
        still at its old offset is taken by its keyed hash alone, the others are cut anew and stored."""
        keys, chunks = self.pool.keys, []
        for data, blob_id in walk.recut(path, old, keys.chunk_id, self._cutter):
            chunks.append(blob_id if blob_id is not None else self._store(writer, keys, data, probe))
            self.progress.add(len(data))
        return chunks

    @staticmethod
    def _store(writer, keys, data, probe=None):
        blob_id = keys.chunk_id(data)
        writer.add(fmt.DATA, blob_id, data, probe=probe)  # a chunk the pool holds already is skipped there
        return blob_id

    def _metadata(self, writer, blob):
        data = blob.encode() if isinstance(blob, str) else bytes(blob)
        pieces = []
        for start in range(0, len(data), METADATA_PIECE):
            piece = data[start:start + METADATA_PIECE]
            blob_id = self.pool.keys.chunk_id(piece)
            writer.add(fmt.META, blob_id, piece)
            pieces.append(blob_id)
        return {'blobs': pieces, 'size': len(data)}

    def _manifest(self, parent, volumes, metadata, writer_stats, started):
        now = time.time()
        totals = {key: sum(v[key] for v in volumes.values()) for key in ('files', 'dirs', 'bytes', 'files_changed', 'bytes_read')}
        totals.update(writer_stats)
        totals['seconds'] = round(now - started, 3)
        stamp = datetime.fromtimestamp(now, timezone.utc)
        return {'id': '%s-%s' % (stamp.strftime('%Y%m%dT%H%M%SZ'), uuid.uuid4().hex[:8]), 'time': stamp.strftime('%Y-%m-%dT%H:%M:%SZ'),
                'time_unix': now, 'host': socket.gethostname(), 'group': self.group, 'tags': self.tags,
                'parent': parent['id'] if parent else None, 'volumes': volumes, 'metadata': metadata, 'stats': totals}


class _Slot:
    """Where an entry's chunk list will come from: a task for one file."""

    def __init__(self, future):
        self.future = future

    def submitted(self):
        return True

    def done(self):
        return self.future.done()

    def result(self):
        return self.future.result()


class _BatchSlot:
    """An entry's place in a batch of small files."""

    def __init__(self, batch, position):
        self.batch = batch
        self.position = position

    def submitted(self):
        return self.batch.future is not None

    def done(self):
        return self.batch.future is not None and self.batch.future.done()

    def result(self):
        return self.batch.future.result()[self.position]


class _Batch:
    FILES = 64
    BYTES = 4 * 1024 * 1024

    def __init__(self):
        self.paths = []
        self.bytes = 0
        self.future = None

    def add(self, path, size):
        self.paths.append(path)
        self.bytes += size
        return _BatchSlot(self, len(self.paths) - 1)

    def full(self):
        return len(self.paths) >= self.FILES or self.bytes >= self.BYTES

    def submit(self, future):
        self.future = future


def start_walks(volumes, compare_identity=True, skip=(walk.STATE_DIR_NAME,)):
    """{name: TreeWalk} for ``Backup(walks=...)``: call before the pool is opened, and the walks run while its key is derived."""
    return {name: TreeWalk(path, skip, True, not compare_identity) for name, path in volumes.items() if os.path.isdir(path)}


def read_metadata(pool, point, name):
    """The bytes of a metadata blob stored with a point."""
    try:
        record = point['metadata'][name]
    except KeyError:
        raise PoolError('restore point %s has no metadata %r (it has: %s)' % (point['id'], name, ', '.join(sorted(point['metadata'])) or 'none')) from None
    return b''.join(pool.read_blob(blob_id) for blob_id in record['blobs'])
