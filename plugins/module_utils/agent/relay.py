# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged syncs: the agent runs the pool engine next to the data, the control node holds the pool.

The control node connects to the agent (agents are reached through NodePorts or load balancers;
an agent never connects back through the DR site's firewall), sends one job (back up these
volumes, or restore this point into them), then serves the pool's storage over the same TLS
connection: the agent's engine uses a ``RemoteBackend`` whose every operation is a request the
control node answers from the real backend (a local directory or an object store). So the agent
needs no storage credentials, chunks and deduplicates where the data is, and only new packs,
already compressed and encrypted, cross the wire.

Requests carry an id and are answered out of order, so the engine's upload threads and the
control node's backend threads work in parallel over one connection.

A restore runs in worker processes on the agent (as it does from a local pool: a restore of many
files is mostly per-file Python work, which threads of one interpreter cannot share out). A TLS
connection cannot be shared between processes, so the agent asks for *lanes*: the control node
opens that many more connections, each says which job it serves, and each worker process takes one
for its own storage requests. The job's first connection keeps the index, progress and result.

Packs cross as clear segments (``TlsStream.send_clear``), outside TLS, where the receiving side says it
takes them: they are sealed already (compressed, and each chunk encrypted under the pool's key with its
name in the associated data), and TLS only sealed them a second time.
- A restore's ranges of data packs come back on the lanes that way: the agent authenticates every chunk
  before it writes it, so a changed or swapped byte fails the restore.
- A backup uploads its packs that way to a control node that offers it in the job: a pack is named by
  the BLAKE3 hash of its bytes, and the control node checks the bytes against the name (which came
  in TLS) before it stores them.
Whatever crosses, a key the agent names is an object of the pool, never a path (``_pool_key``).
The requests, every other reply, the job and the lanes' handshakes (mutual TLS, the job's token) stay in
TLS: who may read or write the pool, and what, is as before.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.agent.wire import ProtocolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import Backend, BackendError, NotFound
from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.direct_io import AlignedBuffers

JOB, REQUEST, REPLY, PROGRESS, RESULT, FAILURE, LANES, LANE = range(40, 48)
OPERATIONS = ('write', 'replace', 'write_deferred', 'flush', 'read', 'list', 'delete', 'size')
PACK_WRITES = ('write', 'write_deferred')  # how packs are stored (named by their content, never replaced)
PACK_KEY = re.compile(r'(data|tree)/([0-9a-f]{2})/\2[0-9a-f]{62}')  # format.pack_key of a BLAKE3 name
SERVE_WORKERS = 8
LANE_TIMEOUT = 60.0  # how long the agent waits for the lanes it asked for


class RelayError(Exception):
    """The other side reported a failure; the message is theirs."""


class SharedChannel:
    """A channel several threads send on (one lock) while one thread receives."""

    def __init__(self, channel):
        self.channel = channel
        self._lock = threading.Lock()

    def send(self, kind, header=None, payload=b'', compress=True, clear=False):
        with self._lock:
            self.channel.send(kind, header, payload, compress, clear)

    def recv(self, into=None):
        return self.channel.recv(into)


# -- the agent's side ---------------------------------------------------------------------------------

