"""Mutual TLS with per-sync certificates, role checks, and compressed framing."""

import os
import random
import socket
import ssl
import threading

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.agent import wire
from ansible_collections.ferry.kube.plugins.module_utils.pool import compression
from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from sync_tls import connected, contexts


class EchoServer:
    """Accepts one connection, checks the peer role, echoes frames back until EOF."""

    def __init__(self, context, allowed_roles):
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.address = self.listener.getsockname()
        self.context = context
        self.allowed = allowed_roles
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _addr = self.listener.accept()
        try:
            tls = wire.accept(conn, self.context, self.allowed)
            channel = wire.Channel(tls)
            while True:
                try:
                    kind, header, payload = channel.recv()
                except EOFError:
                    break
                channel.send(kind, header, payload)
            tls.close()
        except (ssl.SSLError, wire.ProtocolError, OSError) as exc:
            self.error = exc
            conn.close()
        finally:
            self.listener.close()


def test_round_trip_is_compressed_on_the_wire(tmp_path):
    pki = SyncPKI.create('s1')
    server = EchoServer(contexts(tmp_path, pki, 'sink', server=True), {'source', 'control'})
    tls = wire.connect(server.address, contexts(tmp_path, pki, 'source'))
    channel = wire.Channel(tls)
    payload = b'ferry ' * 100000
    channel.send(7, {'path': 'a/b', 'offset': 0}, payload)
    kind, header, echoed = channel.recv()
    assert (kind, header['path'], echoed) == (7, 'a/b', payload)
    assert channel.bytes_sent < len(payload) / 20
    random_data = os.urandom(100000)
    channel.send(8, {}, random_data)
    assert channel.recv()[2] == random_data
    tls.close()
    server.thread.join(5)
    assert server.error is None


def test_wrong_role_is_refused(tmp_path):
    pki = SyncPKI.create('s2')
    server = EchoServer(contexts(tmp_path, pki, 'sink', server=True), {'control'})
    tls = wire.connect(server.address, contexts(tmp_path, pki, 'source'))
    server.thread.join(5)
    assert isinstance(server.error, wire.ProtocolError)
    assert "role 'source' is not one of control" in str(server.error)
    tls.close()


def test_certificate_of_another_sync_fails_the_handshake(tmp_path):
    ours, theirs = SyncPKI.create('s3'), SyncPKI.create('other')
    server = EchoServer(contexts(tmp_path, ours, 'sink', server=True), {'source'})
    with pytest.raises((ssl.SSLError, ConnectionError, wire.ProtocolError, OSError)):
        tls = wire.connect(server.address, contexts(tmp_path, theirs, 'source'))
        channel = wire.Channel(tls)
        channel.send(1, {}, b'x')
        channel.recv()
    server.thread.join(5)
    assert isinstance(server.error, ssl.SSLError), server.error  # the certificate, not a broken connection


def test_client_without_certificate_is_refused(tmp_path):
    pki = SyncPKI.create('s4')
    server = EchoServer(contexts(tmp_path, pki, 'sink', server=True), {'source'})
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError, wire.ProtocolError, OSError, EOFError)):
        tls = wire.connect(server.address, bare)
        channel = wire.Channel(tls)
        channel.send(1, {}, b'x')
        channel.recv()
    server.thread.join(5)
    assert isinstance(server.error, ssl.SSLError), server.error  # the certificate, not a broken connection


class CountingSocket:
    """A plain socket that counts the calls a Channel makes on it."""

    def __init__(self, sock):
        self.sock = sock
        self.writes = self.reads = 0

    def sendall(self, data):
        self.writes += 1
        self.sock.sendall(data)

    def recv_into(self, view, count):
        self.reads += 1
        return self.sock.recv_into(view, count)


def send_and_receive(send_all, incoming, count):
    """The ``count`` frames ``incoming`` receives while ``send_all()`` sends (a reader thread, so big frames flow)."""
    received = []
    reader = threading.Thread(target=lambda: received.extend(incoming.recv() for _frame in range(count)))
    reader.start()
    send_all()
    reader.join(30)
    return received


