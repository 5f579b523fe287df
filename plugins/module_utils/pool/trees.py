# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A volume tree in a pool: its entries, in walk order, as a stream of tree blobs.

Entries are the agent's tree entries (path, type, mode, uid, gid, mtime_ns, size, target,
xattrs) plus, for files, the list of chunk ids. The stream is cut into blobs after entries whose
path's CRC-32 ends in six zero bits (about 64 entries a blob) or at 1 MiB, so the cuts depend on the
entries themselves: a point where little changed shares most tree blobs with its parent.

Entries are in the walk's order (a directory's entries together, directories depth first, names
sorted), which ``order_key`` reproduces, so a new walk and the parent point's tree can be merged in one pass
without holding either in memory.
"""

from __future__ import annotations

import zlib

from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt

try:
    import msgpack
except ImportError:  # pragma: no cover
    msgpack = None

MAX_TREE_BLOB = 1024 * 1024
# about 64 entries a blob: a point where a few files changed rewrites only the blobs holding them
CUT_MASK = 0x3f


def order_key(path):
    """The walk's order: directories' entries grouped in depth-first order of the directories, names sorted within."""
    parent, _sep, name = path.rpartition('/')
    return (parent.split('/') if parent else [], name)


class TreeWriter:
    def __init__(self, writer):
        self.writer = writer
        self.keys = writer.keys
        self.buffer = bytearray()
        self.blob_ids = []
        self.packer = msgpack.Packer(use_bin_type=True)

    def add(self, entry):
        self.add_packed(self.packer.pack(entry), entry['path'])

    def add_packed(self, packed, path):
        """An entry already packed (an unchanged entry of the parent tree: no need to pack it again)."""
        self.buffer += packed
        if len(self.buffer) >= MAX_TREE_BLOB or zlib.crc32(path.encode()) & CUT_MASK == 0:
            self._cut()

    def _cut(self):
        if not self.buffer:
            return
        plain = bytes(self.buffer)
        blob_id = self.keys.chunk_id(plain)
        self.writer.add(fmt.TREE, blob_id, plain)
        self.blob_ids.append(blob_id)
        self.buffer = bytearray()

    def finish(self):
        self._cut()
        return self.blob_ids


def read_tree(pool, blob_ids):
    """Yield the entries of a stored tree, one blob in memory at a time."""
    for blob_id in blob_ids:
        yield from _unpack(pool.read_blob(blob_id))


def read_tree_records(pool, blob_ids):
    """Yield (entry, its packed bytes) of a stored tree: an unchanged entry is written back as it was read."""
    for blob_id in blob_ids:
        yield from _unpack_records(pool.read_blob(blob_id))


def _unpack(data):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    yield from unpacker


def _unpack_records(data):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    start = 0
    for entry in unpacker:
        end = unpacker.tell()
        yield entry, data[start:end]
        start = end


class ParentTree:
    """Look up entries of a parent tree in walk order (a merge, not a dictionary).

    Paths must be looked up in walk order, each once: a found entry is consumed, so when nothing
    moved every lookup is one string comparison (sort keys are only built where the trees differ).
    """

    def __init__(self, records):
        """``records``: (entry, packed bytes) in walk order, as ``read_tree_records`` yields them."""
        self.records = iter(records)
        self._advance()

    def _advance(self):
        self.current, self.current_packed = next(self.records, (None, None))
        self.current_key = None

    def _key(self):
        if self.current_key is None:
            self.current_key = order_key(self.current['path'])
        return self.current_key

    def find(self, path):
        """The parent's entry at ``path`` or None."""
        return self.find_record(path)[0]

    def find_record(self, path):
        """(entry, packed bytes) of the parent's entry at ``path``, or (None, None)."""
        if self.current is not None and self.current['path'] != path:
            wanted = order_key(path)
            while self.current is not None and self._key() < wanted:
                self._advance()
            if self.current is None or self.current_key != wanted:
                return None, None
        if self.current is None:
            return None, None
        record = self.current, self.current_packed
        self._advance()
        return record
