# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client of the OCI distribution API (``/v2/``): manifests, blobs, uploads, mounts, tags (HTTP in ``transport.py``).

Everything read is checked against its digest: a manifest's bytes as they come, a blob as it streams
(before its last byte is passed on, so a bad blob never completes an upload). Blobs stream through in
``STREAM_CHUNK`` pieces; no layer is held in memory.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse

from ansible_collections.ferry.kube.plugins.module_utils.registry.auth import Authenticator, Credentials, auth_message, repository_scope, scrub
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RetryableError,
)
from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import DOCKER_HUB, normalise_registry
from ansible_collections.ferry.kube.plugins.module_utils.registry.transport import ConnectError, TLSError, Transport

OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_SCHEMA1 = ('application/vnd.docker.distribution.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v1+prettyjws')
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ', '.join(MANIFEST_TYPES)
FOREIGN_LAYER_TYPES = ('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
                       'application/vnd.oci.image.layer.nondistributable.v1.tar',
                       'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
                       'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd')
DOCKER_HUB_API = 'https://registry-1.docker.io'
STREAM_CHUNK = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
RETRY_STATUSES = (429, 502, 503, 504)
ATTEMPTS = 3
PULL = ('pull',)
PUSH = ('pull', 'push')


def hasher(digest):
    """A hashlib object for a digest's algorithm (sha256, sha512)."""
    algorithm = digest.split(':', 1)[0]
    if algorithm not in ('sha256', 'sha384', 'sha512'):
        raise RegistryError('digest %s uses algorithm %s, which Ferry does not verify (sha256, sha384, sha512)' % (digest, algorithm))
    return hashlib.new(algorithm)


def digest_of(data, algorithm='sha256'):
    return '%s:%s' % (algorithm, hashlib.new(algorithm, data).hexdigest())


def registry_endpoint(url, option='registry'):
    """(API base URL, registry name as image references write it) for ``url``: a host, ``host:port`` or URL."""
    if not url or not isinstance(url, str):
        raise RegistryError('%s.url is not set: give the registry host, for example registry.example.com:5000 or https://registry.example.com'
                            % option)
    text = url.strip()
    if '://' not in text:
        text = 'https://' + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise RegistryError('%s.url "%s" is not a registry address: write host[:port] or https://host[:port]' % (option, url))
    if parts.path.strip('/') not in ('', 'v2'):
        raise RegistryError('%s.url "%s" has a path: give only the registry host (put repository prefixes in target_prefix or mapping)'
                            % (option, url))
    name = normalise_registry(parts.netloc)
    if name == DOCKER_HUB:
        return DOCKER_HUB_API, DOCKER_HUB
    return '%s://%s' % (parts.scheme, parts.netloc), name


class Manifest:
    """A manifest's exact bytes (re-pushed as they are, so the digest stays), media type and digest."""

    def __init__(self, data, media_type, digest):
        self.data = data
        self.media_type = media_type
        self.digest = digest
        self._document = None

    @property
    def document(self):
        if self._document is None:
            try:
                self._document = json.loads(self.data)
            except ValueError:
                raise RegistryError('manifest %s is not JSON' % self.digest) from None
        return self._document

    @property
    def is_index(self):
        return self.media_type in INDEX_TYPES

    def children(self):
        """The manifests an index lists (with their ``platform``)."""
        return list(self.document.get('manifests') or []) if self.is_index else []

    def blobs(self):
        """Config, layers and other blobs of an image manifest, as descriptors (dicts), without duplicates."""
        if self.is_index:
            return []
        found, seen = [], set()
        for descriptor in [self.document.get('config')] + list(self.document.get('layers') or []) + list(self.document.get('blobs') or []):
            if descriptor and descriptor.get('digest') and descriptor['digest'] not in seen:
                seen.add(descriptor['digest'])
                found.append(descriptor)
        return found

    def size(self):
        return len(self.data)


