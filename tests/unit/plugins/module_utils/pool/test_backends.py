"""One contract for every pool backend, run against real protocol peers on loopback.

local: a directory; s3: moto's S3 server (with IAM enforced); gcs: gcp-storage-emulator; azure: Azurite.
The servers come from conftest.py. gcp-storage-emulator ignores ``ifGenerationMatch`` and list
paging, so the GCS create-only and paging behaviour is also tested through GCSConformanceProxy,
which adds both in front of it the way GCS documents them.
"""

import concurrent.futures
import datetime
import http.server
import json
import os
import threading
import uuid

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.pool import backends, direct_io
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError, LocalBackend, NotFound, open_backend
from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_azure import AzureBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_gcs import GCSBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.backend_s3 import S3Backend
from moto_server import free_port  # tests/lib: the loopback port helper the other server tests use

KINDS = ('local', 's3', 'gcs', 'azure')
BUCKET = 'ferry-pool'  # the bucket or container each server fixture creates
# What gcp-storage-emulator lacks (GCS has it): see GCSConformanceProxy in conftest.py.
EMULATOR_OVERWRITES = 'gcp-storage-emulator ignores ifGenerationMatch=0 and overwrites; see test_gcs_create_only_with_preconditions'
EMULATOR_NO_EMPTY_UPLOAD = 'gcp-storage-emulator fails a media upload with an empty body (TypeError in its handler)'
# Azurite's well-known development account key (public, documented by Microsoft, emulator only).
AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='


@pytest.fixture
def make(request, tmp_path):
    """make(kind, pool='pools/p1-…') opens that pool and closes it after the test."""
    opened = []
    run = uuid.uuid4().hex[:8]  # each test gets its own pools on the shared servers

    def make_backend(kind, pool=None, **extra):
        pool = pool or 'pools/p1-%s' % run
        if kind == 'local':
            backend = LocalBackend(str(tmp_path / pool), durable=False)
        elif kind == 's3':
            backend = open_backend('s3://%s/%s' % (BUCKET, pool), dict(request.getfixturevalue('s3_server')['writer'], **extra))
        elif kind == 'gcs':
            backend = open_backend('gs://%s/%s' % (BUCKET, pool), dict({'endpoint': request.getfixturevalue('gcs_server'), 'anonymous': True}, **extra))
        else:
            server = request.getfixturevalue('azure_server')
            backend = open_backend('azure://%s/%s' % (BUCKET, pool), dict({'connection_string': server['connection_string']}, **extra))
        opened.append(backend)
        return backend

    make_backend.run = run
    yield make_backend
    for backend in opened:
        backend.close()


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def pool(make, kind):
    return make(kind)


def test_roundtrip(pool):
    pool.write('packs/ab/abcdef.pack', b'hello pool')
    assert pool.read('packs/ab/abcdef.pack') == b'hello pool'
    assert pool.size('packs/ab/abcdef.pack') == 10


def test_empty_object(request, make, kind):
    if kind == 'gcs':
        request.applymarker(pytest.mark.xfail(strict=True, reason=EMULATOR_NO_EMPTY_UPLOAD))
    pool = make(kind, max_attempts=1) if kind == 'gcs' else make(kind)  # the emulator drops the connection: fail at once
    pool.write('empty', b'')
    assert pool.read('empty') == b''
    assert pool.size('empty') == 0


def test_ranged_read(pool):
    data = bytes(range(256)) * 4
    pool.write('ranged', data)
    assert pool.read('ranged', 10, 20) == data[10:30]
    assert pool.read('ranged', 0, 5) == data[:5]
    assert pool.read('ranged', 1000) == data[1000:]
    assert pool.read('ranged', 1020, 100) == data[1020:]  # a range running past the end is cut
    assert pool.read('ranged', 5000, 10) == b''  # starting past the end reads nothing, like a file
    assert pool.read('ranged', 7, 0) == b''


def test_write_keeps_an_existing_object_of_the_same_size(pool):
    pool.write('manifest', b'first')
    pool.write('manifest', b'first')  # an interrupted attempt's object, finished earlier
    assert pool.read('manifest') == b'first'


def test_write_refuses_an_existing_object_of_another_size(request, pool, kind):
    if kind == 'gcs':
        request.applymarker(pytest.mark.xfail(strict=True, reason=EMULATOR_OVERWRITES))
    pool.write('manifest', b'first')
    with pytest.raises(BackendError) as caught:
        pool.write('manifest', b'something longer')
    assert 'manifest' in str(caught.value)
    assert 'not overwritten' in str(caught.value)
    assert pool.read('manifest') == b'first'


