"""Staged-sync relay: the agent's pool engine over a real mutual-TLS connection to the control node,
which serves a real pool directory (relay.run_job on one end, relay.serve on the other)."""

import hashlib
import os
import random
import re
import socket
import stat
import struct
import threading
import time

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.agent import relay, tls as tls_stream, wire
from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from ansible_collections.ferry.kube.plugins.module_utils.pool import crypto, direct_io, format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import Backend, BackendError, LocalBackend, NotFound
from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup, read_metadata
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool

PASSPHRASE = 'relay-test-passphrase'
HANG = 20.0  # seconds after which a side that has not finished counts as hung


@pytest.fixture(autouse=True)
def cheap_key_slots(monkeypatch):
    """Argon2id at test cost: slots record their parameters, so opening them stays correct."""
    monkeypatch.setattr(crypto, 'ARGON2', {'iterations': 1, 'lanes': 1, 'memory_cost': 64})


@pytest.fixture
def pool(tmp_path):
    backend = LocalBackend(str(tmp_path / 'pool'))
    Pool.create(backend, PASSPHRASE).close()
    return backend


class Agent:
    """One accepted connection on 127.0.0.1, running ``work(channel)`` in a thread as the agent would."""

    def __init__(self, server_context, work, lanes=False):
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.address = self.listener.getsockname()[:2]
        self.context = server_context
        self.work = work
        self.lanes = lanes  # work(channel, accept): accept(timeout) gives the next connection, as the agent's listener does
        self.result = self.error = None
        self.thread = threading.Thread(target=self._serve, name='test-agent', daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _peer = self.listener.accept()
            tls = wire.accept(conn, self.context, {'control'})
            try:
                self.result = self.work(wire.Channel(tls), self.accept) if self.lanes else self.work(wire.Channel(tls))
            finally:
                tls.close()
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc
        finally:
            self.listener.close()

    def accept(self, timeout):
        self.listener.settimeout(timeout)
        conn, _peer = self.listener.accept()
        return wire.Channel(wire.accept(conn, self.context, {'control'}))

    def join(self, timeout=HANG):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), 'the agent side hung for %.0f s' % timeout
        return self


@pytest.fixture
def link(tmp_path):
    """``link(work)`` -> (agent, TLS socket of the control node), over per-sync certificates in tmp_path."""
    pki = SyncPKI.create('relay-test')
    files = {}
    for role in ('control', 'source'):
        for name, text in pki.bundle(role, 'ferry-%s' % role, hosts=('127.0.0.1',)).items():
            path = tmp_path / ('%s-%s' % (role, name))
            path.write_text(text)
            files[role, name] = str(path)

    def context(make, role):
        return make(files[role, 'ca.crt'], files[role, 'tls.crt'], files[role, 'tls.key'])

    opened = []

    def make(work, lanes=False):
        agent = Agent(context(wire.server_context, 'source'), work, lanes)

        def connect():
            tls = wire.connect(agent.address, context(wire.client_context, 'control'), timeout=HANG)
            # Blocking, as staged.control_channel leaves it: the relay reads and writes one TLS connection from
            # several threads, and a read that timed out would leave a frame half read.
            tls.settimeout(None)
            opened.append(tls)
            return tls

        agent.connect = connect  # another connection to the same agent (a lane)
        return agent, connect()

    yield make
    for tls in opened:
        tls.close()


def pack_bytes(pool):
    return sum(size for prefix in ('data/', 'tree/') for _key, size in LocalBackend(pool.location).list(prefix))


def run_job(channel, accept=None):
    return relay.run_job(channel, progress_interval=0.05, accept=accept)