def test_a_batching_channel_sends_small_frames_together_and_reads_ahead():
    left, right = socket.socketpair()
    left.settimeout(30)
    sender, receiver = CountingSocket(left), CountingSocket(right)
    outgoing, incoming = wire.Channel(sender, batch=True), wire.Channel(receiver)
    big = os.urandom(wire.RECEIVE_BUFFER + 300 * 1024)  # incompressible, larger than the receive buffer: read into its own
    frames = [(3, {'path': 'dir/file-%05d' % i}, b'') for i in range(2000)]
    for index in range(0, 2000, 10):  # small files: a payload each, incompressible, in the same batches
        frames[index] = (6, {'file': index}, os.urandom(8 * 1024))
    frames.insert(700, (4, {'big': True}, big))
    frames.insert(1500, (5, {'small': True}, b'tiny payload'))

    def send_all():
        for kind, header, payload in frames:
            outgoing.send(kind, header, payload)
        assert sender.writes < 12  # 2000 frames and 200 payloads held back but for the big payload
        outgoing.flush()
    assert send_and_receive(send_all, incoming, len(frames)) == frames
    assert receiver.reads < 200  # not three reads per frame
    left.close()
    right.close()


def test_frames_of_every_size_cross_the_receive_buffer_intact():
    """Frames that end near, at and across the end of the reused receive buffer, and ones larger than it."""
    rng = random.Random(5)
    left, right = socket.socketpair()
    left.settimeout(30)  # a reader that died fails the test instead of hanging it
    outgoing, incoming = wire.Channel(left), wire.Channel(right)
    sizes = [rng.choice([0, 1, 1000, 64 * 1024 - 1, 300 * 1024, wire.RECEIVE_BUFFER - 20, wire.RECEIVE_BUFFER + 1]) for _index in range(60)]
    frames = [(index % 7 + 1, {'n': index, 'pad': 'x' * rng.randrange(200)}, rng.randbytes(size)) for index, size in enumerate(sizes)]

    def send_all():
        for kind, header, payload in frames:
            outgoing.send(kind, header, payload, compress=False)
    assert send_and_receive(send_all, incoming, len(frames)) == frames
    left.close()
    right.close()


def test_a_big_payload_lands_in_the_buffer_the_receiver_gives():
    left, right = socket.socketpair()
    left.settimeout(30)
    outgoing, incoming = wire.Channel(left), wire.Channel(right)
    raw = os.urandom(wire.RECEIVE_BUFFER + 5000)
    packed = os.urandom(wire.RECEIVE_BUFFER + 500 * 1024) + bytes(wire.RECEIVE_BUFFER)  # compressed, still larger than the buffer
    given, asked = [], []

    def into(size):
        asked.append(size)
        given.append(bytearray(size + 4096))
        return given[-1]

    def send_all():
        outgoing.send(1, {}, b'small', compress=False)
        outgoing.send(2, {}, raw, compress=False)
        outgoing.send(3, {}, packed)

    received = []
    reader = threading.Thread(target=lambda: received.extend(incoming.recv(into) for _frame in range(3)))
    reader.start()
    send_all()
    reader.join(30)
    (_k1, _h1, small), (_k2, _h2, big), (_k3, header, unpacked) = received
    assert small == b'small' and asked[0] == len(raw)  # small frames go through the channel's own buffer
    assert isinstance(big, memoryview) and big.obj is given[0] and big == raw
    # compressed: received into the buffer given, decompressed into a payload of its own
    assert len(asked) == 2 and wire.RECEIVE_BUFFER < asked[1] < len(packed)
    assert 'z' in header and unpacked == packed and isinstance(unpacked, bytes)
    left.close()
    right.close()


def test_a_batching_channel_sends_what_waits_before_it_reads():
    left, right = socket.socketpair()
    asking, answering = wire.Channel(left, batch=True), wire.Channel(right)

    def answer():
        kind, header, _payload = answering.recv()
        answering.send(kind, dict(header, answer=2))
    peer = threading.Thread(target=answer)
    peer.start()
    asking.send(9, {'question': 1})  # held back: nothing is flushed by hand
    assert asking.recv()[1] == {'question': 1, 'answer': 2}
    peer.join(5)
    left.close()
    right.close()


