# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A volume tree as entries (files, directories, symlinks, hard links) and files as content-defined chunks.

Chunks are cut with FastCDC and named by their BLAKE3 hash, so an edit in the middle of a file
changes only the chunks around it, and identical data anywhere in the tree is sent once.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import stat

try:
    from pyfastcdc.cy import FastCDC
    HAS_CHUNKER = True
except ImportError:  # pragma: no cover - the agent image and control node install them
    HAS_CHUNKER = False

AVG_CHUNK = 256 * 1024
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
STATE_DIR_NAME = '.ferry-state'
FICLONE = 0x40049409  # linux/fs.h: share a file's extents with another (XFS, Btrfs, OCFS2)


def chunker():
    return FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


def recut(path, old, hash_of, cutter):
    """The chunks of a changed file whose previous version was cut into ``old`` ([(digest, length)]), as
    (data, digest): the old chunk's digest where an old chunk is still at its old offset, None for a chunk
    cut anew.

    An old chunk at its offset is checked by its hash alone (``hash_of``, the digest ``old`` names chunks
    by); the cutter (a new one from ``cutter()``) runs only from where one differs, until it cuts at an old
    boundary again. The chunks are those of cutting the whole file (a cut depends only on the bytes since
    its chunk's start), for the cost of hashing what did not change: a 4 MiB write in the middle of a 300 MB
    database file costs one hash pass and 4 MiB or so of cutting, not 300 MB of cutting. ``data`` is valid
    until the next chunk is asked for.
    """
    boundaries, offset = {}, 0
    for index, (_digest, length) in enumerate(old[:-1]):  # not the last chunk's: the old end of the file cut it
        boundaries[offset] = index
        offset += length
    read_ahead(path)
    position = 0
    with open(path, 'rb', buffering=0) as stream:
        while True:
            index = boundaries.get(position)
            if index is not None:
                digest, length = old[index]
                data = os.pread(stream.fileno(), length, position)
                if len(data) == length and hash_of(data) == digest:
                    yield data, digest
                    position += length
                    continue
            stream.seek(position)
            for chunk in cutter().cut_stream(stream):
                yield chunk.data, None
                position += chunk.length
                if position in boundaries:
                    break  # back in step with the old cuts
            else:
                return  # cut to the end of the file


def read_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return values


def scan(root, skip=(STATE_DIR_NAME,), identity=False, file_xattrs=True):
    """Yield entries of the tree under ``root``, parents before children, in a stable order.

    Entry keys: path (relative, '/'-separated), type (dir, file, symlink, link), mode, uid, gid,
    mtime_ns, size (files), target (symlinks, and the first path of a hard-link group for links),
    xattrs (when present); with ``identity`` also ino and ctime_ns, which tell a rewritten file from an
    untouched one even when its size and mtime were kept. Without ``file_xattrs`` regular files come
    without xattrs: a caller that knows a file is unchanged (same ctime) takes them from its last record.
    """
    seen_inodes = {}
    stack = ['']
    while stack:
        relative = stack.pop()
        directory = os.path.join(root, relative) if relative else root
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise OSError('cannot read directory %s: %s' % (directory, exc.strerror)) from None
        subdirs = []
        for name in names:
            if not relative and name in skip:
                continue
            rel = relative + '/' + name if relative else name
            full = os.path.join(directory, name)
            info = os.lstat(full)
            entry = {'path': rel, 'mode': stat.S_IMODE(info.st_mode), 'uid': info.st_uid, 'gid': info.st_gid, 'mtime_ns': info.st_mtime_ns}
            if stat.S_ISDIR(info.st_mode):
                entry['type'] = 'dir'
                subdirs.append(rel)
            elif stat.S_ISLNK(info.st_mode):
                entry.update(type='symlink', target=os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if info.st_nlink > 1 and key in seen_inodes:
                    entry.update(type='link', target=seen_inodes[key])
                else:
                    if info.st_nlink > 1:
                        seen_inodes[key] = rel
                    entry.update(type='file', size=info.st_size, blocks=info.st_blocks)
                    if identity:
                        entry.update(ino=info.st_ino, ctime_ns=info.st_ctime_ns)
            else:
                continue  # sockets, fifos and devices are not data
            xattrs = read_xattrs(full) if file_xattrs or entry['type'] != 'file' else None
            if xattrs:
                entry['xattrs'] = xattrs
            yield entry
        stack.extend(reversed(subdirs))


def list_tree(root, skip=(STATE_DIR_NAME,)):
    """{relative path: lstat result} of everything under ``root``: what a sink finds before it writes."""
    found = {}
    pending = ['']
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative) if relative else root) as entries:
            for item in entries:
                if not relative and item.name in skip:
                    continue
                path = relative + '/' + item.name if relative else item.name
                info = item.stat(follow_symlinks=False)
                found[path] = info
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
    return found


