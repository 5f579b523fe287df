"""The backup's walk in a child process, unchanged entries written back as packed bytes, and direct reads ahead."""

import fcntl
import itertools
import os
import stat
import struct
import threading

import pytest
from ansible_collections.ferry.kube.plugins.module_utils.agent import tree as agent_tree
from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io
from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup, start_walks
from ansible_collections.ferry.kube.plugins.module_utils.pool.restore import Restore
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import ParentTree, read_tree, read_tree_records
from ansible_collections.ferry.kube.plugins.module_utils.pool.walker import TreeWalk

from counting_cutter import CountingCutter  # tests/lib
from test_pool_engine import describe, make_tree, reopen  # pylint: disable=import-error


@pytest.fixture
def source(tmp_path):
    root = str(tmp_path / 'src')
    make_tree(root)
    for index in range(600):  # more than a batch of the walk, over several directories
        directory = os.path.join(root, 'many', 'd%d' % (index % 7))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, 'f%04d' % index), 'wb') as handle:
            handle.write(b'x' * index)
    os.makedirs(os.path.join(root, agent_tree.STATE_DIR_NAME))
    return root


def child_exists(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


@pytest.mark.parametrize('file_xattrs', [True, False])
def test_the_walk_in_a_child_gives_exactly_the_entries_of_scan(source, file_xattrs):
    expected = list(agent_tree.scan(source, identity=True, file_xattrs=file_xattrs))
    tree_walk = TreeWalk(source, identity=True, file_xattrs=file_xattrs)
    assert tree_walk.pid is not None, 'walked by a child process'
    pid = tree_walk.pid
    assert list(tree_walk) == expected
    assert len(expected) > 600
    assert not child_exists(pid), 'the child was collected'


def test_a_walk_that_fails_raises_in_the_backup_and_leaves_no_child(tmp_path):
    tree_walk = TreeWalk(str(tmp_path / 'missing'))
    pid = tree_walk.pid
    with pytest.raises(OSError, match='cannot read directory'):
        list(tree_walk)
    assert not child_exists(pid)


def test_a_walk_never_read_is_stopped_and_collected(source):
    tree_walk = TreeWalk(source)
    pid = tree_walk.pid
    tree_walk.close()
    assert not child_exists(pid)
    tree_walk.close()  # twice is harmless


def test_an_incremental_writes_the_same_tree_as_a_backup_that_packs_every_entry(pool, source, tmp_path):
    Backup(pool, {'data': source}).run()
    with open(os.path.join(source, 'many/d3/f0003'), 'ab') as handle:
        handle.write(b'changed')
    os.remove(os.path.join(source, 'many/d1/f0001'))
    with open(os.path.join(source, 'many/d1/new'), 'wb') as handle:
        handle.write(b'new file')
    walks = start_walks({'data': source})  # started ahead, as the CLI does
    incremental = Backup(reopen(pool), {'data': source}, walks=walks).run()
    assert incremental['stats']['files_changed'] == 2
    packed_anew = Backup(reopen(pool), {'data': source}, parent=None).run()
    assert packed_anew['stats']['files_changed'] == packed_anew['stats']['files']
    entries = list(read_tree(reopen(pool), incremental['volumes']['data']['tree']))
    assert entries == list(read_tree(reopen(pool), packed_anew['volumes']['data']['tree']))
    assert incremental['volumes']['data']['tree'] == packed_anew['volumes']['data']['tree'], 'byte-identical tree blobs'
    assert not any(tree_walk.pid for tree_walk in walks.values())
    target = str(tmp_path / 'out')
    Restore(reopen(pool), incremental, {'data': target}).run()
    expected = describe(source)
    del expected[agent_tree.STATE_DIR_NAME]
    assert describe(target) == expected


def test_the_parent_tree_is_merged_by_path_whatever_was_added_or_removed(pool, source):
    point = Backup(pool, {'data': source}).run()
    records = list(read_tree_records(pool, point['volumes']['data']['tree']))
    paths = [entry['path'] for entry, _packed in records]
    parent = ParentTree(records)
    assert parent.find_record('a-path-before-all')[0] is None
    assert parent.find_record(paths[1]) == records[1]
    assert parent.find_record(paths[3] + '-added') == (None, None)
    assert parent.find_record(paths[5])[0] == records[5][0]
    assert parent.find(paths[-1]) == records[-1][0]
    assert parent.find('zzz-after-all') is None


@pytest.mark.parametrize('reads_ahead', [1, 3])
@pytest.mark.parametrize('size', [0, 1, 4096, 3 * 65536, 3 * 65536 + 123, 7 * 65536 - 1])
def test_direct_reads_ahead_give_the_file_as_it_is(tmp_path, monkeypatch, size, reads_ahead):
    monkeypatch.setattr(direct_io, 'BUFFER_SIZE', 65536)  # several blocks ahead even for a small file
    monkeypatch.setattr(direct_io, 'READS_AHEAD', reads_ahead)
    path = str(tmp_path / 'data')
    data = os.urandom(size)
    with open(path, 'wb') as handle:
        handle.write(data)
    result = []

    def read():  # a new thread: its buffers are allocated at the patched size
        got = bytearray()
        piece = bytearray(50000)
        with direct_io.DirectReader(path) as reader:
            while True:
                count = reader.readinto(piece)
                if not count:
                    break
                got += piece[:count]
        result.append(bytes(got))

    worker = threading.Thread(target=read)
    worker.start()
    worker.join()
    assert result == [data]


def test_a_restore_reads_each_stored_byte_about_once(pool, tmp_path, monkeypatch):
    from ansible_collections.ferry.kube.plugins.module_utils.pool import packcache, restore as restore_module
    from ansible_collections.ferry.kube.plugins.module_utils.pool.check import stored_packs
    root = str(tmp_path / 'two-big')
    os.makedirs(os.path.join(root, 'small'))
    for index in range(300):
        with open(os.path.join(root, 'small', 'f%03d' % index), 'wb') as handle:
            handle.write(os.urandom(100 + 37 * index))
    Backup(pool, {'data': root}, workers=1).run()  # small files in packs of their own, in walk order
    for name in ('a.bin', 'b.bin'):  # then cut side by side by two workers: they share packs
        with open(os.path.join(root, name), 'wb') as handle:
            handle.write(os.urandom(6 * 1024 * 1024))
    point = Backup(reopen(pool), {'data': root}, workers=2).run()
    read = []
    original = packcache.PackCache._read_direct

    def counting(self, key, offset, end):
        view = original(self, key, offset, end)
        if view is not None:
            read.append((key, offset, offset + len(view)))
        return view

    monkeypatch.setattr(packcache.PackCache, '_read_direct', counting)
    # threads, so the reads are counted here (worker processes read the same way)
    monkeypatch.setattr(restore_module, 'LocalBackend', type('NotLocal', (), {}))
    target = str(tmp_path / 'out')
    Restore(reopen(pool), point, {'data': target}).run()
    assert describe(target) == describe(root)
    data_packs = sum(size for key, size in stored_packs(reopen(pool)).values() if key.startswith('data/'))
    total = sum(end - start for _key, start, end in read)
    overlaps = [min(one[2], other[2]) - max(one[1], other[1]) for one, other in itertools.combinations(read, 2)
                if one[0] == other[0] and min(one[2], other[2]) > max(one[1], other[1])]
    # Reads share bytes only where a batch's read spans a gap of at most SPAN_GAP between its chunks and
    # another batch needs what is in it (a file's short last chunk, depending on how the two workers'
    # chunks interleaved in the packs): never a chunk of a big file read twice, never a pack read whole twice.
    assert all(overlap <= restore_module.SPAN_GAP for overlap in overlaps), overlaps
    assert 0 < total - sum(overlaps) <= data_packs, 'no byte read twice outside such gaps'


def test_a_changed_file_is_cut_again_only_where_it_changed(pool, tmp_path, monkeypatch):
    import random
    from ansible_collections.ferry.kube.plugins.module_utils.pool import backup as backup_module
    root = str(tmp_path / 'db')
    os.makedirs(root)
    rng = random.Random(5)
    files = {'table.dat': rng.randbytes(12 * 1024 * 1024), 'app.log': b''.join(b'line %d of the log\n' % n for n in range(200000))}
    for name, data in files.items():
        with open(os.path.join(root, name), 'wb') as handle:
            handle.write(data)
    Backup(pool, {'data': root}).run()
    with open(os.path.join(root, 'table.dat'), 'r+b') as handle:  # a write in the middle, as a database does
        handle.seek(6 * 1024 * 1024 + 12345)
        handle.write(rng.randbytes(300 * 1024))
    with open(os.path.join(root, 'app.log'), 'ab') as handle:  # and a log that grows
        handle.write(b'one more line\n' * 5000)
    cut = []
    real_cutter = backup_module.Backup._cutter
    monkeypatch.setattr(backup_module.Backup, '_cutter', lambda self: CountingCutter(real_cutter(self), cut))
    incremental = Backup(reopen(pool), {'data': root}).run()
    changed_bytes = sum(cut)
    cut.clear()
    whole = Backup(reopen(pool), {'data': root}, parent=None).run()  # every file cut from its first byte
    assert sum(cut) == sum(os.path.getsize(os.path.join(root, name)) for name in files)
    opened = reopen(pool)
    chunks = [{entry['path']: entry.get('chunks') for entry in read_tree(opened, point['volumes']['data']['tree'])} for point in (incremental, whole)]
    assert chunks[0] == chunks[1], 'the same chunks as cutting the whole files'
    assert changed_bytes < 4 * 1024 * 1024, 'only around the write and the end of the log were cut again'
    target = str(tmp_path / 'out')
    Restore(reopen(pool), incremental, {'data': target}).run()
    assert describe(target) == describe(root)


def _statfs_saying(magic, result=0):
    """A stand-in for fstatfs(2) that reports a file system of type ``magic``."""
    def fstatfs(_handle, buffer):
        struct.pack_into('l', buffer, 0, magic)
        return result
    return fstatfs


def test_direct_writes_go_around_the_cache_except_on_btrfs_with_checksums(tmp_path, monkeypatch):
    with open(tmp_path / 'file', 'wb') as handle:
        monkeypatch.setattr(direct_io, '_fstatfs', _statfs_saying(0x58465342))  # XFS
        assert direct_io.direct_writes_bypass_cache(handle.fileno())
        monkeypatch.setattr(direct_io, '_fstatfs', _statfs_saying(direct_io.BTRFS_SUPER_MAGIC, result=-1))  # fstatfs failed: as before
        assert direct_io.direct_writes_bypass_cache(handle.fileno())
        monkeypatch.setattr(direct_io, '_fstatfs', _statfs_saying(direct_io.BTRFS_SUPER_MAGIC))
        for flags, bypass in ((0, False), (direct_io.FS_NOCOW_FL, True)):  # a nodatacow file has no checksums

            def ioctl(_handle, request, buffer, flags=flags):
                assert request == direct_io.FS_IOC_GETFLAGS
                buffer.value = flags
            monkeypatch.setattr(fcntl, 'ioctl', ioctl)
            assert direct_io.direct_writes_bypass_cache(handle.fileno()) is bypass


def test_sync_file_range_writes_back_and_says_so_only_when_that_failed(tmp_path):
    with open(tmp_path / 'file', 'wb') as handle:
        handle.write(os.urandom(100000))
        handle.flush()
        agent_tree.sync_file_range(handle.fileno(), 0, 0, agent_tree.SYNC_FILE_RANGE_WRITE)
        agent_tree.sync_file_range(handle.fileno(), 0, 0, agent_tree.SYNC_FILE_RANGE_WAIT_BEFORE | agent_tree.SYNC_FILE_RANGE_WRITE
                                   | agent_tree.SYNC_FILE_RANGE_WAIT_AFTER)
    with pytest.raises(OSError):
        agent_tree.sync_file_range(987654, 0, 0, agent_tree.SYNC_FILE_RANGE_WRITE)  # EBADF is an error, not "unsupported"


def written_in_a_new_thread(path, pieces, direct=None):
    """``SequentialWriter.finish()`` of a new file at ``path`` written with ``pieces``, in a new thread: its
    buffer is allocated at the size the test patched. ``direct``: whether the writer must have gone direct."""
    result = []

    def write():
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            writer = direct_io.SequentialWriter(path, handle)
            if direct is not None:
                assert (writer.direct is not None) == direct
            for piece in pieces:
                writer.write(piece)
            result.append(writer.finish())
        finally:
            os.close(handle)

    worker = threading.Thread(target=write)
    worker.start()
    worker.join()
    assert len(result) == 1, 'the writer failed'
    return result[0]


def test_where_direct_writes_would_be_buffered_the_writer_pushes_each_buffer_out_behind_it(tmp_path, monkeypatch):
    monkeypatch.setattr(direct_io, 'BUFFER_SIZE', 4 * 65536)
    monkeypatch.setattr(direct_io, 'direct_writes_bypass_cache', lambda handle: False)
    calls = []
    for module in (direct_io, agent_tree):  # (the wait is direct_io's call, the start tree.start_writeback's)
        monkeypatch.setattr(module, 'sync_file_range', lambda handle, offset, length, flags: calls.append(('sync', offset, length, flags)))
    monkeypatch.setattr(direct_io.os, 'posix_fadvise', lambda handle, offset, length, advice: calls.append(('drop', offset, length, advice)))
    data = os.urandom(5 * 65536) + bytes(3 * 65536) + os.urandom(1000)  # a hole in the second buffer
    path = str(tmp_path / 'written')
    assert written_in_a_new_thread(path, [data[:70000], data[70000:]], direct=False) == (len(data), len(data))
    with open(path, 'rb') as handle:
        assert handle.read() == data
    start = direct_io.SYNC_FILE_RANGE_WRITE
    write_behind = direct_io.SYNC_FILE_RANGE_WAIT_BEFORE | direct_io.SYNC_FILE_RANGE_WRITE | direct_io.SYNC_FILE_RANGE_WAIT_AFTER
    size = 4 * 65536
    assert calls == [
        ('sync', 0, size, start),
        ('sync', size, size, start), ('sync', 0, size, write_behind), ('drop', 0, size, os.POSIX_FADV_DONTNEED),
        ('sync', 2 * size, 1000, start), ('sync', size, size, write_behind), ('drop', size, size, os.POSIX_FADV_DONTNEED),
    ]


def test_only_whole_blocks_of_zeros_become_holes_whatever_bytes_they_start_and_end_with(tmp_path, monkeypatch):
    monkeypatch.setattr(direct_io, 'BUFFER_SIZE', 8 * 65536)
    block = direct_io.SequentialWriter.HOLE_BLOCK
    rims = bytearray(block)  # zeros at both ends (what is looked at first), data inside
    rims[block // 2] = 7
    head = bytearray(block)
    head[-1] = 1
    tail = bytearray(block)
    tail[0] = 1
    data = (os.urandom(block) + bytes(block) + bytes(rims) + bytes(head) + bytes(tail) + bytes(2 * block) + os.urandom(100) + bytes(block - 100)
            + bytes(5000))
    path = str(tmp_path / 'sparse')
    pieces = [data[start:start + 100000] for start in range(0, len(data), 100000)]  # writes that do not line up with the blocks
    # (the short last block, all zeros, is left to the caller's truncate)
    assert written_in_a_new_thread(path, pieces) == (len(data), 8 * block)
    os.truncate(path, len(data))
    with open(path, 'rb') as handle:
        assert handle.read() == data
        if not reports_holes(str(tmp_path)):
            pytest.skip('this file system does not report holes')
        holes = [offset for offset in range(0, 8 * block, block) if os.lseek(handle.fileno(), offset, os.SEEK_HOLE) == offset]
    assert holes == [block, 5 * block, 6 * block]


def reports_holes(directory):
    """Whether the file system of ``directory`` tells holes from data (SEEK_HOLE)."""
    probe = os.path.join(directory, 'hole-probe')
    with open(probe, 'wb') as handle:
        handle.truncate(1024 * 1024)
        handle.seek(512 * 1024)
        handle.write(b'data')
        handle.flush()
        try:
            return os.lseek(handle.fileno(), 0, os.SEEK_HOLE) == 0
        except OSError:
            return False


MODES = {'plain': 0o644, 'private': 0o600, 'read-only': 0o444, 'none': 0o000, 'group': 0o664, 'setuid': 0o4755, 'setgid': 0o2750,
         'big-read-only': 0o444}


def test_a_restore_gives_back_each_mode_and_owner_and_changes_only_what_the_new_file_lacks(pool, tmp_path, monkeypatch):
    root = tmp_path / 'modes'
    root.mkdir()
    for name, mode in MODES.items():
        # (a big file is written direct, through a second descriptor opened by its path: its owner must be able to)
        (root / name).write_bytes(os.urandom(2 * direct_io.DIRECT_MIN) if name.startswith('big') else name.encode())
        os.chmod(root / name, mode)
    if os.geteuid() == 0:
        os.chown(root / 'group', 1234, 5678)
    point = Backup(pool, {'data': str(root)}).run()
    Restore(reopen(pool), point, {'data': str(tmp_path / 'out')}).run()
    assert describe(str(tmp_path / 'out')) == describe(str(root))

    # one file at a time, as a restore worker sets them: a chmod only where the creation could not give the mode
    chmods = []
    real_chmod = os.chmod
    monkeypatch.setattr(agent_tree.os, 'chmod', lambda path, mode: (chmods.append(mode), real_chmod(path, mode)))
    for entry in read_tree(pool, point['volumes']['data']['tree']):
        if entry['type'] != 'file':
            continue
        target = str(tmp_path / ('again-' + entry['path']))
        created = agent_tree.creation_mode(entry)
        handle = agent_tree.create_file(target, mode=created)
        try:
            agent_tree.apply_metadata(handle, entry, current=os.fstat(handle))
        finally:
            os.close(handle)
        assert stat.S_IMODE(os.stat(target).st_mode) == entry['mode']
        if os.geteuid() == 0:
            assert not created & 0o070  # until the chown, no group may open it
    umask = os.umask(0)
    os.umask(umask)
    root_restores_owners = os.geteuid() == 0
    expected = [mode for name, mode in MODES.items()
                if mode & 0o7000 or mode & umask or (root_restores_owners and (mode & 0o070 or name == 'group'))]
    assert sorted(chmods) == sorted(expected)
    assert agent_tree.creation_mode({'mode': 0o444}, owner=False, reopened=True) == 0o644
    # the group's bits from the start where the new file gets its own group (root: its group or a set-group-ID directory's)
    assert agent_tree.creation_mode({'mode': 0o664, 'gid': 5678}, group=5678) == 0o664
    shared = tmp_path / 'shared'
    shared.mkdir()
    assert agent_tree.new_file_group(str(shared)) == os.getegid()
    if os.geteuid() == 0:
        assert agent_tree.creation_mode({'mode': 0o664, 'gid': 5678}, group=0) == 0o604
        os.chown(shared, -1, 5678)
        os.chmod(shared, 0o2775)
        assert agent_tree.new_file_group(str(shared)) == 5678


def test_where_direct_writes_would_be_buffered_packs_are_written_back_at_once_and_dropped_once_synced(tmp_path, monkeypatch):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
    monkeypatch.setattr(direct_io, 'direct_writes_bypass_cache', lambda handle: False)
    opened_direct = []
    monkeypatch.setattr(direct_io, 'open_direct', lambda *args: opened_direct.append(args))
    calls = []
    for module in (direct_io, agent_tree):  # (the wait is direct_io's call, the start tree.start_writeback's)
        monkeypatch.setattr(module, 'sync_file_range', lambda handle, offset, length, flags: calls.append(('sync', offset, length, flags)))
    monkeypatch.setattr(direct_io.os, 'posix_fadvise', lambda handle, offset, length, advice: calls.append(('drop', offset, length, advice)))
    backend = LocalBackend(str(tmp_path / 'pool'))
    pack = os.urandom(direct_io.DIRECT_MIN + 5000)
    backend.write_deferred('data/ab/' + 'ab' * 32, pack)
    assert not opened_direct
    assert calls == [('sync', 0, 0, direct_io.SYNC_FILE_RANGE_WRITE)]  # its writeback started, not waited for
    backend.flush()  # (a checkpoint: fsync, then the clean pages let go)
    assert calls[1:] == [('drop', 0, 0, os.POSIX_FADV_DONTNEED)]
    assert backend.read('data/ab/' + 'ab' * 32) == pack
