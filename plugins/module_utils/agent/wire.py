# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry's transfer protocol framing over mutual TLS.

A frame is ``>BII`` (kind, header length, payload length), a msgpack header and a payload. Payloads
are zstd-compressed on the wire unless compression does not pay (the header says which), so data
is always encrypted (TLS 1.3, ``tls.TlsStream``, or sealed already as below) and compressed between
agents and the control node.

A payload sealed already (a range of a pool's pack: compressed, and encrypted under the pool's key) may
follow its frame as a clear segment instead (``send(..., clear=True)``; the header's ``c`` says how long),
where the receiving channel allows it (``accept_clear``): encrypting it a second time only cost CPU.
"""

from __future__ import annotations

import socket
import ssl
import struct

try:
    import msgpack
    import zstandard
    HAS_WIRE_DEPS = True
except ImportError:  # pragma: no cover - reported by the callers
    HAS_WIRE_DEPS = False

from ansible_collections.ferry.kube.plugins.module_utils.agent.tls import TlsStream
from ansible_collections.ferry.kube.plugins.module_utils.pool.compression import CompressionProbe

_FRAME = struct.Struct('>BII')
MAX_HEADER = 16 * 1024 * 1024
MAX_PAYLOAD = 256 * 1024 * 1024
PROTOCOL_VERSION = 2
BATCH_BYTES = 256 * 1024  # a batching channel sends its small frames together once this much waits
# A payload under this joins the batch: copying it is cheaper than a TLS record and a system call of its
# own (a volume of small files is mostly such payloads: one each, two writes a file before).
BATCHED_PAYLOAD = 64 * 1024
RECEIVE_BUFFER = 1024 * 1024  # frames up to this size are read through one reused buffer, many at a time


class ProtocolError(Exception):
    """The peer broke the protocol, or is not who it must be."""


def server_context(ca_file, cert_file, key_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    # No session tickets: no connection is ever resumed (each has its own handshake), and a ticket is a handshake
    # message after the handshake, which the client's first read handles while another thread may be writing
    context.num_tickets = 0
    context.load_verify_locations(ca_file)
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file, cert_file, key_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    # Agents are reached through NodePorts and load balancers whose addresses the certificate
    # cannot know in advance; trust comes from the per-sync CA and the role check instead.
    context.check_hostname = False
    context.load_verify_locations(ca_file)
    context.load_cert_chain(cert_file, key_file)
    return context


def peer_role(peer_cert_dict):
    """The role (OU) in a peer certificate as ``ssl.SSLSocket.getpeercert()`` returns it."""
    for rdn in (peer_cert_dict or {}).get('subject', ()):
        for key, value in rdn:
            if key == 'organizationalUnitName':
                return value
    return None


def require_role(tls, allowed):
    role = peer_role(tls.getpeercert())
    if role not in allowed:
        raise ProtocolError('peer certificate role %r is not one of %s' % (role, ', '.join(sorted(allowed))))
    return role


class Channel:
    """Frames over a connected (TLS) socket. Not thread-safe: one channel per thread.

    With ``batch`` small frames wait in a buffer until it holds ``BATCH_BYTES``, a big payload
    follows, ``flush`` is called or the channel reads: a stream of thousands of small frames (a
    tree's unchanged entries, small files) costs a few socket writes instead of one per frame. Only
    a channel whose reads and writes happen in one thread may batch, since a read sends what waits.
    """

    def __init__(self, sock, level=1, batch=False):
        self.sock = sock
        self.accept_clear = False  # whether the peer may send payloads as clear segments (packs, in staged syncs)
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self.bytes_sent = 0  # on the wire, after compression
        self.bytes_received = 0
        self.clear_bytes_sent = self.clear_bytes_received = 0  # of the bytes sent and received, those in clear segments
        self._probe = CompressionProbe()  # payloads go raw for a while after one that did not shrink
        self._outgoing = bytearray() if batch else None
        self._incoming = bytearray(RECEIVE_BUFFER)  # bytes received ahead are [_incoming_at, _incoming_end)
        self._incoming_view = memoryview(self._incoming)
        self._incoming_at = self._incoming_end = 0

    def send(self, kind, header=None, payload=b'', compress=True, clear=False):
        """One frame. ``clear``: ``payload`` is sealed already (and compressed) and goes as a clear segment
        after the frame, outside TLS, to a peer that said it accepts that. (Frame and segment must be next to
        each other on the wire: threads sharing a channel send under one lock, as ``relay.SharedChannel``.)"""
        header = dict(header or {})
        body = payload
        if clear and payload:
            header['c'] = len(payload)
            frame = self._frame(kind, header, b'')
            self.bytes_sent += len(frame) + len(payload)
            self.clear_bytes_sent += len(payload)
            self.flush()
            self.sock.sendall(frame)  # its last TLS record ends with the frame: the segment is next on the wire
            self.sock.send_clear(payload)
            return
        if payload and compress and self._probe.worth_trying():
            packed = self._compressor.compress(payload)
            if self._probe.shrank(len(payload), len(packed)):
                header['z'] = len(payload)
                body = packed
        frame = self._frame(kind, header, body)
        self.bytes_sent += len(frame) + len(body)
        if self._outgoing is None:
            self.sock.sendall(frame)
            if body:
                self.sock.sendall(body)
            return
        self._outgoing += frame
        if len(body) < BATCHED_PAYLOAD:
            self._outgoing += body
            body = b''
        if body or len(self._outgoing) >= BATCH_BYTES:
            self.flush()
        if body:
            self.sock.sendall(body)

    @staticmethod
    def _frame(kind, header, body):
        head = msgpack.packb(header, use_bin_type=True)
        return _FRAME.pack(kind, len(head), len(body)) + head

    def flush(self):
        """Send the frames a batching channel holds back."""
        if self._outgoing:
            self.sock.sendall(self._outgoing)
            del self._outgoing[:]

    def recv(self, into=None):
        """(kind, header, payload); raises EOFError when the peer closed cleanly between frames.

        A payload is bytes, or a bytearray when it is larger than RECEIVE_BUFFER (packs, big chunks).
        ``into(size)`` may give a writable buffer of at least ``size`` bytes for such a payload (a
        reused, aligned one): the payload is then a memoryview of its first bytes, unless it arrived
        compressed. None there means a new bytearray. A clear payload (``accept_clear``) is a bytearray, or
        lands in ``into``'s buffer by the same rule."""
        if self._outgoing is not None:
            self.flush()  # the peer may be waiting for them before it answers
        prefix = self._read(_FRAME.size, allow_eof=True)
        kind, head_len, body_len = _FRAME.unpack(prefix)
        if head_len > MAX_HEADER or body_len > MAX_PAYLOAD:
            raise ProtocolError('frame too large (%d header, %d payload bytes)' % (head_len, body_len))
        header = msgpack.unpackb(self._read(head_len), raw=False) if head_len else {}
        body = self._read(body_len, into=into) if body_len else b''
        self.bytes_received += _FRAME.size + head_len + body_len
        if 'c' in header:  # (left in the header: the receiver may check what came outside TLS)
            return kind, header, self._read_clear(header['c'], body_len, into)
        if 'z' in header:
            body = self._decompressor.decompress(body, max_output_size=header['z'])
            if len(body) != header['z']:
                raise ProtocolError('payload decompressed to %d bytes, header said %d' % (len(body), header['z']))
        return kind, header, body

    def _read_clear(self, count, body_len, into):
        """The clear segment a frame announced (``count`` bytes), where this channel accepts one."""
        if not self.accept_clear or not isinstance(count, int) or body_len or not 0 < count <= MAX_PAYLOAD:
            raise ProtocolError('a clear payload (%r bytes) where the protocol has none' % (count,))
        if self._incoming_end != self._incoming_at:
            raise ProtocolError('sealed data came between a frame and its clear payload')
        given = into(count) if into is not None and count > len(self._incoming) else None  # (as a sealed payload)
        payload = memoryview(given)[:count] if given is not None else bytearray(count)
        self.sock.recv_clear_into(payload, count)
        self.bytes_received += count
        self.clear_bytes_received += count
        return payload

    def _read(self, count, allow_eof=False, into=None):
        """``count`` bytes: from what earlier reads brought ahead, then from the socket."""
        have = self._incoming_end - self._incoming_at
        view = self._incoming_view
        if count > len(self._incoming):  # a big payload: the rest is read straight into its own buffer
            given = into(count) if into is not None else None
            payload = memoryview(given)[:count] if given is not None else bytearray(count)
            payload[:have] = view[self._incoming_at:self._incoming_end]
            self._incoming_at = self._incoming_end = 0
            with memoryview(payload) as target:
                self._fill(target, have, count, count, allow_eof and have == 0)
            # as it is: a copy costs more than the receive (a second big allocation faults in its pages)
            return payload
        if have == 0:
            self._incoming_at = self._incoming_end = 0  # (the whole buffer for the next reads)
        if have < count:
            if len(self._incoming) - self._incoming_at < count:  # no room behind what is left: move it to the front
                view[:have] = view[self._incoming_at:self._incoming_end]
                self._incoming_at, self._incoming_end = 0, have
            # as much as the socket has, up to the buffer's end: the next frames often come with this one
            self._incoming_end = self._fill(view, self._incoming_end, self._incoming_at + count, len(self._incoming), allow_eof and have == 0)
        start = self._incoming_at
        self._incoming_at += count
        return bytes(view[start:self._incoming_at])

    def _fill(self, view, got, count, end, allow_eof):
        """Read into ``view[got:end]`` until at least ``count`` bytes are there; returns how many are."""
        first = got
        while got < count:
            read = self.sock.recv_into(view[got:end], end - got)
            if read == 0:
                if allow_eof and got == first:
                    raise EOFError('peer closed the connection')
                raise ProtocolError('connection closed in the middle of a frame')
            got += read
        return got


def keep_alive(sock, idle=60, interval=15, count=4):
    """Probe an idle connection, so a peer that vanished (a cut link, a killed node) is noticed in
    minutes instead of never: transfers block in reads without a timeout (a timeout on a TLS socket
    shared by a reading and a writing thread breaks it)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (('TCP_KEEPIDLE', idle), ('TCP_KEEPINTVL', interval), ('TCP_KEEPCNT', count)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def connect(address, context, timeout=30.0):
    """A TLS connection to ``address`` (the handshake within ``timeout``, as the connect; then the socket's timeout is kept)."""
    host, port = address
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return TlsStream(_tuned(raw), context, server_side=False)
    except Exception:
        raw.close()
        raise


def accept(raw, context, allowed):
    """The server's side of an accepted connection, once its peer's certificate has one of the ``allowed`` roles;
    the caller closes ``raw`` on failure."""
    tls = TlsStream(_tuned(raw), context, server_side=True)
    require_role(tls, allowed)
    return tls


def _tuned(raw):
    """``raw`` as both ends of a connection want it: frames sent at once (whole TLS flights go in one write
    anyway), and a vanished peer noticed."""
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    keep_alive(raw)
    return raw