class RemoteBackend(Backend):
    """The pool's storage, reached through the control node. Thread-safe."""

    accepts_buffers = True  # a write is sent whole before it returns: the caller's buffer is free again after it

    def __init__(self, shared, location, clear_packs=False):
        self.shared = shared
        self.location = location
        self.clear_packs = clear_packs  # the control node takes uploaded packs as clear segments
        self._ids = itertools.count(1)
        self._waiting = {}
        self._lock = threading.Lock()
        self._closed = None

    # called by the agent's receiving loop
    def deliver(self, header, payload):
        with self._lock:
            future = self._waiting.pop(header.get('id'), None)
        if future is None:
            raise ProtocolError('reply to unknown request %r' % header.get('id'))
        if header.get('error'):
            error = NotFound if header.get('missing') else BackendError
            future.set_exception(error(header['error']))
        else:
            future.set_result((header, payload))

    def fail_all(self, reason):
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._closed = reason
        for future in waiting.values():
            future.set_exception(BackendError(reason))

    def receive_replies(self, what):
        """Deliver the replies arriving on ``what`` (the connection, a lane) until the control node closes it.

        Any other end fails every request in flight (none may wait forever); a broken connection or
        protocol is raised after that."""
        try:
            while True:
                kind, header, payload = self.shared.recv()
                if kind != REPLY:
                    raise ProtocolError('unexpected frame %d on %s from the control node' % (kind, what))
                self.deliver(header, payload)
        except EOFError:
            self.fail_all('the control node closed %s' % what)
        except (OSError, ProtocolError) as exc:
            self.fail_all('lost %s to the control node: %s' % (what, exc))
            raise

    @classmethod
    def over(cls, channel, location):
        """A backend with a thread of its own receiving the replies on ``channel`` (a lane, in a worker process)."""
        backend = cls(SharedChannel(channel), location)

        def receive():
            try:
                backend.receive_replies('the lane')
            except (OSError, ProtocolError):
                pass  # the requests in flight have failed with the cause

        threading.Thread(target=receive, name='ferry-lane', daemon=True).start()
        return backend

    def _call(self, operation, payload=b'', **args):
        return self._request(operation, payload, **args).result()

    def _request(self, operation, payload=b'', **args):
        future = Future()
        with self._lock:
            if self._closed:
                raise BackendError(self._closed)
            request_id = next(self._ids)
            self._waiting[request_id] = future
        # every pool object is compressed and encrypted already: the wire must not try again
        clear = self.clear_packs and bool(payload) and operation in PACK_WRITES and pack_kind(args.get('key')) is not None
        try:
            self.shared.send(REQUEST, dict(args, id=request_id, op=operation), payload, compress=False, clear=clear)
        except OSError as exc:  # a storage failure to the engine, not one of the files it writes
            with self._lock:
                self._waiting.pop(request_id, None)
            raise BackendError('lost the connection to the control node: %s' % exc) from None
        return future

    def write(self, key, data):
        self._call('write', data, key=key)

    def replace(self, key, data):
        self._call('replace', data, key=key)

    def write_deferred(self, key, data):
        self._call('write_deferred', data, key=key)

    def flush(self):
        self._call('flush')

    def read(self, key, offset=0, length=None):
        return self._call('read', key=key, offset=offset, length=length)[1]

    def read_ahead(self, key, offset=0, length=None):
        """Ask for a range now; the returned callable waits for it (a worker asks for its next reads while it works)."""
        future = self._request('read', key=key, offset=offset, length=length)
        return lambda: future.result()[1]

    def list(self, prefix):
        header = self._call('list', prefix=prefix)[0]
        return [tuple(item) for item in header['items']]

    def delete(self, key):
        self._call('delete', key=key)

    def size(self, key):
        return self._call('size', key=key)[0]['size']


# -- the control node's side ----------------------------------------------------------------------------

def send_job(shared, job, payload=b'', lanes=True, clear_packs=True):
    """Give the agent its job, with what this control node offers: ``lanes`` (it opens them when asked) and
    ``clear_packs`` (packs may be uploaded as clear segments, each checked against its name)."""
    shared.channel.accept_clear = clear_packs
    shared.send(JOB, dict(job, lanes=lanes, clear=clear_packs), payload)


