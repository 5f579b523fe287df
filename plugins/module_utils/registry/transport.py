# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP/1.1 for the registry client on ``socket`` and ``ssl``: what it needs of ``requests``, without its import.

A run with nothing to copy makes a few dozen small requests; importing requests (urllib3, charset_normalizer,
idna...) took longer than all of them, and even ``http.client`` costs a fifth of such a run for the ``email``
package it parses headers with. HTTP/1.1 as registries speak it is small: a request line and headers, an
answer framed by ``Content-Length`` or chunked encoding (or by the end of the connection), keep-alive unless
``Connection: close``. This transport keeps what the client used of requests:

- one pool of keep-alive connections per transport, per scheme, host and port, holding up to ``maxsize`` idle
  connections (more are opened when more threads ask, and closed when given back to a full pool); a
  connection the server closed while idle is dropped before use, and a request that finds it closed
  anyway is sent again on a new one when its body can be replayed;
- TLS verified against ``ca_file`` (only that bundle), or the system's CA store (``SSL_CERT_FILE``,
  ``SSL_CERT_DIR``; certifi's bundle when the system has none), or not at all (``verify=False``); one
  context per bundle in a process, shared by the source's and the target's clients and their token services;
- host names sent to the resolver and as SNI in ASCII, so that the ``idna`` codec is not imported for them;
- redirects followed (10 at most) for replayable bodies, as requests does: ``303`` (and ``301``/``302``
  after a POST) become a GET, and ``Authorization`` is dropped when the redirect leaves the host
  (a registry sending blob downloads to object storage);
- request bodies as bytes, a form (dict), or an iterable with a length (streamed with Content-Length);
  responses read whole, or streamed (``stream=True``) in pieces;
- ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment (an HTTP proxy; CONNECT for https);
- answers of any size streamed without reading ahead; headers limited to 64 KiB a line and 200 lines.

Errors: ``TLSError`` (handshake, verification), ``ConnectError`` (cannot connect, reset, timed out, a body
that broke off); the client words them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import ssl
import threading
import urllib.parse

MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = 'ferry.kube registry_sync'
SMALL_BODY = 64 * 1024  # a streamed answer left with no more than this is read to keep its connection
_LINK_RE = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]*)*)')
_LINK_PARAM_RE = re.compile(r';\s*([^=;,\s]+)\s*=\s*"?([^";,]*)"?')
_RESET = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
MAX_LINE = 65536
MAX_HEADERS = 200
_CONTEXTS = {}  # shared_context's: verify (or the CA file's identity) -> SSLContext
_CONTEXTS_LOCK = threading.Lock()


class TransportError(Exception):
    """A request could not be made or its answer not read."""


class TLSError(TransportError):
    """The TLS handshake failed, or the peer's certificate did not verify."""


class ConnectError(TransportError):
    """No connection, a connection reset or timed out, or an answer that broke off."""


class ProtocolError(Exception):
    """An answer that is not HTTP/1.x as it should be (reported as a ConnectError)."""


class Closed(ConnectionResetError):
    """The server closed the connection instead of answering (a kept-alive connection it dropped)."""


def shared_context(verify=True):
    """The ``tls_context`` for ``verify``, made once per process: loading CAs is the dearest part of a connection's set-up,
    and a run opens clients for the source and the target (often with one CA bundle). A CA file is known by its path and
    its identity on disk, so a bundle rewritten in place is loaded again."""
    key = verify
    if isinstance(verify, str):
        try:
            status = os.stat(verify)
            key = (verify, status.st_ino, status.st_mtime_ns, status.st_size)
        except OSError:
            return tls_context(verify)  # ssl words the error
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = tls_context(verify)
        return context


def tls_context(verify=True):
    """An ``ssl.SSLContext``: ``verify`` is a CA bundle path, True (the system's CAs) or False (no verification)."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not context.cert_store_stats().get('x509_ca') and not _has_ca_dir():
        try:
            import certifi  # pylint: disable=import-outside-toplevel
            context.load_verify_locations(cafile=certifi.where())
        except ImportError:
            pass
    return context


def _has_ca_dir():
    """Whether OpenSSL's default CA directory holds certificates (they load lazily, so the store counts none yet)."""
    paths = ssl.get_default_verify_paths()
    directory = paths.capath or paths.openssl_capath
    try:
        return bool(directory) and any(name.endswith(('.0', '.pem', '.crt')) for name in os.listdir(directory))
    except OSError:
        return False


