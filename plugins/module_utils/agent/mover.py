# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passthrough volume sync: a source agent pushes a tree to a sink agent, sending only what changed.

The sink keeps a manifest of the last verified sync (per file: size, mtime, chunk hashes) in a
state directory next to the data. The source skips files whose size and mtime match (as rsync's
quick check does), cuts changed files into content-defined chunks and sends only chunks the sink
does not already hold; the sink rebuilds each file from local chunks (verified by hash) and
received ones into a temporary file, then renames it into place. A journal of finished files lets
an interrupted sync resume where it stopped; the new manifest is written only at the end, so an
interrupted sync is never taken for a complete one.
"""

from __future__ import annotations

import os
import shutil
import time

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree
from ansible_collections.ferry.kube.plugins.module_utils.agent.wire import PROTOCOL_VERSION, ProtocolError

try:
    import blake3
    import msgpack
except ImportError:  # pragma: no cover
    blake3 = msgpack = None

HELLO, STATE, ENTRY, FILE, CHUNK, FILE_END, END, DONE, ERROR, BARRIER = range(1, 11)
CHECKPOINT_BYTES = 1024 * 1024 * 1024
CHECKPOINT_SECONDS = 30.0
ZERO = bytes(1 << 20)


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
    """Receives one sync on ``channel`` into ``root``."""

    def __init__(self, root, state_dir, channel, owner=True):
        self.root = os.path.abspath(root)
        self.state = SinkState(state_dir)
        self.channel = channel
        self.owner = owner
        self.stats = {'files': 0, 'files_written': 0, 'bytes_received': 0, 'bytes_reused': 0, 'deleted': 0}
        self.failed = []  # files that could not be rebuilt; reported at the next barrier

    def run(self):
        kind, hello, _payload = self.channel.recv()
        if kind != HELLO or hello.get('protocol') != PROTOCOL_VERSION:
            raise ProtocolError('expected HELLO with protocol %d' % PROTOCOL_VERSION)
        sync_id = hello['sync_id']
        manifest = self.state.manifest()
        done = self.state.journal(sync_id)
        self.files = dict(manifest['files'])
        self.files.update({p: r for p, r in done.items() if r['type'] == 'file'})
        self.index = {}
        for path, entry in self.files.items():
            offset = 0
            for digest, length in entry.get('chunks') or []:
                self.index.setdefault(digest, (path, offset, length))
                offset += length
        self._clean_temp_files()
        self.channel.send(STATE, {'files': {p: [e['size'], e['mtime_ns']] for p, e in self.files.items()},
                                  'chunks': list(self.index), 'done': list(done)})
        new_entries, links, pending = dict(done), [], []
        self.unsynced_bytes, last_checkpoint = 0, time.monotonic()
        with self.state.open_journal(sync_id) as journal:
            while True:
                kind, header, _payload = self.channel.recv()
                if kind == ENTRY:
                    entry = header['entry']
                    if entry['type'] == 'link':
                        links.append(entry)
                    elif header.get('unchanged') and entry['path'] in self.files:
                        kept = dict(self.files[entry['path']], **entry)
                        self._meta(entry['path'], kept)
                        entry = kept
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
                    self._finish(set(header['paths']), links, new_entries, sync_id)
                    return self.stats
                else:
                    raise ProtocolError('unexpected frame %d' % kind)

    def _checkpoint(self, journal, pending):
        """Make written files durable, then record them: the journal never claims data still in memory."""
        if pending:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
                if hasattr(os, 'syncfs'):
                    os.syncfs(fd)  # pylint: disable=no-member
                else:
                    os.sync()
            finally:
                os.close(fd)
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
        for directory, _dirs, names in os.walk(self.root):
            for name in names:
                if name.startswith('.ferry-tmp-'):
                    os.remove(os.path.join(directory, name))

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
            if os.path.lexists(full) or os.path.islink(full):
                _remove(full)
            os.symlink(entry['target'], full)
            self._meta(entry['path'], entry)

    def _local_chunk(self, digest):
        """The bytes of a chunk the sink already holds, verified; None when missing or changed on disk."""
        where = self.index.get(digest)
        if where is None:
            return None
        path, offset, length = where
        try:
            with open(self._full(path), 'rb') as handle:
                handle.seek(offset)
                data = handle.read(length)
        except OSError:
            return None
        return data if len(data) == length and blake3.blake3(data).digest() == digest else None

    def _receive_file(self, header):
        """Rebuild one file from CHUNK frames (data sent, or a hash of data the sink holds)."""
        entry = header['entry']
        full = self._full(entry['path'])
        # A file that exists is rebuilt beside it (its old chunks stay readable until the rename);
        # a new one is written in place: until the journal or manifest names it, it does not count.
        replacing = os.path.lexists(full)
        temp = os.path.join(os.path.dirname(full), '.ferry-tmp-%s' % os.path.basename(full)) if replacing else full
        ok, received, reused, chunks = True, 0, 0, []
        here = {}  # chunks already in this file: repeats (zero runs, copies) are read back from it
        with open(temp, 'w+b') as out:
            position = 0
            while True:
                kind, head, data = self.channel.recv()
                if kind == FILE_END:
                    break
                if kind != CHUNK:
                    raise ProtocolError('expected chunks of %s' % entry['path'])
                digest, length = head['h'], head['n']
                if head.get('s'):
                    received += len(data)
                    if blake3.blake3(data).digest() != digest:
                        data = None
                elif digest in here:
                    if here[digest] is None:
                        data = ZERO[:length]  # a zero run, left as a hole: nothing to read back
                    else:
                        out.flush()
                        data = os.pread(out.fileno(), length, here[digest])
                    reused += length
                else:
                    data = self._local_chunk(digest)
                    reused += length
                if data is None or len(data) != length:
                    ok = False
                    data = bytes(length)
                if data == ZERO[:length]:
                    here.setdefault(digest, None)
                    out.seek(length, os.SEEK_CUR)  # keep zero runs sparse
                else:
                    here.setdefault(digest, position)
                    out.write(data)
                chunks.append([digest, length])
                position += length
            out.truncate(entry['size'])
        self.stats['bytes_received'] += received
        self.stats['bytes_reused'] += reused
        if not ok:
            os.remove(temp)
            self.failed.append(entry['path'])
            return None
        if replacing:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            os.replace(temp, full)
        for digest, _length in (self.files.get(entry['path']) or {}).get('chunks') or []:
            if self.index.get(digest, (None,))[0] == entry['path']:
                del self.index[digest]  # the old content is gone: its chunks are no longer there
        entry = dict(entry, chunks=chunks)
        tree.apply_metadata(full, entry, self.owner)
        self.files[entry['path']] = entry
        offset = 0
        for digest, length in chunks:
            self.index[digest] = (entry['path'], offset, length)
            offset += length
        self.stats['files'] += 1
        self.stats['files_written'] += 1
        self.unsynced_bytes += entry['size']
        return entry

    def _finish(self, source_paths, links, entries, sync_id):
        # What the source no longer has goes, deepest first, so directories empty before they go.
        existing = [e['path'] for e in tree.scan(self.root)]
        for path in sorted((p for p in existing if p not in source_paths), key=lambda p: -p.count('/')):
            full = self._full(path)
            if os.path.lexists(full):
                _remove(full)
                self.stats['deleted'] += 1
        for link in links:
            full = self._full(link['path'])
            if os.path.lexists(full):
                _remove(full)
            os.link(self._full(link['target']), full)
        for path, entry in sorted(entries.items(), key=lambda kv: -kv[0].count('/')):
            if entry['type'] == 'dir':
                self._meta(path, entry)
        os.sync()  # everything on disk before the manifest says the sync is complete
        self.state.save_manifest({'sync_id': sync_id, 'time': time.time(),
                                  'files': {p: e for p, e in entries.items() if e['type'] == 'file'}})
        self.state.drop_journals()
        self.channel.send(DONE, dict(self.stats))


def _remove(full):
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    else:
        os.remove(full)


# -- source -------------------------------------------------------------------------------------------

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
        kind, header, _payload = self.channel.recv()
        if kind == ERROR:
            raise SyncError('the sink failed: %s' % header.get('message'))
        if kind != expected:
            raise ProtocolError('expected reply %d from the sink, got %d' % (expected, kind))
        return header

    def _barrier(self):
        self.channel.send(BARRIER, {})
        return self._reply(BARRIER)['failed']

    def run(self):
        self.channel.send(HELLO, {'protocol': PROTOCOL_VERSION, 'sync_id': self.sync_id})
        state = self._reply(STATE)
        remote = state['files']
        known = set(state['chunks'])
        paths = []
        entries = {}
        for entry in tree.scan(self.root):
            paths.append(entry['path'])
            entries[entry['path']] = entry
            if entry['type'] != 'file':
                self.channel.send(ENTRY, {'entry': entry})
                continue
            self.progress.files += 1
            previous = remote.get(entry['path'])
            # a file the journal lists as done is in ``remote`` with the size and mtime it was written
            # with: compared like any other, so a file changed since an interrupted run is sent again
            if previous and previous == [entry['size'], entry['mtime_ns']]:
                self.channel.send(ENTRY, {'entry': entry, 'unchanged': True})
                self.progress.bytes_scanned += entry['size']
            else:
                self._send_file(entry, known)
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
        self.channel.send(END, {'paths': paths})
        result = self._reply(DONE)
        self.progress.report(final=True)
        return dict(result, bytes_scanned=self.progress.bytes_scanned, bytes_sent=self.progress.bytes_sent,
                    wire_bytes=self.channel.bytes_sent, files=self.progress.files)

    def _send_file(self, entry, known):
        """One pass over the file: cut, hash, and send each chunk the sink does not hold."""
        full = os.path.join(self.root, entry['path'])
        self.channel.send(FILE, {'entry': entry})
        if entry['size']:
            for chunk in tree.chunker().cut_file(full):
                digest = blake3.blake3(chunk.data).digest()
                if digest in known:
                    self.channel.send(CHUNK, {'h': digest, 'n': chunk.length})
                else:
                    known.add(digest)
                    self.channel.send(CHUNK, {'h': digest, 'n': chunk.length, 's': True}, chunk.data)
                    self.progress.bytes_sent += chunk.length
        self.channel.send(FILE_END, {})
        self.progress.bytes_scanned += entry['size']
