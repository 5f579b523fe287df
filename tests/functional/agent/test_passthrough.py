"""Passthrough sync between two agent processes over mutual TLS: full, incremental, resumed, repaired."""

import hashlib
import json
import os
import random
import socket
import stat
import subprocess
import sys
import threading

from ansible_collections.ferry.kube.plugins.module_utils.agent import mover, wire
from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from counting_cutter import CountingCutter  # tests/lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
AGENT = os.path.join(ROOT, 'agent', 'ferry_agent.py')


def tls_dir(tmp_path, pki, role):
    directory = tmp_path / ('tls-' + role)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in pki.bundle(role, role + '-agent', ['127.0.0.1']).items():
        (directory / name).write_text(text)
    return str(directory)


def make_tree(root, seed=7, files=60):
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, 'docs', 'deep', 'er'), exist_ok=True)
    for i in range(files):
        size = rng.choice([0, 100, 5000, 70000, 400000, 1500000])
        with open(os.path.join(root, 'docs' if i % 3 else 'docs/deep', 'f%03d.bin' % i), 'wb') as handle:
            handle.write(rng.randbytes(size))
    with open(os.path.join(root, 'sparse.img'), 'wb') as handle:
        handle.seek(8 << 20)
        handle.write(b'end')
    with open(os.path.join(root, 'tail-zeros.img'), 'wb') as handle:  # the sink ends it with a hole: only a truncate gives its size
        handle.write(b'head')
        handle.truncate(3 << 20)
    os.symlink('docs/f001.bin', os.path.join(root, 'link-to-f001'))
    os.link(os.path.join(root, 'docs', 'f001.bin'), os.path.join(root, 'hard-f001'))
    os.chmod(os.path.join(root, 'docs', 'f002.bin'), 0o600)
    os.utime(os.path.join(root, 'docs', 'f004.bin'), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


def volumes(tmp_path, **tree):
    """A source tree (``make_tree(**tree)``), an empty target and the sink's state directory."""
    source, target, state = str(tmp_path / 'src'), str(tmp_path / 'dst'), str(tmp_path / 'state')
    os.makedirs(target)
    make_tree(source, **tree)
    return source, target, state


def snapshot(root):
    """Everything a restore must reproduce, per path."""
    result = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != '.ferry-state']
        for name in dirs + files:
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, root)
            info = os.lstat(full)
            item = {'mode': stat.S_IMODE(info.st_mode), 'type': stat.S_IFMT(info.st_mode)}
            if stat.S_ISLNK(info.st_mode):
                item['target'] = os.readlink(full)
            elif stat.S_ISREG(info.st_mode):
                with open(full, 'rb') as handle:
                    item['sha'] = hashlib.sha256(handle.read()).hexdigest()
                item['mtime'] = info.st_mtime_ns
                item['nlink'] = info.st_nlink
            result[rel] = item
    return result


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def sync(tmp_path, pki, source, target, state, sync_id):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.build', 'collections'))
    sink = subprocess.Popen([sys.executable, AGENT, 'sink', '--listen', '127.0.0.1:%d' % port, '--root', target, '--state', state,
                             '--tls', tls_dir(tmp_path, pki, 'sink'), '--once'], stdout=subprocess.PIPE, text=True, env=env)
    push = subprocess.run([sys.executable, AGENT, 'push', '--root', source, '--to', '127.0.0.1:%d' % port, '--tls', tls_dir(tmp_path, pki, 'source'),
                           '--sync-id', sync_id, '--progress-interval', '0.1'], capture_output=True, text=True, env=env, timeout=300, check=False)
    sink_out, _err = sink.communicate(timeout=60)
    assert push.returncode == 0, push.stdout + push.stderr + sink_out
    records = [json.loads(line) for line in push.stdout.splitlines()]
    assert records[-1]['event'] == 'result'
    return records


