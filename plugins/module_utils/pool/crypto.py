# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys of a pool: the master key, the key slots that wrap it, and the per-writer sealing keys.

* The master key is random. Key slots (``keys/<slot>``) hold it wrapped with AES-256-GCM under a
  key derived by Argon2id from a passphrase (or the bytes of a Kubernetes / Ansible-vault secret),
  so passphrases can be added and removed without re-encrypting any data.
* Chunk IDs are keyed BLAKE3 hashes (``id_key``): the storage provider cannot test whether it
  holds a known file. Pools that copy points between them share the id key.
* Every writer process seals with its own session key, HKDF(data key, random session id), and a
  counter nonce. A new process always means a new session id, so a nonce can never repeat under
  one key, whatever crashes or concurrent writers there are.
* The associated data binds each sealed object to its kind and name, so a ciphertext cannot be
  replayed as another object.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading

try:
    import blake3
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    HAS_CRYPTO = True
except ImportError:  # pragma: no cover - a requirement of the collection
    HAS_CRYPTO = False
    InvalidTag = ValueError

try:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
except ImportError:  # pragma: no cover - cryptography < 44
    Argon2id = None

SESSION_ID_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
# Argon2id cost for passphrase slots (RFC 9106's second recommended option, memory-constrained).
ARGON2 = {'iterations': 3, 'lanes': 4, 'memory_cost': 64 * 1024}
CIPHERS = ('aes-256-gcm', 'chacha20-poly1305')


class KeyError_(Exception):  # noqa: N801 - KeyError is a builtin with another meaning
    """No key slot opens with the given passphrase or secret."""


class IntegrityError(Exception):
    """Sealed data did not authenticate: it was damaged, tampered with, or sealed by another pool."""


def _aead(cipher, key):
    if cipher == 'chacha20-poly1305':
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def hkdf(key, salt, info, length=32):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info.encode()).derive(key)


def passphrase_key(passphrase, salt, params=None):
    """The key-encryption key for a passphrase slot."""
    if Argon2id is None:
        raise RuntimeError('cryptography >= 44 is needed for Argon2id key slots: pip install "cryptography>=44"')
    params = params or ARGON2
    secret = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    if not secret:
        raise KeyError_('the passphrase is empty: give the pool passphrase (or the secret holding it)')
    return Argon2id(salt=salt, length=32, iterations=params['iterations'], lanes=params['lanes'],
                    memory_cost=params['memory_cost']).derive(secret)


def make_slot(master, passphrase, label=''):
    """A key slot (JSON bytes) wrapping ``master`` (a dict of the pool's secret keys) under ``passphrase``."""
    salt = os.urandom(16)
    kek = passphrase_key(passphrase, salt)
    nonce = os.urandom(NONCE_SIZE)  # a fresh random key per slot: a random nonce is safe here
    sealed = AESGCM(kek).encrypt(nonce, json.dumps({k: v.hex() for k, v in master.items()}).encode(), b'ferry-key-slot')
    return json.dumps({'kdf': 'argon2id', 'params': ARGON2, 'salt': salt.hex(), 'nonce': nonce.hex(),
                       'sealed': sealed.hex(), 'label': label}, sort_keys=True).encode()


def open_slot(slot_bytes, passphrase):
    """The master keys in a slot, or raise KeyError_ when the passphrase does not open it."""
    slot = json.loads(slot_bytes)
    kek = passphrase_key(passphrase, bytes.fromhex(slot['salt']), slot.get('params'))
    try:
        plain = AESGCM(kek).decrypt(bytes.fromhex(slot['nonce']), bytes.fromhex(slot['sealed']), b'ferry-key-slot')
    except InvalidTag:
        raise KeyError_('wrong passphrase') from None
    return {k: bytes.fromhex(v) for k, v in json.loads(plain).items()}


def new_master():
    """Fresh secret keys of a pool: ``master`` seals data and metadata, ``id`` names chunks."""
    return {'master': os.urandom(32), 'id': os.urandom(32)}


class Keys:
    """The derived keys of an opened pool and the sealing session of this process."""

    def __init__(self, master, pool_id, cipher='aes-256-gcm'):
        self.cipher = cipher
        self.pool_id = pool_id.encode()
        self.id_key = master['id']
        self.master_secret = master['master']
        self.data_root = hkdf(master['master'], self.pool_id, 'data/v1')
        self.meta_root = hkdf(master['master'], self.pool_id, 'meta/v1')
        self.session_id = os.urandom(SESSION_ID_SIZE)
        self._aeads = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()  # next() on a count is atomic under the GIL

    def chunk_id(self, data):
        """Keyed BLAKE3 of plaintext: the name of a chunk in this pool (and pools sharing its id key)."""
        return blake3.blake3(data, key=self.id_key).digest()

    def hasher(self):
        return blake3.blake3(key=self.id_key)

    def _session_aead(self, root, session_id):
        key = (root, session_id)
        aead = self._aeads.get(key)
        if aead is None:
            with self._lock:
                aead = self._aeads.get(key)
                if aead is None:
                    aead = _aead(self.cipher, hkdf(root, session_id, 'session/v1'))
                    self._aeads[key] = aead
        return aead

    def _nonce(self):
        count = next(self._counter)
        if count >= 1 << 32:  # far inside AES-GCM's limits; a writer this long restarts its session
            raise RuntimeError('this session sealed 2^32 objects: start a new one')
        return b'\0\0\0\0' + struct.pack('>Q', count)

    def seal(self, data, aad, meta=False, session_id=None):
        """nonce || ciphertext || tag under this process's session key (``session_id`` picks another's, for tests)."""
        return b''.join(self.seal_parts(data, aad, meta, session_id))

    def seal_parts(self, data, aad, meta=False, session_id=None):
        """(nonce, ciphertext || tag): what ``seal`` joins, for callers that copy both into a pack anyway."""
        root = self.meta_root if meta else self.data_root
        nonce = self._nonce()
        return nonce, self._session_aead(root, session_id or self.session_id).encrypt(nonce, data, aad)

    def open(self, sealed, aad, session_id, meta=False):
        root = self.meta_root if meta else self.data_root
        aead = self._session_aead(root, session_id)
        try:
            view = memoryview(sealed)  # no copies of the ciphertext: the AEAD reads the buffer in place
            return aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise IntegrityError('authentication failed') from None