def control(tls, job, backend, payload=b'', on_progress=None, open_lane=None, clear_packs=True, channels=None):
    """The control node's side of one job: send it, serve the pool until the result, hang up.

    ``serve`` runs in a thread joined with a time limit, so a control node that would wait forever
    fails the test instead of hanging it. ``job['lanes']``: whether it offers lanes; ``channels`` gets
    the job's channel."""
    shared = relay.SharedChannel(wire.Channel(tls))
    if channels is not None:
        channels.append(shared.channel)
    relay.send_job(shared, job, payload, lanes=bool(job.get('lanes')), clear_packs=clear_packs)
    outcome = {}

    def work():
        try:
            outcome['result'] = relay.serve(shared, backend, on_progress, open_lane=open_lane, clear_packs=clear_packs)
        except BaseException as exc:  # pylint: disable=broad-except
            outcome['error'] = exc
        finally:
            tls.close()

    thread = threading.Thread(target=work, name='test-control', daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), 'the control node hung for %.0f s' % HANG
    if 'error' in outcome:
        raise outcome['error']
    return outcome['result']


def make_tree(root):
    os.makedirs(os.path.join(root, 'db', 'wal'))
    os.makedirs(os.path.join(root, 'empty-dir'))
    rng = random.Random(7)
    files = {
        'db/base': rng.randbytes(1536 * 1024),                   # several chunks
        'db/wal/000001': b'wal record ' * 30000,                 # compressible
        'db/wal/000002': rng.randbytes(5000),
        'config.yaml': b'replicas: 3\n',
        'empty': b'',
    }
    for path, data in files.items():
        with open(os.path.join(root, path), 'wb') as handle:
            handle.write(data)
    os.chmod(os.path.join(root, 'config.yaml'), 0o600)
    os.symlink('db/base', os.path.join(root, 'current'))
    os.link(os.path.join(root, 'db/wal/000002'), os.path.join(root, 'db/wal/000002.hardlink'))
    for number, path in enumerate(sorted(files)):
        os.utime(os.path.join(root, path), ns=(1_700_000_000_000_000_000 + number, 1_700_000_000_000_000_000 + number))


def describe_tree(root):
    found = {}
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            full = os.path.join(top, name)
            info = os.lstat(full)
            record = {'mode': stat.S_IMODE(info.st_mode), 'type': stat.S_IFMT(info.st_mode)}
            if stat.S_ISLNK(info.st_mode):
                record['target'] = os.readlink(full)
            elif stat.S_ISREG(info.st_mode):
                with open(full, 'rb') as handle:
                    record['sha256'] = hashlib.sha256(handle.read()).hexdigest()
                record.update(size=info.st_size, mtime_ns=info.st_mtime_ns, links=info.st_nlink)
            found[os.path.relpath(full, root)] = record
    return found


