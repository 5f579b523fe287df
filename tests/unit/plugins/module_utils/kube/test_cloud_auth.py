"""Cloud tokens: EKS against moto's server, GKE and AKS against recorded token exchanges."""

import base64
import json
import urllib.parse

import boto3
import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ClusterError, ConnectionConfigError
from fake_http import ScriptedServer
from moto_server import MotoServer

AWS = {'access_key': 'AKIAFERRYTEST', 'secret_key': 'ferry-secret-key', 'region': 'eu-west-1'}


@pytest.fixture(name='moto', scope='module')
def moto_fixture():
    with MotoServer() as server:
        yield server


def create_eks_cluster(moto, name):
    eks = boto3.client('eks', endpoint_url=moto.url, region_name=AWS['region'],
                       aws_access_key_id=AWS['access_key'], aws_secret_access_key=AWS['secret_key'])
    eks.create_cluster(name=name, roleArn='arn:aws:iam::123456789012:role/eks', resourcesVpcConfig={'subnetIds': ['subnet-1']})
    return eks.describe_cluster(name=name)['cluster']


def decode_eks_token(token):
    assert token.startswith('k8s-aws-v1.')
    payload = token[len('k8s-aws-v1.'):]
    return base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)).decode()


def test_eks_endpoint_describes_cluster_and_signs_token(moto):
    described = create_eks_cluster(moto, 'prod')
    options = dict(AWS, cluster_name='prod', endpoint_url=moto.url, sts_endpoint_url=moto.url)
    endpoint = cloud_auth.eks_endpoint(options, {})
    assert endpoint['host'] == described['endpoint']
    assert endpoint['ca_data'] == base64.b64decode(described['certificateAuthority']['data'])
    url = urllib.parse.urlparse(decode_eks_token(endpoint['token']))
    query = urllib.parse.parse_qs(url.query)
    assert query['Action'] == ['GetCallerIdentity']
    assert 'x-k8s-aws-id' in query['X-Amz-SignedHeaders'][0].split(';')
    assert query['X-Amz-Expires'] == ['60']
    assert AWS['secret_key'] not in endpoint['token']


def test_eks_unknown_cluster_is_named(moto):
    options = dict(AWS, cluster_name='nope', endpoint_url=moto.url, sts_endpoint_url=moto.url)
    with pytest.raises(ClusterError, match='EKS cluster "nope" does not exist in region eu-west-1'):
        cloud_auth.eks_endpoint(options, {})


