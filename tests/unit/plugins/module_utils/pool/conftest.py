"""Real storage servers on loopback for the pool backend tests: moto (S3), gcp-storage-emulator (GCS), Azurite (Azure Blob).

Each starts once per session on a free port and stops at the end. Set-up (scripts/setup.sh) installs
all three, so a server that does not come up fails the tests that need it, with its stderr.

What gcp-storage-emulator (2026.7) lacks, unlike GCS: it ignores ifGenerationMatch (create-only uploads
overwrite), ignores maxResults/pageToken (one page), and drops the connection on an empty media upload.
Ranged reads work. GCSConformanceProxy below adds the first two; the third is an expected failure.
"""

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool
from moto_server import free_port  # tests/lib: the loopback port helper the other server tests use
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
VENV_BIN = os.path.dirname(sys.executable)
AZURITE = os.path.join(ROOT, '.build', 'node', 'node_modules', '.bin', 'azurite-blob')
START_TIMEOUT = 30

# Azurite's well-known development account: public, documented by Microsoft, valid only for the emulator.
AZURITE_ACCOUNT = 'devstoreaccount1'
AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

BUCKET = 'ferry-pool'
PASSPHRASE = 'correct horse'


@pytest.fixture
def pool(tmp_path):
    """A new pool in a local directory (test_backends has its own, per backend)."""
    return Pool.create(LocalBackend(str(tmp_path / 'pool')), PASSPHRASE)


class Server:
    """A server process whose output goes to files, so a failed start can show it."""

    def __init__(self, name, argv, port, directory, env=None):
        self.name = name
        self.port = port
        self.stdout_path = os.path.join(directory, name + '.out')
        self.stderr_path = os.path.join(directory, name + '.err')
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=directory,
                                            env=dict(os.environ, **(env or {})))

    def output(self):
        texts = []
        for path in (self.stderr_path, self.stdout_path):
            with open(path, 'rb') as stream:
                text = stream.read().decode('utf-8', 'replace').strip()
            if text:
                texts.append(text[-4000:])
        return '\n'.join(texts) or '(no output)'

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail('%s exited with code %s before accepting connections:\n%s' % (self.name, self.process.returncode, self.output()), pytrace=False)
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail('%s did not accept connections on port %d within %d s:\n%s' % (self.name, self.port, START_TIMEOUT, self.output()), pytrace=False)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start(name, argv, port, directory, env=None):
    server = Server(name, argv, port, directory, env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def s3_policy(actions):
    return json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': actions, 'Resource': '*'}]})


@pytest.fixture(scope='session')
def s3_server(tmp_path_factory):
    """moto's S3 server with bucket BUCKET, enforcing IAM: yields the endpoint and two users' keys.

    moto checks signatures and policies once INITIAL_NO_AUTH_ACTION_COUNT unauthenticated calls
    are spent; the set-up below spends exactly those on the bucket and the two users.
    """
    import boto3  # pylint: disable=import-outside-toplevel
    port = free_port()
    directory = str(tmp_path_factory.mktemp('moto'))
    setup_calls = 7
    server = start('moto_server', [os.path.join(VENV_BIN, 'moto_server'), '-H', '127.0.0.1', '-p', str(port)], port, directory,
                   env={'INITIAL_NO_AUTH_ACTION_COUNT': str(setup_calls)})
    endpoint = 'http://127.0.0.1:%d' % port
    try:
        anonymous = {'endpoint_url': endpoint, 'region_name': 'us-east-1', 'aws_access_key_id': 'setup', 'aws_secret_access_key': 'setup'}
        boto3.client('s3', **anonymous).create_bucket(Bucket=BUCKET)
        iam = boto3.client('iam', **anonymous)
        users = {}
        for user, actions in (('writer', ['s3:*']), ('reader', ['s3:GetObject', 's3:ListBucket'])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName='pool', PolicyDocument=s3_policy(actions))
            key = iam.create_access_key(UserName=user)['AccessKey']
            users[user] = {'access_key': key['AccessKeyId'], 'secret_key': key['SecretAccessKey'], 'region': 'us-east-1', 'endpoint_url': endpoint}
        yield {'endpoint': endpoint, 'writer': users['writer'], 'reader': users['reader']}
    finally:
        server.stop()


@pytest.fixture(scope='session')
def gcs_server(tmp_path_factory):
    """gcp-storage-emulator (in memory) with bucket BUCKET; yields the endpoint URL."""
    port = free_port()
    directory = str(tmp_path_factory.mktemp('gcs'))
    argv = [os.path.join(VENV_BIN, 'gcp-storage-emulator'), 'start', '--host', '127.0.0.1', '--port', str(port), '--in-memory', '--quiet']
    server = start('gcp-storage-emulator', argv, port, directory)
    endpoint = 'http://127.0.0.1:%d' % port
    try:
        response = requests.post(endpoint + '/storage/v1/b', params={'project': 'ferry-test'}, json={'name': BUCKET}, timeout=10)
        if response.status_code >= 300:
            pytest.fail('creating bucket %s in gcp-storage-emulator: HTTP %d %s\n%s' % (BUCKET, response.status_code, response.text, server.output()))
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope='session')
def azure_server(tmp_path_factory):
    """Azurite's blob service with container BUCKET; yields a connection string for the dev account."""
    from azure.storage.blob import BlobServiceClient  # pylint: disable=import-outside-toplevel
    if not os.path.exists(AZURITE):
        pytest.fail('%s is missing: run scripts/setup.d/azurite.sh (make setup does)' % AZURITE, pytrace=False)
    if not shutil.which('node'):
        pytest.fail('Azurite needs Node.js (node) on PATH', pytrace=False)
    port = free_port()
    directory = str(tmp_path_factory.mktemp('azurite'))
    argv = [AZURITE, '--blobHost', '127.0.0.1', '--blobPort', str(port), '--location', directory,
            '--silent', '--skipApiVersionCheck', '--loose', '--disableTelemetry']
    server = start('azurite-blob', argv, port, directory)
    account_url = 'http://127.0.0.1:%d/%s' % (port, AZURITE_ACCOUNT)
    connection_string = ('DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;'
                         % (AZURITE_ACCOUNT, AZURITE_KEY, account_url))
    try:
        service = BlobServiceClient.from_connection_string(connection_string)
        service.create_container(BUCKET)
        service.close()
        yield {'connection_string': connection_string, 'account_url': account_url}
    finally:
        server.stop()


