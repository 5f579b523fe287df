# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passthrough volume sync: a source agent pushes a tree to a sink agent, sending only what changed.

The sink keeps a manifest of the last verified sync (per file: size, mtime, chunk hashes, and the
inode and change time it left the file with) in a state directory next to the data. It offers the
source the files it finds as it left them; the source skips those whose size and mtime match (as
rsync's quick check does), cuts changed files into content-defined chunks and sends only chunks
the sink does not already hold; the sink rebuilds each file beside the old one (from a reflink
clone where the file system can share extents, else by kernel copies of local chunks, plus the
received ones), then renames it into place. A journal of finished files lets an interrupted sync
resume where it stopped; the new manifest is written only at the end, so an interrupted sync is
never taken for a complete one.
"""

from __future__ import annotations

import os
import shutil
import stat
import time

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree
from ansible_collections.ferry.kube.plugins.module_utils.agent.wire import PROTOCOL_VERSION, ProtocolError
from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io
from ansible_collections.ferry.kube.plugins.module_utils.workers import Background

try:
    import blake3
    import msgpack
except ImportError:  # pragma: no cover
    blake3 = msgpack = None

HELLO, STATE, ENTRY, FILE, CHUNK, FILE_END, END, DONE, ERROR, BARRIER = range(1, 11)
CHECKPOINT_BYTES = 1024 * 1024 * 1024
CHECKPOINT_SECONDS = 30.0
ZERO = bytes(1 << 20)
METADATA_KEYS = ('mode', 'uid', 'gid', 'mtime_ns', 'xattrs')  # what apply_metadata sets


class SyncError(Exception):
    """The sync failed; the message says where."""


# -- state on the sink -----------------------------------------------------------------------------

class SinkState:
    """The manifest of the last verified sync and the journal of the sync in progress."""

    def __init__(self, state_dir):
        self.dir = state_dir
        os.makedirs(state_dir, exist_ok=True)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def manifest(self):
        try:
            with open(self._path('manifest.msgpack'), 'rb') as handle:
                return msgpack.unpackb(handle.read(), raw=False)
        except FileNotFoundError:
            return {'files': {}, 'sync_id': None}

    def save_manifest(self, manifest):
        temp = self._path('manifest.msgpack.tmp')
        with open(temp, 'wb') as handle:
            handle.write(msgpack.packb(manifest, use_bin_type=True))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self._path('manifest.msgpack'))

    def journal(self, sync_id):
        """Entries finished by an earlier, interrupted run of ``sync_id``."""
        done = {}
        try:
            with open(self._path('journal-%s' % sync_id), 'rb') as handle:
                for record in msgpack.Unpacker(handle, raw=False):
                    done[record['path']] = record
        except FileNotFoundError:
            pass
        except (ValueError, msgpack.exceptions.ExtraData):
            pass  # a torn last record: the files before it are still good
        return done

    def open_journal(self, sync_id):
        return open(self._path('journal-%s' % sync_id), 'ab')  # pylint: disable=consider-using-with

    def drop_journals(self):
        for name in os.listdir(self.dir):
            if name.startswith('journal-'):
                os.remove(self._path(name))


# -- sink ------------------------------------------------------------------------------------------

class Sink:
    """Receives one sync on ``channel`` into ``root``.

    The manifest records, per file, the inode and change time the sink left it with (``local``). A
    file still carrying them is exactly what the last sync wrote (any write, chmod, xattr or
    rename since would have moved its change time), so the sink offers it to the source as
    unchanged, reuses its chunks without reading them back, and leaves its metadata alone when
    the source's did not change. A file that fails the check is left out of what the sink offers,
    so the source sends it whole.
    """

    def __init__(self, root, state_dir, channel, owner=True):
        self.root = os.path.abspath(root)
        self.state = SinkState(state_dir)
        self.channel = channel
        self.owner = owner
        self.stats = {'files': 0, 'files_written': 0, 'bytes_received': 0, 'bytes_reused': 0, 'deleted': 0}
        self.failed = []  # files that could not be rebuilt; reported at the next barrier
        self.present = {}
        self.files = {}
        self.index = {}
        self.unsynced_bytes = 0

    def run(self):
        kind, hello, _payload = self.channel.recv()
        if kind != HELLO or hello.get('protocol') != PROTOCOL_VERSION:
            raise ProtocolError('expected HELLO with protocol %d' % PROTOCOL_VERSION)
        sync_id = hello['sync_id']
        listing = Background(tree.list_tree, self.root)  # waits on the disk while the manifest is decoded
        manifest = self.state.manifest()
        done = self.state.journal(sync_id)
        self.present = listing.result()
        self._clean_temp_files()
        known = dict(manifest['files'])
        known.update({p: r for p, r in done.items() if r['type'] == 'file'})
        self.files = {path: entry for path, entry in known.items() if self._intact(path, entry)}
        for path, entry in self.files.items():
            offset = 0
            for digest, length in entry.get('chunks') or []:
                self.index.setdefault(digest, (path, offset, length))
                offset += length
        # ``cuts``: how each file of several chunks was cut, so the source re-cuts a changed one only where it changed
        _send_document(self.channel, STATE, {
            'files': {p: [e['size'], e['mtime_ns']] for p, e in self.files.items()}, 'chunks': list(self.index), 'done': list(done),
            'cuts': {p: e['chunks'] for p, e in self.files.items() if len(e.get('chunks') or ()) > 1}})
        new_entries, links, pending = dict(done), [], []
        last_checkpoint = time.monotonic()
        with self.state.open_journal(sync_id) as journal:
            try:
                while True:
                    kind, header, payload = self.channel.recv()
                    if kind == ENTRY:
                        entry = header['entry']
                        if entry['type'] == 'link':
                            links.append(entry)
                        elif header.get('unchanged') and entry['path'] in self.files:
                            entry = self._keep(entry)
                        else:
                            self._apply_entry(entry)
                        new_entries[entry['path']] = entry
                        self.stats['files'] += entry['type'] == 'file'
                    elif kind == FILE:
                        entry = self._receive_file(header)
                        if entry is not None:
                            new_entries[entry['path']] = entry
                            pending.append(entry)
                        if self.unsynced_bytes >= CHECKPOINT_BYTES or time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                            self._checkpoint(journal, pending)
                            last_checkpoint = time.monotonic()
                    elif kind == BARRIER:
                        self.channel.send(BARRIER, {'failed': self.failed})
                        self.failed = []
                    elif kind == END:
                        self._finish(set(_document(header, payload)['paths']), links, new_entries, sync_id)
                        return self.stats
                    else:
                        raise ProtocolError('unexpected frame %d' % kind)
            except (EOFError, OSError, ProtocolError):
                # a cut connection: what is written completely counts for the run that resumes
                self._checkpoint(journal, pending)
                raise

    def _intact(self, path, entry):
        """Whether the file at ``path`` is still what ``entry`` (the last sync's record of it) says."""
        info = self.present.get(path)
        if info is None or not stat.S_ISREG(info.st_mode) or info.st_size != entry.get('size'):
            return False
        if entry.get('local'):
            return entry['local'] == [info.st_ino, info.st_ctime_ns]
        return info.st_mtime_ns == entry.get('mtime_ns')  # recorded before identities were: rsync's quick check

    def _identity(self, full):
        info = os.lstat(full)
        return [info.st_ino, info.st_ctime_ns]

    def _keep(self, entry):
        """An unchanged file: its chunks stay; its metadata is applied only if the source's changed."""
        previous = self.files[entry['path']]
        kept = dict(previous, **entry)
        if not previous.get('local') or any(previous.get(key) != entry.get(key) for key in METADATA_KEYS):
            full = self._full(entry['path'])
            tree.apply_metadata(full, kept, self.owner)
            kept['local'] = self._identity(full)
        return kept

    def _checkpoint(self, journal, pending):
        """Make written files durable, then record them: the journal never claims data still in memory."""
        if pending:
            tree.sync_filesystem(self.root)
            for entry in pending:
                journal.write(msgpack.packb(entry, use_bin_type=True))
            journal.flush()
            os.fsync(journal.fileno())
            pending.clear()
        self.unsynced_bytes = 0

    def _full(self, path):
        full = os.path.normpath(os.path.join(self.root, path))
        if not full.startswith(self.root + os.sep):
            raise ProtocolError('path %r leaves the volume' % path)
        return full

    def _clean_temp_files(self):
        """Remove what an interrupted run left half-written beside the files it was replacing."""
        for path in [p for p in self.present if p.rpartition('/')[2].startswith('.ferry-tmp-')]:
            if stat.S_ISREG(self.present.pop(path).st_mode):
                os.remove(self._full(path))

    def _meta(self, path, entry):
        tree.apply_metadata(self._full(path), entry, self.owner)

    def _apply_entry(self, entry):
        full = self._full(entry['path'])
        if entry['type'] == 'dir':
            if os.path.lexists(full) and not os.path.isdir(full):
                os.remove(full)
            os.makedirs(full, exist_ok=True)
            os.chmod(full, 0o700 | entry['mode'])  # writable for us until the end, when its own mode is set
        elif entry['type'] == 'symlink':
            if self._same_symlink(full, entry):
                return
            if os.path.lexists(full) or os.path.islink(full):
                tree.remove_entry(full)
            os.symlink(entry['target'], full)
            self._meta(entry['path'], entry)

    def _same_symlink(self, full, entry):
        """A symlink found as the source has it (target, owner, time): recreating it would change nothing."""
        info = self.present.get(entry['path'])
        if info is None or not stat.S_ISLNK(info.st_mode) or os.readlink(full) != entry['target']:
            return False
        owner_matches = not (self.owner and os.geteuid() == 0) or (info.st_uid, info.st_gid) == (entry['uid'], entry['gid'])
        return owner_matches and info.st_mtime_ns == entry['mtime_ns'] and not entry.get('xattrs')

    def _receive_file(self, header):
        """Rebuild one file from CHUNK frames (data sent, or a hash of data the sink holds)."""
        entry = header['entry']
        full = self._full(entry['path'])
        # A file that exists is rebuilt beside it (its old chunks stay readable until the rename);
        # a new one is written in place: until the journal or manifest names it, it does not count.
        # (What exists is known from the listing at the start; the exclusive create checks it.)
        mode = tree.creation_mode(entry, self.owner, reopened=entry['size'] >= direct_io.DIRECT_MIN)
        fd = None if entry['path'] in self.present else tree.create_file(full, replace=False, mode=mode)
        temp = full
        if fd is None:
            temp = os.path.join(os.path.dirname(full), '.ferry-tmp-%s' % os.path.basename(full))
            fd = tree.create_file(temp, mode=mode)  # (what an earlier run or the source left at that name goes first)
        replacing, identity = temp != full, None
        try:
            builder = self._build(entry, full, temp, fd)
            if builder.ok:
                # by descriptor, before the rename: no lookups of the path (a rename moves only the change time)
                tree.apply_metadata(fd, entry, self.owner, current=os.fstat(fd))
                identity = None if replacing else os.fstat(fd)
        finally:
            os.close(fd)
        self.stats['bytes_received'] += builder.bytes_received
        self.stats['bytes_reused'] += builder.bytes_reused
        if not builder.ok:
            os.remove(temp)
            self.failed.append(entry['path'])
            return None
        if replacing:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            os.replace(temp, full)
            identity = os.lstat(full)
        for digest, _length in (self.files.get(entry['path']) or {}).get('chunks') or []:
            if self.index.get(digest, (None,))[0] == entry['path']:
                del self.index[digest]  # the old content is gone: its chunks are no longer there
        entry = dict(entry, chunks=builder.chunks, local=[identity.st_ino, identity.st_ctime_ns])
        self.files[entry['path']] = entry
        offset = 0
        for digest, length in builder.chunks:
            self.index[digest] = (entry['path'], offset, length)
            offset += length
        self.stats['files'] += 1
        self.stats['files_written'] += 1
        self.unsynced_bytes += entry['size']
        return entry

    def _build(self, entry, full, temp, fd):
        """Write the file's chunks into ``fd`` as they arrive, up to FILE_END; the builder says how it went."""
        with _OpenFiles(self._full) as sources:
            builder = _FileBuilder(fd, sources, self.index)
            previous = self.files.get(entry['path'])
            if previous is not None:
                builder.clone(full, previous.get('chunks') or [])
            elif entry['size'] >= direct_io.DIRECT_MIN:
                builder.write_sequentially(temp)
            try:
                while True:
                    kind, head, data = self.channel.recv()
                    if kind == FILE_END:
                        break
                    if kind != CHUNK:
                        raise ProtocolError('expected chunks of %s' % entry['path'])
                    digest, length = head['h'], head['n']
                    zero = bool(head.get('zeros'))  # the source's word, checked with the data's hash when it sends the data
                    if head.get('s'):
                        builder.received(digest, length, data, _digest(data) == digest, zero)
                    else:
                        builder.local(digest, length, zero)
            except BaseException:
                builder.abandon_sequential()  # the file is not finished: nothing more of it needs writing
                raise
            builder.finish_sequential()
        if os.fstat(fd).st_size != entry['size']:
            # only where it changes the size (a trailing hole, a shorter clone): XFS writes the
            # file back and waits on every ftruncate of a file with data not yet on disk
            os.ftruncate(fd, entry['size'])
        if builder.ok and entry['size'] >= direct_io.DIRECT_MIN:
            # a big file's writeback starts now, so the sync at the end finds little to write; small files
            # are left to the kernel's flusher, which writes many at once (one at a time here: 12% of the
            # sink's time for a volume of small files)
            tree.start_writeback(fd)
        return builder

    def _finish(self, source_paths, links, entries, sync_id):
        # What the source no longer has goes, deepest first, so directories empty before they go.
        # Only what was here when the sync began can be extra: everything it wrote, the source named.
        for path in sorted((p for p in self.present if p not in source_paths), key=lambda p: -p.count('/')):
            full = self._full(path)
            if os.path.lexists(full):
                tree.remove_entry(full)
                self.stats['deleted'] += 1
        for link in links:
            full, target = self._full(link['path']), self._full(link['target'])
            if _same_inode(full, target):
                continue
            if os.path.lexists(full):
                tree.remove_entry(full)
            os.link(target, full)
            if link['target'] in entries and entries[link['target']]['type'] == 'file':
                # a new name changes the inode's change time: record the one it has now
                entries[link['target']]['local'] = self._identity(full)
        for path, entry in sorted(entries.items(), key=lambda kv: -kv[0].count('/')):
            if entry['type'] == 'dir':
                self._meta(path, entry)
        tree.sync_filesystem(self.root)  # everything on disk before the manifest says the sync is complete
        self.state.save_manifest({'sync_id': sync_id, 'time': time.time(),
                                  'files': {p: e for p, e in entries.items() if e['type'] == 'file' and p in source_paths}})
        self.state.drop_journals()
        self.channel.send(DONE, dict(self.stats))


class _OpenFiles:
    """Read-only descriptors of the sink's files that chunks are copied from, opened once per file rebuilt."""

    def __init__(self, resolve):
        self.resolve = resolve
        self.fds = {}

    def fd(self, path):
        if path not in self.fds:
            self.fds[path] = os.open(self.resolve(path), os.O_RDONLY)
        return self.fds[path]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _FileBuilder:
    """Places a file's chunks, in order, into the file being rebuilt (``fd``).

    With ``clone`` the file starts as a reflink of its previous version where the file system
    shares extents (XFS, Btrfs): chunks still at their old offsets then cost nothing. Other chunks
    the sink holds are copied inside the kernel; zero runs stay holes in a file not cloned.
    """

    def __init__(self, fd, sources, index):
        self.fd = fd
        self.sources = sources
        self.index = index
        self.sequential = None  # a direct_io.SequentialWriter while a new file is written front to back
        self.position = 0
        self.chunks = []
        self.ok = True
        self.bytes_received = self.bytes_reused = 0
        self.in_place = {}  # offset -> (digest, length) of the previous version's chunks, when cloned
        self.here = {}  # digest -> offset of a chunk already placed in this file (repeats are read back)

    def clone(self, full, previous_chunks):
        with open(full, 'rb') as old:
            if not tree.clone_file(old.fileno(), self.fd):
                return
        offset = 0
        for digest, length in previous_chunks:
            self.in_place[offset] = (digest, length)
            offset += length

    def write_sequentially(self, path):
        """Write this new file around the page cache (large aligned direct writes, zero blocks left as holes),
        as a restore writes big files: the kernel need not copy it into the cache and write it back (the
        dataset's files on XFS: 4.8-4.9 CPU-seconds and 7.2-7.5 s, through the cache 6.4-7.0 and 8.2-8.3 s),
        and a DR node's cache keeps what its applications read rather than the volume being written."""
        self.sequential = direct_io.SequentialWriter(path, self.fd)

    def finish_sequential(self):
        """Write out what the sequential writer gathered; chunks from here on go through the page cache."""
        if self.sequential is not None:
            writer, self.sequential = self.sequential, None
            writer.finish()

    def abandon_sequential(self):
        if self.sequential is not None:
            writer, self.sequential = self.sequential, None
            writer.close()

    def received(self, digest, length, data, verified, zero):
        self.bytes_received += len(data)
        if not verified or len(data) != length:
            self.ok = False  # sent again after the next barrier
            self.finish_sequential()  # (the writer gathers in order: what follows goes where its position says)
        elif self.in_place.get(self.position) == (digest, length):
            pass  # the clone holds it already
        elif zero:
            self._zeros(length)
        elif self.sequential is not None:
            self.sequential.write(data)
        else:
            os.pwrite(self.fd, data, self.position)
        self._advance(digest, length, zero)

    def local(self, digest, length, zero):
        self.bytes_reused += length
        if not zero:
            self.finish_sequential()  # its bytes are read from files (this one, too): all written must be there
        if self.in_place.get(self.position) == (digest, length):
            pass  # the clone holds it already
        elif zero:
            self._zeros(length)
        elif digest in self.here:
            data = os.pread(self.fd, length, self.here[digest])
            if len(data) == length:
                os.pwrite(self.fd, data, self.position)
            else:
                self.ok = False
        else:
            where = self.index.get(digest)
            copied = 0
            if where is not None and where[2] == length:
                try:
                    copied = tree.copy_range(self.sources.fd(where[0]), where[1], self.fd, self.position, length)
                except OSError:
                    copied = 0
            if copied != length:
                self.ok = False  # the source sends it again after the next barrier
        self._advance(digest, length, zero)

    def _zeros(self, length):
        if self.sequential is not None:
            self.sequential.write(length, zeros=True)
        elif self.in_place:
            os.pwrite(self.fd, ZERO[:length], self.position)  # over the clone's old bytes
        # else: a hole, once the file is truncated to its size

    def _advance(self, digest, length, zero):
        if not zero:
            self.here.setdefault(digest, self.position)
        self.chunks.append([digest, length])
        self.position += length


def _is_zero(data):
    """Whether a chunk is all zeros; data that is not shows it in its first bytes, almost always."""
    if data[:64] != ZERO[:min(64, len(data))]:
        return False
    return bytes(data) == ZERO[:len(data)] if len(data) <= len(ZERO) else not bytes(data).strip(b'\0')


def _send_document(channel, kind, document):
    """A frame whose header would grow with the volume (the sink's state, the source's paths): the document
    goes as the payload, compressed and allowed up to wire.MAX_PAYLOAD, where a header stops at MAX_HEADER."""
    channel.send(kind, {'document': True}, msgpack.packb(document, use_bin_type=True))


def _document(header, payload):
    """What a frame says: the document in its payload (``_send_document``), else its header."""
    return msgpack.unpackb(payload, raw=False) if header.get('document') else header


def _digest(data):
    return blake3.blake3(data).digest()


def _same_inode(first, second):
    try:
        one, other = os.lstat(first), os.lstat(second)
    except FileNotFoundError:
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


# -- source -------------------------------------------------------------------------------------------

def _chunks(path, size):
    """The data of the file's chunks. A big file is read around the page cache, as a backup reads it (large
    direct reads on threads of their own: no page cache to fill, fault in and evict on the node whose volume is
    read); a small one in one read, cut only when it can hold more than one chunk (no map of the file to set up
    and tear down: most of a small file's cost)."""
    if size >= direct_io.DIRECT_MIN:
        with direct_io.DirectReader(path) as stream:
            for chunk in tree.chunker().cut_stream(stream):
                yield chunk.data
        return
    with open(path, 'rb', buffering=0) as stream:
        data = stream.read(direct_io.DIRECT_MIN)
    if len(data) == direct_io.DIRECT_MIN:  # it grew since the walk (a live volume): read as a big file, not into memory
        yield from _chunks(path, direct_io.DIRECT_MIN)
        return
    if len(data) <= tree.MIN_CHUNK:
        if data:
            yield data
        return
    for chunk in tree.chunker().cut_buf(data):
        yield chunk.data


class Progress:
    """Counts and a rate/ETA report, at most once per ``interval`` seconds."""

    def __init__(self, callback=None, interval=1.0, total_bytes=None):
        self.callback = callback
        self.interval = interval
        self.total_bytes = total_bytes
        self.started = time.monotonic()
        self.last = 0.0
        self.files = self.bytes_scanned = self.bytes_sent = 0

    def report(self, final=False):
        now = time.monotonic()
        if self.callback is None or (not final and now - self.last < self.interval):
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.bytes_scanned / elapsed
        eta = (self.total_bytes - self.bytes_scanned) / rate if self.total_bytes and rate > 0 else None
        self.callback({'event': 'done' if final else 'progress', 'files': self.files, 'bytes_scanned': self.bytes_scanned,
                       'bytes_sent': self.bytes_sent, 'seconds': round(elapsed, 2), 'rate_bytes_per_second': int(rate),
                       'eta_seconds': None if eta is None else round(eta, 1)})


class Source:
    """Pushes the tree at ``root`` to a sink over ``channel``.

    The sink answers only at barriers and at the end, so the stream is one-way while data flows
    (a TLS socket must not be read and written from two threads at once).
    """

    def __init__(self, root, channel, sync_id, progress=None):
        self.root = os.path.abspath(root)
        self.channel = channel
        self.sync_id = sync_id
        self.progress = progress or Progress()

    def _reply(self, expected):
        kind, header, payload = self.channel.recv()
        if kind == ERROR:
            raise SyncError('the sink failed: %s' % header.get('message'))
        if kind != expected:
            raise ProtocolError('expected reply %d from the sink, got %d' % (expected, kind))
        return _document(header, payload)

    def _barrier(self):
        self.channel.send(BARRIER, {})
        return self._reply(BARRIER)['failed']

    def run(self):
        self.channel.send(HELLO, {'protocol': PROTOCOL_VERSION, 'sync_id': self.sync_id})
        self.channel.flush()
        # the tree is walked while the sink reads its own volume and manifest: the two take about as long
        walker = Background(lambda: list(tree.scan(self.root)))
        state = self._reply(STATE)
        scanned = walker.result()
        self.progress.total_bytes = sum(entry.get('size', 0) for entry in scanned)
        remote = state['files']
        known = set(state['chunks'])
        cuts = state.get('cuts') or {}  # (a sink of an earlier release sends none: files are cut whole)
        # a file the journal lists as done is in ``remote`` with the size and mtime it was written
        # with: compared like any other, so a file changed since an interrupted run is sent again
        changed = [entry for entry in scanned if entry['type'] == 'file' and remote.get(entry['path']) != [entry['size'], entry['mtime_ns']]]
        # (files read direct have read-ahead threads of their own: the kernel's would be read twice)
        to_read = [entry for entry in changed if 0 < entry['size'] < direct_io.DIRECT_MIN]
        reader = tree.ReadAhead([os.path.join(self.root, entry['path']) for entry in to_read], [entry['size'] for entry in to_read])
        positions = {entry['path']: index for index, entry in enumerate(to_read)}
        changed = {entry['path'] for entry in changed}
        paths = []
        entries = {}
        for entry in scanned:
            paths.append(entry['path'])
            entries[entry['path']] = entry
            if entry['type'] != 'file':
                self.channel.send(ENTRY, {'entry': entry})
                continue
            self.progress.files += 1
            if entry['path'] in changed:
                if entry['path'] in positions:
                    reader.reached(positions[entry['path']])
                self._send_file(entry, known, cuts.get(entry['path']))
            else:
                self.channel.send(ENTRY, {'entry': entry, 'unchanged': True})
                self.progress.bytes_scanned += entry['size']
            self.progress.report()
        # Files the sink could not rebuild from its local chunks are sent again, whole (twice at most).
        failed = self._barrier()
        for _attempt in range(2):
            if not failed:
                break
            for path in failed:
                self._send_file(entries[path], known=set())
            failed = self._barrier()
        if failed:
            raise SyncError('the sink could not write %s' % ', '.join(failed[:5]))
        _send_document(self.channel, END, {'paths': paths})
        result = self._reply(DONE)
        self.progress.report(final=True)
        return dict(result, bytes_scanned=self.progress.bytes_scanned, bytes_sent=self.progress.bytes_sent,
                    wire_bytes=self.channel.bytes_sent, files=self.progress.files)

    def _send_file(self, entry, known, old=None):
        """One pass over the file: cut, hash, and send each chunk the sink does not hold. With ``old`` (how the
        sink's version was cut) the old cuts stand where the content did not change (a database file with a
        few pages written: one hash pass, and cutting only around the writes). Such a file is read through
        the page cache, as a staged backup re-cuts (its chunks are read by offset); the dataset's incremental
        sync, local agents: 2.5-3.2 s and 3.7 CPU-seconds against 4.0-4.4 s and 4.4 cutting whole files."""
        full = os.path.join(self.root, entry['path'])
        self.channel.send(FILE, {'entry': entry})
        if entry['size']:
            if old:
                pieces = tree.recut(full, old, _digest, tree.chunker)
            else:
                pieces = ((data, None) for data in _chunks(full, entry['size']))
            for data, digest in pieces:
                digest = digest or _digest(data)
                head = {'h': digest, 'n': len(data)}
                if _is_zero(data):
                    head['zeros'] = True  # the sink leaves a hole instead of writing it
                if digest in known:
                    self.channel.send(CHUNK, head)
                else:
                    known.add(digest)
                    head['s'] = True
                    self.channel.send(CHUNK, head, data)
                    self.progress.bytes_sent += len(data)
        self.channel.send(FILE_END, {})
        self.progress.bytes_scanned += entry['size']