def test_full_then_incremental_sync(tmp_path):
    source, target, state = volumes(tmp_path)
    pki = SyncPKI.create('rel-1')
    records = sync(tmp_path, pki, source, target, state, 's1')
    first = records[-1]
    assert snapshot(source) == snapshot(target)
    assert os.stat(os.path.join(target, 'sparse.img')).st_blocks * 512 < 1 << 20  # sparse stays sparse
    assert os.stat(os.path.join(target, 'tail-zeros.img')).st_size == 3 << 20
    assert any(r['event'] == 'progress' for r in records) or first['seconds'] < 1
    assert first['files_written'] == first['files']
    # Mutate: edit inside a big file, append to one, delete one, shrink one, add one, rename a directory.
    big = max((os.path.join(source, 'docs', n) for n in os.listdir(os.path.join(source, 'docs'))), key=os.path.getsize)
    with open(big, 'r+b') as handle:
        handle.seek(700000)
        handle.write(b'changed in the middle')
    with open(os.path.join(source, 'docs', 'f005.bin'), 'ab') as handle:
        handle.write(b'appended')
    os.remove(os.path.join(source, 'docs', 'f007.bin'))
    shrunk = next(path for path in sorted(os.path.join(source, 'docs', 'f%03d.bin' % i) for i in range(10, 60))
                  if os.path.isfile(path) and path != big and os.path.getsize(path) >= 5000)
    os.truncate(shrunk, os.path.getsize(shrunk) // 2)
    with open(os.path.join(source, 'new.txt'), 'w', encoding='utf-8') as handle:
        handle.write('new file')
    os.rename(os.path.join(source, 'docs', 'deep', 'er'), os.path.join(source, 'docs', 'deep', 'renamed'))
    second = sync(tmp_path, pki, source, target, state, 's2')[-1]
    assert snapshot(source) == snapshot(target)
    assert second['deleted'] >= 2
    assert second['bytes_sent'] < 3 * 1024 * 1024  # only chunks around the edits travel
    assert second['bytes_reused'] > 0


def test_wrong_certificate_is_refused(tmp_path):
    source, target = str(tmp_path / 'src'), str(tmp_path / 'dst')
    os.makedirs(target)
    make_tree(source, files=6)
    ours, theirs = SyncPKI.create('ours'), SyncPKI.create('theirs')
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.build', 'collections'))
    sink = subprocess.Popen([sys.executable, AGENT, 'sink', '--listen', '127.0.0.1:%d' % port, '--root', target, '--state', str(tmp_path / 's'),
                             '--tls', tls_dir(tmp_path, ours, 'sink')], stdout=subprocess.PIPE, text=True, env=env)
    try:
        push = subprocess.run([sys.executable, AGENT, 'push', '--root', source, '--to', '127.0.0.1:%d' % port,
                               '--tls', tls_dir(tmp_path / 'other', theirs, 'source'), '--sync-id', 'x', '--connect-timeout', '5'],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert push.returncode != 0
        assert os.listdir(target) == []
    finally:
        sink.terminate()
        sink.wait(10)


class Cutter:
    """A channel wrapper that drops the connection after ``limit`` data frames, as a cut link does."""

    def __init__(self, channel, limit):
        self.channel = channel
        self.limit = limit
        self.sent = 0

    def __getattr__(self, name):
        return getattr(self.channel, name)

    def send(self, kind, header=None, payload=b'', compress=True):
        if kind == mover.CHUNK and (header or {}).get('s'):
            self.sent += 1
            if self.sent > self.limit:
                self.channel.sock.close()
                raise ConnectionResetError('link cut by the test')
        return self.channel.send(kind, header, payload, compress)


def run_in_process(tmp_path, pki, source, target, state, sync_id, cut_after=None):
    listener = socket.create_server(('127.0.0.1', 0))
    server_ctx = wire.server_context(*(os.path.join(tls_dir(tmp_path, pki, 'sink'), n) for n in ('ca.crt', 'tls.crt', 'tls.key')))
    client_ctx = wire.client_context(*(os.path.join(tls_dir(tmp_path, pki, 'source'), n) for n in ('ca.crt', 'tls.crt', 'tls.key')))
    outcome = {}

    def serve():
        conn, _peer = listener.accept()
        try:
            outcome['sink'] = mover.Sink(target, state, wire.Channel(wire.accept(conn, server_ctx, {'source'}))).run()
        except (EOFError, OSError, wire.ProtocolError) as exc:
            outcome['sink_error'] = exc
    thread = threading.Thread(target=serve)
    thread.start()
    channel = wire.Channel(wire.connect(listener.getsockname(), client_ctx))
    if cut_after is not None:
        channel = Cutter(channel, cut_after)
    try:
        outcome['source'] = mover.Source(source, channel, sync_id).run()
    except (OSError, mover.SyncError) as exc:
        outcome['source_error'] = exc
    thread.join(30)
    listener.close()
    return outcome


def test_cut_connection_resumes_and_never_looks_complete(tmp_path):
    source, target, state = volumes(tmp_path, seed=11, files=40)
    pki = SyncPKI.create('rel-2')
    cut = run_in_process(tmp_path, pki, source, target, state, 'resume-1', cut_after=12)
    assert 'source_error' in cut and 'sink' not in cut
    assert not os.path.exists(os.path.join(state, 'manifest.msgpack'))  # no manifest: not taken for complete
    assert os.path.exists(os.path.join(state, 'journal-resume-1'))
    resumed = run_in_process(tmp_path, pki, source, target, state, 'resume-1')
    assert 'source' in resumed, resumed
    assert snapshot(source) == snapshot(target)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(source) for f in fs if not os.path.islink(os.path.join(d, f)))
    assert resumed['source']['bytes_sent'] < total  # what reached the sink before the cut is not sent again


def test_a_target_file_changed_behind_ferrys_back_is_repaired(tmp_path):
    source, target, state = volumes(tmp_path, seed=3, files=12)
    pki = SyncPKI.create('rel-3')
    assert 'source' in run_in_process(tmp_path, pki, source, target, state, 'a')
    victim = max((os.path.join(target, 'docs', n) for n in os.listdir(os.path.join(target, 'docs'))), key=os.path.getsize)
    with open(victim, 'r+b') as handle:
        handle.write(b'corrupted by someone')
    changed = os.path.join(source, 'docs', os.path.basename(victim))
    with open(changed, 'ab') as handle:
        handle.write(b'x')  # the source changes too, so the sink must rebuild from its (corrupted) local chunks
    result = run_in_process(tmp_path, pki, source, target, state, 'b')
    assert 'source' in result, result
    assert snapshot(source) == snapshot(target)


def change_times(root):
    return {os.path.relpath(os.path.join(d, n), root): os.lstat(os.path.join(d, n)).st_ctime_ns
            for d, dirs, names in os.walk(root) if '.ferry-state' not in d for n in names}


def test_a_sync_with_nothing_changed_touches_nothing_and_tampering_is_undone(tmp_path):
    source, target, state = volumes(tmp_path, seed=5, files=20)
    pki = SyncPKI.create('rel-4')
    assert 'source' in run_in_process(tmp_path, pki, source, target, state, 'one')
    before = change_times(target)
    again = run_in_process(tmp_path, pki, source, target, state, 'two')['source']
    assert again['files_written'] == 0 and again['bytes_sent'] == 0
    assert change_times(target) == before  # no chmod, chown or utime on files that did not change
    # behind Ferry's back: a mode changed on one target file, bytes (size and mtime kept) in another
    docs = os.path.join(target, 'docs')
    candidates = [n for n in sorted(os.listdir(docs)) if n != 'f001.bin' and os.path.isfile(os.path.join(docs, n))]  # f001 is hard-linked
    chmodded, rewritten = [n for n in candidates if os.path.getsize(os.path.join(docs, n)) > 1000][:2]
    os.chmod(os.path.join(docs, chmodded), 0o640)
    path = os.path.join(docs, rewritten)
    info = os.stat(path)
    with open(path, 'r+b') as handle:
        handle.write(b'tampered')
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    repaired = run_in_process(tmp_path, pki, source, target, state, 'three')['source']
    assert snapshot(source) == snapshot(target)
    assert repaired["files_written"] == 2, (chmodded, rewritten, repaired)  # the two files the sink could no longer vouch for, nothing else


def test_a_reflinked_previous_version_is_patched_in_place(tmp_path, monkeypatch):
    """Where the volume can share extents, a changed file starts as a clone of its last version and only
    the chunks that moved or changed are written (simulated here by a full copy: ext4 has no reflinks)."""
    def fake_clone(source_fd, target_fd):
        os.lseek(source_fd, 0, os.SEEK_SET)
        while True:
            data = os.read(source_fd, 1 << 20)
            if not data:
                return True
            os.write(target_fd, data)
    source, target, state = str(tmp_path / 'src'), str(tmp_path / 'dst'), str(tmp_path / 'state')
    os.makedirs(os.path.join(source, 'db'))
    os.makedirs(target)
    rng = random.Random(9)
    with open(os.path.join(source, 'db', 'big.dat'), 'wb') as handle:
        handle.write(rng.randbytes(12 << 20))
    pki = SyncPKI.create('rel-5')
    assert 'source' in run_in_process(tmp_path, pki, source, target, state, 'one')
    with open(os.path.join(source, 'db', 'big.dat'), 'r+b') as handle:
        handle.seek(6 << 20)
        handle.write(rng.randbytes(4096))
    written = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd, data, offset):
        written.append(len(data))
        return real_pwrite(fd, data, offset)
    monkeypatch.setattr(mover.tree, 'clone_file', fake_clone)
    monkeypatch.setattr(os, 'pwrite', counting_pwrite)
    result = run_in_process(tmp_path, pki, source, target, state, 'two')
    assert 'source' in result, result
    assert snapshot(source) == snapshot(target)
    assert 0 < sum(written) <= 3 << 20  # the chunk around the edit, not the 12 MiB file
    os.truncate(os.path.join(source, 'db', 'big.dat'), 5 << 20)  # now shorter than the clone it is rebuilt from
    assert 'source' in run_in_process(tmp_path, pki, source, target, state, 'three')
    assert snapshot(source) == snapshot(target)
    assert os.path.getsize(os.path.join(target, 'db', 'big.dat')) == 5 << 20


