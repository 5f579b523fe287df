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
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

SEND_BYTES = 512 * 1024  # encrypted and sent in steps of this much: the peer starts on it while the rest is sealed
RECEIVE_BYTES = 1024 * 1024  # one socket read brings up to this much (about 64 records)
HANDSHAKE_READ = 64 * 1024


class TlsStream:
    """A connected TCP socket with TLS over it; ``sendall`` and ``recv_into`` as a socket's."""

    def __init__(self, raw, context, server_side):
        self.raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._received = bytearray(RECEIVE_BYTES)
        self._received_view = memoryview(self._received)
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
                if deadline is not None:
                    self.raw.settimeout(max(0.001, deadline - time.monotonic()))
                data = self.raw.recv(HANDSHAKE_READ)
                if not data:
                    raise ConnectionError('the peer closed the connection during the TLS handshake') from None
                self._incoming.write(data)
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
                if got or self._ended:
                    break
                self._receive()
            # (what a read may have to answer, a key update neither side asks for, leaves with the next write: a
            # flush here would wait for the sending thread, itself waiting for the peer to read)
            return got

    def _receive(self):
        count = self.raw.recv_into(self._received_view)
        if count:
            self._incoming.write(self._received_view[:count])
        else:
            # Not told to OpenSSL (write_eof): its read would then fail the connection with an alert written
            # into the outgoing buffer from this thread, while a writing thread may be using that buffer.
            self._ended = True

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