def test_replace_overwrites(pool):
    pool.replace('locks/writer', b'holder A')
    pool.replace('locks/writer', b'holder B, longer')
    assert pool.read('locks/writer') == b'holder B, longer'
    assert pool.size('locks/writer') == 16
    pool.replace('locks/writer', b'C')
    assert pool.read('locks/writer') == b'C'


def test_missing_object(pool):
    with pytest.raises(NotFound) as caught:
        pool.read('packs/missing')
    assert 'packs/missing' in str(caught.value)
    with pytest.raises(NotFound):
        pool.read('packs/missing', 10, 10)
    assert pool.size('packs/missing') is None


def test_list_by_prefix(make, kind):
    pool = make(kind)
    # Another pool whose name starts with this pool's name: the '/' after the prefix keeps them apart.
    sibling = make(kind, 'pools/p1-%s-other' % make.run)
    sibling.write('index/zz', b'not mine')
    objects = {'index/b': b'bb', 'index/a': b'a', 'index/c/d': b'ddd', 'index/e': b'eeee', 'indexes': b'x', 'packs/00/p1': b'pack'}
    for key, data in objects.items():
        pool.write(key, data)

    def listed(prefix):
        found = list(pool.list(prefix))
        if kind == 'local':
            # LocalBackend walks directories, yielding a folder's files before its subfolders,
            # so its order is not the keys' order; the object stores list in key order.
            found.sort()
        return found

    assert listed('index/') == [('index/a', 1), ('index/b', 2), ('index/c/d', 3), ('index/e', 4)]
    assert listed('index') == [('index/a', 1), ('index/b', 2), ('index/c/d', 3), ('index/e', 4), ('indexes', 1)]
    assert listed('') == sorted((key, len(data)) for key, data in objects.items())
    assert listed('packs/00/') == [('packs/00/p1', 4)]
    assert listed('nothing/') == []
    assert list(sibling.list('')) == [('index/zz', 8)]


def test_delete_is_idempotent(pool):
    pool.write('packs/gone', b'soon gone')
    pool.delete('packs/gone')
    assert pool.size('packs/gone') is None
    with pytest.raises(NotFound):
        pool.read('packs/gone')
    pool.delete('packs/gone')
    pool.delete('never/was')
    assert list(pool.list('packs/')) == []


def test_large_object(pool):
    data = os.urandom(40 * 1024 * 1024)
    pool.write('packs/large', data)
    assert pool.size('packs/large') == len(data)
    assert pool.read('packs/large') == data
    assert pool.read('packs/large', len(data) - 3 * 1024 * 1024 - 5, 1024 * 1024) == data[-3 * 1024 * 1024 - 5:-2 * 1024 * 1024 - 5]


def test_concurrent_writes(pool):
    shared = b'the same manifest from every thread'

    def work(thread):
        for number in range(4):
            pool.write('packs/%d/%d' % (thread, number), b'%d-%d' % (thread, number) * (number + 1))
        pool.write('manifest', shared)  # all race to create it; all must succeed
        pool.replace('locks/last', b'thread %d' % thread)
        return thread

    with concurrent.futures.ThreadPoolExecutor(8) as executor:
        assert sorted(executor.map(work, range(8))) == list(range(8))
    assert pool.read('manifest') == shared
    assert pool.read('locks/last') in [b'thread %d' % thread for thread in range(8)]
    listed = dict(pool.list('packs/'))
    assert len(listed) == 32
    assert pool.read('packs/5/2') == b'5-2' * 3


# --- open_backend -------------------------------------------------------------------------------

def test_open_backend_parses_locations(tmp_path):
    s3 = open_backend('s3://bucket/a/b', {'access_key': 'id', 'secret_key': 'secret', 'region': 'us-east-1'})
    assert isinstance(s3, S3Backend)
    assert (s3.bucket, s3.prefix, s3.location) == ('bucket', 'a/b', 's3://bucket/a/b')
    s3.close()
    top = open_backend('s3://bucket', {'region': 'us-east-1'})
    assert (top.bucket, top.prefix) == ('bucket', '')
    top.close()
    gcs = open_backend('gs://bucket/x/', {'anonymous': True, 'endpoint': 'http://127.0.0.1:1'})
    assert isinstance(gcs, GCSBackend)
    assert (gcs.bucket, gcs.prefix) == ('bucket', 'x')
    azure = open_backend('azure://container/p', {'account_url': 'https://acct.blob.core.windows.net', 'account_key': AZURITE_KEY})
    assert isinstance(azure, AzureBackend)
    assert (azure.container, azure.prefix, azure.location) == ('container', 'p', 'azure://container/p at https://acct.blob.core.windows.net')
    azure.close()
    assert isinstance(open_backend(str(tmp_path)), LocalBackend)
    assert isinstance(open_backend('file://' + str(tmp_path)), LocalBackend)


