"""Registry auth: challenges, the bearer token flow (Docker Hub's shape), ECR against moto's server, GCR and ACR
against recorded token exchanges, OCIR's user names; and what a corrupt or flaky source does to a copy."""

import base64
import json
import urllib.parse

import boto3
import pytest
from fake_http import ScriptedServer
from fake_registry import FakeRegistry, digest
from moto_server import MotoServer
from tls import make_ca_and_server

from ansible_collections.ferry.kube.plugins.module_utils.registry import auth, cloud
# Azure AD's recorded answers, shared with the AKS connection tests
from ansible_collections.ferry.kube.tests.unit.plugins.module_utils.kube.test_cloud_auth import RecordedAzureTransport
from ansible_collections.ferry.kube.tests.unit.plugins.module_utils.kube.test_cloud_auth import _form as form_of
from ansible_collections.ferry.kube.plugins.module_utils.registry.auth import Credentials, merge_scopes, parse_challenge, resolve_credentials
from ansible_collections.ferry.kube.plugins.module_utils.registry.client import RegistryClient
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryAuthError, RegistryError
from ansible_collections.ferry.kube.plugins.module_utils.registry.sync import open_registry, sync

AWS = {'access_key': 'AKIAFERRYTEST', 'secret_key': 'ferry-secret-key', 'region': 'eu-west-1'}
ECR_HOST = '123456789012.dkr.ecr.eu-west-1.amazonaws.com'


@pytest.fixture(name='tls', scope='module')
def tls_fixture(tmp_path_factory):
    return make_ca_and_server(str(tmp_path_factory.mktemp('fake-tls')), prefix='fake')


# -- challenges -----------------------------------------------------------------------------------

@pytest.mark.parametrize('header, expected', [
    ('Basic realm="basic-realm"', [('basic', {'realm': 'basic-realm'})]),
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push"',
     [('bearer', {'realm': 'https://auth.docker.io/token', 'service': 'registry.docker.io', 'scope': 'repository:library/nginx:pull,push'})]),
    ('Bearer realm="https://x/token", error="insufficient_scope", Basic realm="y"',
     [('bearer', {'realm': 'https://x/token', 'error': 'insufficient_scope'}), ('basic', {'realm': 'y'})]),
    ('bearer realm=plain,service=s', [('bearer', {'realm': 'plain', 'service': 's'})]),
    ('Basic realm="quote \\" inside"', [('basic', {'realm': 'quote " inside'})]),
    ('', []),
    (None, []),
])
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


def test_merge_scopes():
    assert merge_scopes(['repository:b:push', 'repository:a:pull', 'repository:b:pull']) == ['repository:a:pull', 'repository:b:pull,push']
    assert merge_scopes([]) == []


# -- bearer token flow (Docker Hub's shape) ---------------------------------------------------------

def token_service(expected_auth=None, token='registry-token'):
    def routes(method, path, headers, body):
        if path != '/token':
            return 404, {}
        if expected_auth is not None and headers.get('Authorization') != expected_auth:
            return 401, {'details': 'incorrect username or password'}
        return 200, {'token': token, 'expires_in': 300}
    return routes


def basic(user, password):
    return 'Basic ' + base64.b64encode(('%s:%s' % (user, password)).encode()).decode()


def test_bearer_flow_with_user_and_password():
    with ScriptedServer(token_service(basic('ferry', 'hub-pat'))) as tokens:
        with FakeRegistry(bearer={'realm': tokens.url + '/token', 'service': 'registry.fake', 'token': 'registry-token'}) as registry:
            registry.add_image('library/app', '1', [b'layer-one'])
            client = RegistryClient(registry.url, option='source', credentials=Credentials('ferry', 'hub-pat'))
            client.ping()
            manifest = client.manifest_get('library/app', '1')
            assert manifest.blobs()[1]['digest'] == digest(b'layer-one')
            client.manifest_get('library/app', '1')
            client.blob_head('library/app', digest(b'layer-one'))
        scopes = [urllib.parse.parse_qs(urllib.parse.urlsplit(r['path']).query).get('scope') for r in tokens.requests]
        # one token for the ping (no scope), then one for the repository, reused from the cache
        assert scopes == [None, ['repository:library/app:pull']]
        assert all(urllib.parse.parse_qs(urllib.parse.urlsplit(r['path']).query)['service'] == ['registry.fake'] for r in tokens.requests)


