"""The registry client's HTTP/1.1 transport against a server that writes its answers byte by byte: framing, keep-alive,
redirects, streamed bodies, proxies, TLS."""

import os
import socket
import socketserver
import subprocess
import sys
import threading

import pytest
from tls import make_ca_and_server

from ansible_collections.ferry.kube.plugins.module_utils.registry.transport import ConnectError, TLSError, Transport, parse_links


class RawServer:
    """Loopback HTTP server: ``answer(method, target, headers, body)`` returns (raw bytes to send, close the connection after)."""

    def __init__(self, answer, tls=None):
        self.requests = []
        self.connections = 0
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                server.connections += 1
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    try:
                        method, target, _version = line.decode().split(' ', 2)
                    except ValueError:  # not HTTP (a TLS hello): answer as a web server does
                        self.wfile.write(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
                        return
                    headers = {}
                    while True:
                        line = self.rfile.readline().decode()
                        if line in ('\r\n', ''):
                            break
                        name, _sep, value = line.partition(':')
                        headers[name.strip().lower()] = value.strip()
                    body = self.rfile.read(int(headers.get('content-length') or 0))
                    server.requests.append({'method': method, 'target': target, 'headers': headers, 'body': body})
                    raw, close = answer(method, target, headers, body)
                    self.wfile.write(raw)
                    self.wfile.flush()
                    if close:
                        return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        scheme = 'http'
        if tls:
            import ssl  # pylint: disable=import-outside-toplevel
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls['cert'], tls['key'])
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = 'https'
        self.port = self.server.server_address[1]
        self.url = '%s://127.0.0.1:%d' % (scheme, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def answer(status=200, body=b'', headers=(), close=False):
    head = ['HTTP/1.1 %d Whatever' % status] + ['%s: %s' % pair for pair in headers]
    if not any(name.lower() in ('content-length', 'transfer-encoding') for name, _value in headers):
        head.append('Content-Length: %d' % len(body))
    return ('\r\n'.join(head) + '\r\n\r\n').encode() + body, close


def test_content_length_chunked_and_keep_alive():
    chunked = b'5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n'

    def route(method, target, headers, body):
        if target == '/chunked':
            return answer(body=chunked, headers=[('Transfer-Encoding', 'chunked'), ('Link', '</v2/x/tags/list?last=b&n=2>; rel="next"')])
        return answer(body=b'{"ok": true}', headers=[('Docker-Content-Digest', 'sha256:abc'), ('X-Twice', 'a'), ('X-Twice', 'b')])

    with RawServer(route) as server:
        transport = Transport(verify=False)
        plain = transport.request('GET', server.url + '/v2/')
        assert plain.status_code == 200 and plain.json() == {'ok': True}
        assert plain.headers.get('docker-content-digest') == plain.headers['Docker-Content-Digest'] == 'sha256:abc'
        assert plain.headers.get('X-Twice') == 'a, b'
        whole = transport.request('GET', server.url + '/chunked')
        assert whole.content == b'hello, world'
        assert whole.links['next']['url'] == '/v2/x/tags/list?last=b&n=2'
        streamed = transport.request('GET', server.url + '/chunked', stream=True)
        assert list(streamed.stream(3)) == [b'hel', b'lo,', b' wo', b'rld']  # pieces across chunk boundaries
        head = transport.request('HEAD', server.url + '/v2/')
        assert head.status_code == 200 and head.content == b''
        assert server.connections == 1  # every answer read to its end: one kept-alive connection
        transport.close()
    assert parse_links('<a>; rel="next", <b>; rel=prev') == {'next': {'url': 'a', 'rel': 'next'}, 'prev': {'url': 'b', 'rel': 'prev'}}


def test_connection_the_server_closes_is_replaced():
    with RawServer(lambda *args: answer(body=b'x', close=True)) as server:  # closes after each answer, without saying so
        transport = Transport(verify=False)
        for _attempt in range(3):
            assert transport.request('GET', server.url + '/v2/').content == b'x'
        assert server.connections == 3


def test_answer_that_breaks_off_and_garbage():
    def route(method, target, headers, body):
        if target == '/short':
            return b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this', True
        return b'SSH-2.0-OpenSSH_9.6\r\n', True

    with RawServer(route) as server:
        transport = Transport(verify=False)
        with pytest.raises(ConnectError, match='broke off: the answer ended 91 bytes before its Content-Length'):
            transport.request('GET', server.url + '/short')
        with pytest.raises(ConnectError, match='not an HTTP/1.x answer'):
            transport.request('GET', server.url + '/ssh')
    with pytest.raises(ConnectError, match='Connection refused'):
        Transport(verify=False).request('GET', server.url + '/gone')


def test_redirects_drop_authorization_when_leaving_the_host():
    def route(method, target, headers, body):
        if target == '/v2/a/blobs/sha256:1':
            return answer(307, headers=[('Location', 'http://localhost:%d/storage/1' % server.port)])
        if target == '/v2/a/blobs/sha256:2':
            return answer(307, headers=[('Location', '/storage/2')])
        if target == '/v2/post':
            return answer(302, headers=[('Location', '/after')])
        return answer(body=target.encode())

    with RawServer(route) as server:
        transport = Transport(verify=False)
        elsewhere = transport.request('GET', server.url + '/v2/a/blobs/sha256:1', headers={'Authorization': 'Basic c2VjcmV0'})
        assert elsewhere.content == b'/storage/1' and elsewhere.url.startswith('http://localhost:')
        same = transport.request('GET', server.url + '/v2/a/blobs/sha256:2', headers={'Authorization': 'Basic c2VjcmV0'})
        assert same.content == b'/storage/2'
        posted = transport.request('POST', server.url + '/v2/post', data={'a': 'b'})
        assert posted.content == b'/after'
        unfollowed = transport.request('HEAD', server.url + '/v2/a/blobs/sha256:1', allow_redirects=False)
        assert unfollowed.status_code == 307
    by_target = {r['target']: r for r in server.requests}
    assert 'authorization' not in by_target['/storage/1']['headers']
    assert by_target['/storage/2']['headers']['authorization'] == 'Basic c2VjcmV0'
    assert by_target['/after']['method'] == 'GET' and by_target['/v2/post']['body'] == b'a=b'


def test_streamed_body_params_and_basic_auth():
    with RawServer(lambda *args: answer(201)) as server:
        transport = Transport(verify=False)
        pieces = [b'abc', b'', b'defg']

        class Body:
            def __len__(self):
                return 7

            def __iter__(self):
                return iter(pieces)

        response = transport.request('PUT', server.url + '/v2/a/blobs/uploads/1?_state=s', params={'digest': 'sha256:x'}, data=Body(),
                                     auth=('user', 'pw'))
        assert response.status_code == 201
        transport.request('POST', server.url + '/v2/a/blobs/uploads/')
    put, post = server.requests
    assert put['target'] == '/v2/a/blobs/uploads/1?_state=s&digest=sha256%3Ax'
    assert put['body'] == b'abcdefg' and put['headers']['content-length'] == '7'
    assert put['headers']['authorization'] == 'Basic dXNlcjpwdw=='
    assert post['headers']['content-length'] == '0'


def test_http_proxy_from_the_environment(monkeypatch):
    with RawServer(lambda *args: answer(body=b'via proxy')) as proxy:
        for name in ('NO_PROXY', 'no_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy'):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv('HTTP_PROXY', 'http://me:secret@127.0.0.1:%d' % proxy.port)
        transport = Transport(verify=False)
        assert transport.request('GET', 'http://registry.invalid:5000/v2/').content == b'via proxy'
        monkeypatch.setenv('NO_PROXY', 'registry.invalid')
        with pytest.raises(ConnectError):
            Transport(verify=False).request('GET', 'http://registry.invalid:5000/v2/')
    [request] = proxy.requests
    assert request['target'] == 'http://registry.invalid:5000/v2/'
    assert request['headers']['host'] == 'registry.invalid:5000'
    assert request['headers']['proxy-authorization'] == 'Basic bWU6c2VjcmV0'


def test_clients_share_one_tls_context_per_ca_file(tmp_path):
    tls = make_ca_and_server(str(tmp_path), prefix='shared')
    with RawServer(lambda *args: answer(body=b'ok'), tls=tls) as server:
        first, second = Transport(verify=tls['ca']), Transport(verify=tls['ca'])
        assert first.request('GET', server.url + '/v2/').content == second.request('GET', server.url + '/v2/').content == b'ok'
        assert first.context() is second.context()  # the CA bundle was loaded once
        assert Transport(verify=False).context() is Transport(verify=False).context()
        assert Transport(verify=False).context() is not first.context()
        # a bundle rewritten in place (a renewed CA) is loaded again
        (tmp_path / 'other').mkdir()
        other = make_ca_and_server(str(tmp_path / 'other'), prefix='other')
        with open(other['ca'], encoding='ascii') as source, open(tls['ca'], 'w', encoding='ascii') as bundle:
            bundle.write(source.read())
        renewed = Transport(verify=tls['ca'])
        assert renewed.context() is not first.context()
        with pytest.raises(TLSError, match='CERTIFICATE_VERIFY_FAILED'):
            renewed.request('GET', server.url + '/v2/')


def test_a_request_does_not_import_the_idna_codec():
    """Names go to the resolver and to SNI as ASCII bytes: the idna codec (with unicodedata) costs more to import than a request."""
    with RawServer(lambda *args: answer(body=b'ok')) as server:
        code = ('import sys; from ansible_collections.ferry.kube.plugins.module_utils.registry.transport import Transport; '
                'Transport().request("GET", "http://localhost:%d/v2/"); print(sorted(m for m in sys.modules if "idna" in m or m == "unicodedata"))'
                % server.port)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True).stdout.strip() == '[]'


