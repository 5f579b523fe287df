"""Connection set-up and the error messages users get when it goes wrong."""

import socket

import pytest
import yaml

from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, ClusterError, ConnectionConfigError
from fake_http import ScriptedServer
from tls import make_ca_and_server

VERSION = {'major': '1', 'minor': '31', 'gitVersion': 'v1.31.2', 'platform': 'linux/amd64'}
TOKEN = 'good-token-123'


def api_routes(method, path, headers, _body):
    """A minimal API server: /version for the right token, 401/403 Status bodies otherwise."""
    if headers.get('Authorization') != 'Bearer ' + TOKEN:
        return 401, {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401}
    if path == '/version':
        return 200, VERSION
    if method == 'POST' and path == '/api/v1/namespaces/default/pods':
        return 403, {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'reason': 'Forbidden', 'code': 403,
                     'message': 'pods is forbidden: User "system:serviceaccount:ferry:viewer" cannot create resource "pods" '
                                'in API group "" in the namespace "default"',
                     'details': {'kind': 'pods'}}
    return 404, {'kind': 'Status', 'status': 'Failure', 'reason': 'NotFound', 'code': 404, 'message': 'the server could not find the requested resource'}


@pytest.fixture(name='tls')
def tls_fixture(tmp_path):
    return make_ca_and_server(str(tmp_path))


@pytest.fixture(name='api')
def api_fixture(tls):
    with ScriptedServer(api_routes, tls=tls) as server:
        yield server


def write_kubeconfig(path, server, ca, token=TOKEN, context='source'):
    document = {
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
        'clusters': [{'name': context, 'cluster': {'server': server, 'certificate-authority': ca}}],
        'users': [{'name': context, 'user': {'token': token}}],
        'contexts': [{'name': context, 'context': {'cluster': context, 'user': context}}],
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_token_connection_reads_version(api, tls):
    cluster = connection.connect({'host': api.url, 'api_key': TOKEN, 'ca_cert': tls['ca']})
    assert cluster.server_version['gitVersion'] == 'v1.31.2'
    assert api.requests[0]['headers']['authorization'] == 'Bearer ' + TOKEN


def test_kubeconfig_connection_uses_context_name(api, tls, tmp_path):
    path = write_kubeconfig(tmp_path / 'kc', api.url, tls['ca'])
    cluster = connection.connect({'kubeconfig': path})
    assert cluster.name == 'source'
    assert cluster.get('/version')['minor'] == '31'


def test_kubeconfig_as_dict_and_secret_values(api, tls, tmp_path):
    document = yaml.safe_load(open(write_kubeconfig(tmp_path / 'kc', api.url, tls['ca']), encoding='utf-8'))
    assert connection.secret_values({'kubeconfig': document}) == {TOKEN}
    cluster = connection.connect({'kubeconfig': document, 'context': 'source'})
    assert cluster.server_version['major'] == '1'


def test_missing_kubeconfig_file():
    with pytest.raises(ConnectionConfigError, match='does not exist: set cluster option "kubeconfig"'):
        connection.connect({'kubeconfig': '/nonexistent/kubeconfig'})


def test_unknown_context_lists_the_known_ones(api, tls, tmp_path):
    path = write_kubeconfig(tmp_path / 'kc', api.url, tls['ca'])
    with pytest.raises(ConnectionConfigError, match=r'context "prod" is not in kubeconfig .*; its contexts are: source'):
        connection.connect({'kubeconfig': path, 'context': 'prod'})


def test_kubeconfig_that_is_not_yaml(tmp_path):
    path = tmp_path / 'kc'
    path.write_text('clusters: [unclosed')
    with pytest.raises(ConnectionConfigError, match='is not valid YAML'):
        connection.connect({'kubeconfig': str(path)})


def test_host_without_credentials():
    with pytest.raises(ConnectionConfigError, match='no credentials go with it'):
        connection.connect({'host': 'https://127.0.0.1:6443'})


def test_unreachable_host():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterError, match='cannot reach the API server .* Check the address'):
        connection.connect({'host': 'https://127.0.0.1:%d' % port, 'api_key': TOKEN, 'validate_certs': False})


def test_tls_ca_mismatch(api, tmp_path):
    other = make_ca_and_server(str(tmp_path), prefix='other')
    with pytest.raises(ClusterError, match='TLS verification .* failed: the server certificate is not signed by the CA'):
        connection.connect({'host': api.url, 'api_key': TOKEN, 'ca_cert': other['ca']})


def test_missing_ca_file(api):
    with pytest.raises(ConnectionConfigError, match='"ca_cert" names /nope.pem, which does not exist'):
        connection.connect({'host': api.url, 'api_key': TOKEN, 'ca_cert': '/nope.pem'})


def test_wrong_token_is_401_with_advice(api, tls):
    with pytest.raises(ApiError, match='rejected Ferry.s credentials \\(401 Unauthorized\\)') as caught:
        connection.connect({'host': api.url, 'api_key': 'tok-0xdeadbeef', 'ca_cert': tls['ca']})
    assert caught.value.status == 401
    assert 'tok-0xdeadbeef' not in caught.value.message  # the token itself never shows


def test_forbidden_names_verb_and_resource(api, tls):
    cluster = connection.connect({'host': api.url, 'api_key': TOKEN, 'ca_cert': tls['ca']})
    with pytest.raises(ApiError) as caught:
        cluster.request('POST', '/api/v1/namespaces/default/pods', body={'kind': 'Pod'})
    assert caught.value.status == 403
    assert 'cannot create resource "pods"' in caught.value.message
    assert 'ferry.kube.footprint' in caught.value.message


def test_env_fallbacks_match_awx_credential(monkeypatch):
    spec = connection.cluster_spec()
    assert spec['host']['fallback'][1] == ['K8S_AUTH_HOST']
    assert spec['api_key']['fallback'][1] == ['K8S_AUTH_API_KEY']
    assert spec['api_key']['no_log'] is True
    assert spec['ca_cert']['fallback'][1] == ['K8S_AUTH_SSL_CA_CERT']
    assert spec['validate_certs']['fallback'][1] == ['K8S_AUTH_VERIFY_SSL']
    monkeypatch.setenv('K8S_AUTH_HOST', 'https://example.invalid')
    assert spec['host']['fallback'][0](*spec['host']['fallback'][1]) == 'https://example.invalid'