def test_backup_then_restore_through_the_relay_gives_back_the_tree(tmp_path, link, pool):
    source = str(tmp_path / 'source')
    make_tree(source)
    capture = b'{"objects": [{"kind": "ConfigMap"}]}' * 100
    # the control node opened the pool and hands over its keys, not the passphrase
    keys = Pool.open(LocalBackend(pool.location), PASSPHRASE).master_keys()
    job = {'op': 'backup', 'keys': keys, 'location': pool.location, 'group': 'sandbox/shop',
           'tags': {'app': 'shop'}, 'volumes': {'data': source}, 'metadata_name': 'objects', 'compare_identity': False}
    progress, channels = [], []
    agent, tls = link(run_job)
    result = control(tls, job, pool, capture, progress.append, channels=channels)
    agent.join()
    assert agent.error is None and agent.result == result
    # the packs came outside TLS (sealed already, each checked against its name), and nothing else did
    assert channels[0].clear_bytes_received == pack_bytes(pool) > 1536 * 1024
    volume = result['volumes']['data']
    assert (volume['files'], volume['files_changed'], volume['bytes']) == (5, 5, 1536 * 1024 + 330000 + 5000 + 12)
    assert 'tree' not in volume
    assert result['stats']['packs'] >= 1
    assert progress and progress[-1]['operation'] == 'backup' and progress[-1]['line'].endswith('(done)')

    opened = Pool.open(LocalBackend(pool.location), PASSPHRASE)  # the point is in the control node's pool
    point = opened.resolve_point('latest', 'sandbox/shop')
    assert point['id'] == result['point'] and point['tags'] == {'app': 'shop'}
    assert read_metadata(opened, point, 'objects') == capture
    assert not list(LocalBackend(pool.location).list('locks/')), "the agent's pool lock is released"
    opened.close()

    # Snapshot claims are new filesystems, so staged backups compare size and mtime only: a rewrite
    # that keeps both goes unnoticed (compare_identity=False), a change of size does not.
    path = os.path.join(source, 'db/wal/000001')
    before = os.stat(path)
    with open(path, 'r+b') as handle:
        handle.write(b'WAL')
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with open(os.path.join(source, 'config.yaml'), 'ab') as handle:
        handle.write(b'paused: false\n')
    agent, tls = link(run_job)
    second = control(tls, dict(job, metadata_name=None), pool)
    agent.join()
    assert second['volumes']['data']['files_changed'] == 1
    assert second['stats']['bytes_new'] < 16 * 1024  # the changed file and the tree blobs around it

    target = str(tmp_path / 'restored')
    agent, tls = link(run_job)
    # a control node of an earlier release sent the passphrase: still understood
    restored = control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': second['point'][:21],
                             'group': 'sandbox/shop', 'volumes': {'data': target}}, pool)
    agent.join()
    assert agent.error is None
    assert restored['point'] == second['point']
    assert restored['stats']['data']['files'] == 5
    expected = describe_tree(source)
    expected['db/wal/000001']['sha256'] = hashlib.sha256(b'wal record ' * 30000).hexdigest()  # what the point holds
    assert describe_tree(target) == expected
    assert os.stat(os.path.join(target, 'db/wal/000002')).st_ino == os.stat(os.path.join(target, 'db/wal/000002.hardlink')).st_ino


class PackWriteRecorder(LocalBackend):
    """Records, for each pack written, whether it came as an aligned buffer (written direct, no copy)."""

    def __init__(self, root):
        super().__init__(root)
        self.packs = []

    def write_deferred(self, key, data):
        if key.startswith('data/'):
            self.packs.append((len(data), isinstance(data, memoryview) and direct_io.is_aligned(data)))
        super().write_deferred(key, data)


def test_the_control_node_writes_uploaded_packs_from_the_aligned_buffers_they_arrived_in(tmp_path, link):
    Pool.create(LocalBackend(str(tmp_path / 'pool')), PASSPHRASE, settings={'pack_size': 2 * 1024 * 1024}).close()
    recorder = PackWriteRecorder(str(tmp_path / 'pool'))
    source = str(tmp_path / 'source')
    os.makedirs(source)
    rng = random.Random(11)
    for index in range(6):
        with open(os.path.join(source, 'file-%d' % index), 'wb') as handle:
            handle.write(rng.randbytes(2 * 1024 * 1024 + index))
    agent, tls = link(run_job)
    result = control(tls, {'op': 'backup', 'passphrase': PASSPHRASE, 'location': recorder.location, 'group': 'g',
                           'volumes': {'data': source}}, recorder)
    agent.join()
    assert agent.error is None and result['stats']['packs'] >= 5
    # every pack too big for the channel's own receive buffer (all but perhaps the last, partly filled one)
    big = [aligned for size, aligned in recorder.packs if size > wire.RECEIVE_BUFFER]
    assert len(big) >= 4 and all(big)

    target = str(tmp_path / 'restored')
    agent, tls = link(run_job)
    control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': recorder.location, 'point': result['point'],
                  'volumes': {'data': target}}, recorder)
    agent.join()
    assert describe_tree(target) == describe_tree(source)  # what was written from the reused buffers is what was sent


class ArrivedCompressed:
    """A channel whose one big frame came compressed: received into the buffer given, handed on decompressed."""

    def recv(self, into=None):
        into(2 * 1024 * 1024)[:4] = b'zstd'
        return relay.REQUEST, {'op': 'write'}, b'the decompressed payload'