@pytest.mark.parametrize('url, expected', [
    ('ftp://bucket/prefix', "unknown scheme 'ftp'"),
    ('s3:///prefix', 'names no bucket'),
    ('gs://', 'names no bucket'),
    ('', 'no pool location given'),
])
def test_open_backend_refuses_bad_locations(url, expected):
    with pytest.raises(BackendError, match=expected):
        open_backend(url)


def test_open_backend_option_errors():
    with pytest.raises(BackendError, match='addressing_style'):
        open_backend('s3://bucket/p', {'addressing_style': 'sideways'})
    with pytest.raises(BackendError, match='needs account_url, account_name or connection_string'):
        open_backend('azure://container/p', {})
    with pytest.raises(BackendError, match='credentials_info for gs://bucket/p is not a valid Google credential: .*token_uri'):
        open_backend('gs://bucket/p', {'credentials_info': {'type': 'service_account', 'client_email': 'x@example.com'}})
    with pytest.raises(BackendError, match="type 'external_account'"):
        open_backend('gs://bucket/p', {'credentials_info': {'type': 'external_account'}})
    with pytest.raises(BackendError, match='cannot read the credentials file /nonexistent/key.json for gs://bucket/p: No such file'):
        open_backend('gs://bucket/p', {'credentials_file': '/nonexistent/key.json'})


# --- S3 ---------------------------------------------------------------------------------------------

def test_s3_missing_bucket(s3_server):
    backend = open_backend('s3://no-such-bucket/pools/p1', s3_server['writer'])
    for call in (lambda: backend.write('k', b'x'), lambda: list(backend.list('')), lambda: backend.read('k')):
        with pytest.raises(BackendError) as caught:
            call()
        assert not isinstance(caught.value, NotFound)
        message = str(caught.value)
        assert "bucket 'no-such-bucket' does not exist" in message
        assert 'create it' in message
        assert s3_server['writer']['secret_key'] not in message
    backend.close()


def test_s3_wrong_secret_key(s3_server):
    options = dict(s3_server['writer'], secret_key='wrong-' + s3_server['writer']['secret_key'][6:])
    backend = open_backend('s3://%s/pools/p1' % BUCKET, options)
    with pytest.raises(BackendError) as caught:
        backend.write('k', b'x')
    message = str(caught.value)
    assert 'rejected the credentials (SignatureDoesNotMatch)' in message
    assert options['secret_key'] not in message
    assert s3_server['writer']['secret_key'] not in message
    backend.close()


def test_s3_access_denied(s3_server, make):
    make('s3').write('readable', b'data')
    reader = open_backend('s3://%s/pools/p1-%s' % (BUCKET, make.run), s3_server['reader'])
    assert reader.read('readable') == b'data'
    with pytest.raises(BackendError) as caught:
        reader.write('k', b'x')
    message = str(caught.value)
    assert 'access denied: the credentials in use lack permission (s3:PutObject' in message
    assert s3_server['reader']['secret_key'] not in message
    reader.close()


def test_s3_unreachable_endpoint():
    endpoint = 'http://127.0.0.1:%d' % free_port()
    backend = open_backend('s3://bucket/p', {'endpoint_url': endpoint, 'access_key': 'id', 'secret_key': 'hidden-secret', 'max_attempts': 1})
    with pytest.raises(BackendError) as caught:
        backend.read('k')
    message = str(caught.value)
    assert 'cannot reach the S3 endpoint %s' % endpoint in message
    assert 'hidden-secret' not in message
    backend.close()


def test_s3_without_conditional_writes(make):
    """Stores that answer 501 to If-None-Match get a HEAD, then a PUT; the same contract holds."""
    backend = make('s3')
    backend._conditional = False  # pylint: disable=protected-access
    backend.write('manifest', b'first')
    backend.write('manifest', b'first')
    with pytest.raises(BackendError, match='not overwritten'):
        backend.write('manifest', b'other size')
    assert backend.read('manifest') == b'first'


