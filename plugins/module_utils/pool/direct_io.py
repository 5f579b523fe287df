# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bulk file I/O around the page cache (O_DIRECT), with a buffered fallback.

A backup reads gigabytes once and writes packs nobody reads soon; a restore writes files the
backup tool will not read again. Through the page cache, each of those bytes costs the kernel a
page allocation (measured on our VMs: 2 GiB written buffered cost 3.4 s of system time, direct
0.2 s) and evicts the cache of the applications that run beside it. Direct I/O needs
block-aligned buffers, offsets and lengths: each thread keeps one aligned buffer, the aligned body
goes direct and only a tail shorter than a block goes through the cache. Filesystems without
O_DIRECT (tmpfs, some FUSE) get ordinary buffered I/O. btrfs takes O_DIRECT but writes a file with
data checksums through the cache anyway and waits for it: files written front to back there are
written buffered and pushed out behind the writer instead (``SequentialWriter``).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.agent.tree import (
    SYNC_FILE_RANGE_WAIT_AFTER, SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, start_writeback, sync_file_range)

BLOCK = 4096
DIRECT_MIN = 1024 * 1024  # files this large are read and written around the page cache: packs, restored files, a passthrough's
BUFFER_SIZE = 16 * 1024 * 1024  # direct reads this large approach the disk's rate (measured: 8 MiB 0.91 s, 16 MiB 0.72 s for 512 MiB)
O_DIRECT = getattr(os, 'O_DIRECT', 0)
_local = threading.local()
READS_AHEAD = 1  # reads in flight per file; the backup reads several files at once (one per chunking worker)
_READ_AHEAD = ThreadPoolExecutor(max_workers=8, thread_name_prefix='ferry-readahead')
# ctypes calls into a CDLL release the GIL: copies of megabytes run beside the other threads' work
_libc = ctypes.CDLL(None, use_errno=True)
_memmove = _libc.memmove
_memmove.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memmove.restype = ctypes.c_void_p
# (Linux's struct statfs: f_type, a word, first; other systems' differ and are never btrfs here)
_fstatfs = getattr(_libc, 'fstatfs', None) if sys.platform.startswith('linux') else None
BTRFS_SUPER_MAGIC = 0x9123683E
FS_IOC_GETFLAGS = 0x80086601
FS_NOCOW_FL = 0x00800000  # chattr +C: no copy-on-write, and so no data checksums


class _Address:
    """The address of a buffer's first byte while the ``with`` block holds it (bytes or a writable buffer)."""

    def __init__(self, buffer):
        self.buffer = buffer
        self.pinned = None

    def __enter__(self):
        if isinstance(self.buffer, bytes):
            return ctypes.cast(ctypes.c_char_p(self.buffer), ctypes.c_void_p).value
        self.pinned = ctypes.c_char.from_buffer(self.buffer)
        return ctypes.addressof(self.pinned)

    def __exit__(self, *exc):
        self.pinned = None


def copy_into(target, offset, source, length=None):
    """target[offset:offset + n] = source, without holding the GIL (for buffers of a few hundred KiB and more)."""
    length = len(source) if length is None else length
    if length < 65536 or not (isinstance(source, bytes) or _writable(source)):
        target[offset:offset + length] = source[:length] if length != len(source) else source
        return
    with _Address(target) as destination, _Address(source) as origin:
        _memmove(destination + offset, origin, length)


def _writable(buffer):
    try:
        return not memoryview(buffer).readonly
    except TypeError:
        return False


def _anonymous(size):
    """Page-aligned private memory. Private matters: mmap's default is a shared mapping, which worker
    processes forked from this one would write into together."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _buffer():
    """This thread's aligned buffer (mmap memory is page aligned), allocated once."""
    buffer = getattr(_local, 'buffer', None)
    if buffer is None:
        buffer = _local.buffer = _anonymous(BUFFER_SIZE)
    return buffer


def open_direct(path, flags, mode=0o600):
    """A descriptor with O_DIRECT, or None where the filesystem refuses it."""
    if not O_DIRECT:
        return None
    try:
        return os.open(path, flags | O_DIRECT | getattr(os, 'O_CLOEXEC', 0), mode)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise


