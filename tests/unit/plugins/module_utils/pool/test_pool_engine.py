"""The storage pool engine on a local directory: backup, restore, incrementals, keys, damage, retention, prune, copy, locks."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.pool import backup as backup_mod, format as fmt, restore as restore_mod
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup, read_metadata
from ansible_collections.ferry.kube.plugins.module_utils.pool.check import check
from ansible_collections.ferry.kube.plugins.module_utils.pool.packcache import PackCache
from ansible_collections.ferry.kube.plugins.module_utils.pool.copy import copy_points
from ansible_collections.ferry.kube.plugins.module_utils.pool.prune import forget, prune
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool, PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.restore import Restore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
FERRY = os.path.join(ROOT, 'bin', 'ferry')


def make_tree(root, seed=1):
    rng = __import__('random').Random(seed)
    os.makedirs(os.path.join(root, 'dir/sub'), exist_ok=True)
    with open(os.path.join(root, 'dir/big.bin'), 'wb') as handle:
        handle.write(rng.randbytes(3 * 1024 * 1024))
    with open(os.path.join(root, 'dir/sub/text.log'), 'w', encoding='ascii') as handle:
        handle.write(''.join('line %d %s\n' % (i, rng.choice('abc')) for i in range(50000)))
    with open(os.path.join(root, 'empty'), 'wb'):
        pass
    with open(os.path.join(root, 'sparse'), 'wb') as handle:
        handle.truncate(16 * 1024 * 1024)
        handle.seek(8 * 1024 * 1024)
        handle.write(b'middle')
    os.symlink('dir/big.bin', os.path.join(root, 'link-to-big'))
    os.symlink('nowhere', os.path.join(root, 'dangling'))
    os.link(os.path.join(root, 'dir/big.bin'), os.path.join(root, 'hard'))
    os.chmod(os.path.join(root, 'dir/sub/text.log'), 0o640)
    os.chmod(os.path.join(root, 'dir/sub'), 0o750)
    try:
        os.setxattr(os.path.join(root, 'empty'), 'user.ferry', b'kept')
    except OSError:
        pass
    os.utime(os.path.join(root, 'dir/big.bin'), ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))


def describe(root):
    """Everything a restore must bring back, per path."""
    result = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            full = os.path.join(top, name)
            info = os.lstat(full)
            item = {'mode': stat.S_IMODE(info.st_mode), 'type': stat.S_IFMT(info.st_mode), 'uid': info.st_uid, 'gid': info.st_gid}
            if stat.S_ISLNK(info.st_mode):
                item['target'] = os.readlink(full)
            elif stat.S_ISREG(info.st_mode):
                item.update(mtime=info.st_mtime_ns, nlink=info.st_nlink)
                with open(full, 'rb') as handle:
                    item['data'] = hash(handle.read())
                try:
                    item['xattrs'] = {n: os.getxattr(full, n) for n in os.listxattr(full)}
                except OSError:
                    pass
            result[os.path.relpath(full, root)] = item
    return result


@pytest.fixture
def source(tmp_path):
    root = str(tmp_path / 'src')
    make_tree(root)
    return root


def reopen(pool, passphrase='correct horse'):
    return Pool.open(LocalBackend(pool.backend.root), passphrase)


def test_a_point_restores_every_kind_of_entry_byte_for_byte(pool, source, tmp_path):
    point = Backup(pool, {'data': source}, tags={'app': 'web'}).run()
    target = str(tmp_path / 'out')
    Restore(reopen(pool), point, {'data': target}).run()
    assert describe(target) == describe(source)
    sparse = os.stat(os.path.join(target, 'sparse'))
    assert sparse.st_blocks * 512 < 1024 * 1024, 'the holes of a sparse file come back as holes'
    assert os.stat(os.path.join(target, 'hard')).st_ino == os.stat(os.path.join(target, 'dir/big.bin')).st_ino
    assert point['stats']['files'] == 4 and point['tags'] == {'app': 'web'}


def test_a_restore_syncs_each_target_file_system_once_after_its_files_are_written(pool, source, tmp_path, monkeypatch):
    point = Backup(pool, {'data': source, 'more': source}).run()
    synced = []

    class FileSystemSync(restore_mod.walk.FileSystemSync):
        """(opened before the restore writes: its syncfs then reports every write-back error of the restore)"""

        def __init__(self, path):
            super().__init__(path)
            self.path = path
            self.opened_on = [os.listdir(target) for target in targets.values()]

        def sync(self):  # what the targets hold when the sync is asked for
            synced.append((self.path, self.opened_on, [describe(target) == describe(source) for target in targets.values()]))
            super().sync()

    monkeypatch.setattr(restore_mod.walk, 'FileSystemSync', FileSystemSync)
    targets = {'data': str(tmp_path / 'out' / 'data'), 'more': str(tmp_path / 'out' / 'more')}
    Restore(reopen(pool), point, targets).run()
    # both targets are on one file system: one syncfs, opened while they were empty, once every volume is complete
    assert synced == [(targets['data'], [[], []], [True, True])]
    assert describe(targets['data']) == describe(source)


def test_an_incremental_reads_only_what_changed_and_is_logically_full(pool, source, tmp_path):
    first = Backup(pool, {'data': source}).run()
    with open(os.path.join(source, 'dir/sub/text.log'), 'a', encoding='ascii') as handle:
        handle.write('one more line\n')
    os.remove(os.path.join(source, 'empty'))
    second = Backup(reopen(pool), {'data': source}).run()
    assert second['parent'] == first['id']
    assert second['stats']['files_changed'] == 1 and second['stats']['bytes_read'] == os.path.getsize(os.path.join(source, 'dir/sub/text.log'))
    assert second['stats']['bytes_new'] < os.path.getsize(os.path.join(source, 'dir/sub/text.log')) + 64 * 1024, 'only that file is new'
    # the first point can go: the second still restores whole
    forget(reopen(pool), {'last': 1})
    report = prune(reopen(pool))
    assert report['points'] == 1
    target = str(tmp_path / 'out')
    Restore(reopen(pool), reopen(pool).resolve_point('latest'), {'data': target}).run()
    assert describe(target) == describe(source)
    assert check(reopen(pool), read_data=True)['ok']


def test_selected_paths_and_metadata_blobs(pool, source, tmp_path):
    manifests = json.dumps({'objects': ['x' * 100] * 100000}).encode()
    point = Backup(pool, {'data': source, 'other': source}, metadata={'objects.json': manifests}).run()
    target = str(tmp_path / 'out')
    Restore(pool, point, {'other': target}, paths=['dir/sub']).run()
    assert sorted(os.listdir(target)) == ['dir'] and sorted(os.listdir(os.path.join(target, 'dir'))) == ['sub']
    assert read_metadata(reopen(pool), point, 'objects.json') == manifests
    with pytest.raises(PoolError, match='has no metadata'):
        read_metadata(pool, point, 'missing')


def test_wrong_passphrase_is_a_clear_error_and_keys_rotate_without_reencryption(pool, source, tmp_path):
    Backup(pool, {'data': source}).run()
    with pytest.raises(PoolError, match='wrong passphrase'):
        reopen(pool, 'Tr0ub4dor')
    packs_before = sorted(os.listdir(os.path.join(pool.backend.root, 'data')))
    first_slot = pool.key_slots()[0]
    pool.add_key('new secret', 'rotated')
    pool.remove_key(first_slot)
    with pytest.raises(PoolError, match='wrong passphrase'):
        reopen(pool)
    rotated = reopen(pool, 'new secret')
    assert sorted(os.listdir(os.path.join(pool.backend.root, 'data'))) == packs_before
    Restore(rotated, rotated.resolve_point('latest'), {'data': str(tmp_path / 'out')}).run()
    assert describe(str(tmp_path / 'out')) == describe(source)
    with pytest.raises(PoolError, match='last one'):
        rotated.remove_key(rotated.key_slots()[0])


def test_sessions_never_share_a_nonce(pool):
    other = reopen(pool)
    assert pool.keys.session_id != other.keys.session_id
    sealed = {pool.keys.seal(b'same', b'aad')[:12] for count in range(1000)}
    assert len(sealed) == 1000


def test_a_flipped_byte_is_found_and_named(pool, source, tmp_path):
    point = Backup(pool, {'data': source}).run()
    from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
    big = [e for e in read_tree(pool, point['volumes']['data']['tree']) if e['path'] == 'hard'][0]  # big.bin's first name
    number, offset = pool.blobs[big['chunks'][0]][:2]
    pack_id, kind = pool.packs[number]
    with open(os.path.join(pool.backend.root, kind, pack_id[:2], pack_id), 'r+b') as handle:
        handle.seek(offset + 100)
        byte = handle.read(1)
        handle.seek(offset + 100)
        handle.write(bytes([byte[0] ^ 0x01]))
    assert check(reopen(pool))['ok'], 'structure alone does not read the data'
    result = check(reopen(pool), read_data=True)
    assert not result['ok']
    hurt = {(item['point'], item['path']) for item in result['damaged']}
    assert {(point['id'], 'dir/big.bin'), (point['id'], 'hard')} <= hurt, 'both names of the hard-linked file'
    assert any('dir/big.bin' in error for error in result['errors'])
    with pytest.raises(PoolError, match='hard: .* does not authenticate'):  # the file's first name in walk order
        Restore(reopen(pool), point, {'data': str(tmp_path / 'out')}).run()


def test_an_interrupted_backup_leaves_a_consistent_pool_and_the_next_one_reuses_its_uploads(pool, tmp_path, monkeypatch):
    root = str(tmp_path / 'many')
    os.makedirs(root)
    for number in range(40):
        with open(os.path.join(root, 'f%02d' % number), 'wb') as handle:
            handle.write(os.urandom(1024 * 1024))
    monkeypatch.setattr(backup_mod, 'CHECKPOINT_SECONDS', 0.0)
    pool.config['pack_size'] = 2 * 1024 * 1024
    calls = {'n': 0}
    original = backup_mod.BlobWriter.add

    def failing_add(self, *args, **kwargs):
        calls['n'] += 1
        if calls['n'] == 30:
            raise OSError('disk unplugged')
        return original(self, *args, **kwargs)

    monkeypatch.setattr(backup_mod.BlobWriter, 'add', failing_add)
    with pytest.raises(PoolError, match='disk unplugged'):
        Backup(pool, {'data': root}, workers=1).run()
    monkeypatch.setattr(backup_mod.BlobWriter, 'add', original)
    assert reopen(pool).point_ids() == []
    assert check(reopen(pool), read_data=True)['ok']
    survivor = reopen(pool)
    survivor.load_index()
    kept = sum(raw_length for _number, _offset, _length, raw_length, _flags, _type in survivor.blobs.values())
    # about 17 MiB were cut before the failure; the checkpoints trail the workers by a few files and one open pack
    assert kept >= 4 * 1024 * 1024, 'the failed backup left checkpointed chunks behind'
    again = Backup(reopen(pool), {'data': root}).run()
    trees_and_metadata = 256 * 1024
    assert again['stats']['bytes_new'] <= 40 * 1024 * 1024 - kept + trees_and_metadata, 'checkpointed chunks are not uploaded again'
    Restore(reopen(pool), again, {'data': str(tmp_path / 'out')}).run()
    assert describe(str(tmp_path / 'out')) == describe(root)


def test_a_killed_backup_process_leaves_a_pool_that_check_passes(tmp_path):
    root = str(tmp_path / 'many')
    os.makedirs(root)
    for number in range(300):
        with open(os.path.join(root, 'f%03d' % number), 'wb') as handle:
            handle.write(os.urandom(1024 * 1024))
    location = str(tmp_path / 'pool')
    env = dict(os.environ, FERRY_POOL_PASSPHRASE='pw')
    subprocess.run([FERRY, 'pool', 'init', location, '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
    process = subprocess.Popen([FERRY, 'pool', 'backup', location, root, '--checkpoint-seconds', '0', '--workers', '1'], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    index = os.path.join(location, 'index')
    while time.time() < deadline and not (os.path.isdir(index) and [n for n in os.listdir(index) if not n.startswith('.tmp')]):
        time.sleep(0.005)
    process.kill()
    process.wait()
    result = subprocess.run([FERRY, 'pool', 'check', location, '--read-data', '--json'], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)['points'] == 0, 'killed as soon as its first chunks were indexed, long before its end'
    finished = subprocess.run([FERRY, 'pool', 'backup', location, root, '--json'], env=env, capture_output=True, text=True, check=True)
    assert json.loads(finished.stdout)['stats']['bytes_new'] < 300 * 1024 * 1024, 'the killed run left reusable, indexed chunks'


def test_prune_reclaims_space_and_repacks_partly_dead_packs(pool, tmp_path):
    root = str(tmp_path / 'data')
    os.makedirs(root)
    for number in range(8):
        with open(os.path.join(root, 'f%d' % number), 'wb') as handle:
            handle.write(os.urandom(1024 * 1024))
    pool.config['pack_size'] = 64 * 1024 * 1024  # everything in one pack: deleting half must repack it
    Backup(pool, {'data': root}).run()
    for number in range(4):
        os.remove(os.path.join(root, 'f%d' % number))
    kept = Backup(reopen(pool), {'data': root}).run()
    forget(reopen(pool), {'last': 1})
    report = prune(reopen(pool))
    assert report['packs_repacked'] >= 1 and report['bytes_freed'] > 3 * 1024 * 1024
    after = reopen(pool)
    assert after.point_ids() == [kept['id']]
    assert check(after, read_data=True)['ok']
    Restore(after, kept, {'data': str(tmp_path / 'out')}).run()
    assert describe(str(tmp_path / 'out')) == describe(root)


def test_copy_moves_only_missing_chunks_and_needs_shared_naming(pool, source, tmp_path):
    point = Backup(pool, {'data': source}).run()
    target = Pool.create(LocalBackend(str(tmp_path / 'long-term')), 'other passphrase', copy_ids_from=pool)
    first = copy_points(pool, target)
    assert first['copied'] == [point['id']] and first['bytes_sent'] > 0
    again = copy_points(pool, target)
    assert again['copied'] == [] and again['already_present'] == [point['id']]
    long_term = Pool.open(LocalBackend(str(tmp_path / 'long-term')), 'other passphrase')
    Restore(long_term, long_term.resolve_point(point['id'][:12]), {'data': str(tmp_path / 'out')}).run()
    assert describe(str(tmp_path / 'out')) == describe(source)
    stranger = Pool.create(LocalBackend(str(tmp_path / 'stranger')), 'x')
    with pytest.raises(PoolError, match='copy_ids_from'):
        copy_points(pool, stranger)


def test_prune_waits_for_a_live_writer_and_ignores_a_dead_one(pool, tmp_path):
    with pool.lock('backup'):
        with pytest.raises(PoolError, match='locked by backup'):
            prune(reopen(pool))
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    pool.backend.replace('locks/crashed', json.dumps({'operation': 'backup', 'exclusive': False, 'host': os.uname().nodename,
                                                      'pid': dead.pid, 'time': time.time()}).encode())
    assert prune(reopen(pool))['points'] == 0
    assert pool.locks() == []


def test_a_torn_pack_left_by_a_crash_is_rewritten(tmp_path):
    backend = LocalBackend(str(tmp_path))
    os.makedirs(str(tmp_path / 'data' / 'ab'))
    with open(str(tmp_path / 'data' / 'ab' / 'abcd'), 'wb') as handle:
        handle.write(b'\0' * 10)
    backend.write('data/ab/abcd', b'0123456789')
    assert backend.read('data/ab/abcd') == b'0123456789'


def test_bad_input_is_named(pool, tmp_path):
    with pytest.raises(PoolError, match='not a directory'):
        Backup(pool, {'data': str(tmp_path / 'missing')})
    with pytest.raises(PoolError, match='does not exist'):
        pool.resolve_point('nope')
    with pytest.raises(PoolError, match='already holds a pool'):
        Pool.create(LocalBackend(pool.backend.root), 'x')
    with pytest.raises(PoolError, match='no pool at'):
        Pool.open(LocalBackend(str(tmp_path / 'empty')), 'x')
    with pytest.raises(PoolError, match='unknown pool settings'):
        Pool.create(LocalBackend(str(tmp_path / 'p2')), 'x', {'chunk_size': 1})


def test_documents_cannot_be_replayed_under_another_name(pool):
    sealed = fmt.seal_document(pool.keys, b'FPT1', {'id': 'a'}, b'points/a')
    with pytest.raises(fmt.FormatError):
        fmt.open_document(pool.keys, b'FPT1', sealed, b'points/b')


def test_worker_processes_never_share_a_buffer(pool, tmp_path):
    """Restores from a local pool fork worker processes; the parent's buffers must stay its own
    (an anonymous mmap is shared by default: four workers once wrote into one buffer)."""
    from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io
    direct_io._buffer()[:4] = b'dirt'  # pylint: disable=protected-access
    root = str(tmp_path / 'big')
    os.makedirs(root)
    for number in range(24):
        with open(os.path.join(root, 'f%02d' % number), 'wb') as handle:
            handle.write(os.urandom(1024 * 1024 + number * 4097))
    point = Backup(pool, {'data': root}).run()
    restore = Restore(reopen(pool), point, {'data': str(tmp_path / 'out')}, workers=4)
    with restore._executor() as executor:  # pylint: disable=protected-access
        assert executor.__class__.__name__ == 'ProcessPoolExecutor'
    restore.run()
    assert describe(str(tmp_path / 'out')) == describe(root)


def test_the_agent_runs_the_same_engine(tmp_path):
    root = str(tmp_path / 'volume')
    make_tree(root)
    agent = os.path.join(ROOT, 'agent', 'ferry_agent.py')
    env = dict(os.environ, FERRY_POOL_PASSPHRASE='agent pw', PYTHONPATH=os.path.join(ROOT, '.build', 'collections'))
    location = str(tmp_path / 'pool')
    for argv in (['init', location], ['backup', location, root, '--group', 'agent'], ['restore', location, 'latest', str(tmp_path / 'out')]):
        subprocess.run([sys.executable, agent, 'pool'] + argv + ['-q'], check=True, env=env, stdout=subprocess.DEVNULL)
    assert describe(str(tmp_path / 'out')) == describe(root)


def test_a_file_that_does_not_compress_is_not_compressed_chunk_after_chunk(pool, tmp_path, monkeypatch):
    from ansible_collections.ferry.kube.plugins.module_utils.pool import compression, writer as writer_mod
    from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
    root = tmp_path / 'mixed'
    root.mkdir()
    (root / 'media.bin').write_bytes(os.urandom(24 * 1024 * 1024))
    (root / 'access.log').write_bytes(b''.join(b'%09d GET /index.html 200 %d\n' % (line, line % 977) for line in range(700000)))
    tried = {}  # chunk id: (plain length, compressed length), of every compression
    original = writer_mod._compressor

    class Counting:
        def __init__(self, level):
            self.compressor = original(level)

        def compress(self, plain):
            packed = self.compressor.compress(plain)
            tried[pool.keys.chunk_id(plain)] = (len(plain), len(packed))
            return packed

    monkeypatch.setattr(writer_mod, '_compressor', Counting)
    point = Backup(pool, {'data': str(root)}, workers=1).run()
    chunks = {entry['path']: entry['chunks'] for entry in read_tree(pool, point['volumes']['data']['tree']) if entry['type'] == 'file'}
    assert len(chunks['media.bin']) > 2 * compression.SKIP_AFTER_INCOMPRESSIBLE and len(chunks['access.log']) > 10
    assert all(tried[chunk][1] < compression.SHRINK_RATIO * tried[chunk][0] for chunk in chunks['access.log']), 'every chunk of the log is compressed'
    futile = [chunk for chunk in chunks['media.bin'] if chunk in tried]
    # one try, then SKIP_AFTER_INCOMPRESSIBLE chunks stored as they are, then one more try...
    assert 0 < len(futile) <= len(chunks['media.bin']) // (compression.SKIP_AFTER_INCOMPRESSIBLE + 1) + 1
    target = str(tmp_path / 'out')
    Restore(reopen(pool), point, {'data': target}).run()
    assert describe(target) == describe(str(root))


def test_zeros_come_back_as_holes_without_hashing_every_chunk_twice(pool, tmp_path):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
    root = tmp_path / 'disk'
    root.mkdir()
    # zeros written out (not a sparse file) right after incompressible data: the backup stores those zero
    # chunks as they are, without trying compression; a file of zeros alone is stored compressed
    (root / 'image.raw').write_bytes(os.urandom(4 * 1024 * 1024) + bytes(40 * 1024 * 1024))
    (root / 'zeros.raw').write_bytes(bytes(1536 * 1024))
    (root / 'media.bin').write_bytes(os.urandom(8 * 1024 * 1024))
    point = Backup(pool, {'data': str(root)}, workers=1).run()
    opened = reopen(pool)
    opened.load_index()
    files = {entry['path']: entry['chunks'] for entry in read_tree(opened, point['volumes']['data']['tree']) if entry['type'] == 'file'}
    zero_chunks = [c for c in files['image.raw'] + files['zeros.raw']
                   if opened.blobs[c][3] >= 64 * 1024 and opened.keys.chunk_id(bytes(opened.blobs[c][3])) == c]
    flags = {opened.blobs[c][4] & fmt.COMPRESSED for c in zero_chunks}
    assert flags == {0, fmt.COMPRESSED}, 'some zero chunks stored as they are, some compressed'

    restore = Restore(opened, point, {'data': str(tmp_path / 'out')})
    hashed = []
    real_chunk_id = opened.keys.chunk_id
    opened.keys.chunk_id = lambda data: hashed.append(len(data)) or real_chunk_id(data)
    holes = [c for c in files['image.raw'] + files['zeros.raw'] + files['media.bin'] if restore._is_hole(c, opened.blobs[c])]
    assert set(holes) < set(zero_chunks) and holes, 'compressed zero chunks are known without reading them'
    assert len(hashed) <= len({opened.blobs[c][3] for c in holes}), 'a zero chunk hashed once per length, and no other chunk'
    opened.keys.chunk_id = real_chunk_id

    restore.run()
    assert describe(str(tmp_path / 'out')) == describe(str(root))
    blocks = os.stat(tmp_path / 'out' / 'image.raw').st_blocks
    assert blocks * 512 < 8 * 1024 * 1024, 'the 40 MiB of zeros stored as they are come back as holes (the writer finds them)'
    assert os.stat(tmp_path / 'out' / 'zeros.raw').st_blocks * 512 < 64 * 1024, 'and the compressed ones'


class AskingAheadBackend(LocalBackend):
    """A local pool that can ask for reads ahead, as a relay lane can; records what it is asked, in order."""

    def __init__(self, root, damaged=()):
        super().__init__(root)
        self.calls, self.damaged = [], set(damaged)

    def read_ahead(self, key, offset=0, length=None):
        self.calls.append(('ahead', key, offset, length))
        data = b'not a pack preamble' if key in self.damaged else LocalBackend.read(self, key, offset, length)
        return lambda: data

    def read(self, key, offset=0, length=None):
        self.calls.append(('read', key, offset, length))
        return super().read(key, offset, length)


def several_packs(pool, tmp_path):
    """A point of three files over several data packs; returns (point, the data packs' keys)."""
    source = tmp_path / 'source'
    source.mkdir()
    for number in range(3):
        (source / ('file-%d' % number)).write_bytes(os.urandom(300 * 1024))
    pool.config['pack_size'] = 256 * 1024
    point = Backup(pool, {'data': str(source)}).run()
    indexed = reopen(pool)
    indexed.load_index()
    keys = [fmt.pack_key(kind, pack_id) for pack_id, kind in indexed.packs if kind == 'data']
    assert len(keys) >= 2
    return point, keys


def test_a_batchs_pack_sessions_are_asked_for_once_each_ahead_of_its_ranges(pool, tmp_path):
    point, keys = several_packs(pool, tmp_path)
    backend = AskingAheadBackend(pool.backend.root)
    opened = Pool.open(backend, 'correct horse')
    restore = Restore(opened, point, {'data': str(tmp_path / 'out')})
    opened.load_index()
    assert restore.ranged
    from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
    jobs = [(str(tmp_path / 'out' / entry['path']), entry) for entry in read_tree(opened, point['volumes']['data']['tree']) if entry['type'] == 'file']
    os.makedirs(str(tmp_path / 'out'))
    del backend.calls[:]  # (the config, key slots, index and tree)
    assert restore.restore_files(jobs) == (3 * 300 * 1024, 3)
    preambles = [call for call in backend.calls if call[2:] == (0, fmt.PREAMBLE_SIZE)]
    assert sorted(preambles) == sorted(('ahead', key, 0, fmt.PREAMBLE_SIZE) for key in keys), 'each pack asked for once, ahead'
    assert backend.calls[:len(keys)] == preambles, 'before the ranges'
    for full, entry in jobs:
        with open(full, 'rb') as restored:
            assert restored.read() == (tmp_path / 'source' / entry['path']).read_bytes()


def test_a_session_asked_for_ahead_is_taken_once_and_fails_where_it_is_used(pool, tmp_path):
    _point, keys = several_packs(pool, tmp_path)
    backend = AskingAheadBackend(pool.backend.root, damaged=keys[:1])
    opened = Pool.open(backend, 'correct horse')
    del backend.calls[:]
    opened.ask_for_sessions(keys + keys[::-1])
    assert backend.calls == [('ahead', key, 0, fmt.PREAMBLE_SIZE) for key in keys]
    for key in keys[1:]:
        assert opened.pack_session(key) == fmt.pack_session(LocalBackend.read(backend, key, 0, fmt.PREAMBLE_SIZE))
    opened.ask_for_sessions(keys[1:])
    assert len(backend.calls) == len(keys), 'known sessions are not asked for again'
    with pytest.raises(fmt.FormatError):  # (the restore names the file that needed it)
        opened.pack_session(keys[0])
    assert opened.pack_session(keys[0]) == fmt.pack_session(LocalBackend.read(backend, keys[0], 0, fmt.PREAMBLE_SIZE)), 'asked again'


class PlannedReads:
    """A backend that reads ahead as a relay lane does; records its reads (ahead, or one at a time)."""

    def __init__(self, data):
        self.data, self.calls = data, []

    def read_ahead(self, key, offset=0, length=None):
        self.calls.append(('ahead', offset, length))
        return lambda: self.data[offset:offset + length]

    def read(self, key, offset=0, length=None):
        self.calls.append(('read', offset, length))
        return self.data[offset:offset + length]


def test_a_plan_whose_first_range_is_in_the_span_held_from_the_last_batch_still_has_each_load_read_ahead():
    data = os.urandom(64 * 1024)
    backend = PlannedReads(data)
    cache = PackCache(backend, len(data), largest_blob=4096)
    assert bytes(cache.read_range('data/ab/ab', 100, 50, (0, 1000))) == data[100:150]  # the last batch's span
    ranges = [('data/ab/ab', 500, 100, (0, 1000)), ('data/ab/ab', 5000, 100, (5000, 6000)), ('data/ab/ab', 9000, 10, (9000, 9500))]
    cache.plan(ranges)
    for key, offset, length, span in ranges:
        assert bytes(cache.read_range(key, offset, length, span)) == data[offset:offset + length]
    assert backend.calls == [('read', 0, 1000), ('ahead', 5000, 1000), ('ahead', 9000, 500)]
