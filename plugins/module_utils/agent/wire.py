# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry's transfer protocol framing over mutual TLS.

A frame is ``>BII`` (kind, header length, payload length), a msgpack header and a payload. Payloads
are zstd-compressed on the wire unless compression does not pay (the header says which), so data
is always encrypted (TLS 1.3) and compressed between agents and the control node.
"""

from __future__ import annotations

import socket
import ssl
import struct

from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import peer_role

try:
    import msgpack
    import zstandard
    HAS_WIRE_DEPS = True
except ImportError:  # pragma: no cover - reported by the callers
    HAS_WIRE_DEPS = False

_FRAME = struct.Struct('>BII')
MAX_HEADER = 16 * 1024 * 1024
MAX_PAYLOAD = 256 * 1024 * 1024
PROTOCOL_VERSION = 1


class ProtocolError(Exception):
    """The peer broke the protocol, or is not who it must be."""


def server_context(ca_file, cert_file, key_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
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


def require_role(tls_socket, allowed):
    role = peer_role(tls_socket.getpeercert())
    if role not in allowed:
        raise ProtocolError('peer certificate role %r is not one of %s' % (role, ', '.join(sorted(allowed))))
    return role


class Channel:
    """Frames over a connected (TLS) socket. Not thread-safe: one channel per thread."""

    def __init__(self, sock, level=1):
        self.sock = sock
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self.bytes_sent = 0  # on the wire, after compression
        self.bytes_received = 0
        self._skip_compression = 0  # payloads left to send raw after one that did not shrink

    def send(self, kind, header=None, payload=b'', compress=True):
        header = dict(header or {})
        body = payload
        if payload and compress and self._skip_compression:
            self._skip_compression -= 1
        elif payload and compress:
            packed = self._compressor.compress(payload)
            if len(packed) < len(payload) * 0.97:
                header['z'] = len(payload)
                body = packed
            else:
                # Incompressible data (media, encrypted or compressed files) costs CPU for nothing:
                # send the next payloads raw and try again after them.
                self._skip_compression = 16
        head = msgpack.packb(header, use_bin_type=True)
        self.sock.sendall(_FRAME.pack(kind, len(head), len(body)) + head)
        if body:
            self.sock.sendall(body)
        self.bytes_sent += _FRAME.size + len(head) + len(body)

    def recv(self):
        """(kind, header, payload); raises EOFError when the peer closed cleanly between frames."""
        prefix = self._read(_FRAME.size, allow_eof=True)
        kind, head_len, body_len = _FRAME.unpack(prefix)
        if head_len > MAX_HEADER or body_len > MAX_PAYLOAD:
            raise ProtocolError('frame too large (%d header, %d payload bytes)' % (head_len, body_len))
        header = msgpack.unpackb(self._read(head_len), raw=False) if head_len else {}
        body = self._read(body_len) if body_len else b''
        self.bytes_received += _FRAME.size + head_len + body_len
        if 'z' in header:
            body = self._decompressor.decompress(body, max_output_size=header['z'])
            if len(body) != header['z']:
                raise ProtocolError('payload decompressed to %d bytes, header said %d' % (len(body), header['z']))
        return kind, header, body

    def _read(self, count, allow_eof=False):
        buffer = bytearray(count)
        view = memoryview(buffer)
        got = 0
        while got < count:
            read = self.sock.recv_into(view[got:], count - got)
            if read == 0:
                if allow_eof and got == 0:
                    raise EOFError('peer closed the connection')
                raise ProtocolError('connection closed in the middle of a frame')
            got += read
        return bytes(buffer)


def keep_alive(sock, idle=60, interval=15, count=4):
    """Probe an idle connection, so a peer that vanished (a cut link, a killed node) is noticed in
    minutes instead of never: transfers block in reads without a timeout (a timeout on a TLS socket
    shared by a reading and a writing thread breaks it)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (('TCP_KEEPIDLE', idle), ('TCP_KEEPINTVL', interval), ('TCP_KEEPCNT', count)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def connect(address, context, timeout=30.0):
    host, port = address
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    keep_alive(raw)
    try:
        return context.wrap_socket(raw, server_side=False)
    except Exception:
        raw.close()
        raise