def test_anonymous_bearer_flow_for_public_images():
    with ScriptedServer(token_service()) as tokens:
        with FakeRegistry(bearer={'realm': tokens.url + '/token', 'service': 's', 'token': 'registry-token'}) as registry:
            registry.add_image('library/app', '1', [b'x'])
            client = RegistryClient(registry.url, option='source')
            assert client.manifest_head('library/app', '1')[0].startswith('sha256:')
        assert 'authorization' not in tokens.requests[0]['headers']


def test_token_service_refusing_the_password_names_options_not_the_password():
    with ScriptedServer(token_service(basic('ferry', 'right'))) as tokens:
        with FakeRegistry(bearer={'realm': tokens.url + '/token', 'service': 's', 'token': 't'}) as registry:
            client = RegistryClient(registry.url, option='source', credentials=Credentials('ferry', 'wrong-password-123'))
            with pytest.raises(RegistryAuthError) as caught:
                client.ping()
    message = str(caught.value)
    assert 'source registry %s (token service %s/token) refused the credentials' % (registry.name, tokens.url) in message
    assert 'check source.username and source.password (user "ferry")' in message
    assert 'wrong-password-123' not in message


def test_token_without_the_needed_actions_is_a_permission_error():
    with ScriptedServer(token_service()) as tokens:
        with FakeRegistry(bearer={'realm': tokens.url + '/token', 'service': 's', 'token': 'other', 'insufficient': True}) as registry:
            client = RegistryClient(registry.url, option='target')
            with pytest.raises(RegistryAuthError, match=r'denied repository:app:pull for these credentials \(HTTP 403\)'):
                client.manifest_head('app', '1')


def test_ready_token_is_sent_as_is():
    with FakeRegistry(bearer={'realm': 'http://127.0.0.1:9/none', 'service': 's', 'token': 'ready'}) as registry:
        registry.add_image('app', '1', [b'x'])
        RegistryClient(registry.url, option='source', credentials=Credentials(token='ready')).manifest_head('app', '1')
        assert registry.requests[0]['authorization'] == 'Bearer ready'
        with pytest.raises(RegistryAuthError, match='the token in source.token was refused or has expired'):
            RegistryClient(registry.url, option='source', credentials=Credentials(token='stale')).ping()


def test_basic_challenge_then_preemptive():
    with FakeRegistry(basic=('u', 'p')) as registry:
        registry.add_image('app', '1', [b'x'])
        client = RegistryClient(registry.url, option='source', credentials=Credentials('u', 'p'))
        client.ping()
        client.manifest_head('app', '1')
        assert [r['authorization'] is not None for r in registry.requests] == [False, True, True]


def test_remembered_basic_scheme_sends_credentials_with_the_first_request():
    with FakeRegistry(basic=('u', 'p')) as registry:
        registry.add_image('app', '1', [b'x'])
        client = RegistryClient(registry.url, option='source', credentials=Credentials('u', 'p'))
        client.auth.assume('basic')
        client.manifest_head('app', '1')
        assert [r['authorization'] for r in registry.requests] == [basic('u', 'p')]  # no 401 to learn it first
        assert client.auth.learned() == 'basic'
        wrong = RegistryClient(registry.url, option='source', credentials=Credentials('u', 'not-p'))
        wrong.auth.assume('basic')
        with pytest.raises(RegistryAuthError, match=r'check source.username and source.password \(user "u"\)'):
            wrong.ping()


def test_remembered_basic_scheme_gives_way_to_a_bearer_challenge():
    with ScriptedServer(token_service(basic('ferry', 'hub-pat'))) as tokens:
        with FakeRegistry(bearer={'realm': tokens.url + '/token', 'service': 's', 'token': 'registry-token'}) as registry:
            registry.add_image('app', '1', [b'x'])
            client = RegistryClient(registry.url, option='source', credentials=Credentials('ferry', 'hub-pat'))
            client.auth.assume('basic')
            assert client.manifest_head('app', '1')[0] == digest(registry.manifests[('app', '1')][0])
            assert [r['authorization'] for r in registry.requests] == [basic('ferry', 'hub-pat'), 'Bearer registry-token']
            assert client.auth.learned() is None  # a later run starts without assuming Basic


