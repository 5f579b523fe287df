# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a pool keeps its objects: one small interface, one class per kind of storage.

A pool only ever needs to write an object once (packs, index fragments and manifests are
immutable and named by their content or a fresh id), overwrite a few small ones (locks), read an
object or a byte range of it, list by prefix and delete. Every backend offers exactly that, so the
pool engine never knows whether it talks to a local disk, S3, Google Cloud Storage or Azure Blob.

Locations are URLs:
  /var/lib/ferry/pool or file:///var/lib/ferry/pool   local directory (DR-local block storage)
  s3://bucket/prefix                                   S3 or any S3-compatible store
  gs://bucket/prefix                                   Google Cloud Storage
  azure://container/prefix                             Azure Blob Storage
Credentials and endpoints come from ``options`` (never from the URL, so URLs are safe to log).
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from urllib.parse import urlparse

from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io


class BackendError(Exception):
    """The storage refused or failed an operation; the message names the object and the cause."""


class NotFound(BackendError):
    """The object does not exist."""


class Backend:
    """The operations a pool needs. Keys are '/'-separated names relative to the pool's root."""

    location = ''  # a description without secrets, for messages
    accepts_buffers = False  # write() takes a memoryview as it is (else the caller passes bytes)

    def write(self, key, data):
        """Create ``key`` with ``data`` atomically; an existing object of the same size is kept.

        Objects written this way are immutable and named by content or a fresh id, so finding one
        already there means an earlier, interrupted attempt finished it.
        """
        raise NotImplementedError

    def replace(self, key, data):
        """Create or overwrite ``key`` atomically (locks and other small mutable objects)."""
        raise NotImplementedError

    def write_deferred(self, key, data):
        """``write``, but durable only after the next ``flush`` (packs: one sync per checkpoint, not per pack)."""
        self.write(key, data)

    def flush(self):
        """Make every ``write_deferred`` so far durable."""

    def read(self, key, offset=0, length=None):
        """The object's bytes, or ``length`` bytes from ``offset``. Raises NotFound."""
        raise NotImplementedError

    def list(self, prefix):
        """Yield (key, size) of the objects whose key starts with ``prefix``."""
        raise NotImplementedError

    def delete(self, key):
        """Remove ``key``; removing a missing object is not an error."""
        raise NotImplementedError

    def size(self, key):
        """Size of ``key`` in bytes, or None when it does not exist."""
        raise NotImplementedError

    def close(self):
        """Release connections and open files."""

    # -- shared by the backends ------------------------------------------------------------------

    _secrets = ()  # credential strings that must never appear in a message

    def _use_prefix(self, prefix):
        """Keys live under ``prefix/`` in the bucket or container."""
        self.prefix = (prefix or '').strip('/')
        self._root = self.prefix + '/' if self.prefix else ''

    def _describe(self, key):
        return '%s in pool %s' % (key, self.location)

    def _scrub(self, text):
        for secret in self._secrets:
            text = text.replace(secret, '***')
        return text

    def _check_existing(self, key, expected):
        """After a create-only write found ``key`` there: an object of the same size is the one we meant to write."""
        found = self.size(key)
        if found is None:
            raise BackendError('%s was reported as existing but cannot be found; try again' % self._describe(key))
        if found != expected:
            raise BackendError('%s already exists with %d bytes, not %d; it was not overwritten' % (self._describe(key), found, expected))


