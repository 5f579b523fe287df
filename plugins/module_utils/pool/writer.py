# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adds blobs to a pool: deduplicates, compresses, seals, packs, uploads and indexes them.

Callers (the backup's worker threads) hand over plaintext; compression and sealing run in the
caller's thread (zstd, BLAKE3 and AES-GCM release the GIL), appending to the open pack is under a
lock, and full packs go to a small pool of upload threads. At most ``max_packs_in_flight`` packs
wait for upload, which bounds memory whatever the size of the data.

A checkpoint waits for the uploads and writes an index fragment naming them, so a backup killed
later still leaves those chunks usable: the next backup finds them in the index and does not
upload them again.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.pool import direct_io, format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.compression import CompressionProbe

_local = threading.local()
_EVERY_ONE = CompressionProbe(skip=0)  # for blobs that are not pieces of one stream: each is tried


class BlobWriter:
    def __init__(self, pool, uploaders=2, max_packs_in_flight=3):
        self.pool = pool
        self.keys = pool.keys
        self.level = pool.config['compression_level']
        self.pack_size = pool.config['pack_size']
        self.lock = threading.Lock()
        self.pending = set()  # ids added by this writer whose pack is not indexed yet
        self.builders = {}
        self.uploaded = []    # (pack id, kind, entries) not yet named by an index fragment
        self.uploads = []
        self.executor = ThreadPoolExecutor(max_workers=uploaders, thread_name_prefix='ferry-upload')
        self.in_flight = threading.BoundedSemaphore(max_packs_in_flight)
        # packs being filled (one per kind) plus those waiting for upload, each in a reused aligned buffer
        largest_blob = max(pool.config['chunk_max'], 4 * 1024 * 1024) + 64
        size = -(-(self.pack_size + largest_blob + fmt.HEADER_RESERVE) // 4096) * 4096
        self.buffers = direct_io.AlignedBuffers(size, keep=max_packs_in_flight + 2)
        self.error = None
        self.stats = {'blobs_new': 0, 'bytes_new': 0, 'bytes_stored': 0, 'packs': 0}
        self._unindexed = 0

    def unindexed_bytes(self):
        """Bytes uploaded since the last checkpoint (what a crash now would make the next backup redo)."""
        return self._unindexed

    def known(self, blob_id):
        return blob_id in self.pool.blobs or blob_id in self.pending

    def add(self, blob_type, blob_id, plain, compress=True, probe=None):
        """Store ``plain`` under ``blob_id`` unless the pool already has it; True when stored.

        ``probe``: the CompressionProbe of the stream (a file) ``plain`` is a piece of, which knows
        when compressing is not worth trying."""
        with self.lock:
            if blob_id in self.pool.blobs or blob_id in self.pending:
                return False
            self.pending.add(blob_id)
        flags, payload, probe = 0, plain, probe or _EVERY_ONE
        if compress and probe.worth_trying():
            packed = _compressor(self.level).compress(plain)
            if probe.shrank(len(plain), len(packed)):
                flags, payload = fmt.COMPRESSED, packed
        sealed = self.keys.seal_parts(payload, fmt.blob_aad(blob_type, flags, blob_id))
        length = sum(len(part) for part in sealed)
        kind = fmt.PACK_KIND[blob_type]
        full = []
        with self.lock:
            builder = self.builders.get(kind)
            if builder is not None and not builder.fits(length):
                full.append(self.builders.pop(kind))
                builder = None
            if builder is None:
                builder = self.builders[kind] = fmt.PackBuilder(self.keys, kind, self.buffers)
            builder.add(blob_type, blob_id, sealed, len(plain), flags)
            self.stats['blobs_new'] += 1
            self.stats['bytes_new'] += len(plain)
            if len(builder) >= self.pack_size:
                full.append(self.builders.pop(kind))
        for builder in full:
            self._upload(builder)
        return True

    def _upload(self, builder):
        self._raise_upload_error()
        # released when the upload ends
        self.in_flight.acquire()  # pylint: disable=consider-using-with
        try:
            self.uploads.append(self.executor.submit(self._finish_and_write, builder))
        except BaseException:
            self.in_flight.release()
            raise

    def _finish_and_write(self, builder):
        try:
            pack_id, data = builder.finish()
            if not self.pool.backend.accepts_buffers:
                data = bytes(data)
            self.pool.backend.write_deferred(fmt.pack_key(builder.kind, pack_id), data)
            with self.lock:
                self.uploaded.append((pack_id, builder.kind, builder.entries))
                self.stats['packs'] += 1
                self.stats['bytes_stored'] += len(data)
                self._unindexed += len(data)
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc  # re-raised in the caller's thread
        finally:
            builder.release()
            self.in_flight.release()

    def _raise_upload_error(self):
        if self.error is not None:
            raise self.error

    def checkpoint(self, flush_open_packs=True):
        """Upload what is packed and write an index fragment for every uploaded pack."""
        if flush_open_packs:
            with self.lock:
                builders, self.builders = list(self.builders.values()), {}
            for builder in builders:
                if builder.entries:
                    self._upload(builder)
        uploads, self.uploads = self.uploads, []
        for upload in uploads:
            upload.result()
        self._raise_upload_error()
        with self.lock:
            packs, self.uploaded = self.uploaded, []
            self._unindexed = 0
        if not packs:
            return None
        self.pool.backend.flush()  # the packs are durable before an index names them
        name = self.pool.write_index([[pack_id, kind, entries] for pack_id, kind, entries in packs])
        with self.lock:
            for _pack_id, _kind, entries in packs:
                for entry in entries:
                    self.pending.discard(entry[1])
        return name

    def close(self):
        self.executor.shutdown(wait=True)


def _compressor(level):
    compressor = getattr(_local, 'compressor', None)
    if compressor is None or _local.level != level:
        compressor = _local.compressor = fmt.zstandard.ZstdCompressor(level=level)
        _local.level = level
    return compressor
