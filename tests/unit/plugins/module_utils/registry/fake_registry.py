"""A read-only registry whose answers a test controls: auth challenges, corrupt bytes, transient failures.

The real registries (docker-registry) cover the protocol; this one plays what they cannot: a Bearer
challenge with a token service (Docker Hub, GCR, ACR, OCIR), a cloud exchange endpoint, a corrupt manifest
or blob, a 503. ``routes`` answers other paths (token services) as ScriptedServer's callables do.
"""

import base64
import hashlib
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self, tls=None, bearer=None, basic=None, routes=None):
        """``bearer``: {'realm', 'service', 'token'} a valid request carries; ``basic``: (user, password)."""
        self.manifests = {}  # (repository, tag or digest) -> (bytes, media type)
        self.blobs = {}  # digest -> bytes
        self.corrupt = set()  # digests whose bytes are served altered
        self.fail_once = set()  # paths answered 503 the first time
        self.bearer = bearer
        self.basic = basic
        self.routes = routes
        self.requests = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                registry.answer(self, head=True)

            def do_GET(self):
                registry.answer(self)

            def do_POST(self):
                registry.answer(self)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        scheme = 'http'
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls['cert'], tls['key'])
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = 'https'
        self.name = '127.0.0.1:%d' % self.httpd.server_address[1]
        self.url = '%s://%s' % (scheme, self.name)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_image(self, repository, tag, layers, media_type='application/vnd.oci.image.manifest.v1+json'):
        """Store blobs and a manifest of them; returns the manifest's (bytes, digest)."""
        config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'rootfs': {'type': 'layers', 'diff_ids': []}}).encode()
        self.blobs[digest(config)] = config
        descriptors = []
        for data in layers:
            self.blobs[digest(data)] = data
            descriptors.append({'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': digest(data), 'size': len(data)})
        manifest = json.dumps({'schemaVersion': 2, 'mediaType': media_type,
                               'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': digest(config), 'size': len(config)},
                               'layers': descriptors}).encode()
        self.manifests[(repository, tag)] = (manifest, media_type)
        self.manifests[(repository, digest(manifest))] = (manifest, media_type)
        return manifest, digest(manifest)

    def authorised(self, handler, repository):
        header = handler.headers.get('Authorization') or ''
        if self.bearer:
            if header == 'Bearer ' + self.bearer['token']:
                return True
            challenge = 'Bearer realm="%s",service="%s"' % (self.bearer['realm'], self.bearer['service'])
            if repository:
                challenge += ',scope="repository:%s:pull"' % repository
            if header.startswith('Bearer ') and self.bearer.get('insufficient'):
                challenge += ',error="insufficient_scope"'
            self.reply(handler, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       {'WWW-Authenticate': challenge})
            return False
        if self.basic:
            expected = 'Basic ' + base64.b64encode(('%s:%s' % self.basic).encode()).decode()
            if header == expected:
                return True
            self.reply(handler, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                       {'WWW-Authenticate': 'Basic realm="fake"'})
            return False
        return True

    def answer(self, handler, head=False):
        length = int(handler.headers.get('Content-Length') or 0)
        body = handler.rfile.read(length) if length else b''
        path, _sep, query = handler.path.partition('?')
        self.requests.append({'method': handler.command, 'path': handler.path, 'authorization': handler.headers.get('Authorization')})
        if not path.startswith('/v2/'):
            if self.routes is None:
                return self.reply(handler, 404, b'{}')
            status, payload = self.routes(handler.command, path, handler.headers, body or query.encode())
            return self.reply(handler, status, json.dumps(payload).encode())
        if handler.path in self.fail_once:
            self.fail_once.discard(handler.path)
            return self.reply(handler, 503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
        parts = path[len('/v2/'):].split('/')
        repository = '/'.join(parts[:-2]) if len(parts) >= 3 else None
        if not self.authorised(handler, repository):
            return None
        if path == '/v2/':
            return self.reply(handler, 200, b'{}')
        kind, reference = parts[-2], parts[-1]
        if kind == 'manifests' and (repository, reference) in self.manifests:
            data, media_type = self.manifests[(repository, reference)]
            served_digest = digest(data) if ':' not in reference else reference
            return self.reply(handler, 200, data, {'Content-Type': media_type, 'Docker-Content-Digest': served_digest}, head)
        if kind == 'blobs' and reference in self.blobs:
            data = self.blobs[reference]
            if reference in self.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            return self.reply(handler, 200, data, {'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': reference}, head)
        code = 'MANIFEST_UNKNOWN' if kind == 'manifests' else 'BLOB_UNKNOWN'
        return self.reply(handler, 404, json.dumps({'errors': [{'code': code, 'message': 'unknown'}]}).encode())

    @staticmethod
    def reply(handler, status, data, headers=None, head=False):
        handler.send_response(status)
        headers = dict(headers or {})
        headers.setdefault('Content-Type', 'application/json')
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header('Content-Length', str(len(data)))
        handler.end_headers()
        if not head and handler.command != 'HEAD':
            handler.wfile.write(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