class DirectReader:
    """A file read front to back in large direct reads; ``readinto`` as the chunker wants it.

    The next blocks are read by background threads while the current one is cut and hashed, so
    the disk and the CPU work at the same time (direct I/O has no kernel read-ahead). The disk
    wants several reads in flight (measured on our VMs: one at a time reads about 540 MB/s,
    three or four about 700 MB/s): ``READS_AHEAD`` per file, times the files read at once.
    """

    def __init__(self, path):
        self.handle = open_direct(path, os.O_RDONLY)
        self.fallback = None
        if self.handle is None:
            self.fallback = open(path, 'rb', buffering=0)  # pylint: disable=consider-using-with
        self.size = os.fstat(self.handle).st_size if self.handle is not None else 0
        self.offset = 0          # end of what readinto has handed out of the blocks read so far
        self.read_offset = 0     # where the next block read starts
        self.pending = memoryview(b'')
        self.buffers = _buffer_ring()
        self.next_buffer = 0
        self.reads = deque()     # (buffer index, future) in file order
        self.eof = False

    def _read_block(self, index, offset):
        return os.preadv(self.handle, [self.buffers[index]], offset)

    def _queue_reads(self):
        # a block past the size known at open is read only to see whether the file grew
        while len(self.reads) < READS_AHEAD and (self.read_offset < self.size or not self.reads):
            index = self.next_buffer
            self.next_buffer = (index + 1) % len(self.buffers)
            self.reads.append((index, _READ_AHEAD.submit(self._read_block, index, self.read_offset)))
            self.read_offset += BUFFER_SIZE

    def readinto(self, target):
        if self.fallback is not None:
            return self.fallback.readinto(target)
        if not self.pending:
            if self.eof:
                return 0
            self._queue_reads()
            index, read = self.reads.popleft()
            try:
                count = read.result()
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                return self._fall_back(target)
            if count < BUFFER_SIZE:
                self.eof = True  # reads queued behind this one are dropped
            else:
                self._queue_reads()
            self.offset += count
            self.pending = memoryview(self.buffers[index])[:count]
            if not count:
                return 0
        count = min(len(target), len(self.pending))
        copy_into(target, 0, self.pending, count)
        self.pending = self.pending[count:]
        return count

    def _wait_for_reads(self):
        while self.reads:
            try:
                self.reads.popleft()[1].result()
            except OSError:
                pass

    def _fall_back(self, target):
        self._wait_for_reads()
        self.fallback = os.fdopen(os.dup(self.handle), 'rb', buffering=0)
        os.lseek(self.fallback.fileno(), self.offset, os.SEEK_SET)
        fcntl_clear_direct(self.fallback.fileno())
        return self.fallback.readinto(target)

    def close(self):
        self._wait_for_reads()  # the buffers are this thread's: no read may still fill one
        self.pending.release()
        if self.handle is not None:
            os.close(self.handle)
        if self.fallback is not None:
            self.fallback.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _buffer_ring():
    ring = getattr(_local, 'ring', None)
    if ring is None:
        ring = _local.ring = tuple(_anonymous(BUFFER_SIZE) for _index in range(READS_AHEAD + 1))
    return ring


def fcntl_clear_direct(handle):
    import fcntl
    flags = fcntl.fcntl(handle, fcntl.F_GETFL)
    fcntl.fcntl(handle, fcntl.F_SETFL, flags & ~O_DIRECT)


def write_file(handle_direct, handle_buffered, data, offset=0):
    """Write ``data`` at ``offset`` (block aligned): the aligned body direct, the tail buffered."""
    view = memoryview(data)
    size = len(view)
    body = size - size % BLOCK if handle_direct is not None else 0
    done = 0
    if body and is_aligned(view):  # a pack built in an aligned buffer goes out as it is
        while done < body:
            written = os.pwritev(handle_direct, [view[done:body]], offset + done)
            if written <= 0:
                raise OSError(errno.EIO, 'short direct write')
            done += written
    buffer = _buffer()
    while done < body:
        step = min(BUFFER_SIZE, body - done)
        copy_into(buffer, 0, view[done:done + step])
        written = os.pwritev(handle_direct, [memoryview(buffer)[:step]], offset + done)
        if written != step:
            raise OSError(errno.EIO, 'short direct write')
        done += step
    while done < size:
        done += os.pwrite(handle_buffered, view[done:], offset + done)