def test_a_pack_buffer_comes_back_at_once_when_the_payload_arrived_compressed():
    buffers = relay._PackBuffers(workers=2)  # pylint: disable=protected-access
    kind, _header, payload, buffer = buffers.recv(ArrivedCompressed())
    assert (kind, payload, buffer) == (relay.REQUEST, b'the decompressed payload', None)
    assert len(buffers.buffers.free) == 1  # the buffer it was received into is free again
    buffers.close()


class FlakyBackend(LocalBackend):
    """A local pool whose deletes fail with an unexpected exception."""

    def delete(self, key):
        raise ValueError('disk on fire while deleting %s' % key)


PACK = fmt.pack_key('data', fmt.pack_id_of(b'0123456789'))


def test_not_found_and_other_storage_errors_reach_the_agent_as_themselves(tmp_path, link, monkeypatch):
    seen = {}

    def probe(job, backend, _metadata, _progress, _lanes):
        try:
            backend.read('points/nope')
        except NotFound as exc:
            seen['read'] = exc
        try:
            backend.delete('points/anything')
        except BackendError as exc:
            seen['delete'] = exc
        backend.write(PACK, b'0123456789')  # (outside TLS: named by its content, as packs are)
        seen['range'] = backend.read(PACK, 2, 3)
        seen['size'] = (backend.size(PACK), backend.size('data/ab/missing'))
        seen['list'] = (backend.list('data/'), backend.list('index/'))
        return {'done': job['op']}

    monkeypatch.setattr(relay, '_run', probe)
    agent, tls = link(run_job)
    result = control(tls, {'op': 'probe'}, FlakyBackend(str(tmp_path / 'store')))
    agent.join()
    assert agent.error is None and result == {'done': 'probe'}
    assert seen['read'].__class__ is NotFound and 'points/nope' in str(seen['read'])
    assert seen['delete'].__class__ is BackendError and str(seen['delete']) == 'ValueError: disk on fire while deleting points/anything'
    assert seen['range'] == b'234'
    assert seen['size'] == (10, None)
    assert seen['list'] == ([(PACK, 10)], [])


def test_a_wrong_passphrase_comes_back_as_a_relay_error_naming_it(link, pool):
    agent, tls = link(run_job)
    with pytest.raises(relay.RelayError, match='wrong passphrase for the pool at %s' % re.escape(pool.location)):
        control(tls, {'op': 'backup', 'passphrase': 'not-the-passphrase', 'location': pool.location, 'volumes': {}}, pool)
    agent.join()
    # the agent learns that the control node left after its failure, and says so with the reason
    assert isinstance(agent.error, EOFError) and 'wrong passphrase' in str(agent.error)
    assert PASSPHRASE not in str(agent.error)


def test_keys_that_are_not_a_pools_are_refused_by_name(link, pool):
    agent, tls = link(run_job)
    with pytest.raises(relay.RelayError, match="the keys given for the pool at %s are not a pool's master and id keys" % re.escape(pool.location)):
        control(tls, {'op': 'backup', 'keys': {'master': b'0' * 32}, 'location': pool.location, 'volumes': {}}, pool)
    agent.join()


def test_an_unknown_job_comes_back_as_a_relay_error(link, pool):
    agent, tls = link(run_job)
    with pytest.raises(relay.RelayError, match=r"unknown job 'frobnicate': expected backup or restore"):
        control(tls, {'op': 'frobnicate', 'passphrase': PASSPHRASE, 'location': pool.location}, pool)
    agent.join()
    assert isinstance(agent.error, EOFError)


def first_request(tls, pool):
    """Send a backup job and read the agent's first storage request (opening the pool)."""
    tls.settimeout(HANG)  # one thread only here: a timeout is safe
    channel = wire.Channel(tls)
    channel.send(relay.JOB, {'op': 'backup', 'passphrase': PASSPHRASE, 'location': pool.location, 'volumes': {}})
    kind, header, _payload = channel.recv()
    assert kind == relay.REQUEST and header['op'] == 'read' and header['key'] == 'config'
    return channel