class GCSConformanceProxy(http.server.ThreadingHTTPServer):
    """An HTTP front for gcp-storage-emulator adding two things GCS does and the emulator does not.

    The emulator ignores ``ifGenerationMatch`` (a create-only upload silently overwrites) and
    ``maxResults``/``pageToken`` (every listing is one page). Real GCS answers 412 to an upload with
    ``ifGenerationMatch=0`` when the object exists, and pages listings; this proxy does both, as GCS
    documents them, and passes everything else through unchanged.
    """

    daemon_threads = True

    def __init__(self, upstream):
        self.upstream = upstream
        self.lock = threading.Lock()  # a precondition check and the upload it guards are one step
        super().__init__(('127.0.0.1', 0), GCSConformanceHandler)


class GCSConformanceHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    def do_GET(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def do_DELETE(self):
        self.forward()

    def forward(self):
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        upstream = self.server.upstream
        if self.command == 'POST' and query.get('ifGenerationMatch') == ['0'] and parsed.path.startswith('/upload/storage/v1/b/'):
            bucket = parsed.path.split('/')[5]
            name = query['name'][0]
            with self.server.lock:
                exists = requests.get('%s/storage/v1/b/%s/o/%s' % (upstream, bucket, urllib.parse.quote(name, safe='')), timeout=30)
                if exists.status_code == 200:
                    self.reply(412, json.dumps({'error': {'code': 412, 'message': 'At least one of the pre-conditions you specified did not hold.'}}).encode(),
                               'application/json')
                    return
                self.relay(requests.post(upstream + self.path, data=body, headers=self.passed_headers(), timeout=60))
            return
        if self.command == 'GET' and 'maxResults' in query and parsed.path.endswith('/o'):
            size = int(query.pop('maxResults')[0])
            start_at = int(query.pop('pageToken', ['0'])[0])
            listing = requests.get(upstream + parsed.path, params={key: values[0] for key, values in query.items()}, timeout=30)
            if listing.status_code != 200:
                self.relay(listing)
                return
            items = sorted(listing.json().get('items') or [], key=lambda item: item['name'])
            page = {'kind': 'storage#objects', 'items': items[start_at:start_at + size]}
            if start_at + size < len(items):
                page['nextPageToken'] = str(start_at + size)
            self.reply(200, json.dumps(page).encode(), 'application/json')
            return
        self.relay(requests.request(self.command, upstream + self.path, data=body or None, headers=self.passed_headers(), timeout=60))

    def passed_headers(self):
        return {name: value for name, value in self.headers.items() if name.lower() in ('range', 'content-type', 'authorization')}

    def relay(self, response):
        self.reply(response.status_code, response.content, response.headers.get('Content-Type'), response.headers.get('Content-Range'))

    def reply(self, status, body, content_type=None, content_range=None):
        self.send_response(status)
        if content_type:
            self.send_header('Content-Type', content_type)
        if content_range:
            self.send_header('Content-Range', content_range)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope='session')
def gcs_conformance_server(gcs_server):
    """The emulator behind GCSConformanceProxy (preconditions and paging as real GCS); yields its endpoint."""
    proxy = GCSConformanceProxy(gcs_server)
    thread = threading.Thread(target=proxy.serve_forever, name='gcs-conformance-proxy', daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % proxy.server_address[1]
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