def test_nothing_is_assumed_without_a_user_and_password():
    anonymous = RegistryClient('127.0.0.1:9', option='source')
    anonymous.auth.assume('basic')
    assert anonymous.auth.authorization([]) is None and anonymous.auth.learned() is None
    token = RegistryClient('127.0.0.1:9', option='source', credentials=Credentials(token='ready'))
    token.auth.assume('basic')
    assert token.auth.authorization([]) == 'Bearer ready'


# -- ECR against moto ---------------------------------------------------------------------------------

@pytest.fixture(name='moto', scope='module')
def moto_fixture():
    with MotoServer() as server:
        yield server


def test_ecr_credentials_from_get_authorization_token(moto):
    config = {'url': ECR_HOST, 'ecr': dict(AWS, endpoint_url=moto.url)}
    creds = resolve_credentials(config, ECR_HOST, 'target')
    assert creds.username == 'AWS' and creds.password and creds.preemptive and creds.kind == 'ecr'
    assert creds.endpoint == 'https://' + ECR_HOST
    # what boto3 itself returns decodes to the same pair
    data = boto3.client('ecr', endpoint_url=moto.url, region_name=AWS['region'], aws_access_key_id=AWS['access_key'],
                        aws_secret_access_key=AWS['secret_key']).get_authorization_token()['authorizationData'][0]
    assert base64.b64decode(data['authorizationToken']).decode().startswith('AWS:')
    assert AWS['secret_key'] not in creds.password


def test_ecr_auto_detected_from_host_and_url_from_the_token(moto, monkeypatch):
    for name, value in (('AWS_ACCESS_KEY_ID', AWS['access_key']), ('AWS_SECRET_ACCESS_KEY', AWS['secret_key'])):
        monkeypatch.setenv(name, value)
    assert auth.detect_kind({}, ECR_HOST) == 'ecr'
    client = open_registry({'ecr': {'region': 'eu-west-1', 'endpoint_url': moto.url}}, 'target')
    assert client.name == ECR_HOST and client.credentials.kind == 'ecr'
    seen = []
    open_registry({'url': ECR_HOST, 'ecr': {'endpoint_url': moto.url}}, 'target', secret_sink=seen.append)
    assert len(seen) == 1 and seen[0]


def test_ecr_credentials_used_preemptively_against_a_registry(moto):
    creds = resolve_credentials({'ecr': dict(AWS, endpoint_url=moto.url)}, ECR_HOST, 'source')
    with FakeRegistry(basic=('AWS', creds.password)) as registry:
        registry.add_image('shop/web', '1', [b'layer'])
        client = RegistryClient(registry.url, option='source')
        client.set_credentials(creds)
        assert client.manifest_head('shop/web', '1') is not None
        assert all(r['authorization'] == basic('AWS', creds.password) for r in registry.requests)
    refused = Credentials('AWS', 'expired', kind='ecr', preemptive=True)
    with FakeRegistry(basic=('AWS', 'current')) as registry:
        client = RegistryClient(registry.url, option='target')
        client.set_credentials(refused)
        with pytest.raises(RegistryAuthError, match=r'the ECR authorization token was refused: check target.ecr'):
            client.ping()


