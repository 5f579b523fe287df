# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A storage pool: its configuration, key slots, index of blobs, restore points and locks.

Layout under the pool's root (identical on every backend)::

    config                  clear JSON: format, pool id, chunker, cipher, compression, pack size
    keys/<slot>             the master keys wrapped under one passphrase (Argon2id)
    data/<xx>/<pack>        packs of file chunks             (immutable, named by their BLAKE3)
    tree/<xx>/<pack>        packs of tree and metadata blobs (immutable)
    index/<fragment>        which blob is where               (immutable; prune supersedes them)
    points/<point>          one manifest per restore point: the commit point of a backup
    locks/<lock>            who is writing or pruning

Write order is packs, then index fragments, then the manifest; readers list points before they
load the index. A crash at any moment therefore leaves at worst unreferenced packs and
fragments, never a point that refers to something missing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from ansible_collections.ferry.kube.plugins.module_utils.pool import crypto, format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import NotFound

FORMAT_VERSION = 1
# Chunks of about 640 KiB (FastCDC's average is chunk_avg + chunk_min): on the reference data they
# compress as well as 1.25 MiB ones and an incremental stores 11 MB less (smaller edges around changes).
DEFAULTS = {'chunk_min': 128 * 1024, 'chunk_avg': 512 * 1024, 'chunk_max': 2 * 1024 * 1024,
            'compression': 'zstd', 'compression_level': 1, 'pack_size': 16 * 1024 * 1024, 'cipher': 'aes-256-gcm'}
INDEX_MAGIC = b'FIX1'
POINT_MAGIC = b'FPT1'
STATE_MAGIC = b'FST1'
LOCK_STALE_SECONDS = 30 * 60
LOCK_REFRESH_SECONDS = 5 * 60
SESSIONS_AHEAD = 256  # packs' preambles asked for at once (a batch of one huge file spans thousands of packs)


class PoolError(Exception):
    """An operation on a pool failed; the message says what is wrong and how to fix it."""


class BlobIndex(dict):
    """blob id -> (pack number, offset, length, raw length, flags, type), each value kept as one int.

    A tuple of six ints costs about 220 bytes; one int about 45. The index of every blob a pool
    holds lives in memory, so this is what keeps a backup's memory nearly flat as data grows.
    """

    def __setitem__(self, key, value):
        number, offset, length, raw_length, flags, blob_type = value
        dict.__setitem__(self, key, (((number << 32 | offset) << 32 | length) << 32 | raw_length) << 8 | flags << 4 | blob_type)

    @staticmethod
    def _unpack(value):
        return (value >> 104, (value >> 72) & 0xffffffff, (value >> 40) & 0xffffffff, (value >> 8) & 0xffffffff, (value >> 4) & 15, value & 15)

    def __getitem__(self, key):
        return self._unpack(dict.__getitem__(self, key))

    def get(self, key, default=None):
        value = dict.get(self, key)
        return default if value is None else self._unpack(value)

    def items(self):
        for key, value in dict.items(self):
            yield key, self._unpack(value)

    def values(self):
        for value in dict.values(self):
            yield self._unpack(value)


