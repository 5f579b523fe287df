"""Bearer tokens, RBAC from the store's own objects, and the Status bodies clients see."""

import json
import ssl
import urllib.error
import urllib.request

from helpers import kubectl


def raw(cluster, path, token, method='GET', body=None):
    context = ssl.create_default_context(cafile=cluster.ca_file)
    request = urllib.request.Request(cluster.api_url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_bad_token_is_401_status(sandbox_cluster):
    cluster = sandbox_cluster()
    code, body = raw(cluster, '/api/v1/namespaces', 'wrong')
    assert code == 401 and body['kind'] == 'Status' and body['reason'] == 'Unauthorized'


def test_restricted_account_reads_but_cannot_write(sandbox_cluster):
    cluster = sandbox_cluster()
    code, _ = raw(cluster, '/api/v1/namespaces/default/configmaps', cluster.restricted_token)
    assert code == 200
    code, body = raw(cluster, '/api/v1/namespaces/default/pods', cluster.restricted_token, 'POST',
                     {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'x'}, 'spec': {'containers': [{'name': 'c', 'image': 'i'}]}})
    assert code == 403 and body['reason'] == 'Forbidden'
    assert body['message'] == ('pods is forbidden: User "system:serviceaccount:kube-system:sandbox-viewer" cannot create resource "pods" '
                               'in API group "" in the namespace "default"')
    assert body['details']['kind'] == 'pods'
    code, body = raw(cluster, '/api/v1/namespaces/default/secrets', cluster.restricted_token)
    assert code == 403


def test_rbac_objects_grant_and_kubectl_auth_can_i(sandbox_cluster):
    cluster = sandbox_cluster()
    restricted = cluster.restricted_kubeconfig_path
    assert kubectl(cluster, 'auth', 'can-i', 'create', 'configmaps', '-n', 'team', kubeconfig=restricted, check=False).stdout.strip() == 'no'
    kubectl(cluster, 'create', 'namespace', 'team')
    kubectl(cluster, 'create', 'role', 'cm-writer', '-n', 'team', '--verb=create,get', '--resource=configmaps')
    kubectl(cluster, 'create', 'rolebinding', 'cm-writer', '-n', 'team', '--role=cm-writer',
            '--serviceaccount=kube-system:sandbox-viewer')
    assert kubectl(cluster, 'auth', 'can-i', 'create', 'configmaps', '-n', 'team', kubeconfig=restricted).stdout.strip() == 'yes'
    assert kubectl(cluster, 'auth', 'can-i', 'create', 'configmaps', '-n', 'default', kubeconfig=restricted, check=False).stdout.strip() == 'no'
    kubectl(cluster, 'create', 'configmap', 'ok', '-n', 'team', kubeconfig=restricted)


def test_service_account_token_secrets_and_token_requests_authenticate(sandbox_cluster):
    cluster = sandbox_cluster()
    kubectl(cluster, 'create', 'serviceaccount', 'robot', '-n', 'default')
    kubectl(cluster, 'apply', '-f', '-', stdin=json.dumps({'apiVersion': 'v1', 'kind': 'Secret', 'type': 'kubernetes.io/service-account-token',
                                                         'metadata': {'name': 'robot-token', 'namespace': 'default',
                                                                      'annotations': {'kubernetes.io/service-account.name': 'robot'}}}))
    token = kubectl(cluster, 'get', 'secret', 'robot-token', '-n', 'default', '-o', 'jsonpath={.data.token}').stdout
    import base64  # pylint: disable=import-outside-toplevel
    code, body = raw(cluster, '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', base64.b64decode(token).decode(), 'POST',
                     {'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SelfSubjectAccessReview',
                      'spec': {'resourceAttributes': {'verb': 'list', 'resource': 'pods', 'namespace': 'default'}}})
    assert code == 201 and body['status']['allowed'] is False
    issued = kubectl(cluster, 'create', 'token', 'robot', '-n', 'default').stdout.strip()
    code, _ = raw(cluster, '/version', issued)
    assert code == 200