# --- GCS ------------------------------------------------------------------------------------------

def test_gcs_create_only_with_preconditions(gcs_conformance_server, make):
    """The 412 path of create-only writes, through the proxy that adds GCS's ifGenerationMatch to the emulator."""
    backend = make('gcs', endpoint=gcs_conformance_server)
    backend.write('manifest', b'first')
    backend.write('manifest', b'first')
    with pytest.raises(BackendError) as caught:
        backend.write('manifest', b'something longer')
    assert 'already exists with 5 bytes, not 16' in str(caught.value)
    assert backend.read('manifest') == b'first'
    backend.replace('manifest', b'replaced')
    assert backend.read('manifest') == b'replaced'


def test_gcs_list_pages(gcs_conformance_server, make):
    backend = make('gcs', endpoint=gcs_conformance_server)
    backend.page_size = 3
    keys = ['index/%02d' % number for number in range(10)]
    for key in reversed(keys):
        backend.write(key, b'x' * len(key))
    assert list(backend.list('index/')) == [(key, len(key)) for key in keys]


def test_gcs_missing_bucket(gcs_server):
    backend = open_backend('gs://no-such-bucket/pools/p1', {'endpoint': gcs_server, 'anonymous': True})
    for call in (lambda: backend.write('k', b'x'), lambda: list(backend.list(''))):
        with pytest.raises(BackendError, match="bucket 'no-such-bucket' does not exist"):
            call()
    backend.close()


def test_gcs_unreachable_endpoint():
    endpoint = 'http://127.0.0.1:%d' % free_port()
    backend = open_backend('gs://bucket/p', {'endpoint': endpoint, 'anonymous': True, 'max_attempts': 1})
    with pytest.raises(BackendError, match='cannot reach the GCS endpoint %s' % endpoint):
        backend.size('k')
    backend.close()


class TokenServer(http.server.ThreadingHTTPServer):
    """An OAuth token endpoint on loopback for service-account credentials; refuses when told to."""

    def __init__(self, refuse=False):
        self.refuse = refuse
        self.grants = 0
        super().__init__(('127.0.0.1', 0), TokenHandler)


class TokenHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length') or 0))
        if self.server.refuse:
            status, body = 400, {'error': 'invalid_grant', 'error_description': 'Invalid JWT Signature.'}
        else:
            self.server.grants += 1
            status, body = 200, {'access_token': 'token-%d' % self.server.grants, 'expires_in': 3600, 'token_type': 'Bearer'}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def service_account(token_uri):
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import rsa  # pylint: disable=import-outside-toplevel
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {'type': 'service_account', 'project_id': 'ferry-test', 'private_key_id': 'k1', 'private_key': pem,
            'client_email': 'pool@ferry-test.iam.gserviceaccount.com', 'client_id': '1', 'token_uri': token_uri}


@pytest.mark.parametrize('refuse', [False, True], ids=['granted', 'refused'])
def test_gcs_service_account(gcs_server, tmp_path, refuse):
    """Credentials from a key file: a token is fetched from token_uri, or a refusal is reported without the key."""
    tokens = TokenServer(refuse=refuse)
    thread = threading.Thread(target=tokens.serve_forever, daemon=True)
    thread.start()
    try:
        info = service_account('http://127.0.0.1:%d/token' % tokens.server_address[1])
        key_file = tmp_path / 'sa.json'
        key_file.write_text(json.dumps(info))
        backend = open_backend('gs://%s/pools/sa-%s' % (BUCKET, uuid.uuid4().hex[:8]), {'endpoint': gcs_server, 'credentials_file': str(key_file)})
        if refuse:
            with pytest.raises(BackendError) as caught:
                backend.write('k', b'x')
            message = str(caught.value)
            assert 'cannot obtain a Google access token' in message
            assert info['private_key'] not in message and 'PRIVATE KEY' not in message
        else:
            backend.write('k', b'signed')
            assert backend.read('k') == b'signed'
            assert tokens.grants == 1
        backend.close()
    finally:
        tokens.shutdown()
        tokens.server_close()
        thread.join(5)


# --- Azure ------------------------------------------------------------------------------------------

