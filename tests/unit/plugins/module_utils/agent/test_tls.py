"""TLS through memory buffers: what crosses is intact, records are taken many at a time, ends are ends."""

import hashlib
import os
import random
import socket
import ssl
import threading
import time

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.agent import tls as tls_stream, wire
from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from sync_tls import connected, contexts


@pytest.fixture
def pair(tmp_path):
    """``pair(server_wrap=None)`` -> (client TlsStream, server side): the server side as ``server_wrap(conn,
    context)`` makes it (default: Ferry's own accept); each connected over loopback with per-sync certificates."""
    pki = SyncPKI.create('tls-test')
    server_context = contexts(tmp_path, pki, 'sink', server=True)
    client_context = contexts(tmp_path, pki, 'source')
    opened = []

    def make(server_wrap=None):
        opened.extend(connected(server_context, client_context, server_wrap))
        return opened[-2], opened[-1]
    yield make
    for each in opened:
        each.close()


def receive_exactly(stream, count):
    buffer = bytearray(count)
    got = 0
    while got < count:
        read = stream.recv_into(memoryview(buffer)[got:], count - got)
        assert read, 'the connection ended after %d of %d bytes' % (got, count)
        got += read
    return bytes(buffer)


def test_both_directions_at_once_arrive_intact(pair):
    client, server = pair()
    upward, downward = os.urandom(5 * 1024 * 1024 + 17), os.urandom(3 * 1024 * 1024 + 5)
    received = {}

    def server_side():  # reads in its own thread while another writes, as the relay does
        writer = threading.Thread(target=server.sendall, args=(downward,))
        writer.start()
        received['up'] = receive_exactly(server, len(upward))
        writer.join(30)
    thread = threading.Thread(target=server_side)
    thread.start()
    writer = threading.Thread(target=client.sendall, args=(memoryview(upward),))
    writer.start()
    received['down'] = receive_exactly(client, len(downward))
    writer.join(30)
    thread.join(30)
    assert hashlib.sha256(received['up']).digest() == hashlib.sha256(upward).digest()
    assert received['down'] == downward
    assert client.version() == 'TLSv1.3' and server.cipher()[1] == 'TLSv1.3'


def test_one_read_takes_every_record_already_received(pair):
    client, server = pair()
    sent = os.urandom(600 * 1024)  # about 38 records of 16 KiB
    client.sendall(sent)
    deadline = time.monotonic() + 10
    buffer = bytearray(2 * len(sent))
    got = 0
    while got < len(sent) and time.monotonic() < deadline:
        got += server.recv_into(memoryview(buffer)[got:])
    assert bytes(buffer[:got]) == sent
    # through an SSLSocket every read stops at a record's end; here each read drains what the socket brought
    reads_needed = []
    client.sendall(sent)
    time.sleep(0.2)  # all of it in the server's socket buffer
    got = 0
    while got < len(sent):
        read = server.recv_into(memoryview(buffer)[got:])
        reads_needed.append(read)
        got += read
    assert max(reads_needed) > 16 * 1024 * 8, reads_needed


def test_a_connection_closed_or_half_closed_without_a_word_reads_as_the_end(pair):
    client, server = pair()
    server.sendall(b'hello')
    assert receive_exactly(client, 5) == b'hello'  # (and the session tickets: closed unread, they would reset the connection)
    client.sendall(b'last words')
    client.close()  # no close_notify (as SSLSocket.close): a cut connection
    assert receive_exactly(server, 10) == b'last words'
    assert server.recv_into(bytearray(100)) == 0
    assert server.recv_into(bytearray(100)) == 0
    # the reader wrote nothing (an alert for the cut) where a writing thread may be sealing its data
    assert server._outgoing.pending == 0  # pylint: disable=protected-access
    client, server = pair()
    server.sendall(b'bye')
    server.shutdown(socket.SHUT_WR)  # the TCP connection's, as the relay wakes a lane's reader
    assert receive_exactly(client, 3) == b'bye'
    assert client.recv_into(bytearray(100)) == 0


def test_it_speaks_to_an_ssl_socket_peer(pair):
    """The same TLS 1.3 on the wire: an agent or control node still on SSLSocket understands it."""
    client, server = pair(lambda conn, context: context.wrap_socket(conn, server_side=True))
    payload = os.urandom(2 * 1024 * 1024)
    thread = threading.Thread(target=client.sendall, args=(payload,))
    thread.start()
    assert receive_exactly(server, len(payload)) == payload
    thread.join(30)
    server.sendall(b'answer')
    assert receive_exactly(client, 6) == b'answer'
    assert wire.peer_role(client.getpeercert()) == 'sink'