def remove_entry(path):
    """Remove what is at ``path``: a file, a symlink (never its target) or a directory tree; nothing there is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def create_file(path, replace=True, mode=0o600):
    """A new, empty file at ``path``, open for reading and writing. The create is exclusive, so a symlink or a
    hard-linked file found there is never written through: with ``replace`` what is there is removed first,
    without it None says something is there. ``mode``: its permission bits (less the umask) from the start."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0)
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        if not replace:
            return None
    remove_entry(path)
    return os.open(path, flags, mode)


def clone_file(source_fd, target_fd):
    """Make ``target_fd`` share ``source_fd``'s extents (a reflink); False where the file system cannot."""
    try:
        fcntl.ioctl(target_fd, FICLONE, source_fd)
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM):
            return False
        raise


def copy_range(source_fd, source_offset, target_fd, target_offset, length):
    """Copy bytes between two files inside the kernel where it can (no trip through Python); returns bytes copied."""
    copied = 0
    while copied < length:
        try:
            count = os.copy_file_range(source_fd, target_fd, length - copied, source_offset + copied, target_offset + copied)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            data = os.pread(source_fd, length - copied, source_offset + copied)
            count = os.pwrite(target_fd, data, target_offset + copied) if data else 0
        if count == 0:
            break  # the source is shorter than it should be
        copied += count
    return copied


def read_ahead(path):
    """Ask the kernel to start reading a whole file now, so the disk works while its first chunks are cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # the read that follows reports it
    try:
        # (WILLNEED only: a SEQUENTIAL hint would belong to this descriptor, closed at once, not the reader's)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except (OSError, AttributeError):
        pass
    finally:
        os.close(fd)


class ReadAhead:
    """Keeps the kernel reading the files of a list ahead of the one being worked on.

    ``paths`` and ``sizes`` are in the order the files will be read; ``reached(index)`` says that
    file ``index`` is being read now. The files after it are asked for (``read_ahead``) until
    ``window`` bytes are asked ahead, so the disk is not idle while a file is cut and hashed. One
    request reads at most the device's read-ahead size (``read_ahead_kb``, a few MiB), so a file
    counts for at most ``per_file`` bytes: the head of a big file is asked for, the rest the kernel
    reads ahead by itself while the file is read in order.
    """

    def __init__(self, paths, sizes, window=64 * 1024 * 1024, per_file=8 * 1024 * 1024):
        self.paths = paths
        self.starts = [0]
        for size in sizes:
            self.starts.append(self.starts[-1] + min(size, per_file))
        self.window = window
        self.asked = 0  # files asked for so far

    def reached(self, index):
        limit = self.starts[index] + max(self.window, 1)  # the file being read is always asked for
        while self.asked < len(self.paths) and self.starts[self.asked] < limit:
            read_ahead(self.paths[self.asked])
            self.asked += 1


def _sync_file_range():
    """libc's sync_file_range(2), or None where there is none (not Linux)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return function