def test_the_sink_truncates_only_files_whose_size_the_data_does_not_reach(tmp_path, monkeypatch):
    """XFS writes a file back and waits on every ftruncate of a file with data not yet on disk: the sink
    truncates only where the written data ends before the file does (a trailing hole)."""
    source, target, state = volumes(tmp_path, seed=13, files=30)
    truncated = []
    real_ftruncate = os.ftruncate

    def recording_ftruncate(fd, length):
        truncated.append(os.readlink('/proc/self/fd/%d' % fd))
        return real_ftruncate(fd, length)
    monkeypatch.setattr(os, 'ftruncate', recording_ftruncate)
    outcome = run_in_process(tmp_path, SyncPKI.create('rel-6'), source, target, state, 'trunc')
    assert 'sink' in outcome, outcome
    assert snapshot(source) == snapshot(target)
    assert [os.path.relpath(path, target) for path in truncated] == ['tail-zeros.img']


def test_big_files_are_read_and_written_around_the_page_cache_and_reused_chunks_still_land(tmp_path, monkeypatch):
    """The source reads a file of a MiB or more with a DirectReader; the sink writes a new one through a
    SequentialWriter (direct, zero blocks as holes); a chunk the sink holds already (a repeat in the same
    file, or another file's) first writes out what it gathered."""
    rng = random.Random(17)
    source, target, state = str(tmp_path / 'src'), str(tmp_path / 'dst'), str(tmp_path / 'state')
    os.makedirs(source)
    os.makedirs(target)
    block = rng.randbytes(6 << 20)  # many chunks: cut the same wherever they recur, but for the first one or two
    files = {
        'repeats.bin': block + rng.randbytes(1 << 20) + block,  # its second copy comes from its own first (or copy.bin)
        'copy.bin': rng.randbytes(512 << 10) + block,           # whichever of the two comes second is copied on the sink
        'holes.bin': rng.randbytes(1 << 20) + bytes(4 << 20) + rng.randbytes(100001),
        'small.bin': rng.randbytes(300 << 10),                   # under a MiB: through the page cache
    }
    for name, data in files.items():
        with open(os.path.join(source, name), 'wb') as handle:
            handle.write(data)
    gathered = []
    real_writer = mover.direct_io.SequentialWriter

    class CountingWriter(real_writer):
        def __init__(self, path, handle):
            super().__init__(path, handle)
            gathered.append([os.path.basename(path), 0])

        def write(self, data, zeros=False):
            gathered[-1][1] += data if zeros else len(data)
            super().write(data, zeros)
    monkeypatch.setattr(mover.direct_io, 'SequentialWriter', CountingWriter)
    read = []
    real_reader = mover.direct_io.DirectReader

    class RecordingReader(real_reader):
        def __init__(self, path):
            super().__init__(path)
            read.append(os.path.basename(path))
    monkeypatch.setattr(mover.direct_io, 'DirectReader', RecordingReader)
    outcome = run_in_process(tmp_path, SyncPKI.create('rel-7'), source, target, state, 'direct')
    assert 'sink' in outcome and 'source' in outcome, outcome
    assert snapshot(source) == snapshot(target)
    written = dict(gathered)
    assert sorted(read) == sorted(written) == ['copy.bin', 'holes.bin', 'repeats.bin']
    assert written['holes.bin'] == len(files['holes.bin'])
    assert written['repeats.bin'] < len(files['repeats.bin']) - (4 << 20)  # a repeat is placed from what the sink holds
    assert written['repeats.bin'] + written['copy.bin'] < len(files['repeats.bin']) + len(files['copy.bin']) - 2 * (4 << 20)
    assert os.stat(os.path.join(target, 'holes.bin')).st_blocks * 512 < len(files['holes.bin']) - (3 << 20)  # the zeros stayed holes