def test_tls_with_a_ca_file(tmp_path):
    tls = make_ca_and_server(str(tmp_path), prefix='transport')
    with RawServer(lambda *args: answer(body=b'secure'), tls=tls) as server:
        assert Transport(verify=tls['ca']).request('GET', server.url + '/v2/').content == b'secure'
        assert Transport(verify=False).request('GET', server.url + '/v2/').content == b'secure'
        with pytest.raises(TLSError, match='CERTIFICATE_VERIFY_FAILED'):
            Transport(verify=True).request('GET', server.url + '/v2/')
    with RawServer(lambda *args: answer(body=b'plain')) as plain:
        with pytest.raises(TLSError, match='WRONG_VERSION_NUMBER|wrong version number'):
            Transport(verify=False).request('GET', plain.url.replace('http://', 'https://') + '/v2/')


class TunnelProxy:
    """An HTTP proxy that only tunnels (CONNECT), recording what it was asked."""

    def __init__(self):
        self.asked = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request = self.rfile.readline().decode()
                headers = {}
                while True:
                    line = self.rfile.readline().decode()
                    if line in ('\r\n', ''):
                        break
                    name, _sep, value = line.partition(':')
                    headers[name.strip().lower()] = value.strip()
                proxy.asked.append((request.strip(), headers))
                host, port = request.split()[1].rsplit(':', 1)
                upstream = socket.create_connection((host, int(port)))
                self.wfile.write(b'HTTP/1.1 200 Connection established\r\n\r\n')
                self.wfile.flush()

                def pump(source, sink):
                    try:
                        while True:
                            data = source.recv(65536)
                            if not data:
                                break
                            sink.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for end in (source, sink):
                            try:
                                end.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
                back.start()
                pump(self.connection, upstream)
                back.join(5)
                upstream.close()

        self.server = socketserver.ThreadingTCPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_https_through_a_connect_proxy(tmp_path, monkeypatch):
    tls = make_ca_and_server(str(tmp_path), prefix='tunnel')
    proxy = TunnelProxy()
    try:
        with RawServer(lambda *args: answer(body=b'tunnelled'), tls=tls) as server:
            for name in ('NO_PROXY', 'no_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv('HTTPS_PROXY', 'http://me:pw@127.0.0.1:%d' % proxy.port)
            transport = Transport(verify=tls['ca'])
            assert transport.request('GET', server.url + '/v2/').content == b'tunnelled'
            assert transport.request('GET', server.url + '/v2/again').content == b'tunnelled'
    finally:
        proxy.close()
    [(request, headers)] = proxy.asked  # one tunnel, kept alive for both requests
    assert request == 'CONNECT 127.0.0.1:%d HTTP/1.1' % server.port
    assert headers['proxy-authorization'] == 'Basic bWU6cHc='
    assert [r['target'] for r in server.requests] == ['/v2/', '/v2/again']
    assert 'proxy-authorization' not in server.requests[0]['headers']  # the registry never sees the proxy's credentials