def test_eks_needs_a_region(monkeypatch):
    for var in ('AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_CONFIG_FILE'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('AWS_CONFIG_FILE', '/nonexistent')
    with pytest.raises(ConnectionConfigError, match='eks.region is not set'):
        cloud_auth.eks_endpoint({'cluster_name': 'prod', 'access_key': 'a', 'secret_key': 'b'}, {})


def service_account_key(token_uri):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {'type': 'service_account', 'project_id': 'shop', 'private_key_id': 'k1', 'private_key': pem,
            'client_email': 'ferry@shop.iam.gserviceaccount.com', 'client_id': '1', 'token_uri': token_uri}


# What Google's token endpoint and the GKE API answer (recorded shapes, values replaced).
GKE_CLUSTER = {'name': 'prod', 'endpoint': '34.1.2.3', 'status': 'RUNNING',
               'masterAuth': {'clusterCaCertificate': base64.b64encode(b'-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').decode()}}


def gke_routes(method, path, headers, body):
    if method == 'POST' and path == '/token':
        form = urllib.parse.parse_qs(body.decode())
        assert form['grant_type'] == ['urn:ietf:params:oauth:grant-type:jwt-bearer']
        return 200, {'access_token': 'ya29.ferry-test', 'expires_in': 3599, 'token_type': 'Bearer'}
    if path == '/v1/projects/shop/locations/europe-west1/clusters/prod':
        if headers.get('Authorization') != 'Bearer ya29.ferry-test':
            return 401, {'error': {'code': 401, 'status': 'UNAUTHENTICATED'}}
        return 200, GKE_CLUSTER
    return 404, {'error': {'code': 404, 'message': 'Not found: %s' % path, 'status': 'NOT_FOUND'}}


def test_gke_token_and_cluster_lookup():
    with ScriptedServer(gke_routes) as google:
        key = service_account_key(google.url + '/token')
        options = {'credentials': json.dumps(key), 'project': 'shop', 'location': 'europe-west1', 'cluster_name': 'prod',
                   'container_api_url': google.url}
        endpoint = cloud_auth.gke_endpoint(options, {})
    assert endpoint == {'host': 'https://34.1.2.3', 'token': 'ya29.ferry-test', 'name': 'gke/prod',
                        'ca_data': base64.b64decode(GKE_CLUSTER['masterAuth']['clusterCaCertificate'])}


def test_gke_unknown_cluster():
    with ScriptedServer(gke_routes) as google:
        options = {'access_token': 'ya29.ferry-test', 'project': 'shop', 'location': 'europe-west1', 'cluster_name': 'gone',
                   'container_api_url': google.url}
        with pytest.raises(ClusterError, match='GKE cluster gone not found in project shop'):
            cloud_auth.gke_endpoint(options, {})


def test_gke_bad_key_is_a_config_error():
    with pytest.raises(ConnectionConfigError, match='not a valid service-account key'):
        cloud_auth.gke_endpoint({'credentials': '{"type": "service_account"}', 'container_api_url': 'http://x'}, {'host': 'https://h'})


class RecordedAzureTransport:
    """An azure-core transport that replays Azure AD's answers (OpenID discovery, then the token)."""

    def __init__(self, tenant):
        self.tenant = tenant
        self.sent = []

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def send(self, request, **_kwargs):
        from azure.core.pipeline.transport import HttpResponse  # pylint: disable=import-outside-toplevel
        self.sent.append(request)
        url = urllib.parse.urlparse(request.url)
        if url.path.endswith('/token'):
            form = _form(request)
            if form.get('client_secret') != 's3cret':
                payload, status = {'error': 'invalid_client', 'error_description': 'AADSTS7000215: Invalid client secret provided.'}, 401
            else:
                payload, status = {'token_type': 'Bearer', 'expires_in': 3599, 'ext_expires_in': 3599,
                                   'access_token': 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.aks.sig'}, 200
        else:  # OpenID configuration of the tenant
            base = 'https://%s/%s' % (url.netloc, self.tenant)
            payload, status = {'token_endpoint': base + '/oauth2/v2.0/token', 'issuer': base + '/v2.0',
                               'authorization_endpoint': base + '/oauth2/v2.0/authorize',
                               'tenant_region_scope': 'EU'}, 200
        return _Response(request, status, payload)


def _form(request):
    """The urlencoded form of a token request, whichever way azure-core holds it."""
    data = getattr(request, 'data', None) or request.body
    if isinstance(data, dict):
        return data
    if isinstance(data, bytes):
        data = data.decode()
    return {k: v[0] for k, v in urllib.parse.parse_qs(data or '').items()}


class _Response:
    def __init__(self, request, status, payload):
        self.request = request
        self.status_code = status
        self.headers = {'Content-Type': 'application/json'}
        self.reason = 'OK' if status == 200 else 'Unauthorized'
        self.content_type = 'application/json'
        self._body = json.dumps(payload).encode()

    def body(self):
        return self._body

    def text(self, encoding=None):
        return self._body.decode(encoding or 'utf-8')

    def raise_for_status(self):
        pass


def test_aks_token_for_the_aad_server_app():
    tenant = '72f988bf-0000-0000-0000-000000000000'
    transport = RecordedAzureTransport(tenant)
    options = {'tenant_id': tenant, 'client_id': 'app', 'client_secret': 's3cret', 'server_app_id': cloud_auth.AKS_AAD_SERVER_APP_ID}
    token = cloud_auth.aks_token(options, transport=transport, disable_instance_discovery=True)
    assert token.endswith('.aks.sig')
    token_request = [r for r in transport.sent if r.url.endswith('/token')][0]
    assert _form(token_request)['scope'] == '%s/.default' % cloud_auth.AKS_AAD_SERVER_APP_ID


def test_aks_wrong_secret_is_reported_without_the_secret():
    tenant = '72f988bf-0000-0000-0000-000000000000'
    options = {'tenant_id': tenant, 'client_id': 'app', 'client_secret': 'wrong-secret'}
    with pytest.raises(ClusterError, match='cannot get an Azure AD token for AKS') as caught:
        cloud_auth.aks_token(options, transport=RecordedAzureTransport(tenant), disable_instance_discovery=True)
    assert 'wrong-secret' not in str(caught.value)


def test_aks_reads_server_from_kubeconfig_without_its_user():
    document = {'current-context': 'aks', 'contexts': [{'name': 'aks', 'context': {'cluster': 'c', 'user': 'u'}}],
                'clusters': [{'name': 'c', 'cluster': {'server': 'https://aks.example:443',
                                                       'certificate-authority-data': base64.b64encode(b'CA').decode()}}],
                'users': [{'name': 'u', 'user': {'exec': {'command': 'kubelogin'}}}]}
    assert cloud_auth.kubeconfig_server(document) == ('https://aks.example:443', b'CA')