class Pool:
    """An opened pool. Create one with ``Pool.create`` or ``Pool.open``."""

    def __init__(self, backend, config, master):
        self.backend = backend
        self.config = config
        self.keys = crypto.Keys(master, config['pool_id'], config['cipher'])
        self.blobs = BlobIndex()  # blob id -> (pack number, offset, length, raw length, flags, type)
        self.packs = []        # pack number -> (pack id, kind)
        self.pack_numbers = {}  # pack id -> pack number
        self.fragments = {}    # fragment name -> [pack ids]
        self.index_loaded = False
        self._sessions = {}    # pack key -> its session id (packs never change)
        self._sessions_asked = {}  # pack key -> waits for its preamble, asked for ahead (ask_for_sessions)
        self._index_lock = threading.Lock()

    # -- creation and opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, backend, passphrase, settings=None, copy_ids_from=None):
        """A new, empty pool. ``copy_ids_from`` (an opened pool) shares its chunk naming so points can be copied between them."""
        if backend.size('config') is not None:
            raise PoolError('%s already holds a pool; open it instead of creating one' % backend.location)
        config = dict(DEFAULTS)
        config.update({k: v for k, v in (settings or {}).items() if v is not None})
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise PoolError('unknown pool settings: %s (known: %s)' % (', '.join(sorted(unknown)), ', '.join(sorted(DEFAULTS))))
        if config['cipher'] not in crypto.CIPHERS:
            raise PoolError('cipher %r is not supported: choose one of %s' % (config['cipher'], ', '.join(crypto.CIPHERS)))
        if not config['chunk_min'] <= config['chunk_avg'] <= config['chunk_max']:
            raise PoolError('chunk sizes must satisfy chunk_min <= chunk_avg <= chunk_max')
        master = crypto.new_master()
        if copy_ids_from is not None:
            for name in ('chunk_min', 'chunk_avg', 'chunk_max'):
                config[name] = copy_ids_from.config[name]
            master['id'] = copy_ids_from.keys.id_key
            config['id_family'] = copy_ids_from.config['id_family']
        config.update(format=FORMAT_VERSION, pool_id=uuid.uuid4().hex, created=_now_iso())
        config.setdefault('id_family', config['pool_id'])
        backend.write('keys/%s' % uuid.uuid4().hex[:16], crypto.make_slot(master, passphrase, 'initial'))
        backend.write('config', json.dumps(config, sort_keys=True, indent=1).encode())
        return cls(backend, config, master)

    @classmethod
    def open(cls, backend, passphrase):
        config = cls._read_config(backend)
        slots = [key for key, _size in backend.list('keys/')]
        if not slots:
            raise PoolError('the pool at %s has no key slots left; it cannot be opened' % backend.location)
        for slot in slots:
            try:
                master = crypto.open_slot(backend.read(slot), passphrase)
            except crypto.KeyError_:
                continue
            return cls(backend, config, master)
        raise PoolError('wrong passphrase for the pool at %s: none of its %d key slot(s) opens with it; check the passphrase or the secret it comes from'
                        % (backend.location, len(slots)))

    @classmethod
    def open_with_keys(cls, backend, keys):
        """The pool opened with the secret keys of an opened one (``master_keys``): no passphrase, no key derivation."""
        if not isinstance(keys, dict) or set(keys) != {'master', 'id'}:
            raise PoolError('the keys given for the pool at %s are not a pool\'s master and id keys' % backend.location)
        return cls(backend, cls._read_config(backend), {'master': bytes(keys['master']), 'id': bytes(keys['id'])})

    @staticmethod
    def _read_config(backend):
        try:
            config = json.loads(backend.read('config'))
        except NotFound:
            raise PoolError('no pool at %s: create it first (ferry pool init, or ferry.kube.pool with state=present)' % backend.location) from None
        except ValueError:
            raise PoolError('the config of the pool at %s is damaged (not JSON)' % backend.location) from None
        if config.get('format') != FORMAT_VERSION:
            raise PoolError('the pool at %s has format %r; this Ferry reads format %d' % (backend.location, config.get('format'), FORMAT_VERSION))
        return config

    def master_keys(self):
        """The pool's secret keys: what a process the control node trusts with this pool (an agent, over TLS)
        needs to open it, instead of the passphrase, which may open other pools too."""
        return {'master': self._master_secret(), 'id': self.keys.id_key}

    # -- key slots ---------------------------------------------------------------------------------

    def key_slots(self):
        return [key.split('/', 1)[1] for key, _size in self.backend.list('keys/')]

    def add_key(self, passphrase, label=''):
        """A new slot for another passphrase; the data is not re-encrypted."""
        slot = uuid.uuid4().hex[:16]
        self.backend.write('keys/%s' % slot, crypto.make_slot(self.master_keys(), passphrase, label))
        return slot

    def remove_key(self, slot):
        slots = self.key_slots()
        if slot not in slots:
            raise PoolError('the pool has no key slot %r (it has %s)' % (slot, ', '.join(slots)))
        if len(slots) == 1:
            raise PoolError('key slot %s is the last one: add another key before removing it' % slot)
        self.backend.delete('keys/%s' % slot)

    def _master_secret(self):
        return self.keys.master_secret

    # -- index -------------------------------------------------------------------------------------

    def load_index(self, refresh=False):
        """Read every index fragment (those superseded by prune are skipped)."""
        with self._index_lock:
            if self.index_loaded and not refresh:
                return
            fragments, superseded = {}, set()
            for key, _size in self.backend.list('index/'):
                try:
                    document = fmt.open_document(self.keys, INDEX_MAGIC, self.backend.read(key), key.encode())
                except NotFound:
                    continue  # removed by a concurrent prune after it wrote its replacement
                except fmt.FormatError as exc:
                    raise PoolError('index fragment %s of the pool at %s %s; run check, then prune to rebuild it' % (key, self.backend.location, exc)) from None
                fragments[key] = document
                superseded.update(document.get('supersedes') or ())
            self.blobs, self.packs, self.pack_numbers, self.fragments = BlobIndex(), [], {}, {}
            for key, document in sorted(fragments.items()):
                if key in superseded:
                    continue
                self.fragments[key] = [pack[0] for pack in document['packs']]
                for pack_id, kind, entries in document['packs']:
                    self._register_pack(pack_id, kind, entries)
            self.index_loaded = True

    def _register_pack(self, pack_id, kind, entries):
        number = self.pack_numbers.get(pack_id)
        if number is None:
            number = len(self.packs)
            self.packs.append((pack_id, kind))
            self.pack_numbers[pack_id] = number
        for blob_type, blob_id, offset, length, raw_length, flags in entries:
            self.blobs[blob_id] = (number, offset, length, raw_length, flags, blob_type)

    def write_index(self, packs, supersedes=()):
        """One fragment naming ``packs`` [(pack id, kind, entries)]; returns its key."""
        document = {'packs': packs, 'supersedes': list(supersedes), 'time': _now_iso()}
        name = 'index/%s' % uuid.uuid4().hex
        self.backend.write(name, fmt.seal_document(self.keys, INDEX_MAGIC, document, name.encode()))
        with self._index_lock:
            self.fragments[name] = [pack[0] for pack in packs]
            for pack_id, kind, entries in packs:
                self._register_pack(pack_id, kind, entries)
        return name

    # -- blobs -------------------------------------------------------------------------------------

    def read_blob(self, blob_id, verify=True, pack_cache=None):
        """The plaintext of a blob, authenticated and (with ``verify``) checked against its id.

        With ``pack_cache`` (packcache.PackCache) whole packs are read once and blobs cut from them.
        """
        if not self.index_loaded:
            self.load_index()
        try:
            number, offset, length, _raw_length, flags, blob_type = self.blobs[blob_id]
        except KeyError:
            raise PoolError('blob %s is not in the index of the pool at %s; run check' % (blob_id.hex(), self.backend.location)) from None
        pack_id, kind = self.packs[number]
        key = fmt.pack_key(kind, pack_id)
        if pack_cache is not None:
            with pack_cache.pack(key) as pack:
                if len(pack) < offset + length:
                    raise fmt.FormatError('pack %s is shorter than its index says (truncated?)' % pack_id)
                return self.open_blob(blob_id, blob_type, flags, pack[offset:offset + length], fmt.pack_session(pack), verify)
        sealed = self.backend.read(key, offset, length)
        return self.open_blob(blob_id, blob_type, flags, sealed, self.pack_session(key), verify)

    def open_blob(self, blob_id, blob_type, flags, sealed, session_id, verify=True):
        try:
            plain = self.keys.open(sealed, fmt.blob_aad(blob_type, flags, blob_id), session_id)
        except crypto.IntegrityError:
            raise fmt.FormatError('blob %s does not authenticate: the pack was damaged in the pool or on the way' % blob_id.hex()) from None
        if flags & fmt.COMPRESSED:
            plain = _decompressor().decompress(plain)
        if verify and self.keys.chunk_id(plain) != blob_id:
            raise fmt.FormatError('blob %s has other content than its name says' % blob_id.hex())
        return plain

    def pack_session(self, key):
        """The session id in a pack's preamble (cached: packs never change)."""
        session_id = self._sessions.get(key)
        if session_id is None:
            asked = self._sessions_asked.pop(key, None)  # (it fails as the read would have)
            session_id = fmt.pack_session(asked() if asked is not None else self.backend.read(key, 0, fmt.PREAMBLE_SIZE))
            self._sessions[key] = session_id
        return session_id

    def ask_for_sessions(self, keys):
        """Ask now, where the backend can ask ahead (a relay lane), for the preambles of the packs ``keys`` whose
        session ids are not known yet, up to SESSIONS_AHEAD of them; ``pack_session`` takes the answers as they come.
        (Else each is asked for alone when its pack's first chunk is read, and waits behind the spans in flight.)"""
        if not hasattr(self.backend, 'read_ahead'):
            return
        for key in keys:
            if len(self._sessions_asked) >= SESSIONS_AHEAD:
                return
            if key not in self._sessions and key not in self._sessions_asked:
                self._sessions_asked[key] = self.backend.read_ahead(key, 0, fmt.PREAMBLE_SIZE)

    # -- restore points ----------------------------------------------------------------------------

    def point_ids(self):
        return sorted(key.split('/', 1)[1] for key, _size in self.backend.list('points/'))

    def read_point(self, point_id):
        key = 'points/%s' % point_id
        try:
            data = self.backend.read(key)
        except NotFound:
            raise PoolError('the pool at %s has no restore point %r; list them with ferry pool points' % (self.backend.location, point_id)) from None
        try:
            return fmt.open_document(self.keys, POINT_MAGIC, data, key.encode())
        except fmt.FormatError as exc:
            raise PoolError('restore point %s %s' % (point_id, exc)) from None

    def points(self):
        """Every restore point's manifest, oldest first."""
        return sorted((self.read_point(point_id) for point_id in self.point_ids()), key=lambda p: (p['time_unix'], p['id']))

    def resolve_point(self, reference, group=None):
        """A point by id, unique id prefix, or 'latest' (within ``group`` when given)."""
        ids = self.point_ids()
        if reference in (None, '', 'latest'):
            candidates = [p for p in self.points() if group is None or p.get('group') == group]
            if not candidates:
                raise PoolError('the pool at %s has no restore points%s' % (self.backend.location, ' in group %s' % group if group else ''))
            return candidates[-1]
        matches = [i for i in ids if i == reference] or [i for i in ids if i.startswith(reference)]
        if len(matches) != 1:
            raise PoolError('restore point %r %s in the pool at %s' % (reference, 'is ambiguous' if matches else 'does not exist', self.backend.location))
        return self.read_point(matches[0])

    def write_point(self, manifest):
        """Commit a restore point: the last write of a backup."""
        key = 'points/%s' % manifest['id']
        self.backend.write(key, fmt.seal_document(self.keys, POINT_MAGIC, manifest, key.encode()))

    def delete_point(self, point_id):
        self.backend.delete('points/%s' % point_id)

    # -- state that outlives a run (DR policies: syncs, failover) -----------------------------------

    def read_state(self, name):
        """A small mutable document kept in the pool, or None; sealed like the points."""
        key = 'state/%s' % name
        try:
            data = self.backend.read(key)
        except NotFound:
            return None
        try:
            return fmt.open_document(self.keys, STATE_MAGIC, data, key.encode())
        except fmt.FormatError as exc:
            raise PoolError('state %s %s' % (name, exc)) from None

    def write_state(self, name, document):
        key = 'state/%s' % name
        self.backend.replace(key, fmt.seal_document(self.keys, STATE_MAGIC, document, key.encode()))

    # -- locks -------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, operation, exclusive=False):
        """Shared for writers (backup, copy, forget), exclusive for prune; refreshed while held."""
        name = 'locks/%s' % uuid.uuid4().hex
        record = {'operation': operation, 'exclusive': exclusive, 'host': socket.gethostname(), 'pid': os.getpid(), 'time': time.time()}
        self.backend.replace(name, json.dumps(record).encode())
        try:
            conflict = self._conflicting_lock(name, exclusive)
            if conflict:
                raise PoolError('the pool at %s is locked by %s on %s (pid %s, since %s); wait for it to finish, or remove locks/%s if that process is gone'
                                % (self.backend.location, conflict['operation'], conflict['host'], conflict['pid'],
                                   _iso(conflict['time']), conflict['name']))
            stop = threading.Event()
            refresher = threading.Thread(target=self._refresh_lock, args=(name, record, stop), daemon=True)
            refresher.start()
            try:
                yield
            finally:
                stop.set()
        finally:
            self.backend.delete(name)

    def _refresh_lock(self, name, record, stop):
        while not stop.wait(LOCK_REFRESH_SECONDS):
            record['time'] = time.time()
            try:
                self.backend.replace(name, json.dumps(record).encode())
            except Exception:  # pylint: disable=broad-except
                pass  # a missed refresh only ages the lock

    def _conflicting_lock(self, own, exclusive):
        for key, _size in self.backend.list('locks/'):
            if key == own:
                continue
            try:
                other = json.loads(self.backend.read(key))
            except (NotFound, ValueError):
                continue
            if self._stale(other):
                self.backend.delete(key)
                continue
            if exclusive or other.get('exclusive'):
                other['name'] = key.split('/', 1)[1]
                return other
        return None

    @staticmethod
    def _stale(lock):
        if time.time() - lock.get('time', 0) > LOCK_STALE_SECONDS:
            return True
        if lock.get('host') == socket.gethostname():
            try:
                os.kill(lock['pid'], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def locks(self):
        found = []
        for key, _size in self.backend.list('locks/'):
            try:
                found.append(dict(json.loads(self.backend.read(key)), name=key.split('/', 1)[1]))
            except (NotFound, ValueError):
                continue
        return found

    def close(self):
        self.backend.close()


_local = threading.local()


def _decompressor():
    decompressor = getattr(_local, 'decompressor', None)
    if decompressor is None:
        decompressor = _local.decompressor = fmt.zstandard.ZstdDecompressor()
    return decompressor


def _now_iso():
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _iso(stamp):
    return datetime.fromtimestamp(stamp, timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