def test_azure_wrong_account_key(azure_server):
    wrong = AZURITE_KEY[:10] + ('A' if AZURITE_KEY[10] != 'A' else 'B') + AZURITE_KEY[11:]
    connection_string = azure_server['connection_string'].replace(AZURITE_KEY, wrong)
    backend = open_backend('azure://%s/pools/p1' % BUCKET, {'connection_string': connection_string})
    assert wrong not in backend.location
    for call in (lambda: backend.write('k', b'x'), lambda: backend.read('k'), lambda: backend.size('k')):
        with pytest.raises(BackendError) as caught:
            call()
        message = str(caught.value)
        assert not isinstance(caught.value, NotFound)
        assert 'rejected the credentials' in message
        assert wrong not in message and AZURITE_KEY not in message
    backend.close()


def test_azure_unreachable_endpoint():
    account_url = 'http://127.0.0.1:%d/devstoreaccount1' % free_port()
    backend = open_backend('azure://container/p', {'account_url': account_url, 'account_key': AZURITE_KEY, 'max_attempts': 1})
    with pytest.raises(BackendError) as caught:
        backend.write('k', b'x')
    assert 'cannot reach the Azure Blob endpoint %s' % account_url in str(caught.value)
    assert AZURITE_KEY not in str(caught.value)
    backend.close()


def test_azure_missing_container(azure_server):
    backend = open_backend('azure://no-such-container/pools/p1', {'connection_string': azure_server['connection_string']})
    for call in (lambda: backend.write('k', b'x'), lambda: list(backend.list('')), lambda: backend.size('k'), lambda: backend.read('k')):
        with pytest.raises(BackendError) as caught:
            call()
        assert not isinstance(caught.value, NotFound)
        assert "container 'no-such-container' does not exist" in str(caught.value)
    backend.close()


def test_azure_account_key_and_sas(azure_server):
    """The account_url forms: an account key (account name taken from an emulator URL) and a SAS token."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas  # pylint: disable=import-outside-toplevel
    pool = 'pools/creds-%s' % uuid.uuid4().hex[:8]
    by_key = open_backend('azure://%s/%s' % (BUCKET, pool), {'account_url': azure_server['account_url'], 'account_key': AZURITE_KEY})
    by_key.write('k', b'by key')
    sas = generate_container_sas('devstoreaccount1', BUCKET, account_key=AZURITE_KEY, permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    by_sas = open_backend('azure://%s/%s' % (BUCKET, pool), {'account_url': azure_server['account_url'], 'sas_token': sas})
    assert by_sas.read('k') == b'by key'
    assert list(by_sas.list('')) == [('k', 6)]
    with pytest.raises(BackendError) as caught:
        by_sas.write('other', b'x')  # the SAS grants read and list only
    message = str(caught.value)
    assert 'lack permission' in message or 'rejected the credentials' in message
    assert sas not in message and sas.split('sig=')[1].split('&')[0] not in message
    by_key.close()
    by_sas.close()


def test_read_view_gives_a_packs_ranges_as_read_does(tmp_path):
    backend = LocalBackend(str(tmp_path / 'pool'), durable=False)
    data = os.urandom(3 * 1024 * 1024 + 777)
    backend.write('data/ab/pack', data)
    backend.write('index/one', b'not a pack')
    for offset, length in ((0, 4096), (1, 10), (4095, 4098), (123457, 1024 * 1024 + 3), (len(data) - 5, 5)):
        view = backend.read_view('data/ab/pack', offset, length)
        assert bytes(view) == data[offset:offset + length] == backend.read('data/ab/pack', offset, length)
    if direct_io.open_direct(backend.local_path('data/ab/pack'), os.O_RDONLY) is not None:
        # read around the page cache into the thread's aligned buffer, not a new bytes object
        assert isinstance(backend.read_view('data/ab/pack', 5, 10), memoryview)
    assert backend.read_view('index/one', 4, 2) == b'a '  # not a pack: an ordinary read
    backend.close()


def test_read_view_names_a_missing_or_truncated_pack(tmp_path, monkeypatch):
    backend = LocalBackend(str(tmp_path / 'pool'), durable=False)
    with pytest.raises(NotFound, match='does not exist'):
        backend.read_view('data/cd/missing', 0, 10)
    backend.write('data/cd/short', b'x' * 5000)
    with pytest.raises(BackendError, match='shorter than its index says'):
        backend.read_view('data/cd/short', 4000, 2000)
    monkeypatch.setattr(backends, 'VIEW_BYTES', 8192)  # a range too big for the thread's buffer is read as read() reads it
    assert backend.read_view('data/cd/short', 0, 5000) == b'x' * 5000
    backend.close()
