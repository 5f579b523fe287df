# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bytes of a pool's objects: packs of sealed blobs, index fragments and sealed documents.

A pack is written as a stream and read by byte range::

    b'FPK1' | session id (16)
    blob*    nonce | ciphertext | tag            (one per chunk, tree part or metadata part)
    header   sealed zstd(msgpack [[type, id, offset, length, raw length, flags], ...])
    trailer  header length (u32, big endian) | b'FPK1'

Its name is the unkeyed BLAKE3 of its bytes, so anyone can check a pack for damage without keys,
and the header at the end lets an index be rebuilt from the packs alone.

Index fragments, restore-point manifests and other documents are ``magic | session id | sealed
zstd(msgpack(document))``.
"""

from __future__ import annotations

import struct

from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io
from ansible_collections.ferry.kube.plugins.module_utils.pool.crypto import SESSION_ID_SIZE, IntegrityError

try:
    import blake3
    import msgpack
    import zstandard
except ImportError:  # pragma: no cover - requirements of the collection
    blake3 = msgpack = zstandard = None

PACK_MAGIC = b'FPK1'
PREAMBLE_SIZE = len(PACK_MAGIC) + SESSION_ID_SIZE
TRAILER = struct.Struct('>I4s')

# blob types; data and tree/metadata blobs go to separate packs so metadata can be read alone
DATA, TREE, META = 0, 1, 2
PACK_KIND = {DATA: 'data', TREE: 'tree', META: 'tree'}
# blob flags
COMPRESSED = 1
HEADER_RESERVE = 2 * 1024 * 1024  # room kept in a pack buffer for its header (about 70 bytes a blob)


class FormatError(Exception):
    """An object of the pool is not what its name says (damaged, truncated or foreign)."""


def blob_aad(blob_type, flags, blob_id):
    return bytes((blob_type, flags)) + blob_id


def pack_key(kind, pack_id):
    return '%s/%s/%s' % (kind, pack_id[:2], pack_id)


def pack_id_of(data):
    return blake3.blake3(data).hexdigest()


class PackBuilder:
    """Collects sealed blobs for one pack; ``finish`` adds the header and returns (id, bytes).

    With ``buffers`` (direct_io.AlignedBuffers) the pack is built in a reused page-aligned buffer:
    blobs are copied in without holding the GIL, and a local pool writes it out without another copy.
    """

    def __init__(self, keys, kind, buffers=None):
        self.keys = keys
        self.kind = kind
        self.buffers = buffers
        self.memory = buffers.get() if buffers is not None else None
        self.capacity = len(self.memory) if self.memory is not None else None
        preamble = PACK_MAGIC + keys.session_id
        if self.memory is not None:
            self.memory[:len(preamble)] = preamble
            self.buffer = None
        else:
            self.buffer = bytearray(preamble)
        self.size = len(preamble)
        self.entries = []
        self.view = None

    def fits(self, length):
        return self.capacity is None or self.size + length <= self.capacity - HEADER_RESERVE

    def add(self, blob_type, blob_id, sealed_parts, raw_length, flags):
        offset = self.size
        for part in sealed_parts:
            if self.memory is not None:
                direct_io.copy_into(self.memory, self.size, part)
            else:
                self.buffer += part
            self.size += len(part)
        self.entries.append([blob_type, blob_id, offset, self.size - offset, raw_length, flags])

    def __len__(self):
        return self.size

    def finish(self):
        listing = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(self.entries, use_bin_type=True))
        header = self.keys.seal(listing, b'pack-header' + self.keys.session_id, meta=True)
        trailer = TRAILER.pack(len(header), PACK_MAGIC)
        if self.memory is not None and self.size + len(header) + len(trailer) <= self.capacity:
            end = self.size + len(header)
            self.memory[self.size:end] = header
            self.memory[end:end + len(trailer)] = trailer
            self.view = memoryview(self.memory)[:end + len(trailer)]
            return pack_id_of(self.view), self.view
        if self.memory is not None:  # a header larger than its reserve: an ordinary copy
            self.buffer = bytearray(self.memory[:self.size])
        self.buffer += header
        self.buffer += trailer
        data, self.buffer = self.buffer, None  # handed over as it is: a copy of 16 MiB per pack is measurable
        return pack_id_of(data), data

    def release(self):
        """Give the aligned buffer back once the pack is written."""
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.memory is not None:
            self.buffers.put(self.memory)
            self.memory = None


def pack_session(preamble):
    if len(preamble) < PREAMBLE_SIZE or preamble[:4] != PACK_MAGIC:
        raise FormatError('not a Ferry pack (bad preamble)')
    return bytes(preamble[4:PREAMBLE_SIZE])


def read_pack_header(keys, data):
    """The header entries of a whole pack's bytes (for check, rebuilding an index and repacking)."""
    session_id = pack_session(data)
    if len(data) < PREAMBLE_SIZE + TRAILER.size:
        raise FormatError('pack is truncated')
    length, magic = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    start = len(data) - TRAILER.size - length
    if magic != PACK_MAGIC or start < PREAMBLE_SIZE:
        raise FormatError('pack trailer is damaged')
    try:
        plain = keys.open(data[start:len(data) - TRAILER.size], b'pack-header' + session_id, session_id, meta=True)
    except IntegrityError:
        raise FormatError('pack header does not authenticate') from None
    return session_id, msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain), raw=False)


def seal_document(keys, magic, document, aad):
    plain = zstandard.ZstdCompressor(level=3).compress(msgpack.packb(document, use_bin_type=True))
    return magic + keys.session_id + keys.seal(plain, magic + aad, meta=True)


def open_document(keys, magic, data, aad):
    if data[:len(magic)] != magic:
        raise FormatError('not a Ferry %s object' % magic.decode())
    session_id = data[len(magic):len(magic) + SESSION_ID_SIZE]
    try:
        plain = keys.open(data[len(magic) + SESSION_ID_SIZE:], magic + aad, session_id, meta=True)
    except IntegrityError:
        raise FormatError('does not authenticate (damaged, or sealed with another key)') from None
    return msgpack.unpackb(zstandard.ZstdDecompressor().decompress(plain), raw=False)