def wire_host(host):
    """A host name as bytes for name resolution and SNI: given a str, socket and ssl encode it with the idna codec, whose
    import (with stringprep and unicodedata) costs more than a request; only a non-ASCII name needs it."""
    return host.encode('ascii') if host.isascii() else host.encode('idna')


def parse_links(header):
    """``{rel: {'url': ..., 'rel': ...}}`` from a ``Link`` header, as requests' ``Response.links``."""
    links = {}
    for match in _LINK_RE.finditer(header or ''):
        link = {'url': match.group(1).strip()}
        for name, value in _LINK_PARAM_RE.findall(match.group(2) or ''):
            link[name.lower()] = value
        links[link.get('rel') or link['url']] = link
    return links


def strip_auth(old, new):
    """Whether a redirect from ``old`` to ``new`` must not carry the Authorization header (requests' rule)."""
    old_parts, new_parts = urllib.parse.urlsplit(old), urllib.parse.urlsplit(new)
    if old_parts.hostname != new_parts.hostname:
        return True
    if (old_parts.scheme == 'http' and old_parts.port in (80, None) and new_parts.scheme == 'https' and new_parts.port in (443, None)):
        return False
    default = {'http': 80, 'https': 443}
    return (old_parts.scheme != new_parts.scheme
            or (old_parts.port or default.get(old_parts.scheme)) != (new_parts.port or default.get(new_parts.scheme)))


def _proxy_for(url):
    """(proxy URL, parsed) for ``url`` from the environment, or None; reads urllib's rules only when a proxy is set."""
    if not any(key.lower() in ('http_proxy', 'https_proxy', 'all_proxy') for key in os.environ):
        return None
    import urllib.request  # pylint: disable=import-outside-toplevel
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get('all')
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or '', proxies):
        return None
    if '://' not in proxy:
        proxy = 'http://' + proxy
    return urllib.parse.urlsplit(proxy)