def test_the_agent_raises_when_the_control_node_dies_in_the_middle_of_a_frame(link, pool):
    agent, tls = link(run_job)
    first_request(tls, pool)
    tls.sendall(struct.pack('>BII', relay.REPLY, 100, 0) + b'\x81\xa2id')  # a reply cut short
    tls.close()
    agent.join()
    assert isinstance(agent.error, wire.ProtocolError) and 'middle of a frame' in str(agent.error)


def test_the_agent_raises_when_the_control_node_hangs_up_between_frames(link, pool):
    agent, tls = link(run_job)
    first_request(tls, pool)
    tls.close()  # everything the agent sent was read: a clean end of stream, no reset
    agent.join(timeout=3)
    assert isinstance(agent.error, (EOFError, OSError, wire.ProtocolError))


def test_the_control_node_raises_when_the_agent_dies_mid_job(tmp_path, link, pool):
    def dying_agent(channel):
        kind, _job, _payload = channel.recv()
        assert kind == relay.JOB
        channel.send(relay.REQUEST, {'id': 1, 'op': 'read', 'key': 'config'})
        channel.sock.close()  # killed before the reply arrives

    agent, tls = link(dying_agent)
    started = time.monotonic()
    with pytest.raises((EOFError, OSError, wire.ProtocolError)):
        control(tls, {'op': 'backup'}, pool)
    assert time.monotonic() - started < HANG / 2
    agent.join()


class SlowBackend(LocalBackend):
    """Answers after a random delay and records how many requests it serves at once."""

    def __init__(self, root):
        super().__init__(root, durable=False)
        self.active = self.most = 0
        self.lock = threading.Lock()
        self.rng = random.Random(11)

    def _slowly(self, call, *args):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            delay = self.rng.uniform(0, 0.01)
        try:
            time.sleep(delay)
            return call(*args)
        finally:
            with self.lock:
                self.active -= 1

    def write(self, key, data):
        return self._slowly(super().write, key, data)

    def read(self, key, offset=0, length=None):
        return self._slowly(super().read, key, offset, length)

    def size(self, key):
        return self._slowly(super().size, key)


def test_concurrent_calls_from_several_threads_get_their_own_replies(tmp_path, link, monkeypatch):
    threads, rounds = 8, 20
    mistakes = []

    def many(_job, backend, _metadata, _progress, _lanes):
        def worker(number):
            rng = random.Random(number)
            for _step in range(rounds):
                data = rng.randbytes(rng.randint(1, 40000))
                key = fmt.pack_key('data', fmt.pack_id_of(data))  # packs: sent outside TLS, frames and segments of 8 threads
                backend.write(key, data)
                offset = rng.randint(0, len(data) - 1)
                if backend.read(key, offset, 100) != data[offset:offset + 100] or backend.size(key) != len(data):
                    mistakes.append(key)
                if backend.read(key) != data:
                    mistakes.append(key)

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return {'keys': len(backend.list('data/'))}

    monkeypatch.setattr(relay, '_run', many)
    backend = SlowBackend(str(tmp_path / 'store'))
    agent, tls = link(run_job)
    result = control(tls, {'op': 'many'}, backend)
    agent.join()
    assert agent.error is None
    assert result == {'keys': threads * rounds}
    assert not mistakes
    assert backend.most > 1, 'the control node answered requests in parallel'


class RangeCountingBackend(LocalBackend):
    """A local pool that counts the pack bytes read, by whole pack and by range."""

    def __init__(self, root):
        super().__init__(root)
        self.whole = self.ranged = 0

    def read(self, key, offset=0, length=None):
        data = super().read(key, offset, length)
        if key.startswith('data/'):
            if length is None:
                self.whole += len(data)
            else:
                self.ranged += len(data)
        return data

    def read_view(self, key, offset, length):  # what the relay reads ranges with
        view = super().read_view(key, offset, length)
        if isinstance(view, memoryview):  # (else it was read by read(), which counted it)
            self.ranged += len(view)
        return view