def test_every_way_of_reading_a_file_cuts_it_the_same(tmp_path):
    """Small files are read in one read (and cut only past a chunk's minimum), big ones direct: the chunks
    must be those of cutting the whole file, or a file would not match its own chunks from the last sync."""
    rng = random.Random(19)
    sizes = [1, 100, mover.tree.MIN_CHUNK, mover.tree.MIN_CHUNK + 1, 400000, mover.direct_io.DIRECT_MIN - 1,
             mover.direct_io.DIRECT_MIN, 3 * mover.direct_io.DIRECT_MIN + 12345]
    for size in sizes:
        path = str(tmp_path / ('f%d' % size))
        with open(path, 'wb') as handle:
            handle.write(rng.randbytes(size))
        expected = [bytes(chunk.data) for chunk in mover.tree.chunker().cut_file(path)]
        assert [bytes(data) for data in mover._chunks(path, size)] == expected, size  # pylint: disable=protected-access
        # a file that grew since the walk (a live volume) is read as a big file, not into memory whole
        assert [bytes(data) for data in mover._chunks(path, 100)] == expected, size  # pylint: disable=protected-access


def test_a_file_that_appears_after_the_sinks_listing_is_rebuilt_beside_it(tmp_path, monkeypatch):
    """A new file is created in place only if nothing is at its path: one the sink's listing missed (it
    appeared since) is rebuilt beside it and renamed over it, as a file the sink knew of is."""
    source, target, state = volumes(tmp_path, seed=23, files=9)
    late = os.path.join(target, 'docs', 'f001.bin')
    os.makedirs(os.path.dirname(late))
    with open(late, 'wb') as handle:
        handle.write(b'written by someone after the listing')
    os.link(late, os.path.join(tmp_path, 'other-name'))
    real_list_tree = mover.tree.list_tree
    monkeypatch.setattr(mover.tree, 'list_tree', lambda root: {p: i for p, i in real_list_tree(root).items() if p != 'docs/f001.bin'})
    outcome = run_in_process(tmp_path, SyncPKI.create('rel-8'), source, target, state, 'late')
    assert 'sink' in outcome, outcome
    assert snapshot(source) == snapshot(target)
    with open(os.path.join(tmp_path, 'other-name'), 'rb') as handle:
        assert handle.read() == b'written by someone after the listing'  # replaced by a rename, not written into


