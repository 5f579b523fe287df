# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back up directories (volume trees) and metadata blobs into a new restore point.

The walk runs in the calling thread; files that changed since the parent point (size, mtime,
ctime, inode) are cut into content-defined chunks by worker threads, which hash, compress, seal and
pack the chunks the pool does not hold yet. Unchanged files keep the parent's chunk list without
being read. Entries are written to the tree in walk order while later files are still being
chunked, so memory stays bounded by the number of workers and packs in flight, not by the size
of the tree. Every point is logically full: it lists every file's chunks, so restoring or
deleting a point never depends on another point.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as walk
from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress, count_trees
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import ParentTree, TreeWriter, read_tree
from ansible_collections.ferry.kube.plugins.module_utils.pool.writer import BlobWriter

try:
    from pyfastcdc.cy import FastCDC
except ImportError:  # pragma: no cover
    FastCDC = None

METADATA_PIECE = 4 * 1024 * 1024
WINDOW_FILES = 512           # entries waiting for their chunks before the walk pauses
CHECKPOINT_SECONDS = 60.0
# Entry fields kept in the tree; 'blocks' (sparseness is restored from zero chunks) and the identity
# fields stay in the tree only to drive the next backup's quick check.
TREE_FIELDS = ('path', 'type', 'mode', 'uid', 'gid', 'mtime_ns', 'size', 'target', 'xattrs', 'chunks', 'ino', 'ctime_ns')


class Backup:
    """One backup run; ``run`` returns the new point's manifest."""

    def __init__(self, pool, volumes, group='default', tags=None, parent='latest', metadata=None,
                 workers=None, progress=None, compare_identity=True, skip=(walk.STATE_DIR_NAME,), checkpoint_seconds=None):
        self.pool = pool
        self.volumes = dict(volumes)
        self.group = group
        self.tags = dict(tags or {})
        self.parent_ref = parent
        self.metadata = dict(metadata or {})
        self.workers = workers or min(4, (os.cpu_count() or 2))
        self.progress = progress or Progress('backup')
        self.compare_identity = compare_identity
        self.skip = tuple(skip)
        self.checkpoint_seconds = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
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
                count_trees(list(self.volumes.values()), self.progress, self.skip)
                volumes = {}
                with self.progress:
                    for name, path in sorted(self.volumes.items()):
                        parent_tree = None
                        if parent and name in parent['volumes']:
                            parent_tree = ParentTree(read_tree(self.pool, parent['volumes'][name]['tree']))
                        volumes[name] = self._volume(writer, path, parent_tree)
                metadata = {name: self._metadata(writer, blob) for name, blob in sorted(self.metadata.items())}
                writer.checkpoint()
            finally:
                writer.close()
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

    def _volume(self, writer, root, parent_tree):
        stats = {'files': 0, 'dirs': 0, 'links': 0, 'bytes': 0, 'files_changed': 0, 'files_unchanged': 0, 'bytes_read': 0}
        trees = TreeWriter(writer)
        window = deque()
        self._last_checkpoint = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-chunk') as executor:
            for entry in walk.scan(root, skip=self.skip, identity=True):
                future = None
                if entry['type'] == 'file':
                    stats['files'] += 1
                    stats['bytes'] += entry['size']
                    previous = parent_tree.find(entry['path']) if parent_tree is not None else None
                    if self._unchanged(previous, entry):
                        entry['chunks'] = previous['chunks']
                        stats['files_unchanged'] += 1
                        self.progress.add(entry['size'], 1)
                    else:
                        stats['files_changed'] += 1
                        stats['bytes_read'] += entry['size']
                        future = executor.submit(self._chunk_file, writer, os.path.join(root, entry['path']), entry)
                else:
                    stats['dirs' if entry['type'] == 'dir' else 'links'] += 1
                window.append((entry, future))
                while window and (window[0][1] is None or window[0][1].done() or len(window) > WINDOW_FILES):
                    self._emit(trees, writer, *window.popleft())
            while window:
                self._emit(trees, writer, *window.popleft())
        stats['tree'] = trees.finish()
        return stats

    def _emit(self, trees, writer, entry, future):
        if future is not None:
            entry['chunks'] = future.result()
        trees.add({k: entry[k] for k in TREE_FIELDS if k in entry})
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            writer.checkpoint(flush_open_packs=False)  # what is uploaded so far survives a crash from here on
            self._last_checkpoint = time.monotonic()

    def _unchanged(self, previous, entry):
        if previous is None or previous.get('type') != 'file' or 'chunks' not in previous:
            return False
        if previous['size'] != entry['size'] or previous['mtime_ns'] != entry['mtime_ns']:
            return False
        if self.compare_identity and (previous.get('ino') != entry['ino'] or previous.get('ctime_ns') != entry['ctime_ns']):
            return False
        return True

    def _chunk_file(self, writer, path, entry):
        keys = self.pool.keys
        chunks = []
        try:
            with open(path, 'rb', buffering=0) as stream:
                if entry['size'] <= self.chunk_params[1]:
                    data = stream.read()
                    if data:
                        chunks.append(self._store(writer, keys, data))
                    self.progress.add(len(data), 1)
                    return chunks
                cutter = FastCDC(self.chunk_params[0], min_size=self.chunk_params[1], max_size=self.chunk_params[2])
                for chunk in cutter.cut_stream(stream):  # one reused buffer: no mmap, memory stays flat
                    chunks.append(self._store(writer, keys, chunk.data))
                    self.progress.add(chunk.length)
            self.progress.add(0, 1)
        except OSError as exc:
            raise PoolError('cannot read %s: %s' % (path, exc.strerror or exc)) from None
        return chunks

    @staticmethod
    def _store(writer, keys, data):
        blob_id = keys.chunk_id(data)
        if not writer.known(blob_id):
            writer.add(fmt.DATA, blob_id, data)
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


def read_metadata(pool, point, name):
    """The bytes of a metadata blob stored with a point."""
    try:
        record = point['metadata'][name]
    except KeyError:
        raise PoolError('restore point %s has no metadata %r (it has: %s)' % (point['id'], name, ', '.join(sorted(point['metadata'])) or 'none')) from None
    return b''.join(pool.read_blob(blob_id) for blob_id in record['blobs'])
