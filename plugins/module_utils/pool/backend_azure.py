# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pool in an Azure Blob Storage container, through azure-storage-blob.

Create-only writes upload with ``overwrite=False``, which the service enforces with
``If-None-Match: *``; a blob that already exists is then kept when its size matches.
Credentials: a connection string, an account key, a SAS token, or the ambient Azure identity
(managed identity, workload identity, environment, az login) through azure-identity.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import requests
    from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
    from azure.core.exceptions import (AzureError, ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceModifiedError,
                                       ResourceNotFoundError, ServiceRequestError)
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient, ExponentialRetry
except ImportError:  # reported by AzureBackend() with a hint, so the rest of the collection still imports
    BlobServiceClient = None

from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import Backend, BackendError, NotFound

POOL_CONNECTIONS = 16
DENIED = ('AuthorizationPermissionMismatch', 'AuthorizationResourceTypeMismatch', 'AuthorizationSourceIPMismatch',
          'AuthorizationProtocolMismatch', 'InsufficientAccountPermissions')
BAD_CREDENTIALS = ('AuthenticationFailed', 'InvalidAuthenticationInfo', 'NoAuthenticationInformation')
PERMISSIONS = {
    'write': 'write (Storage Blob Data Contributor)',
    'replace': 'write (Storage Blob Data Contributor)',
    'read': 'read (Storage Blob Data Reader)',
    'size': 'read (Storage Blob Data Reader)',
    'list': 'list (Storage Blob Data Reader)',
    'delete': 'delete (Storage Blob Data Contributor)',
}