def test_a_peer_that_never_speaks_times_the_handshake_out(tmp_path):
    pki = SyncPKI.create('tls-silent')
    listener = socket.create_server(('127.0.0.1', 0))
    try:
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            wire.connect(listener.getsockname(), contexts(tmp_path, pki, 'source'), timeout=0.5)
        assert time.monotonic() - started < 10
    finally:
        listener.close()


def test_a_peer_that_closes_during_the_handshake_is_named(tmp_path):
    pki = SyncPKI.create('tls-gone')
    listener = socket.create_server(('127.0.0.1', 0))

    def hang_up():
        conn, _peer = listener.accept()
        conn.recv(1024)
        conn.close()
    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        with pytest.raises(ConnectionError, match='during the TLS handshake'):
            tls_stream.TlsStream(socket.create_connection(listener.getsockname(), timeout=10), contexts(tmp_path, pki, 'source'), server_side=False)
    finally:
        thread.join(10)
        listener.close()


def test_reads_waiting_for_records_while_another_thread_writes_see_no_false_end(pair):
    """Many small writes and reads at once on both sides: a read that runs out of records while a write
    happens on another thread must wait for more, not report the end of the stream."""
    client, server = pair()
    messages = [os.urandom(size) for size in [1, 7, 300, 5000, 17000, 40] * 150]
    total = sum(len(message) for message in messages)

    def echo():  # reads on one thread, writes back on another as the data comes
        pending = []
        condition = threading.Condition()

        def writer():
            sent = 0
            while sent < total:
                with condition:
                    condition.wait_for(lambda: pending)
                    data = b''.join(pending)
                    del pending[:]
                server.sendall(data)
                sent += len(data)
        thread = threading.Thread(target=writer)
        thread.start()
        got, buffer = 0, bytearray(64 * 1024)
        while got < total:
            read = server.recv_into(buffer)
            assert read, 'a false end of stream on the echoing side'
            with condition:
                pending.append(bytes(buffer[:read]))
                condition.notify()
            got += read
        thread.join(30)
    errors = []

    def echo_or_fail():
        try:
            echo()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)
    echoing = threading.Thread(target=echo_or_fail)
    echoing.start()

    def send_all():
        for message in messages:
            client.sendall(message)
    sending = threading.Thread(target=send_all)
    sending.start()
    try:
        assert receive_exactly(client, total) == b''.join(messages)
    finally:
        sending.join(30)
        echoing.join(30)
    assert not errors


def test_a_read_asked_for_more_than_its_buffer_holds_fills_the_buffer(pair):
    client, server = pair()
    client.sendall(b'0123456789abcdef')
    buffer = bytearray(10)
    assert server.recv_into(buffer, 100) == 10 and buffer == b'0123456789'
    assert receive_exactly(server, 6) == b'abcdef'


def test_a_peer_that_says_goodbye_ends_the_stream(pair):
    """An SSLSocket peer's unwrap() sends close_notify: the data before it is read, then the end."""
    client, server = pair(lambda conn, context: context.wrap_socket(conn, server_side=True))
    server.sendall(b'bye')

    def say_goodbye():
        try:
            server.unwrap()  # sends close_notify, then waits for the answer, which never comes
        except OSError:
            pass  # the connection closed under it
    closing = threading.Thread(target=say_goodbye)
    closing.start()
    assert receive_exactly(client, 3) == b'bye'
    assert client.recv_into(bytearray(10)) == 0
    assert client.recv_into(bytearray(10)) == 0
    client.close()
    closing.join(30)
    assert not closing.is_alive()


def accepting(tmp_path, timeout):
    """(listener, thread, outcome): the listener's one connection goes to Ferry's accept in the thread, with
    ``timeout``; ``outcome`` gets how it failed ('error') and after how long ('seconds')."""
    pki = SyncPKI.create('tls-peer')
    listener = socket.create_server(('127.0.0.1', 0))
    outcome = {}

    def serve():
        conn, _peer = listener.accept()
        conn.settimeout(timeout)
        started = time.monotonic()
        try:
            wire.accept(conn, contexts(tmp_path, pki, 'sink', server=True), {'source'})
        except OSError as exc:  # (ssl.SSLError among them)
            outcome['error'] = exc
        outcome['seconds'] = time.monotonic() - started
        conn.close()
    thread = threading.Thread(target=serve)
    thread.start()
    return listener, thread, outcome


def test_a_peer_that_trickles_its_handshake_gets_no_more_time_than_the_timeout(tmp_path):
    """The agent's handshake timeout is for the whole handshake, not for each read of it."""
    listener, thread, outcome = accepting(tmp_path, 0.6)
    client = socket.create_connection(listener.getsockname(), timeout=10)
    try:
        for byte in b'\x16\x03\x01\x00\xff' + bytes(10):  # a record's header, then its body, a byte every 0.2 s
            if 'seconds' in outcome:
                break
            try:
                client.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        thread.join(10)
    finally:
        client.close()
        listener.close()
    assert isinstance(outcome.get('error'), socket.timeout)
    assert outcome['seconds'] < 1.5