def test_a_frame_cut_short_is_an_error_not_an_end():
    left, right = socket.socketpair()
    incoming = wire.Channel(right)
    left.sendall(b'\x03\x00\x00\x00\x10\x00\x00\x00\x00' + b'\x81')
    left.close()
    with pytest.raises(wire.ProtocolError):
        incoming.recv()
    right.close()


def test_a_close_after_whole_frames_is_an_end_and_within_one_an_error():
    """Frames read ahead are delivered first; then a close between frames is an end (EOFError), a close
    in the middle of one an error."""
    frames = [(3, {'n': 1}, b'first'), (4, {'n': 2}, b'')]
    for cut_short in (False, True):
        left, right = socket.socketpair()
        incoming = wire.Channel(right)
        writer = wire.Channel(left, batch=True)
        for frame in frames:
            writer.send(*frame, compress=False)
        writer.flush()
        if cut_short:
            left.sendall(b'\x03\x00\x00\x00\x10\x00\x00\x00\x00' + b'\x81')  # a header of 16 bytes, one sent
        left.close()
        assert [incoming.recv(), incoming.recv()] == frames
        with pytest.raises(wire.ProtocolError if cut_short else EOFError):
            incoming.recv()
        right.close()


def test_after_a_payload_that_does_not_shrink_the_next_ones_go_raw_for_a_while():
    left, right = socket.socketpair()
    left.settimeout(30)
    outgoing, incoming = wire.Channel(left), wire.Channel(right)
    skip = compression.SKIP_AFTER_INCOMPRESSIBLE
    payloads = [os.urandom(60000)] + [b'ferry ' * 10000] * (skip + 3)

    def send_all():
        for number, payload in enumerate(payloads):
            outgoing.send(6, {'n': number}, payload)
    received = send_and_receive(send_all, incoming, len(payloads))
    assert [body for _kind, _header, body in received] == payloads
    # the random payload is tried and sent raw, the next ones are not tried, then compressing resumes
    assert ['z' in header for _kind, header, _body in received] == [False] * (1 + skip) + [True] * 3
    left.close()
    right.close()


def test_a_payload_sealed_already_may_cross_as_a_clear_segment_where_the_receiver_takes_one(tmp_path):
    pki = SyncPKI.create('clear')
    client, server = connected(contexts(tmp_path, pki, 'sink', server=True), contexts(tmp_path, pki, 'source'))
    outgoing, incoming = wire.Channel(client, batch=True), wire.Channel(server)  # (what a batch holds goes first)
    incoming.accept_clear = True
    sealed, small = os.urandom(wire.RECEIVE_BUFFER + 12345), os.urandom(300)
    given = []

    def into(size):
        given.append(bytearray(size))
        return given[-1]

    def send_all():
        outgoing.send(1, {'n': 1}, sealed, compress=False, clear=True)
        outgoing.send(2, {'n': 2}, b'ferry ' * 1000)  # compressed, in TLS, between the two
        outgoing.send(3, {'n': 3}, small, clear=True)
    received = []
    reader = threading.Thread(target=lambda: received.extend(incoming.recv(into) for _frame in range(3)))
    reader.start()
    send_all()
    reader.join(30)
    # ('c' says how many bytes came outside TLS, for the receiver to check)
    assert [(kind, header) for kind, header, _payload in received] == [(1, {'n': 1, 'c': len(sealed)}), (2, {'n': 2, 'z': 6000}), (3, {'n': 3, 'c': 300})]
    assert received[0][2] == sealed and received[0][2].obj is given[0]  # read straight into the buffer given
    assert received[1][2] == b'ferry ' * 1000 and received[2][2] == small
    assert outgoing.clear_bytes_sent == incoming.clear_bytes_received == len(sealed) + len(small)
    assert incoming.bytes_received == outgoing.bytes_sent
    # a channel that did not say it takes clear payloads refuses one, whoever sent it
    strict = wire.Channel(client)
    wire.Channel(server).send(4, {'n': 4}, b'x' * 10, clear=True)
    with pytest.raises(wire.ProtocolError, match='clear payload'):
        strict.recv()
    client.close()
    server.close()