def test_ecr_needs_a_region(monkeypatch):
    for var in ('AWS_REGION', 'AWS_DEFAULT_REGION'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('AWS_CONFIG_FILE', '/nonexistent')
    with pytest.raises(RegistryError, match='target.ecr.region is not set'):
        resolve_credentials({'auth': 'ecr', 'ecr': {'access_key': 'a', 'secret_key': 'b'}}, 'registry.example.com', 'target')


# -- Google Container/Artifact Registry: a recorded token exchange --------------------------------

def service_account_key(token_uri):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {'type': 'service_account', 'project_id': 'shop', 'private_key_id': 'k1', 'private_key': pem,
            'client_email': 'ferry@shop.iam.gserviceaccount.com', 'client_id': '1', 'token_uri': token_uri}


def google_routes(method, path, headers, body):
    """Google's OAuth2 token endpoint, then GCR's token service (gcr.io/v2/token) taking oauth2accesstoken:<token>."""
    if method == 'POST' and path == '/oauth2/token':
        form = urllib.parse.parse_qs(body.decode())
        assert form['grant_type'] == ['urn:ietf:params:oauth:grant-type:jwt-bearer']
        return 200, {'access_token': 'ya29.ferry-test', 'expires_in': 3599, 'token_type': 'Bearer'}
    if path == '/v2/token':
        if headers.get('Authorization') != basic('oauth2accesstoken', 'ya29.ferry-test'):
            return 401, {'errors': [{'code': 'UNAUTHORIZED'}]}
        return 200, {'token': 'gcr-registry-token', 'expires_in': 3600}
    return 404, {}


def test_gcr_service_account_to_registry_token():
    with ScriptedServer(google_routes) as google:
        key = json.dumps(service_account_key(google.url + '/oauth2/token'))
        with FakeRegistry(bearer={'realm': google.url + '/v2/token', 'service': 'gcr.io', 'token': 'gcr-registry-token'}) as registry:
            registry.add_image('shop/web', '1', [b'layer'])
            config = {'url': registry.url, 'auth': 'gcr', 'gcr': {'credentials': key}}
            secrets = []
            client = open_registry(config, 'source', secret_sink=secrets.append)
            assert client.credentials.username == 'oauth2accesstoken'
            assert client.manifest_head('shop/web', '1') is not None
            assert secrets == ['ya29.ferry-test']
    assert auth.detect_kind({}, 'europe-docker.pkg.dev') == 'gcr'
    assert auth.detect_kind({}, 'eu.gcr.io') == 'gcr'


def test_gcr_bad_key_and_ready_token():
    with pytest.raises(RegistryError, match='source.gcr credentials are not a valid service-account key'):
        resolve_credentials({'auth': 'gcr', 'gcr': {'credentials': '{"type": "service_account"}'}}, 'gcr.io', 'source')
    creds = resolve_credentials({'gcr': {'access_token': 'ya29.given'}}, 'gcr.io', 'source')
    assert (creds.username, creds.password) == ('oauth2accesstoken', 'ya29.given')


# -- Azure Container Registry: AAD token -> /oauth2/exchange -> refresh token -> access token ----------------------

def acr_routes(registry_name):
    def routes(method, path, headers, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        if path == '/oauth2/exchange':
            if form.get('access_token') != 'aad-token' or form.get('grant_type') != 'access_token' or form.get('service') != registry_name():
                return 401, {'errors': [{'code': 'UNAUTHORIZED'}]}
            return 200, {'refresh_token': 'acr-refresh-token'}
        if path == '/oauth2/token':
            if form.get('grant_type') != 'refresh_token' or form.get('refresh_token') != 'acr-refresh-token':
                return 401, {'errors': [{'code': 'UNAUTHORIZED'}]}
            assert form['scope'] == 'repository:shop/web:pull'
            return 200, {'access_token': 'acr-access-token'}
        return 404, {}
    return routes


def test_acr_exchange_and_refresh_token_flow(tls):
    holder = {}
    registry = FakeRegistry(tls=tls, routes=acr_routes(lambda: holder['name']))
    registry.bearer = {'realm': registry.url + '/oauth2/token', 'service': registry.name, 'token': 'acr-access-token'}
    holder['name'] = registry.name
    with registry:
        registry.add_image('shop/web', '1', [b'layer'])
        secrets = []
        config = {'url': registry.url, 'auth': 'acr', 'ca_file': tls['ca'], 'acr': {'access_token': 'aad-token', 'tenant_id': 't'}}
        client = open_registry(config, 'target', secret_sink=secrets.append)
        assert client.manifest_head('shop/web', '1') is not None
        assert sorted(secrets) == ['aad-token', 'acr-refresh-token']
        with pytest.raises(RegistryAuthError, match=r'refused the Azure AD token at /oauth2/exchange \(HTTP 401\): the identity in target.acr'):
            open_registry(dict(config, acr={'access_token': 'someone-else'}), 'target')
    assert auth.detect_kind({}, 'ferrydr.azurecr.io') == 'acr'


def test_acr_service_principal_to_aad_token():
    options = {'tenant_id': 'tenant', 'client_id': 'app', 'client_secret': 's3cret'}
    transport = RecordedAzureTransport('tenant')
    token = cloud.azure_ad_token(options, 'target', transport=transport, disable_instance_discovery=True)
    assert token.endswith('.aks.sig')  # what the recorded exchange answers
    token_request = [r for r in transport.sent if r.url.endswith('/token')][0]
    assert form_of(token_request)['scope'] == cloud.ACR_AAD_SCOPE == 'https://management.azure.com/.default'
    with pytest.raises(RegistryAuthError, match=r'cannot get an Azure AD token for the registry \(target.acr\)') as caught:
        cloud.azure_ad_token(dict(options, client_secret='wrong-secret'), 'target', transport=RecordedAzureTransport('tenant'),
                             disable_instance_discovery=True)
    assert 'wrong-secret' not in str(caught.value)
    with pytest.raises(RegistryError, match='target.acr.tenant_id'):
        cloud.azure_ad_token({'client_id': 'app', 'client_secret': 's'}, 'target')


# -- OCIR, generic -----------------------------------------------------------------------------------

def test_ocir_user_name_form():
    with pytest.raises(RegistryError, match='write it as <tenancy-namespace>/<user>'):
        resolve_credentials({'username': 'alice', 'password': 'tok'}, 'fra.ocir.io', 'source')
    creds = resolve_credentials({'username': 'ns/alice', 'password': 'tok'}, 'fra.ocir.io', 'source')
    assert creds.kind == 'ocir' and creds.username == 'ns/alice'
    assert auth.detect_kind({'username': 'x'}, 'ocir.eu-frankfurt-1.oci.oraclecloud.com') == 'ocir'


def test_half_credentials_are_named():
    with pytest.raises(RegistryError, match='target.password is not set'):
        resolve_credentials({'username': 'u'}, 'r.example.com', 'target')
    with pytest.raises(RegistryError, match='source.username is not set'):
        resolve_credentials({'password': 'p'}, 'r.example.com', 'source')


# -- corrupt and flaky sources ------------------------------------------------------------------------

def test_manifest_that_does_not_match_its_digest(registries, prefix):
    with FakeRegistry() as fake:
        manifest, good = fake.add_image('app', '1', [b'layer'])
        forged = 'sha256:' + '0' * 64
        fake.manifests[('app', forged)] = fake.manifests[('app', good)]
        with pytest.raises(RegistryError, match='served a manifest with digest %s instead of %s' % (good, forged)):
            sync({'target': registries.option('target'), 'images': ['%s/app@%s' % (fake.name, forged)], 'target_prefix': prefix,
                  'source': {'url': fake.url}})
        assert manifest


def test_corrupt_blob_is_caught_and_never_completes_an_upload(registries, prefix):
    with FakeRegistry() as fake:
        fake.add_image('app', '1', [b'good layer' * 1000, b'other'])
        bad = digest(b'good layer' * 1000)
        fake.corrupt.add(bad)
        with pytest.raises(RegistryError, match='blob %s from %s/app has digest sha256:' % (bad, fake.name)) as caught:
            sync({'source': {'url': fake.url}, 'target': registries.option('target'), 'images': [fake.name + '/app:1'],
                  'target_prefix': prefix, 'concurrency': 1})
        assert caught.value.details['images'][0]['status'] == 'failed'
    target = open_registry(registries.option('target'), 'target')
    assert target.blob_head(prefix + '/app', bad) is None
    assert target.manifest_head(prefix + '/app', '1') is None


def test_transient_503_is_retried(registries, prefix):
    with FakeRegistry() as fake:
        _manifest, good = fake.add_image('app', '1', [b'layer'])
        fake.fail_once.add('/v2/app/manifests/%s' % good)
        result = sync({'source': {'url': fake.url}, 'target': registries.option('target'), 'images': [fake.name + '/app:1'],
                       'target_prefix': prefix})
    assert result['images'][0]['status'] == 'copied'
    assert [r['path'] for r in fake.requests].count('/v2/app/manifests/%s' % good) == 2
