# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A TLS connection whose records are moved in bulk: the socket is read and written a megabyte at a
time, and OpenSSL encrypts and decrypts between memory buffers.

An ``ssl.SSLSocket`` reads one record (16 KiB at most) per call, each with two system calls (its
5-byte header, then its body), and writes one system call per record. For the gigabytes a sync
moves, that was a quarter of what TLS cost: on loopback, a gigabyte took 2.0 CPU-seconds
(sender and receiver) through SSLSocket, 1.55 through memory buffers, 0.5 without TLS. The
protocol, the ciphers and the certificate checks are OpenSSL's as before (``SSLContext.wrap_bio``):
only who moves the bytes changes.

Like the SSLSocket it replaces, one thread may read while another writes (the relay's receiving
thread and its senders); reads are not shared between threads, nor writes.

Between the records, a sender may put *clear segments* (``send_clear``): bytes outside TLS, for data
sealed already (a pool's packs, each chunk under the pool's AEAD and checked against its keyed hash
where it is used). The receiver's protocol must say where one comes (``recv_clear_into``): a segment
where sealed data is due, or sealed data where a segment is, is an ``OutOfStep`` error. TLS records
are taken whole to OpenSSL, never past a segment.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

SEND_BYTES = 512 * 1024  # encrypted and sent in steps of this much: the peer starts on it while the rest is sealed
RECEIVE_BYTES = 1024 * 1024  # one socket read brings up to this much (about 64 records)
RECORD_HEADER = 5  # content type, version, length: what the receiver parses to hand OpenSSL whole records only
LONGEST_RECORD = 2 ** 14 + 2048  # after its header (TLS 1.2's limit; TLS 1.3's is 2 ** 14 + 256)
CLEAR_SEGMENT = struct.Struct('>BI')  # type (no TLS content type is 0), length: as long as a record's header
CLEAR = 0
TLS_CONTENT_TYPES = frozenset(range(20, 25))  # change_cipher_spec, alert, handshake, application_data, heartbeat


class OutOfStep(ConnectionError):
    """Sealed and clear data did not come where the protocol has them: a broken or tampered stream."""