def lane_opener(agent, opened, wrap=None):
    def open_lane():
        opened.append(wire.Channel(agent.connect()))
        return wrap(opened[-1]) if wrap else opened[-1]
    return open_lane


def backed_up(pool, volumes):
    opened = Pool.open(LocalBackend(pool.location), PASSPHRASE)
    try:
        return Backup(opened, volumes).run()
    finally:
        opened.close()


def test_a_restore_runs_in_worker_processes_each_on_a_lane_of_its_own(tmp_path, link, pool):
    volumes = {}
    for name, count in (('data', 120), ('logs', 40)):  # two volumes: the workers and their lanes serve both
        root = volumes[name] = str(tmp_path / name)
        make_tree(root)
        rng = random.Random(name)
        for number in range(count):
            with open(os.path.join(root, 'small-%03d' % number), 'wb') as handle:
                handle.write(rng.randbytes(rng.randint(0, 9000)))
    with open(os.path.join(volumes['data'], 'big'), 'wb') as handle:  # several chunks, read in spans
        handle.write(random.Random(3).randbytes(6 * 1024 * 1024))
    point = backed_up(pool, volumes)
    targets = {name: str(tmp_path / ('restored-' + name)) for name in volumes}

    served, lanes = RangeCountingBackend(pool.location), []
    agent, tls = link(run_job, lanes=True)
    restored = control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['id'],
                             'volumes': targets, 'lanes': True}, served, open_lane=lane_opener(agent, lanes))
    agent.join()
    assert agent.error is None
    for name, root in volumes.items():
        assert describe_tree(targets[name]) == describe_tree(root)
    assert restored['stats']['data']['files'] == 5 + 120 + 1
    assert len(lanes) >= 2, 'one lane per worker process'
    packs = sum(size for _key, size in LocalBackend(pool.location).list('data/'))
    # by range, each byte about once (a batch's read may take in the small gaps between its files' chunks)
    assert served.whole == 0 and packs * 0.8 < served.ranged < packs * 1.5
    assert served.ranged <= sum(lane.bytes_sent for lane in lanes) < packs * 1.6, 'the pack bytes went over the lanes'
    # sealed already, outside TLS: every range of a pack, and nothing else
    assert served.ranged == sum(lane.clear_bytes_sent for lane in lanes)


def one_byte_changed(data):
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return changed


def tampering(channel):
    """A lane whose clear segments get one byte changed on the way (the path to the agent, not the pool)."""
    send_clear = channel.sock.send_clear

    channel.sock.send_clear = lambda data: send_clear(one_byte_changed(data))
    return channel


def test_a_byte_changed_in_a_clear_segment_fails_the_restore_by_name(tmp_path, link, pool):
    """Packs' ranges cross outside TLS: the pool's own seal is what catches a change on the way."""
    source = str(tmp_path / 'source')
    make_tree(source)
    with open(os.path.join(source, 'big'), 'wb') as handle:
        handle.write(random.Random(4).randbytes(3 * 1024 * 1024))
    point = backed_up(pool, {'data': source})
    agent, tls = link(run_job, lanes=True)
    with pytest.raises(relay.RelayError, match='does not authenticate: the pack was damaged in the pool or on the way'):
        control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['id'],
                      'volumes': {'data': str(tmp_path / 'restored')}, 'lanes': True}, pool, open_lane=lane_opener(agent, [], tampering))
    agent.join()