def is_aligned(view):
    if view.readonly or not view.contiguous:
        return False
    with _Address(view) as address:
        return address % BLOCK == 0


class AlignedBuffers:
    """A few reusable page-aligned buffers of one size (packs): no fresh pages to fault in per pack."""

    def __init__(self, size, keep=4):
        self.size = size
        self.keep = keep
        self.free = []
        self.lock = threading.Lock()

    def get(self):
        with self.lock:
            if self.free:
                return self.free.pop()
        return _anonymous(self.size)

    def put(self, buffer):
        with self.lock:
            if len(self.free) < self.keep:
                self.free.append(buffer)
                return
        _unmap(buffer)

    def close(self):
        """Unmap the buffers kept for reuse (those still out are unmapped when put back, or collected)."""
        with self.lock:
            free, self.free, self.keep = self.free, [], 0
        for buffer in free:
            _unmap(buffer)


def _unmap(buffer):
    try:
        buffer.close()
    except BufferError:
        pass  # a view of it is still alive somewhere (a traceback's frame): unmapped when the last one goes


def create_and_write(path, data):
    """A new file holding ``data`` (packs): written around the page cache where possible. Where direct
    writes would go through the cache anyway (btrfs), written buffered with its writeback started at
    once: the caller's fsync (a checkpoint's) finds it written, and ``drop_cached`` after it frees the cache."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    buffered = os.open(path, flags | getattr(os, 'O_CLOEXEC', 0), 0o600)
    direct = open_direct(path, flags & ~os.O_TRUNC) if direct_writes_bypass_cache(buffered) else None
    try:
        write_file(direct, buffered, data)
        if direct is None:
            start_writeback(buffered)  # (the caller's fsync reports what failed)
        return buffered
    except BaseException:
        os.close(buffered)
        raise
    finally:
        if direct is not None:
            os.close(direct)


def drop_cached(handle, offset=0, length=0):
    """Let the page cache go of a file (``length`` bytes at ``offset``; 0: to its end) written and synced
    (its pages are clean: nothing is lost)."""
    try:
        os.posix_fadvise(handle, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def direct_writes_bypass_cache(handle):
    """Whether direct writes to the open file ``handle`` go around the page cache, as O_DIRECT promises.

    Not on btrfs, for a file with data checksums (every file not made nodatacow): btrfs turns each
    such write into a buffered one, then writes the pages back, waits for them and drops them before
    the call returns (Linux commit 968f19c5b1b7, "btrfs: always fallback to buffered write if the inode
    requires checksum": the checksums must cover what reaches the disk). Its writer pays the cache
    and waits for the disk on every write.
    """
    statfs = ctypes.create_string_buffer(4096)
    if _fstatfs is None or _fstatfs(handle, statfs) != 0:
        return True
    if struct.unpack_from('l', statfs.raw)[0] & 0xFFFFFFFF != BTRFS_SUPER_MAGIC:
        return True
    flags = ctypes.c_uint(0)
    try:
        import fcntl  # pylint: disable=import-outside-toplevel
        fcntl.ioctl(handle, FS_IOC_GETFLAGS, flags)
    except OSError:
        return False
    return bool(flags.value & FS_NOCOW_FL)


class WriteBehind:
    """Buffered writes of a file written front to back, pushed to disk right behind the writer.

    Each range's writeback starts once it is written; when the next range is written, the one
    before is waited for and dropped from the cache. At most two ranges of the file are in the
    page cache at a time, the disk writes while the writer makes the next range, and the final
    syncfs finds little left to write (docs/sync.md has the measurements).
    """

    def __init__(self, handle):
        self.handle = handle
        self.previous = None  # (offset, length) written before the last range

    def written(self, offset, length):
        """``length`` bytes at ``offset`` were just written; raises OSError where writing earlier ones back failed."""
        if not length:
            return
        start_writeback(self.handle, offset, length)  # first: the disk's queue never runs dry
        if self.previous is not None:
            start, count = self.previous
            sync_file_range(self.handle, start, count, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
            drop_cached(self.handle, start, count)
        self.previous = (offset, length)


class SequentialWriter:
    """Writes a new file front to back: large aligned writes around the page cache, zero blocks left as holes.

    Data is gathered in this thread's aligned buffer; each full buffer is written direct, except its
    zero blocks, which stay holes (sparse files come back sparse). The last, partial block goes
    through the page cache. Where direct writes would go through the cache anyway (btrfs), each
    buffer is written buffered and pushed out behind the writer (``WriteBehind``).
    """

    HOLE_BLOCK = 64 * 1024
    ZEROS = bytes(HOLE_BLOCK)

    def __init__(self, path, handle):
        self.handle = handle
        bypass = direct_writes_bypass_cache(handle)
        self.direct = open_direct(path, os.O_WRONLY) if bypass else None
        self.behind = None if bypass else WriteBehind(handle)
        self.buffer = _buffer()
        self.fill = 0
        self.base = 0  # file offset of the buffer's first byte
        self.end = 0   # end of the last byte actually written

    def write(self, data, zeros=False):
        """Append ``data`` (or ``data`` zero bytes when ``zeros``)."""
        view = None if zeros else memoryview(data)
        size = data if zeros else len(view)
        done = 0
        while done < size:
            step = min(size - done, BUFFER_SIZE - self.fill)
            if zeros:
                self.buffer[self.fill:self.fill + step] = self.ZEROS * (step // self.HOLE_BLOCK) + self.ZEROS[:step % self.HOLE_BLOCK]
            else:
                self.buffer[self.fill:self.fill + step] = view[done:done + step]
            self.fill += step
            done += step
            if self.fill == BUFFER_SIZE:
                self._flush()

    def _flush(self):
        view = memoryview(self.buffer)
        start = None
        for block in range(0, self.fill + self.HOLE_BLOCK, self.HOLE_BLOCK):
            stop = min(block, self.fill)
            zero = block >= self.fill or self._zero_block(block)
            if zero and start is not None:
                self._write(view[start:stop], self.base + start)
                self.end = self.base + stop
                start = None
            elif not zero and start is None:
                start = block
        view.release()
        if self.behind is not None:
            self.behind.written(self.base, self.fill)
        self.base += self.fill
        self.fill = 0

    def _zero_block(self, block):
        end = min(block + self.HOLE_BLOCK, self.fill)
        # a block of data seldom starts and ends with zero bytes: those two are looked at first, since
        # comparing the block copies it (measured: a copy and compare of each block of 16 MiB cost 2.3 ms)
        return not self.buffer[block] and not self.buffer[end - 1] and self.buffer[block:end] == self.ZEROS[:end - block]

    def _write(self, view, offset):
        size = len(view)
        body = size - size % BLOCK if self.direct is not None else 0
        if body:
            if os.pwritev(self.direct, [view[:body]], offset) != body:
                raise OSError(errno.EIO, 'short direct write')
        done = body
        while done < size:
            done += os.pwrite(self.handle, view[done:], offset + done)

    def finish(self):
        """Write what is gathered; returns (the file's size, the end of its last data written)."""
        self._flush()
        self.close()
        return self.base, self.end

    def close(self):
        """Let go of the direct descriptor; what is gathered and not yet written is dropped."""
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None


def read_range(handle, offset, end, buffer):
    """Bytes ``offset`` to ``end`` of a direct descriptor, read into ``buffer`` (aligned; ``end - offset``
    plus two blocks must fit): a memoryview of them, valid until ``buffer`` is read into again."""
    start = offset - offset % BLOCK
    aligned_end = -(-end // BLOCK) * BLOCK
    view = memoryview(buffer)
    done = 0
    while start + done < end:
        count = os.preadv(handle, [view[done:aligned_end - start]], start + done)
        if count <= 0:
            raise OSError(errno.EIO, 'shorter than its index says (truncated?)')
        done += count
    return view[offset - start:end - start]


def read_file(path, buffer):
    """The whole file at ``path`` into ``buffer`` (aligned, large enough), around the page cache; returns its length."""
    handle = open_direct(path, os.O_RDONLY)
    direct = handle is not None
    if not direct:
        handle = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
    try:
        size = os.fstat(handle).st_size
        if size > len(buffer):
            raise ValueError('%s is larger than the buffer for it' % path)
        view, done = memoryview(buffer), 0
        try:
            while done < size:
                count = os.preadv(handle, [view[done:-(-size // BLOCK) * BLOCK if direct else size]], done)
                if count <= 0:
                    break
                done += count
        finally:
            view.release()
        return done
    finally:
        os.close(handle)