def test_only_big_files_start_their_writeback_at_once(tmp_path, monkeypatch):
    """Small files are left to the kernel's flusher (it writes many at once); a big file's writeback
    starts when it is complete, so the sync at the end finds little left to write."""
    source, target, state = volumes(tmp_path, seed=29, files=30)
    started = []
    monkeypatch.setattr(mover.tree, 'start_writeback', lambda fd: started.append(os.fstat(fd).st_size))
    outcome = run_in_process(tmp_path, SyncPKI.create('rel-9'), source, target, state, 'writeback')
    assert 'sink' in outcome, outcome
    assert snapshot(source) == snapshot(target)
    inodes = {}  # (hard links once)
    for directory, _dirs, names in os.walk(source):
        for info in (os.lstat(os.path.join(directory, name)) for name in names):
            if stat.S_ISREG(info.st_mode):
                inodes[info.st_ino] = info.st_size
    big = [size for size in inodes.values() if size >= mover.direct_io.DIRECT_MIN]
    assert started and sorted(started) == sorted(big)


def test_a_changed_file_is_cut_again_only_where_it_changed(tmp_path, monkeypatch):
    """The sink tells the source how it cut each file of several chunks; the source cuts a changed one
    again only around its changes, and the chunks are those of cutting the whole file."""
    rng = random.Random(31)
    source, target, state = str(tmp_path / 'src'), str(tmp_path / 'dst'), str(tmp_path / 'state')
    os.makedirs(os.path.join(source, 'db'))
    os.makedirs(target)
    with open(os.path.join(source, 'db', 'table.dat'), 'wb') as handle:
        handle.write(rng.randbytes(12 << 20))
    with open(os.path.join(source, 'db', 'app.log'), 'wb') as handle:
        handle.write(b''.join(b'line %d of the log\n' % n for n in range(150000)))
    pki = SyncPKI.create('rel-10')
    assert 'source' in run_in_process(tmp_path, pki, source, target, state, 'one')
    with open(os.path.join(source, 'db', 'table.dat'), 'r+b') as handle:  # a write in the middle, as a database does
        handle.seek((6 << 20) + 12345)
        handle.write(rng.randbytes(300 << 10))
    with open(os.path.join(source, 'db', 'app.log'), 'ab') as handle:  # and a log that grows
        handle.write(b'one more line\n' * 5000)
    cut = []
    real_chunker = mover.tree.chunker
    monkeypatch.setattr(mover.tree, 'chunker', lambda: CountingCutter(real_chunker(), cut))
    outcome = run_in_process(tmp_path, pki, source, target, state, 'two')
    assert 'sink' in outcome, outcome
    assert snapshot(source) == snapshot(target)
    assert 0 < sum(cut) < 4 << 20, 'only around the write and the end of the log'
    recorded = mover.SinkState(state).manifest()['files']
    for name in ('table.dat', 'app.log'):
        whole = [[mover.blake3.blake3(bytes(chunk.data)).digest(), chunk.length]
                 for chunk in real_chunker().cut_file(os.path.join(source, 'db', name))]
        assert recorded['db/' + name]['chunks'] == whole, 'the same chunks as cutting the whole file'


