"""One sandbox cluster: store, HTTPS API server, credentials, kubeconfigs, built-in objects."""

import base64
import collections
import datetime
import ipaddress
import itertools
import os
import secrets
import threading

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import admission, catalog, rbac
from .catalog import ResourceType
from .discovery import Discovery
from .errors import ApiError, not_found
from .server import ApiServer, Dispatcher
from .store import Store

_machine_lock = threading.Lock()
_cluster_numbers = itertools.count(1)
_pod_ip_counter = itertools.count(1)
_lb_counter = itertools.count(1)

RESTRICTED_NAMESPACE = 'kube-system'
RESTRICTED_ACCOUNT = 'sandbox-viewer'


def _allocate_cluster_number():
    """A number unique on this machine (across processes too): it picks the cluster's loopback range."""
    with _machine_lock:
        base = os.getpid() % 200 + 10
        return base, next(_cluster_numbers)


class Cluster(Dispatcher):
    def __init__(self, name, state_dir, version='1.31', api_groups_extra=(), local_images=None, port=0):
        self.name = name
        self.state_dir = os.path.abspath(state_dir)
        self.version = str(version)
        self.minor = int(self.version.split('.')[1])
        self.extras = tuple(api_groups_extra)
        self.local_images = dict(local_images or {})
        self.store = Store()
        self.discovery = Discovery(self.store)
        base, number = _allocate_cluster_number()
        self._net = (base, number % 250 + 1)
        self.node_ip = '127.%d.%d.1' % self._net
        self.node_name = '%s-node-1' % name
        self._pod_ips = itertools.count(2)
        self._node_ports = itertools.count(30000)
        self._service_ips = itertools.count(10)
        self._requested_port = port
        self.tokens = {}
        self.admin_token = secrets.token_urlsafe(32)
        self.restricted_token = None
        self.controllers = []
        self.server = None
        self.list_pages = collections.OrderedDict()
        os.makedirs(os.path.join(self.state_dir, 'volumes'), exist_ok=True)
        os.makedirs(os.path.join(self.state_dir, 'snapshots'), exist_ok=True)
        os.makedirs(os.path.join(self.state_dir, 'pods'), exist_ok=True)
        for rtype, versions in catalog.served(self.minor, self.extras):
            self.store.register_type(ResourceType(rtype.group, tuple(versions), rtype.resource, rtype.kind, rtype.namespaced, rtype.short_names,
                                                  rtype.subresources, rtype.categories, singular=rtype.singular, verbs=rtype.verbs))
        admission.install(self)

    # -- identity ----------------------------------------------------------------------------------
    @property
    def api_url(self):
        return 'https://127.0.0.1:%d' % self.port

    @property
    def port(self):
        return self.server.port if self.server else None

    @property
    def kubeconfig_path(self):
        return os.path.join(self.state_dir, 'kubeconfig')

    @property
    def restricted_kubeconfig_path(self):
        return os.path.join(self.state_dir, 'kubeconfig-restricted')

    @property
    def ca_file(self):
        return os.path.join(self.state_dir, 'ca.crt')

    def version_info(self):
        return {'major': '1', 'minor': str(self.minor), 'gitVersion': 'v1.%d.0' % self.minor, 'gitCommit': 'sandbox',
                'gitTreeState': 'clean', 'buildDate': '2026-01-01T00:00:00Z', 'goVersion': 'go1.23', 'compiler': 'gc',
                'platform': 'linux/amd64'}

    def user_for_token(self, token):
        return self.tokens.get(token)

    def register_token(self, token, user):
        self.tokens[token] = user

    # -- allocators (shared with controllers) --------------------------------------------------------------
    def allocate_pod_ip(self):
        return '127.%d.%d.%d' % (self._net[0], self._net[1], next(self._pod_ips) % 250 + 2)

    def allocate_node_port(self):
        return next(self._node_ports)

    def allocate_service_ip(self):
        n = next(self._service_ips)
        return '10.96.%d.%d' % (n // 250, n % 250 + 1)

    def allocate_lb_ip(self):
        return '127.%d.%d.%d' % (self._net[0] + 1, self._net[1], next(_lb_counter) % 250 + 1)

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self):
        cert, key = self._tls_material()
        self.server = ApiServer(self, cert, key, self._requested_port)
        self._bootstrap()
        self.server.start()
        self._write_kubeconfigs()
        try:
            from .controllers import start_controllers  # pylint: disable=import-outside-toplevel
        except ImportError:
            start_controllers = None
        if start_controllers is not None:
            self.controllers = list(start_controllers(self) or [])
        return self

    def stop(self):
        for controller in reversed(self.controllers):
            try:
                controller.stop()
            except Exception:  # pylint: disable=broad-except
                pass
        self.controllers = []
        if self.server:
            self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- bootstrap -------------------------------------------------------------------------------------
    def _bootstrap(self):
        for ns in ('default', 'kube-system', 'kube-public', 'kube-node-lease'):
            self.store.create('', 'namespaces', {'metadata': {'name': ns}})
        self.store.create('', 'nodes', {'metadata': {'name': self.node_name, 'labels': {
            'kubernetes.io/hostname': self.node_name, 'kubernetes.io/os': 'linux', 'topology.kubernetes.io/zone': 'sandbox-a',
            'node-role.kubernetes.io/control-plane': ''}}, 'spec': {'providerID': 'sandbox://%s/%s' % (self.name, self.node_name)}})
        self.store.update('', 'nodes', {'metadata': {'name': self.node_name}, 'spec': {'providerID': 'sandbox://%s/%s' % (self.name, self.node_name)},
                                        'status': {'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'KubeletReady'}],
                                                   'addresses': [{'type': 'InternalIP', 'address': self.node_ip},
                                                                 {'type': 'Hostname', 'address': self.node_name}],
                                                   'nodeInfo': {'kubeletVersion': 'v1.%d.0' % self.minor, 'architecture': 'amd64',
                                                                'operatingSystem': 'linux'},
                                                   'capacity': {'cpu': '2', 'memory': '24Gi', 'pods': '250'},
                                                   'allocatable': {'cpu': '2', 'memory': '24Gi', 'pods': '250'}}}, subresource='status')
        for role in _builtin_cluster_roles():
            self.store.create('rbac.authorization.k8s.io', 'clusterroles', role)
        self.store.create('rbac.authorization.k8s.io', 'clusterrolebindings', {
            'metadata': {'name': 'cluster-admin'}, 'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': 'cluster-admin'},
            'subjects': [{'kind': 'Group', 'apiGroup': 'rbac.authorization.k8s.io', 'name': 'system:masters'}]})
        self.store.create('rbac.authorization.k8s.io', 'clusterrolebindings', {
            'metadata': {'name': 'system:basic-user'}, 'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': 'system:basic-user'},
            'subjects': [{'kind': 'Group', 'apiGroup': 'rbac.authorization.k8s.io', 'name': 'system:authenticated'}]})
        self.store.create('', 'serviceaccounts', {'metadata': {'name': RESTRICTED_ACCOUNT, 'namespace': RESTRICTED_NAMESPACE}})
        self.store.create('rbac.authorization.k8s.io', 'clusterrolebindings', {
            'metadata': {'name': RESTRICTED_ACCOUNT}, 'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': 'view'},
            'subjects': [{'kind': 'ServiceAccount', 'name': RESTRICTED_ACCOUNT, 'namespace': RESTRICTED_NAMESPACE}]})
        self.register_token(self.admin_token, rbac.User('sandbox-admin', ['system:masters']))
        self.restricted_token = secrets.token_urlsafe(32)
        self.register_token(self.restricted_token, rbac.User.service_account(RESTRICTED_NAMESPACE, RESTRICTED_ACCOUNT))
        if 'openshift' in self.extras:
            self.store.create('config.openshift.io', 'clusterversions', {'metadata': {'name': 'version'}, 'spec': {'channel': 'stable-4.16'}})

    # -- TLS and kubeconfigs ----------------------------------------------------------------------------
    def _tls_material(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'sandbox-%s-ca' % self.name)])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=30)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.IPAddress(ipaddress.ip_address('127.0.0.1')), x509.DNSName('localhost'), x509.DNSName('kubernetes.default.svc')]
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'kube-apiserver')]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(ca_key, hashes.SHA256()))
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        cert_file = os.path.join(self.state_dir, 'apiserver.crt')
        key_file = os.path.join(self.state_dir, 'apiserver.key')
        for path, data in ((self.ca_file, self.ca_pem), (cert_file, cert.public_bytes(serialization.Encoding.PEM)),
                           (key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))):
            with open(path, 'wb') as handle:
                handle.write(data)
            os.chmod(path, 0o600)
        return cert_file, key_file

    def kubeconfig(self, token, user):
        return {'apiVersion': 'v1', 'kind': 'Config', 'current-context': self.name, 'preferences': {},
                'clusters': [{'name': self.name, 'cluster': {'server': self.api_url,
                                                             'certificate-authority-data': base64.b64encode(self.ca_pem).decode()}}],
                'users': [{'name': user, 'user': {'token': token}}],
                'contexts': [{'name': self.name, 'context': {'cluster': self.name, 'user': user}}]}

    def _write_kubeconfigs(self):
        for path, token, user in ((self.kubeconfig_path, self.admin_token, '%s-admin' % self.name),
                                  (self.restricted_kubeconfig_path, self.restricted_token, '%s-viewer' % self.name)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w') as handle:
                yaml.safe_dump(self.kubeconfig(token, user), handle, default_flow_style=False)

    # -- special endpoints ----------------------------------------------------------------------------
    def review(self, resource, body, user):
        spec = body.get('spec') or {}
        if resource == 'selfsubjectaccessreviews':
            attrs = spec.get('resourceAttributes') or {}
            res = attrs.get('resource', '') + ('/' + attrs['subresource'] if attrs.get('subresource') else '')
            ok = rbac.allowed(self.store, user, attrs.get('verb', ''), attrs.get('group', ''), res, attrs.get('namespace'), attrs.get('name'))
            return dict(body, status={'allowed': ok})
        if resource == 'selfsubjectrulesreviews':
            if rbac.SUPERUSER_GROUP in user.groups:
                rules = [{'verbs': ['*'], 'apiGroups': ['*'], 'resources': ['*']}]
            else:
                rules = [{k: r.get(k, []) for k in ('verbs', 'apiGroups', 'resources', 'resourceNames')}
                         for r in rbac.rules_for(self.store, user, spec.get('namespace'))]
            return dict(body, status={'resourceRules': rules, 'nonResourceRules': [], 'incomplete': False})
        token_user = self.user_for_token(spec.get('token', ''))
        status = {'authenticated': token_user is not None}
        if token_user:
            status['user'] = {'username': token_user.name, 'groups': token_user.groups}
        return dict(body, status=status)

    def issue_token(self, namespace, name, body):
        if self.store.get_ref('', 'serviceaccounts', namespace, name) is None:
            raise not_found('', 'serviceaccounts', name)
        seconds = int(((body or {}).get('spec') or {}).get('expirationSeconds') or 3600)
        token = secrets.token_urlsafe(32)
        self.register_token(token, rbac.User.service_account(namespace, name))
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        return {'kind': 'TokenRequest', 'apiVersion': 'authentication.k8s.io/v1', 'metadata': {'name': name, 'namespace': namespace},
                'spec': {'expirationSeconds': seconds, 'audiences': ['https://kubernetes.default.svc']},
                'status': {'token': token, 'expirationTimestamp': expires.strftime('%Y-%m-%dT%H:%M:%SZ')}}

    def pod_log(self, namespace, name, query):
        pod = self.store.get_ref('', 'pods', namespace, name)
        if pod is None:
            raise not_found('', 'pods', name)
        containers = [c['name'] for c in (pod.get('spec') or {}).get('containers') or []]
        container = query.get('container') or (containers[0] if containers else '')
        if container not in containers:
            raise ApiError(400, 'BadRequest', 'container %s is not valid for pod %s' % (container, name))
        path = os.path.join(self.state_dir, 'pods', namespace, name, '%s.log' % container)
        try:
            with open(path, 'r', encoding='utf-8', errors='replace') as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ''
        if query.get('tailLines'):
            lines = text.splitlines(True)
            text = ''.join(lines[-int(query['tailLines']):])
        return text


def _builtin_cluster_roles():
    read = ['get', 'list', 'watch']
    view_resources = [
        ('', ['pods', 'pods/log', 'services', 'endpoints', 'configmaps', 'serviceaccounts', 'persistentvolumeclaims', 'events', 'namespaces',
              'resourcequotas', 'limitranges', 'replicationcontrollers', 'nodes', 'persistentvolumes']),
        ('apps', ['*']), ('batch', ['*']), ('autoscaling', ['*']), ('policy', ['*']), ('networking.k8s.io', ['*']),
        ('storage.k8s.io', ['*']), ('snapshot.storage.k8s.io', ['*']), ('discovery.k8s.io', ['*']),
    ]
    view = [{'apiGroups': [g], 'resources': r, 'verbs': read} for g, r in view_resources]
    view.append({'apiGroups': ['authorization.k8s.io'], 'resources': ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], 'verbs': ['create']})
    edit = view + [{'apiGroups': [g], 'resources': r, 'verbs': ['create', 'update', 'patch', 'delete']} for g, r in view_resources[:8]]
    return [
        {'metadata': {'name': 'cluster-admin'}, 'rules': [{'apiGroups': ['*'], 'resources': ['*'], 'verbs': ['*']}]},
        {'metadata': {'name': 'view'}, 'rules': view},
        # What every authenticated identity may do, as on a real cluster: ask what it may do.
        {'metadata': {'name': 'system:basic-user'}, 'rules': [{'apiGroups': ['authorization.k8s.io'],
                                                              'resources': ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], 'verbs': ['create']}]},
        {'metadata': {'name': 'edit'}, 'rules': edit + [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': read + ['create', 'update', 'patch', 'delete']}]},
    ]