def test_an_agent_that_does_not_ask_for_clear_segments_gets_every_reply_in_tls(tmp_path, link, pool, monkeypatch):
    """An agent of an earlier release: its LANES request has no 'clear'."""
    source = str(tmp_path / 'source')
    make_tree(source)
    point = backed_up(pool, {'data': source})
    send = wire.Channel.send

    def as_before(self, kind, header=None, payload=b'', compress=True, clear=False):
        if kind == relay.LANES:
            header = {key: value for key, value in header.items() if key != 'clear'}
        return send(self, kind, header, payload, compress, clear)
    monkeypatch.setattr(wire.Channel, 'send', as_before)
    served, lanes = RangeCountingBackend(pool.location), []
    agent, tls = link(run_job, lanes=True)
    control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['id'],
                  'volumes': {'data': str(tmp_path / 'restored')}, 'lanes': True}, served, open_lane=lane_opener(agent, lanes))
    agent.join()
    assert agent.error is None
    assert describe_tree(str(tmp_path / 'restored')) == describe_tree(source)
    assert lanes and served.ranged > 0 and sum(lane.clear_bytes_sent for lane in lanes) == 0


def test_a_control_node_that_keeps_packs_in_tls_gets_and_sends_them_in_tls(tmp_path, link, pool):
    """``packs_in_tls`` (or a control node of an earlier release: no 'clear' in the job, none for the lanes)."""
    source = str(tmp_path / 'source')
    make_tree(source)
    channels, lanes = [], []
    agent, tls = link(run_job)
    point = control(tls, {'op': 'backup', 'passphrase': PASSPHRASE, 'location': pool.location, 'volumes': {'data': source}}, pool,
                    clear_packs=False, channels=channels)
    agent.join()
    assert agent.error is None and pack_bytes(pool) > 0 and channels[0].clear_bytes_received == 0
    agent, tls = link(run_job, lanes=True)
    control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['point'],
                  'volumes': {'data': str(tmp_path / 'restored')}, 'lanes': True}, pool, open_lane=lane_opener(agent, lanes), clear_packs=False)
    agent.join()
    assert agent.error is None and describe_tree(str(tmp_path / 'restored')) == describe_tree(source)
    assert lanes and sum(lane.clear_bytes_sent for lane in lanes) == 0


def test_a_pack_changed_on_its_way_up_is_refused_and_not_stored(tmp_path, link, pool, monkeypatch):
    source = str(tmp_path / 'source')
    make_tree(source)
    send_clear = tls_stream.TlsStream.send_clear

    # (only the agent sends clear segments in a backup)
    monkeypatch.setattr(tls_stream.TlsStream, 'send_clear', lambda self, data: send_clear(self, one_byte_changed(data)))
    agent, tls = link(run_job)
    with pytest.raises(relay.RelayError, match='arrived damaged: its bytes do not hash to its name; nothing was stored'):
        control(tls, {'op': 'backup', 'passphrase': PASSPHRASE, 'location': pool.location, 'volumes': {'data': source}}, pool)
    agent.join()
    assert pack_bytes(pool) == 0


class Replies:
    """What ``relay._answer`` sends back (a lane's shared channel)."""

    def __init__(self):
        self.sent = []

    def send(self, kind, header=None, payload=b'', compress=True, clear=False):
        self.sent.append((kind, header, bytes(payload), clear))


class Untouchable(Backend):
    def __getattribute__(self, name):
        if name in ('write', 'replace', 'write_deferred', 'read', 'delete', 'size', 'list'):
            raise AssertionError('the backend was asked to %s' % name)
        return super().__getattribute__(name)


SEALED = b'a sealed pack'
SEALED_ID = fmt.pack_id_of(SEALED)


@pytest.mark.parametrize('operation, key, error', [
    ('replace', 'index/abc', 'replace of index/abc came outside TLS: only packs may'),
    ('write', 'config', 'write of config came outside TLS: only packs may'),
    ('write', 'data/zz/' + SEALED_ID, 'came outside TLS: only packs may'),  # not where its name puts it
    ('write', 'data/%s/%s' % (SEALED_ID[:2], SEALED_ID[:-1]), 'came outside TLS: only packs may'),
    ('write', 'data/../../%s/%s' % (SEALED_ID[:2], SEALED_ID), "is not a key of the pool"),
    ('write_deferred', fmt.pack_key('data', fmt.pack_id_of(b'other bytes')), 'arrived damaged'),
])
def test_only_packs_named_by_their_bytes_may_come_outside_tls(operation, key, error):
    replies = Replies()
    relay._answer(replies, Untouchable(), {'id': 7, 'op': operation, 'key': key, 'c': len(SEALED)}, SEALED)  # pylint: disable=protected-access
    assert len(replies.sent) == 1 and error in replies.sent[0][1]['error']


