# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pool in a Google Cloud Storage bucket, through the JSON API with google-auth and requests.

The JSON API is a handful of plain HTTP calls, so this needs no google-cloud-storage library.
Create-only writes carry ``ifGenerationMatch=0`` (succeed only if no live object has the name);
GCS answers 412 when one exists, and the sizes decide whether that is the same object.
"""

from __future__ import annotations

import json
import random
import threading
import time
from urllib.parse import quote

try:
    import requests
except ImportError:  # reported by GCSBackend() with a hint
    requests = None

try:
    import google.auth
    import google.auth.exceptions
    import google.oauth2.credentials
    import google.oauth2.service_account
    from google.auth.transport.requests import AuthorizedSession
except ImportError:  # only needed with credentials; an emulator can run anonymous
    google = AuthorizedSession = None

from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import Backend, BackendError, NotFound

DEFAULT_ENDPOINT = 'https://storage.googleapis.com'
SCOPE = 'https://www.googleapis.com/auth/devstorage.read_write'
RETRY_STATUS = (408, 429, 500, 502, 503, 504)  # what Google documents as transient
ATTEMPTS = 5
TIMEOUT = (10, 120)  # connect, read (seconds)
PERMISSIONS = {
    'write': 'storage.objects.create',
    'replace': 'storage.objects.create and storage.objects.delete',
    'read': 'storage.objects.get',
    'size': 'storage.objects.get',
    'list': 'storage.objects.list',
    'delete': 'storage.objects.delete',
}


class GCSBackend(Backend):
    """Objects under ``prefix`` in ``bucket``. Threads share the credentials, each has its own HTTP session."""

    page_size = 1000  # objects per list request (the API's maximum)

    def __init__(self, bucket, prefix, options=None):
        if requests is None:
            raise BackendError('the gs:// pool backend needs requests: install requests: pip install requests')
        options = dict(options or {})
        self.bucket = bucket
        self._use_prefix(prefix)
        self.endpoint = (options.get('endpoint') or DEFAULT_ENDPOINT).rstrip('/')
        where = 'gs://%s/%s' % (bucket, self.prefix) if self.prefix else 'gs://%s' % bucket
        self.location = where if self.endpoint == DEFAULT_ENDPOINT else '%s at %s' % (where, self.endpoint)
        self.anonymous = bool(options.get('anonymous'))
        self.project = options.get('project')  # object calls need no project; kept for callers that create buckets
        self._attempts = max(int(options.get('max_attempts') or ATTEMPTS), 1)
        self._credentials = None if self.anonymous else self._load_credentials(options)
        self._local = threading.local()
        self._sessions = []
        self._sessions_lock = threading.Lock()
        self._objects = '%s/storage/v1/b/%s/o' % (self.endpoint, quote(bucket, safe=''))
        self._uploads = '%s/upload/storage/v1/b/%s/o' % (self.endpoint, quote(bucket, safe=''))

    def _load_credentials(self, options):
        if google is None:
            raise BackendError('the gs:// pool backend needs google-auth: install google-auth: pip install google-auth')
        info, source = options.get('credentials_info'), 'credentials_info'
        try:
            if options.get('credentials_file'):
                source = 'the credentials file %s' % options['credentials_file']
                with open(options['credentials_file'], encoding='utf-8') as stream:
                    info = json.load(stream)
            elif isinstance(info, str):
                info = json.loads(info)
            if not info:
                return self._default_credentials()
            kind = info.get('type') if isinstance(info, dict) else None
            # Type-specific loaders: a key file can only ever be what it says it is.
            if kind == 'service_account':
                return google.oauth2.service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            if kind == 'authorized_user':
                return google.oauth2.credentials.Credentials.from_authorized_user_info(info, scopes=[SCOPE])
            raise BackendError('%s for %s holds credentials of type %r; use a service account key (type service_account) or an '
                               'authorized_user file, or point GOOGLE_APPLICATION_CREDENTIALS at others' % (source, self.location, kind))
        except OSError as exc:
            raise BackendError('cannot read %s for %s: %s' % (source, self.location, exc.strerror or exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise BackendError('%s for %s is not a valid Google credential: %s' % (source, self.location, _first_line(exc))) from None

    def _default_credentials(self):
        """Application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, or the metadata server."""
        try:
            credentials, _project = google.auth.default(scopes=[SCOPE])
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise BackendError('no usable Google credentials for %s (%s): set credentials_file or credentials_info (a service account key), '
                               'GOOGLE_APPLICATION_CREDENTIALS, or anonymous for an emulator' % (self.location, _first_line(exc))) from None
        return credentials

    # --- the Backend interface ------------------------------------------------------------------

    def write(self, key, data):
        response = self._upload(key, data, 'write', {'ifGenerationMatch': '0'})
        if response.status_code == 412:
            self._check_existing(key, len(data))
            return
        self._check(response, 'write', key)

    def replace(self, key, data):
        self._check(self._upload(key, data, 'replace', {}), 'replace', key)

    def read(self, key, offset=0, length=None):
        if length is not None and length <= 0:
            return b''
        # identity: the bytes as stored, and Range applies to them, not to a compressed rendition
        headers = {'Accept-Encoding': 'identity'}
        ranged = bool(offset or length is not None)
        if ranged:
            headers['Range'] = 'bytes=%d-%s' % (offset, '' if length is None else offset + length - 1)
        response = self._request('GET', self._object_url(key), 'read', key, params={'alt': 'media'}, headers=headers)
        if response.status_code == 404 and not _bucket_missing(response):
            raise NotFound('%s does not exist' % self._describe(key))
        if response.status_code == 416:
            return b''  # offset at or past the end, like reading past the end of a file
        self._check(response, 'read', key)
        content = response.content
        if ranged and response.status_code == 200:
            # A server may ignore Range and send the whole object; cut it here then.
            content = content[offset:] if length is None else content[offset:offset + length]
        return content

    def list(self, prefix):
        cut = len(self._root)
        params = {'prefix': self._root + prefix, 'maxResults': str(self.page_size), 'fields': 'items(name,size),nextPageToken'}
        while True:
            response = self._request('GET', self._objects, 'list', prefix + '*', params=params)
            self._check(response, 'list', prefix + '*')
            page = response.json()
            for item in page.get('items', ()):
                yield item['name'][cut:], int(item['size'])
            token = page.get('nextPageToken')
            if not token:
                return
            params['pageToken'] = token

    def delete(self, key):
        response = self._request('DELETE', self._object_url(key), 'delete', key)
        if response.status_code == 404 and not _bucket_missing(response):
            return
        self._check(response, 'delete', key)

    def size(self, key):
        response = self._request('GET', self._object_url(key), 'size', key, params={'fields': 'size'})
        if response.status_code == 404 and not _bucket_missing(response):
            return None
        self._check(response, 'size', key)
        return int(response.json()['size'])

    def close(self):
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    # --- helpers -----------------------------------------------------------------------------

    def _object_url(self, key):
        return '%s/%s' % (self._objects, quote(self._root + key, safe=''))

    def _session(self):
        # requests sessions are not thread-safe: one per thread, all closed by close()
        session = getattr(self._local, 'session', None)
        if session is None:
            session = requests.Session() if self.anonymous else AuthorizedSession(self._credentials)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _upload(self, key, data, action, extra):
        params = {'uploadType': 'media', 'name': self._root + key}
        params.update(extra)
        return self._request('POST', self._uploads, action, key, params=params, data=data, headers={'Content-Type': 'application/octet-stream'})

    def _request(self, method, url, action, key, **kwargs):
        """One API call, retried with backoff on transient failures; returns the last response."""
        for attempt in range(self._attempts):
            last = attempt == self._attempts - 1
            try:
                response = self._session().request(method, url, timeout=TIMEOUT, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    cause = 'did not answer in time' if isinstance(exc, requests.Timeout) else 'refused or dropped the connection'
                    raise BackendError('cannot %s %s: cannot reach the GCS endpoint %s: it %s' % (action, self._describe(key), self.endpoint, cause)) from None
            except requests.RequestException as exc:
                raise BackendError('cannot %s %s: %s' % (action, self._describe(key), _first_line(exc))) from None
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # google-auth failing to get or refresh a token (RefreshError, TransportError)
                if google is not None and isinstance(exc, google.auth.exceptions.GoogleAuthError):
                    raise BackendError('cannot %s %s: cannot obtain a Google access token: %s' % (action, self._describe(key), _first_line(exc))) from None
                raise
            else:
                if response.status_code not in RETRY_STATUS or last:
                    return response
                response.close()
            time.sleep(min(0.25 * 2 ** attempt, 4) * (0.5 + random.random()))  # nosec - jitter, not security
        raise AssertionError('unreachable')

    def _check(self, response, action, key):
        """Raise a BackendError that names the object and the cause unless the response is a success."""
        status = response.status_code
        if status < 300:
            return
        what = 'cannot %s %s' % (action, self._describe(key))
        detail = _error_message(response)
        if status == 404 and (action in ('write', 'replace', 'list') or _bucket_missing(response)):
            message = ('%s: bucket %r does not exist%s; create it first (gcloud storage buckets create gs://%s) or correct the pool location'
                       % (what, self.bucket, '' if self.endpoint == DEFAULT_ENDPOINT else ' at ' + self.endpoint, self.bucket))
        elif status == 401:
            message = '%s: the credentials were rejected (HTTP 401)%s' % (what, ': ' + detail if detail else '')
        elif status == 403:
            message = '%s: access denied: the credentials in use lack permission (%s on bucket %r)%s' % (
                what, PERMISSIONS.get(action, 'storage.objects.*'), self.bucket, ': ' + detail if detail else '')
        else:
            message = '%s: HTTP %d%s' % (what, status, ': ' + detail if detail else '')
        raise BackendError(message)


def _error_message(response):
    try:
        return str(response.json()['error']['message'])[:500]
    except (ValueError, KeyError, TypeError):
        return (response.text or '').strip()[:200]


def _bucket_missing(response):
    """Whether a 404 is about the bucket rather than the object: GCS says "The specified bucket does not exist."."""
    message = _error_message(response).lower()
    return 'bucket does not exist' in message or 'no such bucket' in message


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