def serve(shared, backend, on_progress=None, workers=SERVE_WORKERS, open_lane=None, clear_packs=True):
    """Answer the agent's storage requests until it sends its result; return the result header.

    ``open_lane`` makes another connection to the agent (a Channel) when the agent asks for lanes;
    without it the agent is told to do without. ``clear_packs``: ranges of packs go back on lanes
    as clear segments where the agent takes them. Raises RelayError with the agent's message when
    the job failed on the agent.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix='ferry-relay')
    buffers = _PackBuffers(workers)
    lanes = []
    try:
        while True:
            kind, header, payload, buffer = buffers.recv(shared)
            if kind == REQUEST:
                buffers.answer_in(pool, shared, backend, header, payload, buffer)
                continue
            buffers.release(payload, buffer)  # (no other frame carries a pack)
            if kind == PROGRESS:
                if on_progress is not None:
                    on_progress(header)
            elif kind == LANES:
                lanes.extend(_open_lanes(header, open_lane, pool, backend, buffers, clear_packs))
            elif kind == RESULT:
                return header
            elif kind == FAILURE:
                raise RelayError(header.get('message') or 'the agent failed without saying why')
            else:
                raise ProtocolError('unexpected frame %d from the agent' % kind)
    finally:
        for lane, thread in lanes:  # the job is over (or failed): wake the lane's reader and let it go
            try:
                lane.sock.shutdown(socket.SHUT_RDWR)  # the TCP connection's: a TLS shutdown would wait for the agent
            except OSError:
                pass
            thread.join(LANE_TIMEOUT)
            lane.sock.close()
        pool.shutdown(wait=True)
        buffers.close()


def _open_lanes(header, open_lane, pool, backend, buffers, clear_packs):
    """Connect the lanes the agent asked for; each is served by a thread of its own until the agent closes it."""
    opened = []
    takes_clear = clear_packs and bool(header.get('clear'))  # (an agent of an earlier release reads every reply through TLS)
    for index in range(int(header.get('count') or 0) if open_lane is not None else 0):
        lane = open_lane()
        lane.send(LANE, {'token': header.get('token'), 'index': index})
        shared = SharedChannel(lane)
        thread = threading.Thread(target=_serve_lane, args=(shared, backend, pool, buffers, takes_clear), name='ferry-lane-%d' % index, daemon=True)
        thread.start()
        opened.append((lane, thread))
    return opened


def _serve_lane(shared, backend, pool, buffers, takes_clear=False):
    try:
        while True:
            kind, header, payload, buffer = buffers.recv(shared)
            if kind != REQUEST:
                buffers.release(payload, buffer)
                raise ProtocolError('unexpected frame %d on a lane' % kind)
            buffers.answer_in(pool, shared, backend, header, payload, buffer, takes_clear)
    except (EOFError, OSError, ProtocolError):
        pass  # the worker that used it is done (or gone: its job reports that on the main connection)


class _PackBuffers:
    """Aligned buffers, reused, that the control node receives packs into.

    A pack the agent uploads was received into a new bytearray (zero-filled, its pages faulted in)
    and copied into an aligned buffer to be written around the page cache. Received into one of
    these, it is written from where it arrived, and the buffer goes back when the write is answered.
    """

    SIZE = 32 * 1024 * 1024  # a pack (16 MiB by default) and its last blob; larger payloads get a bytearray

    def __init__(self, workers):
        self.buffers = AlignedBuffers(self.SIZE, keep=workers + 2)  # one per serving thread, and one being received (more: unmapped)

    def recv(self, shared):
        """``shared.recv()`` and the buffer its payload is in (None: a payload of its own)."""
        taken = []

        def into(size):
            if size > self.SIZE:
                return None
            taken.append(self.buffers.get())
            return taken[-1]

        kind, header, payload = shared.recv(into=into)  # (a buffer of a frame cut short is left to the collector)
        if taken and not isinstance(payload, memoryview):  # it arrived compressed: the payload is a copy
            self.buffers.put(taken.pop())
        return kind, header, payload, (taken[0] if taken else None)

    def answer_in(self, pool, shared, backend, header, payload, buffer, takes_clear=False):
        """Answer the request on one of ``pool``'s threads, then take ``buffer`` back."""
        if buffer is None:
            pool.submit(_answer, shared, backend, header, payload, takes_clear)
            return

        def answer():
            try:
                _answer(shared, backend, header, payload, takes_clear)
            finally:
                self.release(payload, buffer)
        pool.submit(answer)

    def release(self, payload, buffer):
        if buffer is not None:
            payload.release()
            self.buffers.put(buffer)

    def close(self):
        self.buffers.close()