def media_type_of(data, header):
    """The manifest's own ``mediaType`` (OCI documents may omit it), else the Content-Type header."""
    try:
        document = json.loads(data)
    except ValueError:
        document = {}
    declared = document.get('mediaType') if isinstance(document, dict) else None
    if declared:
        return declared
    header = (header or '').split(';')[0].strip()
    if header in MANIFEST_TYPES or header in DOCKER_SCHEMA1:
        return header
    if isinstance(document, dict) and 'manifests' in document:
        return OCI_INDEX
    if isinstance(document, dict) and document.get('schemaVersion') == 1:
        return DOCKER_SCHEMA1[0]
    return OCI_MANIFEST


class _Body:
    """A streamed request body with a known length, so it is sent with Content-Length and not chunked encoding."""

    def __init__(self, chunks, length):
        self.chunks = chunks
        self.length = length

    def __len__(self):
        return self.length

    def __iter__(self):
        return iter(self.chunks)


class VerifiedStream:
    """Blob bytes from a source, hashed as they pass; the last piece is released only when size and digest match."""

    def __init__(self, pieces, digest, size, where, progress=None):
        self.pieces = pieces
        self.digest = digest
        self.size = size
        self.where = where
        self.progress = progress
        self.done = 0
        self.hash = hasher(digest)

    def __iter__(self):
        for piece in self.pieces:
            if not piece:
                continue
            self.hash.update(piece)
            self.done += len(piece)
            if self.size is not None and self.done > self.size:
                raise DigestMismatchError('blob %s from %s is longer than the %d bytes its manifest says: the source registry served '
                                          'wrong data' % (self.digest, self.where, self.size))
            if self.size is not None and self.done == self.size:
                self.check()
            if self.progress is not None:
                self.progress(len(piece))
            yield piece
        if self.size is None or self.done != self.size:
            self.check()

    def check(self):
        actual = '%s:%s' % (self.digest.split(':', 1)[0], self.hash.hexdigest())
        if self.size is not None and self.done != self.size:
            raise DigestMismatchError('blob %s from %s ended after %d of %d bytes' % (self.digest, self.where, self.done, self.size))
        if actual != self.digest:
            raise DigestMismatchError('blob %s from %s has digest %s: the source registry served corrupt or wrong data'
                                      % (self.digest, self.where, actual))


def limited(iterator, limit, carry):
    """Up to ``limit`` bytes from an iterator of byte strings; what is read past the limit stays in ``carry`` (a list)."""
    sent = 0
    while sent < limit:
        if carry:
            piece = carry.pop()
        else:
            piece = next(iterator, None)
            if piece is None:
                return
        if sent + len(piece) > limit:
            cut = limit - sent
            carry.append(piece[cut:])
            piece = piece[:cut]
        sent += len(piece)
        yield piece