def test_a_volume_whose_state_and_paths_outgrow_a_frame_header_still_syncs(tmp_path, monkeypatch):
    """The sink's state (every file, every chunk) and the source's list of paths travel as payloads,
    which may be large; a header is limited (wire.MAX_HEADER), and a big volume's state is not."""
    monkeypatch.setattr(wire, 'MAX_HEADER', 1024)
    source, target, state = volumes(tmp_path, seed=37, files=200)
    pki = SyncPKI.create('rel-11')
    assert 'sink' in run_in_process(tmp_path, pki, source, target, state, 'one')
    again = run_in_process(tmp_path, pki, source, target, state, 'two')
    assert 'sink' in again, again
    assert again['source']['bytes_sent'] == 0
    assert snapshot(source) == snapshot(target)


def test_a_symlink_at_a_temporary_files_name_is_not_written_through(tmp_path):
    source, target, state = volumes(tmp_path, seed=41, files=12)
    pki = SyncPKI.create('rel-12')
    assert 'sink' in run_in_process(tmp_path, pki, source, target, state, 'one')
    name = next(n for n in sorted(os.listdir(os.path.join(source, 'docs'))) if n.endswith('.bin') and os.path.getsize(os.path.join(source, 'docs', n)))
    with open(os.path.join(source, 'docs', name), 'ab') as handle:
        handle.write(b'changed')
    outside = tmp_path / 'outside.txt'
    outside.write_bytes(b'not the volume')
    os.symlink(str(outside), os.path.join(target, 'docs', '.ferry-tmp-' + name))
    outcome = run_in_process(tmp_path, pki, source, target, state, 'two')
    assert 'sink' in outcome, outcome
    assert outside.read_bytes() == b'not the volume'
    assert snapshot(source) == snapshot(target)