class TlsStream:
    """A connected TCP socket with TLS over it; ``sendall`` and ``recv_into`` as a socket's, ``send_clear`` and
    ``recv_clear_into`` for clear segments."""

    def __init__(self, raw, context, server_side):
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._received = bytearray(RECEIVE_BYTES)  # socket bytes not yet given to OpenSSL: [_at, _end)
        self._received_view = memoryview(self._received)
        self._at = self._end = 0
        self._send_lock = threading.Lock()  # what OpenSSL sealed leaves in record order
        self._ended = False  # the peer closed the TCP connection
        self._handshake()

    def _handshake(self):
        """The handshake, within the socket's timeout as a whole (a peer that trickles bytes gets no more time)."""
        timeout = self.raw.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if self._give_records():  # (whole records only, as later: the peer's first data may follow its last flight)
                    continue
                if self._clear_next():
                    raise OutOfStep('the peer sent clear data during the TLS handshake') from None
                if deadline is not None:
                    self.raw.settimeout(max(0.001, deadline - time.monotonic()))
                self._receive()
                if self._ended:
                    raise ConnectionError('the peer closed the connection during the TLS handshake') from None
            except ssl.SSLError:
                try:
                    self._flush()  # the alert that tells the peer why
                except OSError:
                    pass  # (gone already: the handshake's error is the one to report)
                raise
        self.raw.settimeout(timeout)
        self._flush()  # the last flight (the client's Finished)

    def _flush(self):
        """Send what the handshake wrote (only it: afterwards ``sendall`` sends, under its lock)."""
        sealed = self._outgoing.read()
        if sealed:
            self.raw.sendall(sealed)

    def sendall(self, data):
        with self._send_lock, memoryview(data) as view:
            for start in range(0, len(view), SEND_BYTES):
                self._tls.write(view[start:start + SEND_BYTES])
                self.raw.sendall(self._outgoing.read())

    def send_clear(self, data):
        """``data`` as a clear segment, outside TLS: only for bytes sealed already, where the peer's protocol
        expects them (it reads them with ``recv_clear_into``)."""
        with self._send_lock, memoryview(data) as given, given.cast('B') as view:
            head = CLEAR_SEGMENT.pack(CLEAR, len(view))
            sent = self.raw.sendmsg([head, view])  # (one system call for both, mostly)
            if sent < len(head):
                self.raw.sendall(head[sent:])
                sent = len(head)
            if sent - len(head) < len(view):
                self.raw.sendall(view[sent - len(head):])

    def recv_into(self, buffer, nbytes=0):
        """Up to ``nbytes`` (0: the buffer's length) decrypted bytes into ``buffer``: at least one, unless the
        peer closed the connection (then 0, whether it said so or not, as ``SSLSocket`` with ragged EOFs
        suppressed). Every whole record already received is taken, without waiting for more."""
        with memoryview(buffer) as view:
            nbytes = min(nbytes, len(view)) if nbytes else len(view)
            got = 0
            while got < nbytes:
                try:
                    read = self._tls.read(nbytes - got, view[got:nbytes])
                    if not read:  # the peer's close_notify
                        break
                    got += read
                    continue
                except ssl.SSLZeroReturnError:  # (the same, as some versions of Python say it)
                    break
                except (ssl.SSLWantReadError, ssl.SSLEOFError):
                    # no whole record left. (It may be reported as an end of stream: OpenSSL keeps "wants to read" in
                    # the connection's state, which a write on another thread resets before the reader asks for it.)
                    pass
                if got:
                    break
                if self._give_records():
                    continue
                if self._clear_next():
                    raise OutOfStep('the peer sent clear data where sealed data was due')
                if self._ended:
                    break
                self._receive()
            # (what a read may have to answer, a key update neither side asks for, leaves with the next write: a
            # flush here would wait for the sending thread, itself waiting for the peer to read)
            return got

    def recv_clear_into(self, buffer, nbytes):
        """The clear segment that comes next, of exactly ``nbytes``, into ``buffer``; what arrives beyond the
        bytes received already is read straight into it."""
        if self._tls.pending() or self._incoming.pending:
            raise OutOfStep('sealed data came where the peer was to send %d clear bytes' % nbytes)
        while self._end - self._at < CLEAR_SEGMENT.size:
            self._receive_or_fail('a clear segment')
        kind, length = CLEAR_SEGMENT.unpack_from(self._received, self._at)
        if kind != CLEAR or length != nbytes:
            raise OutOfStep('expected %d clear bytes, the peer sent %s' % (nbytes, 'a TLS record' if kind != CLEAR else '%d' % length))
        self._at += CLEAR_SEGMENT.size
        with memoryview(buffer) as view:
            got = min(nbytes, self._end - self._at)
            view[:got] = self._received_view[self._at:self._at + got]
            self._at += got
            while got < nbytes:
                read = self.raw.recv_into(view[got:nbytes], nbytes - got)
                if not read:
                    self._ended = True
                    raise ConnectionError('the connection ended in a clear segment, %d of %d bytes in' % (got, nbytes))
                got += read
        return nbytes

    def _clear_next(self):
        return self._end - self._at >= 1 and self._received[self._at] == CLEAR

    def _give_records(self):
        """Give OpenSSL the whole records received, up to a clear segment; whether there were any."""
        start = position = self._at
        while self._end - position >= RECORD_HEADER and self._received[position] != CLEAR:
            length = int.from_bytes(self._received[position + 3:position + 5], 'big')
            if self._received[position] not in TLS_CONTENT_TYPES or length > LONGEST_RECORD:
                position = self._end  # no TLS record (a port scan, an HTTP probe): OpenSSL refuses it at once
                break
            record_end = position + RECORD_HEADER + length
            if record_end > self._end:
                break
            position = record_end
        if position == start:
            return False
        self._incoming.write(self._received_view[start:position])
        self._at = position
        return True

    def _receive(self):
        """More socket bytes behind those not yet taken (moved to the front when the buffer's end is near)."""
        if self._at == self._end:
            self._at = self._end = 0
        elif len(self._received) - self._end < RECORD_HEADER + LONGEST_RECORD:  # (less room than a record may need)
            left = self._end - self._at
            self._received_view[:left] = self._received_view[self._at:self._end]
            self._at, self._end = 0, left
        count = self.raw.recv_into(self._received_view[self._end:])
        if count:
            self._end += count
        else:
            # Not told to OpenSSL (write_eof): its read would then fail the connection with an alert written
            # into the outgoing buffer from this thread, while a writing thread may be using that buffer.
            self._ended = True

    def _receive_or_fail(self, what):
        if self._ended:
            raise ConnectionError('the connection ended before %s' % what)
        self._receive()
        if self._ended:
            raise ConnectionError('the connection ended before %s' % what)

    def getpeercert(self, binary_form=False):
        return self._tls.getpeercert(binary_form)

    def cipher(self):
        return self._tls.cipher()

    def version(self):
        return self._tls.version()

    def settimeout(self, timeout):
        self.raw.settimeout(timeout)

    def shutdown(self, how=socket.SHUT_RDWR):
        """The TCP connection's (no TLS close_notify, which would wait for the peer): wakes a thread blocked reading."""
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()