class LocalBackend(Backend):
    """A directory. Writes go to a temporary file that is fsynced and renamed into place."""

    accepts_buffers = True

    def __init__(self, root, durable=True):
        self.root = os.path.abspath(root)
        self.location = self.root
        self.durable = durable
        self._made_dirs = set()
        self._unsynced = []
        self._unsynced_lock = threading.Lock()
        self._threads = threading.local()
        self._all_pack_handles = []

    def _path(self, key):
        return os.path.join(self.root, *key.split('/'))

    def _ensure_dir(self, directory):
        if directory in self._made_dirs:
            return
        os.makedirs(directory, exist_ok=True)
        self._made_dirs.add(directory)

    def write_deferred(self, key, data):
        self._put(key, data, overwrite=False, sync=False)

    def local_path(self, key):
        """Where ``key`` lives on disk (callers that read whole packs directly)."""
        return self._path(key)

    def flush(self):
        with self._unsynced_lock:
            paths, self._unsynced = self._unsynced, []
        if not self.durable:
            return
        directories = set()
        for path in paths:
            try:
                handle = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(handle)
                direct_io.drop_cached(handle)  # (what was written direct has nothing there)
            finally:
                os.close(handle)
            directories.add(os.path.dirname(path))
        for directory in directories:
            _fsync_dir(directory)

    def _put(self, key, data, overwrite, sync=True):
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            self._ensure_dir(directory)
            if not overwrite and os.path.exists(path):
                if os.path.getsize(path) == len(data):
                    with open(path, 'rb') as existing:
                        if existing.read() == data:
                            return
                # a pack is named by its content: other bytes under its name are a write torn by a crash
                if not key.startswith(('data/', 'tree/')):
                    raise BackendError('%s already exists with other content; it was not overwritten' % self._describe(key))
            handle, temp = tempfile.mkstemp(prefix='.tmp-', dir=directory)
            try:
                if len(data) >= direct_io.DIRECT_MIN:
                    os.close(handle)
                    handle = direct_io.create_and_write(temp, data)
                else:
                    _write_all(handle, data)
                if self.durable and sync:
                    os.fsync(handle)
                    if len(data) >= direct_io.DIRECT_MIN:
                        direct_io.drop_cached(handle)
                os.close(handle)
                handle = None
                os.replace(temp, path)
            except BaseException:
                if handle is not None:
                    os.close(handle)
                _remove_quietly(temp)
                raise
            if self.durable and sync:
                _fsync_dir(directory)
            elif not sync:
                with self._unsynced_lock:
                    self._unsynced.append(path)
        except OSError as exc:
            raise BackendError('cannot write %s: %s' % (self._describe(key), exc.strerror or exc)) from None

    def write(self, key, data):
        self._put(key, data, overwrite=False)

    def replace(self, key, data):
        self._put(key, data, overwrite=True)

    def read(self, key, offset=0, length=None):
        with self._reading(key):
            if length is not None and key.startswith(('data/', 'tree/')):
                return self._read_pack(key, offset, length)
            with open(self._path(key), 'rb') as stream:
                if offset:
                    stream.seek(offset)
                return stream.read() if length is None else stream.read(length)

    @contextmanager
    def _reading(self, key):
        """The file system's errors in reading ``key`` as the backend's own, naming the object."""
        try:
            yield
        except FileNotFoundError:
            raise NotFound('%s does not exist' % self._describe(key)) from None
        except OSError as exc:
            raise BackendError('cannot read %s: %s' % (self._describe(key), exc.strerror or exc)) from None

    def read_view(self, key, offset, length):
        """``read`` of a pack's range for a caller done with it before this thread's next ``read_view`` (the relay
        sends it on): read around the page cache into this thread's aligned buffer, and returned as a memoryview
        of it. A restore reads each byte of a pack about once, so caching it only cost the kernel a page per 4 KiB
        (measured on the reference data, stage 2 relayed: 2.5-4 fewer CPU-seconds of 28-31)."""
        if key.startswith('data/') and length + 2 * direct_io.BLOCK <= VIEW_BYTES:
            with self._reading(key):
                handle = self._pack_handle(key, 'direct_packs', direct=True)
                if handle is not None:
                    buffer = getattr(self._threads, 'view_buffer', None)
                    if buffer is None:
                        buffer = self._threads.view_buffer = direct_io.AlignedBuffers(VIEW_BYTES).get()
                    return direct_io.read_range(handle, offset, offset + length, buffer)
        return self.read(key, offset, length)  # not a pack, a range larger than the buffer, or no O_DIRECT here

    def _read_pack(self, key, offset, length):
        """Ranged reads of packs through cached descriptors (packs never change; a restore reads each many times).

        Each thread keeps its own few descriptors, so closing one never races another thread's read.
        """
        data = os.pread(self._pack_handle(key, 'packs'), length, offset)
        if len(data) != length:
            raise BackendError('%s is shorter than its index says (truncated?)' % self._describe(key))
        return data

    def _pack_handle(self, key, kind, direct=False):
        """This thread's open descriptor of pack ``key`` among its ``kind`` (None: no O_DIRECT here)."""
        handles = getattr(self._threads, kind, None)
        if handles is None:
            handles = OrderedDict()
            setattr(self._threads, kind, handles)
            with self._unsynced_lock:
                self._all_pack_handles.append(handles)
        handle = handles.get(key)
        if handle is None:
            path = self._path(key)
            handle = direct_io.open_direct(path, os.O_RDONLY) if direct else os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
            if handle is None:
                return None
            if len(handles) >= OPEN_PACKS_PER_THREAD:
                os.close(handles.popitem(last=False)[1])
            handles[key] = handle
        else:
            handles.move_to_end(key)
        return handle

    def close(self):
        with self._unsynced_lock:
            for handles in self._all_pack_handles:
                while handles:
                    os.close(handles.popitem()[1])

    def list(self, prefix):
        directory, _sep, _rest = prefix.rpartition('/')
        base = self._path(directory) if directory else self.root
        found = []
        for top, _dirs, files in os.walk(base):
            relative_top = os.path.relpath(top, self.root).replace(os.sep, '/')
            relative_top = '' if relative_top == '.' else relative_top + '/'
            for name in files:
                key = relative_top + name
                if name.startswith('.tmp-') or not key.startswith(prefix):
                    continue
                try:
                    found.append((key, os.path.getsize(os.path.join(top, name))))
                except FileNotFoundError:
                    continue  # deleted while listing
        yield from sorted(found)  # in key order, as object stores list

    def delete(self, key):
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError('cannot delete %s: %s' % (self._describe(key), exc.strerror or exc)) from None

    def size(self, key):
        try:
            return os.path.getsize(self._path(key))
        except FileNotFoundError:
            return None


def _write_all(handle, data):
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return
        raise
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


OPEN_PACKS_PER_THREAD = 32
VIEW_BYTES = 16 * 1024 * 1024 + 2 * direct_io.BLOCK  # the largest range read_view reads direct (a restore's span or chunk)
SCHEMES = ('file', 's3', 'gs', 'azure')


def open_backend(url, options=None):
    """The backend for a pool location URL; ``options`` carries endpoints and credentials."""
    options = dict(options or {})
    if not url:
        raise BackendError('no pool location given: use a directory, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix')
    parsed = urlparse(url)
    scheme = parsed.scheme or 'file'
    if scheme == 'file':
        path = parsed.path if parsed.scheme else url
        return LocalBackend(path, durable=options.get('durable', True))
    if scheme not in SCHEMES:
        raise BackendError('pool location %r has an unknown scheme %r: use a directory, s3://, gs:// or azure://' % (url, scheme))
    if not parsed.netloc:
        raise BackendError('pool location %r names no bucket or container: write %s://<bucket>/<prefix>' % (url, scheme))
    prefix = parsed.path.strip('/')
    if scheme == 's3':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_s3 import S3Backend
        return S3Backend(parsed.netloc, prefix, options)
    if scheme == 'gs':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_gcs import GCSBackend
        return GCSBackend(parsed.netloc, prefix, options)
    from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_azure import AzureBackend
    return AzureBackend(parsed.netloc, prefix, options)