def pack_kind(key):
    """'data' or 'tree' for a pack's exact key, else None: what may cross outside TLS is decided by this alone."""
    found = PACK_KEY.fullmatch(key) if isinstance(key, str) else None
    return found.group(1) if found else None


def _pool_key(value, what='key'):
    """Refuse a ``value`` that is no key of the pool: the agent names objects (``data/ab/ab12...``), never paths."""
    if not isinstance(value, str) or not value or value.startswith('/') or any(part in ('', '.', '..') for part in value.split('/')):
        raise BackendError('%r is not a %s of the pool' % (value, what))


def _check_clear_upload(operation, key, payload):
    """A payload that came outside TLS is stored only as a pack whose bytes hash to its name (which came in TLS)."""
    if operation not in PACK_WRITES or pack_kind(key) is None:
        raise BackendError('%s of %s came outside TLS: only packs may' % (operation, key))
    if fmt.pack_id_of(payload) != key.rsplit('/', 1)[-1]:
        raise BackendError('pack %s arrived damaged: its bytes do not hash to its name; nothing was stored' % key)


def _answer(shared, backend, header, payload, takes_clear=False):
    """Do the storage operation a request asks for and reply. ``takes_clear``: the agent takes packs' bytes as
    clear segments."""
    request_id, operation = header.get('id'), header.get('op')
    reply, body = {'id': request_id}, b''
    try:
        if operation not in OPERATIONS:
            raise BackendError('unknown storage operation %r' % operation)
        if operation == 'list':
            prefix = (header.get('prefix') or '').rstrip('/')
            if prefix:  # (none, or only slashes: the whole pool)
                _pool_key(prefix, 'prefix')
        elif operation != 'flush':
            _pool_key(header.get('key'))
        if 'c' in header:
            _check_clear_upload(operation, header.get('key'), payload)
        if operation in ('write', 'replace', 'write_deferred'):
            # a big payload arrives as a bytearray, which the cloud clients would take for a stream
            getattr(backend, operation)(header['key'], payload if backend.accepts_buffers else bytes(payload))
        elif operation == 'flush':
            backend.flush()
        elif operation == 'read':
            if header.get('length') is not None and hasattr(backend, 'read_view'):
                body = backend.read_view(header['key'], header.get('offset') or 0, header['length'])  # sent before this thread reads again
            else:
                body = backend.read(header['key'], header.get('offset') or 0, header.get('length'))
        elif operation == 'list':
            reply['items'] = [list(item) for item in backend.list(header.get('prefix') or '')]
        elif operation == 'delete':
            backend.delete(header['key'])
        else:
            reply['size'] = backend.size(header['key'])
    except NotFound as exc:
        reply.update(error=str(exc), missing=True)
    except Exception as exc:  # pylint: disable=broad-except
        reply['error'] = '%s: %s' % (exc.__class__.__name__, exc) if not isinstance(exc, BackendError) else str(exc)
    # only data packs' bytes (ranges, or whole): every chunk in them is authenticated where it is used
    clear = takes_clear and operation == 'read' and pack_kind(header.get('key')) == 'data'
    try:
        shared.send(REPLY, reply, body, compress=False, clear=clear)  # pool objects are compressed and encrypted
    except OSError:
        pass  # the connection is gone; the receiving loop reports it


# -- the job, on the agent ----------------------------------------------------------------------------------