class RegistryClient:
    """One registry: an HTTP session with its TLS settings and an Authenticator answering its challenges."""

    def __init__(self, url, option='registry', credentials=None, ca_file=None, validate_certs=True, timeout=60.0, pool_size=10,
                 role=None):
        self.base, self.name = registry_endpoint(url, option)
        self.host = urllib.parse.urlsplit(self.base).netloc
        self.option = option
        self.label = '%s registry %s' % (role or option, self.name)
        self.timeout = timeout
        self.ca_file = ca_file
        # ca_file alone verifies the registry and its token service (not the CAs of the environment)
        self.verify = ca_file if ca_file else bool(validate_certs)
        self.transport = Transport(verify=self.verify, timeout=timeout, maxsize=max(pool_size, 4))
        self.credentials = credentials or Credentials()
        self.auth = Authenticator(self.credentials, self.label, option, self.raw_request)

    def set_credentials(self, credentials):
        self.credentials = credentials
        self.auth = Authenticator(credentials, self.label, self.option, self.raw_request)

    def close(self):
        self.transport.close()

    def secrets(self):
        return self.credentials.secrets()

    # -- transport --------------------------------------------------------------------------------
    def raw_request(self, method, url, **kwargs):
        """A request without registry auth (token services, ACR's exchange), with TLS and connection errors explained."""
        try:
            return self.transport.request(method, url, **kwargs)
        except TLSError as exc:
            raise RegistryError(self._tls_message(url, exc)) from None
        except ConnectError as exc:
            raise RetryableError('cannot reach the %s at %s: %s. Check %s.url, that the registry is up and that this host may reach it'
                                 % (self.label, _origin(url), _short(exc), self.option)) from None

    def _tls_message(self, url, exc):
        text = _short(exc)
        if 'CERTIFICATE_VERIFY_FAILED' in text or 'certificate verify failed' in text:
            if self.ca_file:
                how = 'the certificate is not signed by the CA in %s.ca_file (%s): give the CA bundle that signed it' % (self.option, self.ca_file)
            else:
                how = ('set %s.ca_file to the CA bundle that signed the registry certificate (%s.validate_certs=false only for '
                       'throwaway test registries)' % (self.option, self.option))
            return 'TLS verification of the %s (%s) failed: %s. (%s)' % (self.label, _origin(url), how, text)
        if 'WRONG_VERSION_NUMBER' in text or 'wrong version number' in text:
            return ('the %s at %s does not speak TLS: if it serves plain HTTP, write %s.url as http://%s'
                    % (self.label, _origin(url), self.option, urllib.parse.urlsplit(url).netloc))
        return 'TLS handshake with the %s (%s) failed: %s' % (self.label, _origin(url), text)

    def request(self, method, path, scopes=(), replayable=True, **kwargs):
        """A registry API request with auth and retries of transient failures; returns the response (any status)."""
        url = path if path.startswith(('http://', 'https://')) else self.base + path
        headers = dict(kwargs.pop('headers', None) or {})
        attempt = 0
        while True:
            attempt += 1
            sent = self.auth.authorization(scopes)
            if sent:
                headers['Authorization'] = sent
            else:
                headers.pop('Authorization', None)
            try:
                response = self.raw_request(method, url, headers=headers, **kwargs)
            except RetryableError:
                if not replayable or attempt >= ATTEMPTS:
                    raise
                time.sleep(0.5 * attempt)
                continue
            if response.status_code == 401:
                if replayable and attempt < ATTEMPTS:
                    challenge = response.headers.get('WWW-Authenticate')
                    response.close()
                    if self.auth.challenged(challenge, scopes, sent):
                        continue
                raise RegistryAuthError(self._auth_error_text(response, scopes))
            if response.status_code in RETRY_STATUSES and replayable and attempt < ATTEMPTS:
                response.close()
                time.sleep(_retry_after(response, attempt))
                continue
            return response

    def _auth_error_text(self, response, scopes):
        return auth_message(self.label, self.option, self.credentials, response.status_code, list(scopes))

    def error(self, response, what, scopes=()):
        """A RegistryError for an unexpected answer, with the registry's own error code and message."""
        codes, messages = [], []
        try:
            for item in response.json().get('errors') or []:
                codes.append(str(item.get('code') or ''))
                messages.append(str(item.get('message') or ''))
        except (ValueError, AttributeError):
            pass
        status = response.status_code
        detail = '; '.join('%s: %s' % pair for pair in zip(codes, messages)) or scrub(response.text[:200].strip(), self.secrets()) or response.reason
        if status == 403 or 'DENIED' in codes:
            return RegistryAuthError('the %s denied %s (HTTP %d, %s): the credentials in %s need %s permission on it'
                                     % (self.label, what, status, detail, self.option, 'push' if self.option == 'target' else 'pull'))
        if status == 404 or any(code.endswith('_UNKNOWN') for code in codes):
            return NotFoundError('the %s has no %s (HTTP %d, %s)' % (self.label, what, status, detail))
        if status in RETRY_STATUSES:
            return RetryableError('the %s failed %s (HTTP %d, %s); try again later' % (self.label, what, status, detail))
        return RegistryError('the %s refused %s (HTTP %d, %s)' % (self.label, what, status, detail))

    # -- API --------------------------------------------------------------------------------------
    def ping(self):
        """``GET /v2/``: reachable, a registry, and the credentials work (learns the auth scheme on the way)."""
        response = self.request('GET', '/v2/')
        response.close()
        if response.status_code == 404:
            raise RegistryError('%s answers but is not a container registry (no /v2/ API): check %s.url' % (self.base, self.option))
        if response.status_code >= 400:
            raise self.error(response, 'access to /v2/')

    def manifest_head(self, repository, reference):
        """(digest, media type, size) of a manifest, or None when there is none; falls back to GET when HEAD gives no digest."""
        response = self.request('HEAD', '/v2/%s/manifests/%s' % (repository, reference), scopes=[repository_scope(repository, PULL)],
                                headers={'Accept': MANIFEST_ACCEPT}, allow_redirects=True)
        response.close()
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self.error(response, 'manifest %s:%s' % (repository, reference))
        digest = response.headers.get('Docker-Content-Digest')
        if not digest:
            manifest = self.manifest_get(repository, reference)
            return manifest.digest, manifest.media_type, manifest.size()
        media_type = (response.headers.get('Content-Type') or '').split(';')[0].strip()
        return digest, media_type, int(response.headers.get('Content-Length') or 0)

    def manifest_get(self, repository, reference):
        """The ``Manifest`` at a tag or digest, verified: raises NotFoundError or DigestMismatchError."""
        what = 'image %s/%s%s%s' % (self.name, repository, '@' if ':' in reference else ':', reference)
        response = self.request('GET', '/v2/%s/manifests/%s' % (repository, reference), scopes=[repository_scope(repository, PULL)],
                                headers={'Accept': MANIFEST_ACCEPT})
        if response.status_code >= 400:
            raise self.error(response, what)
        data = response.content
        media_type = media_type_of(data, response.headers.get('Content-Type'))
        if media_type in DOCKER_SCHEMA1:
            raise RegistryError('%s is a Docker schema 1 manifest, which registries no longer accept: rebuild or re-push the image '
                                'with a current tool (it becomes schema 2 or OCI)' % what)
        expected = reference if ':' in reference else response.headers.get('Docker-Content-Digest')
        algorithm = (expected or 'sha256:').split(':', 1)[0]
        hasher(expected or 'sha256:')
        actual = digest_of(data, algorithm)
        if expected and actual != expected:
            raise DigestMismatchError('%s: the %s served a manifest with digest %s instead of %s: corrupt data or a broken proxy'
                                      % (what, self.label, actual, expected))
        return Manifest(data, media_type, actual)

    def manifest_put(self, repository, reference, manifest):
        """Store ``manifest`` under a tag or its digest; checks the registry stored exactly these bytes."""
        response = self.request('PUT', '/v2/%s/manifests/%s' % (repository, reference), scopes=[repository_scope(repository, PUSH)],
                                data=manifest.data, headers={'Content-Type': manifest.media_type})
        response.close()
        if response.status_code not in (200, 201, 202):
            raise self.error(response, 'manifest %s:%s (%s)' % (repository, reference, manifest.media_type))
        stored = response.headers.get('Docker-Content-Digest')
        if stored and stored != manifest.digest:
            raise DigestMismatchError('the %s stored manifest %s:%s as %s instead of %s: it rewrote the manifest'
                                      % (self.label, repository, reference, stored, manifest.digest))
        return manifest.digest

    def blob_head(self, repository, digest):
        """The blob's size when the repository has it, else None."""
        response = self.request('HEAD', '/v2/%s/blobs/%s' % (repository, digest), scopes=[repository_scope(repository, PULL)],
                                allow_redirects=False)
        response.close()
        if response.status_code in (200, 307, 302):
            return int(response.headers.get('Content-Length') or 0)
        if response.status_code == 404:
            return None
        raise self.error(response, 'blob %s in %s' % (digest, repository))

    def blob_stream(self, repository, digest):
        """An open streaming response for a blob (redirects to storage followed, without the registry's credentials)."""
        response = self.request('GET', '/v2/%s/blobs/%s' % (repository, digest), scopes=[repository_scope(repository, PULL)], stream=True)
        if response.status_code != 200:
            response.close()
            raise self.error(response, 'blob %s in %s' % (digest, repository))
        return response

    def blob_pieces(self, response):
        """The blob's bytes in ``STREAM_CHUNK`` pieces; a body that breaks off is a RetryableError naming this registry."""
        try:
            yield from response.stream(STREAM_CHUNK)
        except ConnectError as exc:
            raise RetryableError('reading from the %s broke off: %s' % (self.label, _short(exc))) from None

    def mount(self, repository, digest, from_repository):
        """Cross-repository mount: None when mounted, else the upload location the registry opened instead."""
        scopes = [repository_scope(repository, PUSH), repository_scope(from_repository, PULL)]
        response = self.request('POST', '/v2/%s/blobs/uploads/' % repository, scopes=scopes,
                                params={'mount': digest, 'from': from_repository}, headers={'Content-Length': '0'})
        response.close()
        if response.status_code == 201:
            return None
        if response.status_code == 202 and response.headers.get('Location'):
            return self._location(response)
        raise self.error(response, 'a mount of blob %s from %s into %s' % (digest, from_repository, repository))

    def upload_start(self, repository):
        response = self.request('POST', '/v2/%s/blobs/uploads/' % repository, scopes=[repository_scope(repository, PUSH)],
                                headers={'Content-Length': '0'})
        response.close()
        if response.status_code != 202 or not response.headers.get('Location'):
            raise self.error(response, 'an upload to %s' % repository)
        return self._location(response)

    def _location(self, response):
        return urllib.parse.urljoin(response.url, response.headers['Location'])

    def upload(self, repository, location, pieces, digest, size, chunk_size=DEFAULT_CHUNK_SIZE):
        """Upload a blob's bytes (an iterable of byte strings, already verified as it goes) to an open upload session.

        One PUT when the blob fits ``chunk_size``; otherwise PATCHes of ``chunk_size`` bytes with Content-Range,
        then a PUT with the digest. Streaming bodies cannot be replayed, so these requests are not retried here.
        """
        scopes = [repository_scope(repository, PUSH)]
        if size == 0:
            response = self.request('PUT', location, scopes=scopes, params={'digest': digest}, data=b'',
                                    headers={'Content-Type': 'application/octet-stream'})
            return self._finish(response, repository, digest)
        if chunk_size and size > chunk_size:
            iterator, carry, start = iter(pieces), [], 0
            while start < size:
                length = min(chunk_size, size - start)
                response = self.request('PATCH', location, scopes=scopes, replayable=False,
                                        data=_Body(limited(iterator, length, carry), length),
                                        headers={'Content-Type': 'application/octet-stream', 'Content-Range': '%d-%d' % (start, start + length - 1)})
                response.close()
                if response.status_code != 202:
                    raise self.error(response, 'chunk %d-%d of blob %s for %s' % (start, start + length - 1, digest, repository))
                if response.headers.get('Location'):
                    location = self._location(response)
                start += length
            if carry:
                raise DigestMismatchError('blob %s for %s is longer than %d bytes' % (digest, repository, size))
            response = self.request('PUT', location, scopes=scopes, replayable=False, params={'digest': digest}, data=b'',
                                    headers={'Content-Type': 'application/octet-stream'})
            return self._finish(response, repository, digest)
        response = self.request('PUT', location, scopes=scopes, replayable=False, params={'digest': digest},
                                data=_Body(pieces, size), headers={'Content-Type': 'application/octet-stream'})
        return self._finish(response, repository, digest)

    def _finish(self, response, repository, digest):
        response.close()
        if response.status_code not in (201, 204):
            raise self.error(response, 'blob %s for %s' % (digest, repository))
        stored = response.headers.get('Docker-Content-Digest')
        if stored and stored != digest:
            raise DigestMismatchError('the %s stored blob %s of %s as %s' % (self.label, digest, repository, stored))

    def tags(self, repository, page_size=1000):
        """Every tag of a repository, following ``Link: <...>; rel="next"`` pages."""
        tags, url, params = [], '/v2/%s/tags/list' % repository, {'n': page_size}
        while url:
            response = self.request('GET', url, scopes=[repository_scope(repository, PULL)], params=params)
            if response.status_code >= 400:
                raise self.error(response, 'repository %s (listing its tags)' % repository)
            tags.extend(response.json().get('tags') or [])
            following = response.links.get('next', {}).get('url')
            url = urllib.parse.urljoin(response.url, following) if following else None
            params = None
        return tags


def _retry_after(response, attempt):
    try:
        return min(float(response.headers.get('Retry-After')), 30.0)
    except (TypeError, ValueError):
        return 0.5 * attempt


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    return '%s://%s' % (parts.scheme, parts.netloc)


def _short(exc):
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + '...'