def receive_clear(stream, count):
    buffer = bytearray(count)
    assert stream.recv_clear_into(buffer, count) == count
    return bytes(buffer)


@pytest.mark.parametrize('wait', [False, True], ids=['as-it-comes', 'all-received-first'])
def test_clear_segments_between_records_arrive_where_they_were_sent(pair, wait):
    """Sealed and clear data in turns: the receiver gives OpenSSL whole records only, never what follows them."""
    client, server = pair()
    rng = random.Random(7)
    big = 100 * 1024 + 3 if wait else 3 * 1024 * 1024 + 3  # (waiting, all of it must fit in the sockets' buffers)
    parts = [('sealed', rng.randbytes(100)), ('clear', rng.randbytes(big)), ('sealed', rng.randbytes(40 * 1024)),
             ('clear', rng.randbytes(10)), ('clear', rng.randbytes(20 * 1024)), ('sealed', rng.randbytes(7))]

    def send():
        for kind, data in parts:
            (client.send_clear if kind == 'clear' else client.sendall)(data)
    sender = threading.Thread(target=send)
    sender.start()
    if wait:
        sender.join(30)
        time.sleep(0.2)  # all of it in the receiver's socket buffer: records and segments in one read
    for kind, data in parts:
        assert (receive_clear(server, len(data)) if kind == 'clear' else receive_exactly(server, len(data))) == data, kind
    sender.join(30)
    server.sendall(b'still sealed both ways')
    assert receive_exactly(client, 22) == b'still sealed both ways'


def test_data_out_of_step_with_the_protocol_is_an_error(pair):
    client, server = pair()
    client.send_clear(b'not sealed')
    with pytest.raises(tls_stream.OutOfStep, match='clear data where sealed'):
        receive_exactly(server, 10)
    client, server = pair()
    client.sendall(b'sealed')
    time.sleep(0.1)
    with pytest.raises(tls_stream.OutOfStep, match='TLS record'):
        receive_clear(server, 6)
    client, server = pair()
    client.sendall(b'sealed')
    client.send_clear(b'clear')
    server.recv_into(bytearray(2), 2)  # two of the six sealed bytes read, four still decrypted
    with pytest.raises(tls_stream.OutOfStep, match='sealed data came'):
        receive_clear(server, 5)
    client, server = pair()
    client.send_clear(b'twelve bytes')
    with pytest.raises(tls_stream.OutOfStep, match='expected 5 clear bytes, the peer sent 12'):
        receive_clear(server, 5)


def test_a_connection_cut_in_a_clear_segment_is_an_error(pair):
    client, server = pair()
    sender = threading.Thread(target=lambda: client.raw.sendall(tls_stream.CLEAR_SEGMENT.pack(tls_stream.CLEAR, 1000) + b'x' * 400))
    sender.start()
    sender.join(30)
    client.close()
    with pytest.raises(ConnectionError, match='400 of 1000'):
        receive_clear(server, 1000)


class SlowSecondRead:
    """A server's socket whose second read waits: the client's last flight and its first data arrive together."""

    def __init__(self, sock):
        self.sock = sock
        self.reads = 0

    def recv_into(self, *args):
        self.reads += 1
        if self.reads == 2:
            time.sleep(0.3)
        return self.sock.recv_into(*args)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_data_right_behind_the_handshake_is_taken_record_by_record(pair):
    """The read that ends the server's handshake also brings the client's first records, the last one cut:
    what OpenSSL is given stays whole records, so a clear segment behind them is found where it is."""
    client, server = pair(lambda conn, context: tls_stream.TlsStream(SlowSecondRead(conn), context, server_side=True))
    first, segment, last = os.urandom(300 * 1024 + 11), os.urandom(70 * 1024), b'after the segment'
    client.sendall(first)
    client.send_clear(segment)
    client.sendall(last)
    assert server.raw.reads >= 2
    assert receive_exactly(server, len(first)) == first
    assert receive_clear(server, len(segment)) == segment
    assert receive_exactly(server, len(last)) == last


@pytest.mark.parametrize('probe', [b'GET / HTTP/1.1\r\nHost: agent\r\n\r\n', b'\x16\x03\x01\xff\xffno record is this long'],
                         ids=['http', 'oversized-record'])
def test_a_peer_that_does_not_speak_tls_is_refused_at_once(tmp_path, probe):
    """Whole records are waited for, but bytes that are no TLS record go to OpenSSL, which refuses them."""
    listener, thread, outcome = accepting(tmp_path, 30)
    client = socket.create_connection(listener.getsockname())
    client.sendall(probe)
    thread.join(30)
    client.close()
    listener.close()
    assert isinstance(outcome.get('error'), ssl.SSLError) and outcome['seconds'] < 5, outcome