def run_job(channel, progress_interval=2.0, accept=None):
    """Receive one job from the control node, run it with the pool engine, send its result.

    ``accept(timeout)`` returns the agent's next control-node connection (a Channel), for lanes;
    without it a restore runs in threads over the one connection.
    """
    from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress  # pylint: disable=import-outside-toplevel
    shared = SharedChannel(channel)
    kind, job, metadata = shared.recv()
    if kind != JOB:
        raise ProtocolError('expected a job from the control node, got frame %d' % kind)
    backend = RemoteBackend(shared, job.get('location') or 'the control node', clear_packs=bool(job.get('clear')))
    opened = []

    def lanes(count):
        return _ask_for_lanes(shared, accept, count, backend.location, opened)

    outcome = {}

    def report(state, line):
        shared.send(PROGRESS, dict(state, line=line))

    def work():
        try:
            progress = Progress(job.get('op', 'job'), report=report, interval=progress_interval)
            outcome['result'] = _run(job, backend, metadata, progress, lanes if accept is not None and job.get('lanes') else None)
            shared.send(RESULT, outcome['result'])
        except Exception as exc:  # pylint: disable=broad-except
            outcome['error'] = str(exc) or exc.__class__.__name__
            try:
                shared.send(FAILURE, {'message': outcome['error']})
            except OSError:
                pass
        finally:
            backend.fail_all('the job has ended')
            for channel in opened:  # the workers that used them are gone: the control node sees the lanes end
                channel.sock.close()

    worker = threading.Thread(target=work, name='ferry-job', daemon=True)
    worker.start()
    try:
        backend.receive_replies('the connection')  # until the control node, having the result, closes it
    except (OSError, ProtocolError):
        worker.join()
        raise
    worker.join()
    if 'result' not in outcome:
        raise EOFError('the control node left before the job ended: %s' % outcome.get('error', 'no result'))
    return outcome['result']


def _ask_for_lanes(shared, accept, count, location, opened):
    """``count`` backend makers, one per worker process: each makes a RemoteBackend over a lane of its own.
    The lanes are added to ``opened`` as they come, for the job to close at its end."""
    token = os.urandom(16).hex()
    shared.send(LANES, {'count': count, 'token': token, 'clear': True})
    makers = []
    while len(makers) < count:
        channel = accept(LANE_TIMEOUT)
        kind, hello, _payload = channel.recv()
        if kind != LANE or hello.get('token') != token:
            channel.sock.close()  # a connection of another job (a rerun of the sync?): not ours
            continue
        channel.accept_clear = True  # (as the agent asked with the lanes: packs' ranges come outside TLS)
        opened.append(channel)
        makers.append(lambda channel=channel: RemoteBackend.over(channel, location))
    return makers


def _run(job, backend, metadata, progress, lanes=None):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.pool.restore import Restore  # pylint: disable=import-outside-toplevel
    # a control node hands over the pool's keys; one of an earlier release sent the passphrase
    pool = Pool.open_with_keys(backend, job['keys']) if 'keys' in job else Pool.open(backend, job['passphrase'])
    try:
        if job['op'] == 'backup':
            point = Backup(pool, job['volumes'], group=job.get('group') or 'default', tags=job.get('tags'), parent=job.get('parent') or 'latest',
                           metadata={job['metadata_name']: metadata} if job.get('metadata_name') else None, progress=progress,
                           compare_identity=job.get('compare_identity', True)).run()
            return {'point': point['id'], 'volumes': {name: {k: v for k, v in record.items() if k != 'tree'} for name, record in point['volumes'].items()},
                    'stats': point['stats']}
        if job['op'] == 'restore':
            point = pool.resolve_point(job['point'], job.get('group'))
            stats = Restore(pool, point, job['volumes'], paths=job.get('paths'), progress=progress, worker_backends=lanes).run()
            return {'point': point['id'], 'stats': stats}
        raise RelayError('unknown job %r: expected backup or restore' % job.get('op'))
    finally:
        pool.close()
