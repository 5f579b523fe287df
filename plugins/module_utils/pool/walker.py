# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The walk of a volume tree in a process of its own, streamed back in batches.

A backup's walk is one listdir and one lstat per entry. In the backup's process each of those
calls gives up the interpreter lock and must win it back from the chunking threads, and on a cold
cache each waits for the disk behind the big reads: the walk, not the disk, set the pace of an
incremental. A child process walks instead (forked before the pool is opened, so it also runs
while the passphrase's key is derived) and sends the entries in batches of a few hundred
(``marshal``: built-in types only). The entries are ``agent.tree.scan``'s, so they are exactly
those an in-process walk gives.

The child holds no keys and writes nothing; it stops when the parent stops reading (broken pipe).
"""

from __future__ import annotations

import ctypes
import marshal
import os
import platform
import queue
import signal
import stat
import struct
import threading

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as walk

BATCH_ENTRIES = 256
WARM_THREADS = 4     # metadata reads in flight (measured: 4 beat none and 16 for an incremental of the reference data)
WALK_NICENESS = 5    # the pool's key derivation and the chunking come first; the walk mostly waits for the disk
QUEUED_BATCHES = 64  # batches read from the child ahead of the backup (bounds memory: a few MB; the warmers go on anyway)
_SYS_IOPRIO_SET = {'x86_64': 251, 'aarch64': 30}.get(platform.machine(), -1)
_IOPRIO_WHO_PROCESS, _IOPRIO_CLASS_BE, _IOPRIO_CLASS_SHIFT = 1, 2, 13
_FRAME = struct.Struct('>I')
_END, _ERROR = b'end', b'error'


class TreeWalk:
    """Iterate the entries of ``walk.scan(root, ...)``, walked by a child process where there is fork."""

    def __init__(self, root, skip=(walk.STATE_DIR_NAME,), identity=True, file_xattrs=True):
        self.root = root
        self.options = (tuple(skip), identity, file_xattrs)
        self.pid = None
        self.batches = None
        if hasattr(os, 'fork'):
            self._start()

    def matches(self, root, skip, identity, file_xattrs):
        return self.root == root and self.options == (tuple(skip), identity, file_xattrs)

    def _start(self):
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return  # walked in this process instead
        if pid == 0:  # pragma: no cover - the child; coverage does not follow it
            os.close(read_end)
            _child(write_end, self.root, self.options)
        os.close(write_end)
        self.pid = pid
        self.batches = queue.Queue(QUEUED_BATCHES)
        reader = threading.Thread(target=_read_frames, args=(read_end, self.batches), name='ferry-walk', daemon=True)
        reader.start()

    def __iter__(self):
        skip, identity, file_xattrs = self.options
        if self.pid is None:
            yield from walk.scan(self.root, skip=skip, identity=identity, file_xattrs=file_xattrs)
            return
        while True:
            kind, payload = self.batches.get()
            if kind == _END:
                self._reap()
                return
            if kind == _ERROR:
                self._reap()
                raise OSError(payload)
            yield from marshal.loads(payload)

    def _reap(self):
        if self.pid is not None:
            os.waitpid(self.pid, 0)
            self.pid = None

    def close(self):
        """Stop the child if it still walks (a backup that failed) and collect it."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap()


def _child(handle, root, options):  # pragma: no cover - runs in the forked child
    status = 1
    try:
        _walk_and_send(handle, root, options)
        status = 0
    except BrokenPipeError:
        pass  # the parent stopped reading: it failed or was stopped
    except Exception as exc:  # pylint: disable=broad-except
        try:
            _send(handle, b'X', str(exc).encode('utf-8', 'surrogateescape'))
        except OSError:
            pass
    finally:
        # never return into the parent's code (nor run its exit handlers)
        os._exit(status)  # pylint: disable=protected-access


def _walk_and_send(handle, root, options):  # pragma: no cover - runs in the forked child
    skip, identity, file_xattrs = options
    _lower_cpu_raise_io_priority()
    _MetadataWarmer(root).start()
    batch = []
    for entry in walk.scan(root, skip=skip, identity=identity, file_xattrs=file_xattrs):
        batch.append(entry)
        if len(batch) >= BATCH_ENTRIES:
            _send(handle, b'B', marshal.dumps(batch))
            batch = []
    if batch:
        _send(handle, b'B', marshal.dumps(batch))
    _send(handle, b'E', b'')


def _lower_cpu_raise_io_priority():  # pragma: no cover - runs in the forked child
    """The walk's small reads ahead of the backup's big ones in the disk's queue (the best-effort class's
    highest level, which needs no privilege and, unlike the real-time class, cannot starve the node's
    other I/O), its CPU time after the chunking's."""
    try:
        os.nice(WALK_NICENESS)
    except OSError:
        pass
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT | 0)
    except (OSError, AttributeError):
        pass  # not Linux: the walk only waits longer


class _MetadataWarmer:
    """Lists and lstats the tree's directories from several threads, ahead of the ordered walk.

    On a cold cache every directory block and inode table block the walk needs is a small read
    that waits behind the backup's big reads in the disk's queue; one at a time, the walk crawled
    (measured: 1.4 s for 5,000 entries). Many in flight, the metadata is in the cache before the
    walk, which keeps the exact order and entries of ``agent.tree.scan``, asks for it. Directories
    are visited breadth first, which is about the walk's order for trees of many small directories.
    """

    def __init__(self, root, threads=WARM_THREADS):
        self.pending = queue.Queue()
        self.pending.put(root)
        self.threads = threads

    def start(self):
        for _index in range(self.threads):
            threading.Thread(target=self._run, name='ferry-warm', daemon=True).start()

    def _run(self):
        while True:
            directory = self.pending.get()
            try:
                with os.scandir(directory) as items:
                    for item in items:
                        info = item.stat(follow_symlinks=False)
                        if stat.S_ISDIR(info.st_mode):
                            self.pending.put(item.path)
            except OSError:
                continue  # the walk itself reports what it cannot read


def _send(handle, kind, payload):
    data = kind + _FRAME.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def _read_frames(handle, batches):
    """In a thread of the parent: frames from the child into ``batches`` (blocks when the backup lags)."""
    try:
        with os.fdopen(handle, 'rb') as stream:
            while True:
                head = stream.read(1 + _FRAME.size)
                if len(head) < 1 + _FRAME.size:
                    batches.put((_ERROR, 'the walk of the tree stopped unexpectedly'))
                    return
                payload = stream.read(_FRAME.unpack_from(head, 1)[0])
                kind = head[:1]
                if kind == b'B':
                    batches.put((b'batch', payload))
                elif kind == b'E':
                    batches.put((_END, None))
                    return
                else:
                    batches.put((_ERROR, payload.decode('utf-8', 'surrogateescape')))
                    return
    except OSError as exc:
        batches.put((_ERROR, 'the walk of the tree stopped: %s' % exc))