class Headers(dict):
    """Answer headers by lower-case name; a header sent several times has its values joined with ``, ``."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


def read_head(reader):
    """(version, status, reason, Headers) of an answer; raises Closed when the connection ends before it."""
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise Closed('the server closed the connection without answering')
    if len(line) > MAX_LINE:
        raise ProtocolError('status line longer than %d bytes' % MAX_LINE)
    parts = line.decode('latin-1').rstrip('\r\n').split(None, 2)
    if len(parts) < 2 or not parts[0].startswith('HTTP/1.') or not parts[1].isdigit():
        raise ProtocolError('not an HTTP/1.x answer: %r' % line[:80])
    headers, last = Headers(), None
    while True:
        line = reader.readline(MAX_LINE + 1)
        if not line:
            raise ProtocolError('the connection ended in the headers')
        if line in (b'\r\n', b'\n'):
            break
        if len(line) > MAX_LINE or len(headers) > MAX_HEADERS:
            raise ProtocolError('headers longer than the limits (%d bytes a line, %d lines)' % (MAX_LINE, MAX_HEADERS))
        text = line.decode('latin-1').rstrip('\r\n')
        if text[:1] in (' ', '\t') and last is not None:  # an obsolete folded line continues the previous header
            dict.__setitem__(headers, last, dict.__getitem__(headers, last) + ' ' + text.strip())
            continue
        name, _sep, value = text.partition(':')
        last, value = name.strip().lower(), value.strip()
        dict.__setitem__(headers, last, dict.__getitem__(headers, last) + ', ' + value if last in headers else value)
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else '', headers


class Answer:
    """An answer's status, headers and body, read from a connection as the framing says."""

    def __init__(self, reader, method, version, status, reason, headers):
        self.reader = reader
        self.status, self.reason, self.headers = status, reason, headers
        connection = headers.get('connection', '').lower()
        self.will_close = 'close' in connection or (version == 'HTTP/1.0' and 'keep-alive' not in connection)
        self.chunked = 'chunked' in headers.get('transfer-encoding', '').lower()
        self.length = None  # bytes left, when the answer says how many
        self._chunk_left = None
        if method == 'HEAD' or status in (204, 304) or 100 <= status < 200:
            self.length = 0
        elif not self.chunked and headers.get('content-length') is not None:
            try:
                self.length = int(headers.get('content-length').split(',')[0])
            except ValueError:
                raise ProtocolError('Content-Length %r is not a number' % headers.get('content-length')) from None
            if self.length < 0:
                raise ProtocolError('negative Content-Length')
        elif not self.chunked:
            self.will_close = True  # delimited by the end of the connection
        self._closed = self.length == 0

    def isclosed(self):
        return self._closed

    def read(self, amount=None):
        """Up to ``amount`` bytes of the body (all of it when None); b'' at its end."""
        if self._closed:
            return b''
        if self.chunked:
            return self._read_chunked(amount)
        if self.length is None:
            data = self.reader.read() if amount is None else self.reader.read(amount)
            if amount is None or not data:
                self._closed = True
            return data
        wanted = self.length if amount is None else min(amount, self.length)
        data = self.reader.read(wanted)
        if len(data) < wanted:
            raise ProtocolError('the answer ended %d bytes before its Content-Length' % (self.length - len(data)))
        self.length -= len(data)
        self._closed = self.length == 0
        return data

    def _read_chunked(self, amount):
        pieces = []
        while amount is None or amount > 0:
            if self._chunk_left is None:
                line = self.reader.readline(MAX_LINE + 1)
                try:
                    size = int(line.split(b';', 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError('bad chunk size line %r' % line[:80]) from None
                if size == 0:
                    while True:  # trailers, up to the empty line
                        line = self.reader.readline(MAX_LINE + 1)
                        if not line or line in (b'\r\n', b'\n'):
                            break
                    self._closed = True
                    break
                self._chunk_left = size
            take = self._chunk_left if amount is None else min(amount, self._chunk_left)
            data = self.reader.read(take)
            if len(data) < take:
                raise ProtocolError('the answer ended inside a chunk')
            pieces.append(data)
            self._chunk_left -= take
            if amount is not None:
                amount -= take
            if self._chunk_left == 0:
                if self.reader.read(2) not in (b'\r\n', b'\n'):
                    raise ProtocolError('a chunk does not end with CRLF')
                self._chunk_left = None
        return b''.join(pieces)


class Connection:
    """One HTTP/1.1 connection, TLS when ``context`` is given, directly or through an HTTP proxy (CONNECT for TLS)."""

    def __init__(self, host, port, context=None, timeout=60.0, proxy=None, proxy_headers=None):
        self.host, self.port, self.context, self.timeout = host, port, context, timeout
        self.proxy = proxy  # (host, port) of an HTTP proxy
        self.proxy_headers = proxy_headers or {}
        self.sock = self.reader = None

    def authority(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return host if self.port == (443 if self.context is not None else 80) else '%s:%d' % (host, self.port)

    def connect(self):
        host, port = self.proxy or (self.host, self.port)
        sock = socket.create_connection((wire_host(host), port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.proxy is not None and self.context is not None:
                self._tunnel(sock)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=wire_host(self.host))
        except BaseException:
            sock.close()
            raise
        self.sock, self.reader = sock, sock.makefile('rb')

    def _tunnel(self, sock):
        authority = '%s:%d' % ('[%s]' % self.host if ':' in self.host else self.host, self.port)
        lines = ['CONNECT %s HTTP/1.1' % authority, 'Host: %s' % authority] + ['%s: %s' % item for item in self.proxy_headers.items()]
        sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1'))
        reader = sock.makefile('rb')
        try:
            _version, status, reason, _headers = read_head(reader)
        finally:
            reader.close()
        if status != 200:
            raise ConnectError('the proxy answered %d %s to CONNECT %s' % (status, reason, authority))

    def request(self, method, url, target, headers, body):
        """Send a request (``body``: None, bytes, or an iterable of bytes with Content-Length in ``headers``) and read the answer's head."""
        if self.sock is None:
            self.connect()
        names = {name.lower() for name in headers}
        lines = ['%s %s HTTP/1.1' % (method, url if self.proxy is not None and self.context is None else target)]
        if 'host' not in names:
            lines.append('Host: ' + self.authority())
        if body is None and method in ('POST', 'PUT', 'PATCH') and 'content-length' not in names:
            lines.append('Content-Length: 0')
        elif isinstance(body, bytes) and 'content-length' not in names:
            lines.append('Content-Length: %d' % len(body))
        for name, value in list(headers.items()) + (list(self.proxy_headers.items()) if self.context is None else []):
            value = str(value)
            if '\r' in value or '\n' in value or '\r' in name or '\n' in name:
                raise ValueError('header %s has a line break' % name)
            lines.append('%s: %s' % (name, value))
        head = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')
        if body is None:
            self.sock.sendall(head)
        elif isinstance(body, bytes):
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            for piece in body:
                if piece:
                    self.sock.sendall(piece)
        while True:
            version, status, reason, answer_headers = read_head(self.reader)
            if not 100 <= status < 200 or status == 101:
                return Answer(self.reader, method, version, status, reason, answer_headers)

    def close(self):
        for thing in (self.reader, self.sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
        self.sock = self.reader = None


class Response:
    """A registry's answer: status, headers (case-insensitive), body read whole or streamed; ``close()`` gives the connection back."""

    def __init__(self, url, raw, release):
        self.url = url
        self.raw = raw
        self.status_code = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self._release = release
        self._content = None

    def read(self):
        if self._content is None:
            try:
                self._content = self.raw.read()
            except (OSError, ProtocolError) as exc:
                self._discard()
                raise ConnectError('the answer from %s broke off: %s' % (_origin(self.url), _describe(exc))) from None
            self.close()
        return self._content

    content = property(read)

    @property
    def text(self):
        return self.read().decode('utf-8', 'replace')

    def json(self):
        return json.loads(self.read())

    @property
    def links(self):
        return parse_links(self.headers.get('Link'))

    def stream(self, size):
        """The body in pieces of up to ``size`` bytes; raises ConnectError when it breaks off."""
        try:
            while True:
                piece = self.raw.read(size)
                if not piece:
                    break
                yield piece
        except (OSError, ProtocolError) as exc:
            self._discard()
            raise ConnectError('the answer from %s broke off: %s' % (_origin(self.url), _describe(exc))) from None
        self.close()

    def close(self):
        """Give the connection back (when the answer was read to its end, or little is left), else close it."""
        release, self._release = self._release, None
        if release is None:
            return
        raw = self.raw
        if not raw.isclosed() and raw.length is not None and raw.length <= SMALL_BODY:
            try:
                raw.read()
            except (OSError, ProtocolError):
                pass
        release(raw.isclosed() and not raw.will_close)

    def _discard(self):
        release, self._release = self._release, None
        if release is not None:
            release(False)


class Transport:
    """Keep-alive connections to any host, with one TLS context; ``request()`` is thread-safe."""

    def __init__(self, verify=True, timeout=60.0, maxsize=10, user_agent=USER_AGENT):
        self.verify = verify
        self.timeout = timeout
        self.maxsize = max(int(maxsize or 1), 1)
        self.user_agent = user_agent
        self._context = None
        self._idle = {}  # (scheme, host, port) -> [connection]
        self._lock = threading.Lock()

    def context(self):
        with self._lock:
            if self._context is None:
                self._context = shared_context(self.verify)
            return self._context

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -- connections ------------------------------------------------------------------------------
    def _connection(self, parts):
        """(connection, reused, request target prefix) for a URL's scheme and host."""
        key = (parts.scheme, parts.hostname, parts.port)
        while True:
            with self._lock:
                pool = self._idle.get(key)
                connection = pool.pop() if pool else None
            if connection is None:
                break
            if _alive(connection):
                return connection, True, key
            connection.close()
        port = parts.port or (443 if parts.scheme == 'https' else 80)
        context = self.context() if parts.scheme == 'https' else None
        proxy = _proxy_for(urllib.parse.urlunsplit(parts))
        if proxy is None:
            return Connection(parts.hostname, port, context, self.timeout), False, key
        if proxy.scheme != 'http':
            raise ConnectError('proxy %s://%s: only http:// proxies are supported (HTTPS_PROXY)' % (proxy.scheme, proxy.hostname))
        headers = {}
        if proxy.username:
            credentials = '%s:%s' % (urllib.parse.unquote(proxy.username), urllib.parse.unquote(proxy.password or ''))
            headers['Proxy-Authorization'] = 'Basic ' + base64.b64encode(credentials.encode('utf-8')).decode('ascii')
        return Connection(parts.hostname, port, context, self.timeout, proxy=(proxy.hostname, proxy.port or 80), proxy_headers=headers), False, key

    def _give_back(self, key, connection, keep):
        if keep:
            with self._lock:
                pool = self._idle.setdefault(key, [])
                if len(pool) < self.maxsize:
                    pool.append(connection)
                    return
        connection.close()

    # -- requests ---------------------------------------------------------------------------------
    def request(self, method, url, params=None, data=None, headers=None, auth=None, allow_redirects=True, stream=False):
        """A ``Response`` (any status). ``data``: bytes, a dict (a form), or an iterable with ``len()``; ``auth``: (user, password)."""
        if params:
            query = urllib.parse.urlencode(list(params.items()) if isinstance(params, dict) else list(params))
            url += ('&' if urllib.parse.urlsplit(url).query else '?') + query
        sent = {'User-Agent': self.user_agent}
        sent.update(headers or {})
        if auth is not None:
            credentials = ('%s:%s' % auth).encode('utf-8')
            sent['Authorization'] = 'Basic ' + base64.b64encode(credentials).decode('ascii')
        body, replayable = data, True
        if isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode('ascii')
            sent.setdefault('Content-Type', 'application/x-www-form-urlencoded')
        elif isinstance(data, str):
            body = data.encode('utf-8')
        elif data is not None and not isinstance(data, (bytes, bytearray)):
            sent['Content-Length'] = str(len(data))
            body, replayable = iter(data), False
        for _redirect in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, body, sent, replayable, stream)
            location = response.headers.get('Location')
            if not allow_redirects or response.status_code not in REDIRECTS or not location or not replayable:
                return response
            response.close()
            following = urllib.parse.urljoin(url, location)
            if response.status_code == 303 and method != 'HEAD' or response.status_code in (301, 302) and method == 'POST':
                method, body = 'GET', None
                sent = {k: v for k, v in sent.items() if k.lower() not in ('content-type', 'content-length')}
            if strip_auth(url, following):
                sent = {k: v for k, v in sent.items() if k.lower() != 'authorization'}
            url = following
        raise ConnectError('%s redirected more than %d times' % (_origin(url), MAX_REDIRECTS))

    def _send(self, method, url, body, headers, replayable, stream):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ConnectError('%s is not an http(s) URL' % url)
        target = urllib.parse.urlunsplit(('', '', parts.path or '/', parts.query, ''))
        attempt = 0
        while True:
            attempt += 1
            connection, reused, key = self._connection(parts)
            try:
                raw = connection.request(method, url, target, headers, body)
            except ssl.SSLError as exc:
                connection.close()
                if reused and replayable and attempt == 1 and isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    continue
                raise TLSError(_describe(exc)) from None
            except _RESET as exc:
                connection.close()
                if reused and replayable and attempt == 1:
                    continue  # the server closed the kept-alive connection as we used it
                raise ConnectError(_describe(exc)) from None
            except (OSError, ProtocolError) as exc:
                connection.close()
                raise ConnectError(_describe(exc)) from None
            except BaseException:
                connection.close()  # the body's iterator failed (the source of a streamed copy): the request is half sent
                raise
            response = Response(url, raw, lambda keep, connection=connection: self._give_back(key, connection, keep))
            if not stream:
                response.read()
            return response


def _alive(connection):
    """False when an idle connection's peer has closed it (its socket reads as ready: end of file or stray bytes)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _describe(exc):
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, socket.timeout) or isinstance(exc, TimeoutError):
        text = 'timed out (%s)' % text
    return text


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    return '%s://%s' % (parts.scheme, parts.netloc)