class AzureBackend(Backend):
    """Blobs under ``prefix`` in ``container``; one client, which the Azure SDK makes safe to share between threads."""

    def __init__(self, container, prefix, options=None):
        if BlobServiceClient is None:
            raise BackendError('the azure:// pool backend needs azure-storage-blob: install azure-storage-blob: pip install azure-storage-blob')
        options = dict(options or {})
        self.container = container
        self._use_prefix(prefix)
        self._secrets = _secrets(options)
        where = 'azure://%s/%s' % (container, self.prefix) if self.prefix else 'azure://%s' % container
        self.location = where

        # One pooled transport sized for the pool engine's worker threads (requests' default keeps 10).
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_CONNECTIONS)
        session.mount('https://', adapter)
        session.mount('http://', adapter)
        client_options = {
            'transport': RequestsTransport(session=session, session_owner=True, connection_timeout=10, read_timeout=120),
            # The SDK's default backoff starts at 15 s; retry sooner, as the other backends do.
            'retry_policy': ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=max(int(options.get('max_attempts') or 5) - 1, 0),
                                             random_jitter_range=1),
        }
        try:
            if options.get('connection_string'):
                service = BlobServiceClient.from_connection_string(options['connection_string'], **client_options)
            else:
                account_url = options.get('account_url')
                if not account_url and options.get('account_name'):
                    account_url = 'https://%s.blob.core.windows.net' % options['account_name']
                if not account_url:
                    raise BackendError('the azure:// pool %s needs account_url, account_name or connection_string' % where)
                service = BlobServiceClient(account_url, credential=self._credential(options, account_url), **client_options)
        except (ValueError, TypeError, AzureError) as exc:
            session.close()
            raise BackendError('cannot set up the Azure Blob client for %s: %s' % (where, self._scrub(_first_line(exc)))) from None
        self.account_url = _without_query(service.url)
        self.location = '%s at %s' % (where, self.account_url)
        self._service = service
        self._client = service.get_container_client(container)

    def _credential(self, options, account_url):
        if options.get('account_key'):
            name = options.get('account_name') or _account_from_url(account_url)
            if not name:
                raise BackendError('account_name is needed with account_key for %s' % account_url)
            return AzureNamedKeyCredential(name, options['account_key'])
        if options.get('sas_token'):
            return AzureSasCredential(options['sas_token'].lstrip('?'))
        if options.get('use_identity'):
            try:
                from azure.identity import DefaultAzureCredential  # pylint: disable=import-outside-toplevel
            except ImportError:
                raise BackendError('use_identity needs azure-identity: install azure-identity: pip install azure-identity') from None
            return DefaultAzureCredential()
        return None  # anonymous: public containers, or a SAS already in account_url

    # --- the Backend interface ------------------------------------------------------------------

    def write(self, key, data):
        try:
            self._client.upload_blob(self._root + key, data, overwrite=False)
            return
        except (ResourceExistsError, ResourceModifiedError):
            pass  # compared below
        except AzureError as exc:
            raise self._error('write', key, exc) from None
        self._check_existing(key, len(data))

    def replace(self, key, data):
        try:
            self._client.upload_blob(self._root + key, data, overwrite=True)
        except AzureError as exc:
            raise self._error('replace', key, exc) from None

    def read(self, key, offset=0, length=None):
        if length is not None and length <= 0:
            return b''
        try:
            ranged = bool(offset) or length is not None
            return self._client.download_blob(self._root + key, offset=offset if ranged else None, length=length).readall()
        except ResourceNotFoundError as exc:
            if _code(exc) == 'ContainerNotFound':
                raise self._error('read', key, exc) from None
            raise NotFound('%s does not exist' % self._describe(key)) from None
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return b''  # offset at or past the end, like reading past the end of a file
            raise self._error('read', key, exc) from None
        except AzureError as exc:
            raise self._error('read', key, exc) from None

    def list(self, prefix):
        cut = len(self._root)
        try:
            for blob in self._client.list_blobs(name_starts_with=self._root + prefix):
                yield blob.name[cut:], blob.size
        except AzureError as exc:
            raise self._error('list', prefix + '*', exc) from None

    def delete(self, key):
        try:
            self._client.delete_blob(self._root + key, delete_snapshots='include')
        except ResourceNotFoundError as exc:
            if _code(exc) == 'ContainerNotFound':
                raise self._error('delete', key, exc) from None
        except AzureError as exc:
            raise self._error('delete', key, exc) from None

    def size(self, key):
        try:
            return self._client.get_blob_client(self._root + key).get_blob_properties().size
        except ResourceNotFoundError as exc:
            if _code(exc) == 'ContainerNotFound':  # HEAD has no body, but the error code comes as a header
                raise self._error('size', key, exc) from None
            return None
        except AzureError as exc:
            raise self._error('size', key, exc) from None

    def close(self):
        self._client.close()
        self._service.close()

    # --- helpers -----------------------------------------------------------------------------

    def _error(self, action, key, exc):
        """A BackendError naming the blob, what was attempted and why it failed, without secrets."""
        what = 'cannot %s %s' % (action, self._describe(key))
        code = _code(exc)
        detail = _first_line(exc)
        if code == 'ContainerNotFound':
            message = ('%s: container %r does not exist at %s; create it first (az storage container create --name %s --account-name <account>) '
                       'or correct the pool location' % (what, self.container, self.account_url, self.container))
        elif code in BAD_CREDENTIALS or (code == 'AuthorizationFailure' and 'failed to authenticate' in detail):
            # Azure says AuthenticationFailed for a wrong key or signature; Azurite says AuthorizationFailure.
            message = '%s: the storage account rejected the credentials (%s): check the account key, SAS token or identity' % (what, code)
        elif code in DENIED:
            message = '%s: access denied: the credentials in use lack permission to %s (%s)' % (what, PERMISSIONS.get(action, 'use blobs'), code)
        elif code == 'AuthorizationFailure':
            message = ('%s: the request was not authorized (AuthorizationFailure): the credentials lack permission, '
                       'or the account\'s network rules refuse this client' % what)
        elif isinstance(exc, ClientAuthenticationError):
            message = '%s: authentication failed: %s' % (what, detail)
        elif isinstance(exc, ServiceRequestError):
            message = '%s: cannot reach the Azure Blob endpoint %s (%s)' % (what, self.account_url, detail)
        else:
            message = '%s: %s' % (what, '%s: %s' % (code, detail) if code else detail)
        return BackendError(self._scrub(message))


def _code(exc):
    code = getattr(exc, 'error_code', None) or ''
    return str(getattr(code, 'value', code))  # the SDK gives a StorageErrorCode enum or a plain string


def _first_line(exc):
    text = str(getattr(exc, 'message', None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _secrets(options):
    """Values that must never appear in a message: keys, SAS tokens and their signatures."""
    url_query = urlsplit(options.get('account_url') or '').query  # a SAS may come inside account_url
    found = [options.get('account_key'), options.get('sas_token'), options.get('connection_string'), url_query]
    for part in (options.get('connection_string') or '').split(';'):
        name, _sep, value = part.partition('=')
        if name.strip().lower() in ('accountkey', 'sharedaccesssignature'):
            found.append(value)
    for token in (options.get('sas_token') or '', url_query):
        for part in token.lstrip('?').split('&'):
            name, _sep, value = part.partition('=')
            if name == 'sig':
                found.append(value)
                found.append(unquote(value))
    return sorted({value for value in found if value}, key=len, reverse=True)


def _without_query(url):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip('/'), '', ''))


def _account_from_url(url):
    """The account name in https://ACCOUNT.blob.core.windows.net or, for emulators, http://IP:PORT/ACCOUNT."""
    parts = urlsplit(url)
    host = parts.hostname or ''
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = host == 'localhost'
    if is_ip:
        return parts.path.strip('/').split('/')[0]
    return host.split('.')[0]