@pytest.mark.parametrize('header', [
    {'op': 'read', 'key': 'data/../../../etc/passwd'},
    {'op': 'replace', 'key': '/etc/cron.d/x'},
    {'op': 'delete', 'key': 'locks//x'},
    {'op': 'list', 'prefix': '../'},
    {'op': 'size', 'key': None},
])
def test_an_agent_names_objects_of_the_pool_never_paths(header):
    replies = Replies()
    relay._answer(replies, Untouchable(), dict(header, id=3), b'x', takes_clear=True)  # pylint: disable=protected-access
    assert 'is not a' in replies.sent[0][1]['error'] and 'of the pool' in replies.sent[0][1]['error']


def test_only_data_packs_are_read_back_outside_tls(tmp_path):
    backend = LocalBackend(str(tmp_path / 'store'))
    pack = fmt.pack_key('data', SEALED_ID)
    for key, data in ((pack, SEALED), (fmt.pack_key('tree', SEALED_ID), SEALED), ('index/abc', b'index')):
        backend.write(key, data)
    replies = Replies()
    answer = relay._answer  # pylint: disable=protected-access
    for key in (pack, fmt.pack_key('tree', SEALED_ID), 'index/abc'):
        answer(replies, backend, {'id': 1, 'op': 'read', 'key': key, 'offset': 2, 'length': 4}, b'', takes_clear=True)
    answer(replies, backend, {'id': 2, 'op': 'read', 'key': pack}, b'')
    assert [(payload, clear) for _kind, _header, payload, clear in replies.sent] == [
        (b'seal', True), (b'seal', False), (b'dex', False), (SEALED, False)]


class CutAfterHello:
    """A lane that breaks right after it told the agent which job it serves."""

    def __init__(self, channel):
        self.channel = channel
        self.sock = channel.sock

    def send(self, kind, header=None, payload=b'', compress=True, clear=False):
        self.channel.send(kind, header, payload, compress, clear)
        self.sock.shutdown(socket.SHUT_RDWR)

    def recv(self, into=None):
        return self.channel.recv(into)


def test_a_lane_lost_mid_restore_fails_the_job_clearly_and_nothing_hangs(tmp_path, link, pool):
    source = str(tmp_path / 'source')
    make_tree(source)
    point = backed_up(pool, {'data': source})
    agent, tls = link(run_job, lanes=True)
    started = time.monotonic()
    with pytest.raises(relay.RelayError, match='control node'):
        control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['id'],
                      'volumes': {'data': str(tmp_path / 'restored')}, 'lanes': True}, pool, open_lane=lane_opener(agent, [], CutAfterHello))
    assert time.monotonic() - started < HANG / 2
    agent.join()


def test_without_lanes_from_the_control_node_the_agent_restores_in_threads(tmp_path, link, pool):
    source = str(tmp_path / 'source')
    make_tree(source)
    point = backed_up(pool, {'data': source})
    served = RangeCountingBackend(pool.location)
    agent, tls = link(run_job, lanes=True)
    control(tls, {'op': 'restore', 'passphrase': PASSPHRASE, 'location': pool.location, 'point': point['id'],
                  'volumes': {'data': str(tmp_path / 'restored')}}, served)  # an older control node: no 'lanes' in the job
    agent.join()
    assert agent.error is None
    assert describe_tree(str(tmp_path / 'restored')) == describe_tree(source)
    assert served.whole > 0, 'whole packs, one request each, over the one connection'