_SYNC_FILE_RANGE = _sync_file_range()
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
# what says only that the file (a pipe, a file system) takes no such hint
_NOT_SUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP)


def sync_file_range(fd, offset, length, flags):
    """sync_file_range(2); an error in writing the range back (with SYNC_FILE_RANGE_WAIT_AFTER) raises
    OSError, where a system or file without it does nothing."""
    if _SYNC_FILE_RANGE is not None and _SYNC_FILE_RANGE(fd, offset, length, flags) != 0:
        code = ctypes.get_errno()
        if code not in _NOT_SUPPORTED:
            raise OSError(code, os.strerror(code))


def start_writeback(fd, offset=0, length=0):
    """Start writing a file's dirty pages to disk (``length`` bytes at ``offset``; 0: to its end), without
    waiting: the disk works while the next files arrive, and the sync that ends a sync finds little left to write."""
    try:
        sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)
    except OSError:
        pass  # only leaves the work to that sync, which reports what failed


def sync_filesystem(path):
    """Flush the file system holding ``path`` (syncfs), not every file system of the node (sync)."""
    with FileSystemSync(path) as syncing:
        syncing.sync()


class FileSystemSync:
    """The syncfs of the file system holding ``path``, opened now: Linux (5.8 on) reports to syncfs the
    write-back errors of the file system since its descriptor was opened, so one opened before a restore
    writes reports any of the restore's, whichever file they were in. Elsewhere: sync."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def sync(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, 'syncfs', None) is None:
            os.sync()
        elif libc.syncfs(self.fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, 'writing to disk failed: %s' % os.strerror(code))

    def close(self):
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def creation_mode(entry, owner=True, reopened=False, group=None):
    """The permission bits a restored file is created with: its own, so that most need no chmod after it is
    written, except for the group's, as root restoring owners, unless ``group`` (the group the new file gets:
    ``new_file_group``) is the file's own: until the chown, members of another group must not open a file
    they are not meant to read. ``reopened``: the writer opens the file again by its path (direct I/O),
    which its owner must be allowed to."""
    mode = entry['mode'] & 0o777
    if owner and os.geteuid() == 0 and group != entry['gid']:
        mode &= ~0o070
    return mode | 0o600 if reopened else mode


def new_file_group(directory):
    """The group a file created in ``directory`` gets: the directory's where it is set-group-ID, else ours."""
    info = os.stat(directory)
    return info.st_gid if info.st_mode & stat.S_ISGID else os.getegid()


def apply_metadata(path, entry, owner=True, current=None):
    """Mode, ownership, timestamps and xattrs of ``entry`` onto ``path`` (symlinks: ownership and times only).

    ``path`` may be an open file descriptor: a restore sets a file's metadata before closing it.
    ``current``, the os.stat_result of a file just created, spares the ownership and mode it has
    already: each is an inode update, for every one of thousands of small files.
    """
    is_link = entry['type'] == 'symlink'
    by_name = {} if isinstance(path, int) else {'follow_symlinks': False}
    chown = owner and os.geteuid() == 0 and (current is None or (current.st_uid, current.st_gid) != (entry['uid'], entry['gid']))
    if chown:
        os.chown(path, entry['uid'], entry['gid'], **by_name)
    # (after a chown, always: it clears the set-user-ID and set-group-ID bits)
    if not is_link and (chown or current is None or stat.S_IMODE(current.st_mode) != entry['mode']):
        os.chmod(path, entry['mode'])
    for name, value in (entry.get('xattrs') or {}).items():
        try:
            os.setxattr(path, name, value, **by_name)
        except OSError:
            pass  # the target filesystem may not support this namespace: data matters more
    if isinstance(path, int):
        os.utime(path, ns=(entry['mtime_ns'], entry['mtime_ns']))
    else:
        os.utime(path, ns=(entry['mtime_ns'], entry['mtime_ns']), follow_symlinks=not is_link)
