# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a point's volume trees, whole or selected paths, into directories.

Every chunk is authenticated, decompressed and checked against its keyed hash before it is
written, and every file's size is checked after, so a restore either gives back the bytes that
were backed up or names the file it could not. Chunks of zeros become holes (sparse files come
back sparse) without being read. Directory times are set last, after their contents.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as walk
from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree

WINDOW_FILES = 256
HOLE_MIN = 64 * 1024
HOLE_BLOCK = 64 * 1024
ZERO_BLOCK = bytes(HOLE_BLOCK)


def selected(path, prefixes):
    if not prefixes:
        return True
    return any(path == p or path.startswith(p + '/') or p.startswith(path + '/') for p in prefixes)


class Restore:
    def __init__(self, pool, point, targets, paths=None, verify=True, workers=None, progress=None, owner=True):
        """``targets`` maps volume names of ``point`` to directories."""
        self.pool = pool
        self.point = point
        self.targets = dict(targets)
        self.paths = [p.strip('/') for p in paths or [] if p.strip('/')]
        self.verify = verify
        self.workers = workers or min(4, (os.cpu_count() or 2) + 1)
        self.progress = progress or Progress('restore')
        self.owner = owner
        self._zero_ids = {}
        missing = sorted(set(self.targets) - set(point['volumes']))
        if missing:
            raise PoolError('restore point %s has no volume %s (it has: %s)' % (point['id'], ', '.join(missing), ', '.join(sorted(point['volumes']))))

    def run(self):
        self.pool.load_index()
        totals = [self.point['volumes'][name] for name in self.targets]
        if not self.paths:
            self.progress.set_total(sum(v['bytes'] for v in totals), sum(v['files'] for v in totals))
        results = {}
        with self.progress:
            for name, target in sorted(self.targets.items()):
                results[name] = self._volume(name, target)
        return results

    def _volume(self, name, target):
        target = os.path.abspath(target)
        os.makedirs(target, exist_ok=True)
        stats = {'files': 0, 'dirs': 0, 'links': 0, 'bytes': 0, 'target': target}
        dirs, links, window = [], [], deque()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-restore') as executor:
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
                    window.append((entry, executor.submit(self._file, full, entry)))
                    stats['files'] += 1
                    stats['bytes'] += entry['size']
                elif kind == 'symlink':
                    _clear(full)
                    os.symlink(entry['target'], full)
                    walk.apply_metadata(full, entry, self.owner)
                    stats['links'] += 1
                elif kind == 'link':
                    links.append((full, entry))
                while window and (window[0][1].done() or len(window) > WINDOW_FILES):
                    window.popleft()[1].result()
            while window:
                window.popleft()[1].result()
        for full, entry in links:  # after every file: a hard link needs its first name in place
            _clear(full)
            first = os.path.join(target, entry['target'])
            if not os.path.exists(first):
                raise PoolError('cannot restore hard link %s: %s was not restored (select it too)' % (entry['path'], entry['target']))
            os.link(first, full)
            stats['links'] += 1
        for full, entry in reversed(dirs):
            walk.apply_metadata(full, entry, self.owner)
        return stats

    def _is_hole(self, blob_id, length):
        """A chunk of zeros (only large ones matter for sparseness; small ones are written)."""
        if length < HOLE_MIN:
            return False
        zero_id = self._zero_ids.get(length)
        if zero_id is None:
            zero_id = self._zero_ids[length] = self.pool.keys.chunk_id(bytes(length))
        return blob_id == zero_id

    def _file(self, full, entry):
        written = 0
        try:
            handle = _create(full)
            try:
                position = 0
                for blob_id in entry.get('chunks') or ():
                    location = self.pool.blobs.get(blob_id)
                    if location is None:
                        raise PoolError('%s: chunk %s is missing from the pool (run ferry pool check)' % (entry['path'], blob_id.hex()))
                    raw_length = location[3]
                    if not self._is_hole(blob_id, raw_length):
                        try:
                            data = self.pool.read_blob(blob_id, self.verify)
                        except fmt.FormatError as exc:
                            raise PoolError('%s: %s' % (entry['path'], exc)) from None
                        position = _write_sparse(handle, data, written) if raw_length >= HOLE_MIN else written + os.pwrite(handle, data, written)
                    written += raw_length
                    self.progress.add(raw_length)
                if position != written:
                    os.ftruncate(handle, written)  # a trailing hole
                walk.apply_metadata(handle, entry, self.owner)
            finally:
                os.close(handle)
        except OSError as exc:
            raise PoolError('cannot write %s: %s' % (full, exc.strerror or exc)) from None
        if written != entry['size']:
            raise PoolError('%s: restored %d bytes, the point recorded %d' % (entry['path'], written, entry['size']))
        self.progress.add(0, 1)


def _write_sparse(handle, data, offset):
    """Write ``data`` at ``offset`` leaving its zero blocks as holes; returns the end of the last byte written."""
    view, end, start, size = memoryview(data), offset, None, len(data)
    for block in range(0, size + HOLE_BLOCK, HOLE_BLOCK):
        zero = block >= size or data.startswith(ZERO_BLOCK[:min(HOLE_BLOCK, size - block)], block)
        if zero and start is not None:
            os.pwrite(handle, view[start:min(block, size)], offset + start)
            end, start = offset + min(block, size), None
        elif not zero and start is None:
            start = block
    return end


def _create(path):
    """A new, empty file at ``path`` (whatever was there is replaced; a hard-linked old file is not written through)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0)
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:
        _clear(path)
        return os.open(path, flags, 0o600)


def _clear(path):
    """Make room for a restored entry: what is there may be a file, a link or a directory of another type."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _make_dir(path):
    if os.path.lexists(path) and not os.path.isdir(path) or os.path.islink(path):
        os.remove(path)
    os.makedirs(path, exist_ok=True)
