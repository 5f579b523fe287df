# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to managed clusters, shared by every module.

A connection is described by the suboptions in ``CLUSTER_SPEC`` (one ``cluster`` option, or
``source``/``target`` options in two-cluster modules). ``connect(params)`` turns them into a
``Cluster``: an authenticated ``kubernetes`` client plus a fast raw-JSON request path. Every
failure to connect becomes a ``ClusterError`` that says what is wrong and how to fix it.

Ways to connect, tried in this order:
  1. ``eks`` / ``gke`` / ``aks`` cloud credentials (a short-lived token from the cloud);
  2. ``host`` + ``api_key`` (+ ``ca_cert``): a service-account token, as AWX's credential gives;
  3. ``kubeconfig`` (a path or a dict) + ``context``;
  4. the default kubeconfig (``~/.kube/config``).
``K8S_AUTH_*`` environment variables fill options that are not set (AWX injects them).
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import (
    ApiError,
    ClusterError,
    ConnectionConfigError,
)
from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth
from ansible_collections.ferry.kube.plugins.module_utils.kube.cloud_auth import env as _env

try:
    import yaml
except ImportError:  # pragma: no cover - reported by the modules
    yaml = None

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the modules
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc
    ApiException = None


def cluster_spec():
    """Suboptions describing one cluster connection (fresh copy: Ansible mutates specs)."""
    return dict(
        name=dict(type='str'),
        kubeconfig=dict(type='raw', fallback=_env('K8S_AUTH_KUBECONFIG')),
        context=dict(type='str', fallback=_env('K8S_AUTH_CONTEXT')),
        host=dict(type='str', fallback=_env('K8S_AUTH_HOST')),
        api_key=dict(type='str', no_log=True, fallback=_env('K8S_AUTH_API_KEY')),
        ca_cert=dict(type='path', aliases=['ssl_ca_cert'], fallback=_env('K8S_AUTH_SSL_CA_CERT')),
        client_cert=dict(type='path', aliases=['cert_file'], fallback=_env('K8S_AUTH_CERT_FILE')),
        client_key=dict(type='path', aliases=['key_file'], no_log=False, fallback=_env('K8S_AUTH_KEY_FILE')),
        validate_certs=dict(type='bool', aliases=['verify_ssl'], fallback=_env('K8S_AUTH_VERIFY_SSL')),
        proxy=dict(type='str', fallback=_env('K8S_AUTH_PROXY')),
        request_timeout=dict(type='float', default=30.0),
        eks=dict(type='dict', options=cloud_auth.eks_spec()),
        gke=dict(type='dict', options=cloud_auth.gke_spec()),
        aks=dict(type='dict', options=cloud_auth.aks_spec()),
    )


def _no_log_values(params, spec):
    """Values of the options ``spec`` marks no_log, at any depth (for options Ansible does not validate)."""
    found = set()
    for name, option in spec.items():
        value = (params or {}).get(name)
        if option.get('no_log') and isinstance(value, str) and value:
            found.add(value)
        elif option.get('no_log') and isinstance(value, dict):
            found.update(v for v in value.values() if isinstance(v, str) and v)
        if option.get('options') and isinstance(value, dict):
            found |= _no_log_values(value, option['options'])
    return found


# The suboptions of a ``cluster`` option; use ``cluster_option()`` to declare one.
CLUSTER_SPEC = cluster_spec()


def cluster_option(required=False):
    """The argument_spec entry of a cluster option (``cluster``, ``source``, ``target``)."""
    spec = dict(type='dict', options=cluster_spec(), apply_defaults=True)
    if required:
        spec['required'] = True
        del spec['apply_defaults']
    return spec


def secret_values(params):
    """Credential strings inside connection params, for ``module.no_log_values``.

    A kubeconfig given as a dict (not a path) carries tokens and keys that no_log on the
    option itself cannot see.
    """
    found = _no_log_values(params, cluster_spec())
    kubeconfig = (params or {}).get('kubeconfig')
    if isinstance(kubeconfig, dict):
        for user in kubeconfig.get('users') or []:
            for key, value in ((user or {}).get('user') or {}).items():
                if key in ('token', 'password', 'client-key-data') and isinstance(value, str):
                    found.add(value)
    return found


DISCOVERY_WORKERS = 8


class Cluster:
    """An authenticated connection to one Kubernetes API server."""

    def __init__(self, name, api_client, request_timeout=30.0):
        self.name = name
        self.api_client = api_client
        self.configuration = api_client.configuration
        self.host = self.configuration.host
        self.request_timeout = request_timeout
        self._dynamic = None
        self._discovery = None
        self._version = None
        self._lock = threading.Lock()

    # -- raw requests ---------------------------------------------------------------------
    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        """Call the API and return ``(status, parsed JSON)``; raise ApiError on an error Status.

        Bypasses the client's model deserialisation, which dominates the cost of large lists.
        """
        response = self._call(method, path, list((query or {}).items()), body, content_type, timeout or self.request_timeout)
        data = response.data
        return response.status, (json.loads(data) if data else None)

    def _call(self, method, path, query_params, body=None, content_type=None, timeout=None, what=None):
        """The raw response (urllib3's, unread) of one API call; client errors become ClusterErrors."""
        headers = {'Accept': 'application/json'}
        if body is not None:
            headers['Content-Type'] = content_type or 'application/json'
        try:
            return self.api_client.call_api(
                path, method.upper(),
                query_params=query_params,
                header_params=headers,
                body=body,
                auth_settings=['BearerToken'],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout,
            )
        except Exception as exc:  # pylint: disable=broad-except
            raise translate_error(exc, self, method=what or method, path=path) from None

    def get(self, path, **query):
        return self.request('GET', path, query=query or None)[1]

    def wait_for_change(self, path, resource_version, seconds):
        """Wait until the object at ``path`` changes after ``resource_version``, at most about ``seconds``
        (a watch of its collection, selected by name): a waiter then looks again when the object
        changed, not at its next poll. True when a change (or the watch's end by an error event, such as
        an expired version) came; False when the time ran out. Raises ApiError when the server
        refuses the watch (no permission, no such collection): the caller then polls instead.
        """
        collection, name = path.rsplit('/', 1)
        query = [('watch', 'true'), ('fieldSelector', 'metadata.name=%s' % name), ('resourceVersion', resource_version or ''),
                 ('timeoutSeconds', max(1, int(seconds + 0.999)))]
        response = self._call('GET', collection, query, timeout=seconds + self.request_timeout, what='WATCH')
        try:
            for data in response.stream(decode_content=True):
                if data.strip():
                    return True  # an event: what it says is read by looking again
            return False
        except Exception as exc:  # pylint: disable=broad-except
            raise translate_error(exc, self, method='WATCH', path=collection) from None
        finally:
            response.close()  # a watch left mid-stream cannot go back to the pool

    # -- derived views ----------------------------------------------------------------------
    @property
    def dynamic(self):
        """A ``kubernetes.dynamic.DynamicClient`` made on first use (discovery costs a round trip)."""
        with self._lock:
            if self._dynamic is None:
                from kubernetes.dynamic import DynamicClient  # pylint: disable=import-outside-toplevel
                try:
                    self._dynamic = DynamicClient(self.api_client)
                except Exception as exc:  # pylint: disable=broad-except
                    raise translate_error(exc, self, method='GET', path='/apis') from None
            return self._dynamic

    @property
    def server_version(self):
        """The ``/version`` document (``gitVersion``, ``major``, ``minor``, ``platform``...)."""
        if self._version is None:
            self._version = self.get('/version')
        return self._version

    def discovery(self, refresh=False):
        """Every resource the server serves, as dicts (cached per connection).

        Keys: group, version, group_version, resource, kind, namespaced, verbs, short_names,
        preferred (the group's preferred version), subresource (False for top-level resources).
        """
        if self._discovery is None or refresh:
            self._discovery = list(_walk_discovery(self))
        return self._discovery

    def find_resource(self, kind=None, resource=None, group=None, version=None):
        """The discovery entries matching the given fields (top-level resources only)."""
        matches = []
        for entry in self.discovery():
            if entry['subresource']:
                continue
            if kind is not None and entry['kind'] != kind:
                continue
            if resource is not None and entry['resource'] != resource:
                continue
            if group is not None and entry['group'] != group:
                continue
            if version is not None and entry['version'] != version:
                continue
            matches.append(entry)
        return matches


def _walk_discovery(cluster):
    """Yield resource entries of the legacy core group and every named API group.

    The group versions are fetched in parallel: a cluster serves dozens, and one at a time they
    cost a round trip each.
    """
    groups = [{'name': '', 'versions': [{'groupVersion': v, 'version': v} for v in cluster.get('/api')['versions']]}]
    groups[0]['preferredVersion'] = groups[0]['versions'][0]
    groups.extend(cluster.get('/apis').get('groups') or [])
    wanted = [(group, version) for group in groups for version in group.get('versions') or []]

    def fetch(item):
        group, version = item
        group_version = version['groupVersion']
        try:
            return cluster.get('/api/%s' % group_version if group['name'] == '' else '/apis/%s' % group_version)
        except ApiError as exc:
            if exc.status in (404, 503):  # an aggregated API that is down: skip, as kubectl does
                return None
            raise

    with ThreadPoolExecutor(max_workers=DISCOVERY_WORKERS, thread_name_prefix='ferry-discovery') as pool:
        lists = list(pool.map(fetch, wanted))
    for (group, version), resource_list in zip(wanted, lists):
        if resource_list is None:
            continue
        preferred = (group.get('preferredVersion') or {}).get('version')
        for res in resource_list.get('resources') or []:
            name = res['name']
            yield {
                'group': group['name'],
                'version': version['version'],
                'group_version': version['groupVersion'],
                'resource': name.split('/')[0],
                'subresource': name.split('/', 1)[1] if '/' in name else False,
                'kind': res.get('kind'),
                'namespaced': bool(res.get('namespaced')),
                'verbs': res.get('verbs') or [],
                'short_names': res.get('shortNames') or [],
                'preferred': version['version'] == preferred,
            }


# -- building the client ------------------------------------------------------------------------

def connect(params):
    """Build a ``Cluster`` from connection params (the suboptions of ``CLUSTER_SPEC``).

    Checks that the server answers and accepts the credentials (one ``/version`` call), so that
    every later error is about the work, not the connection.
    """
    if not HAS_KUBERNETES:
        raise ClusterError('the Python library "kubernetes" is required: pip install kubernetes (%s)' % KUBERNETES_IMPORT_ERROR)
    params = dict(params or {})
    configuration, name = _configuration(params)
    if params.get('proxy'):
        configuration.proxy = params['proxy']
    api_client = k8s_client.ApiClient(configuration)
    cluster = Cluster(name, api_client, request_timeout=params.get('request_timeout') or 30.0)
    cluster.server_version  # pylint: disable=pointless-statement
    return cluster


def _configuration(params):
    """A ``kubernetes.client.Configuration`` and a display name for the params."""
    for provider in ('eks', 'gke', 'aks'):
        if params.get(provider):
            endpoint = getattr(cloud_auth, provider + '_endpoint')(params[provider], params)
            config = _token_configuration(endpoint['host'], endpoint['token'], params, ca_data=endpoint.get('ca_data'))
            return config, params.get('name') or endpoint.get('name') or endpoint['host']
    if params.get('host') and params.get('api_key'):
        config = _token_configuration(params['host'], params['api_key'], params)
        return config, params.get('name') or params['host']
    if params.get('host') and not params.get('kubeconfig'):
        if params.get('client_cert') and params.get('client_key'):
            config = _token_configuration(params['host'], None, params)
            return config, params.get('name') or params['host']
        raise ConnectionConfigError(
            'cluster option "host" is set (%s) but no credentials go with it: set "api_key" to a '
            'service-account token (or K8S_AUTH_API_KEY), or "client_cert" and "client_key", '
            'or use "kubeconfig" instead' % params['host'])
    return _kubeconfig_configuration(params)


def _token_configuration(host, token, params, ca_data=None):
    config = k8s_client.Configuration()
    config.host = host.rstrip('/')
    if not config.host.startswith(('https://', 'http://')):
        config.host = 'https://' + config.host
    if token:
        config.api_key = {'authorization': 'Bearer ' + token}
    verify = params.get('validate_certs')
    config.verify_ssl = True if verify is None else _as_bool(verify)
    ca_cert = params.get('ca_cert')
    if ca_cert:
        _require_file(ca_cert, 'ca_cert', 'the CA bundle that signed the API server certificate')
        config.ssl_ca_cert = ca_cert
    elif ca_data:
        config.ssl_ca_cert = _write_temp(ca_data, suffix='-ca.crt')
    for option, attr in (('client_cert', 'cert_file'), ('client_key', 'key_file')):
        if params.get(option):
            _require_file(params[option], option, 'a PEM file')
            setattr(config, attr, params[option])
    return config


def _kubeconfig_configuration(params):
    kubeconfig = params.get('kubeconfig')
    context = params.get('context')
    if isinstance(kubeconfig, str) and kubeconfig.strip().startswith(('apiVersion', '{')) and '\n' in kubeconfig:
        kubeconfig = _parse_kubeconfig_text(kubeconfig)
    if isinstance(kubeconfig, dict):
        document, origin = kubeconfig, 'the kubeconfig given as a dict'
    else:
        path = os.path.expanduser(kubeconfig or os.environ.get('KUBECONFIG', '').split(os.pathsep)[0] or '~/.kube/config')
        if not os.path.exists(path):
            how = ('set cluster option "kubeconfig" to an existing file' if kubeconfig else
                   'no cluster connection was given: set "kubeconfig" (and "context"), or "host" and "api_key"')
            raise ConnectionConfigError('kubeconfig file %s does not exist: %s' % (path, how), path=path)
        document, origin = _load_kubeconfig(path), 'kubeconfig %s' % path
    contexts = [c.get('name') for c in document.get('contexts') or []]
    chosen = context or document.get('current-context')
    if not chosen:
        raise ConnectionConfigError('%s has no current-context: set cluster option "context" to one of %s'
                                    % (origin, ', '.join(contexts) or 'its contexts (it has none)'))
    if chosen not in contexts:
        raise ConnectionConfigError('context "%s" is not in %s; its contexts are: %s' % (chosen, origin, ', '.join(contexts) or 'none'))
    config = k8s_client.Configuration()
    try:
        loader = k8s_config.kube_config.KubeConfigLoader(config_dict=document, active_context=chosen,
                                                         config_base_path=os.path.dirname(path) if not isinstance(kubeconfig, dict) else None)
        loader.load_and_set(config)
    except Exception as exc:  # pylint: disable=broad-except
        raise ConnectionConfigError('cannot use context "%s" of %s: %s' % (chosen, origin, exc)) from None
    # Explicit options override what the kubeconfig says.
    if params.get('host'):
        config.host = params['host']
    if params.get('api_key'):
        config.api_key = {'authorization': 'Bearer ' + params['api_key']}
    if params.get('validate_certs') is not None:
        config.verify_ssl = _as_bool(params['validate_certs'])
    if params.get('ca_cert'):
        _require_file(params['ca_cert'], 'ca_cert', 'the CA bundle that signed the API server certificate')
        config.ssl_ca_cert = params['ca_cert']
    return config, params.get('name') or chosen


def _load_kubeconfig(path):
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            document = yaml.safe_load(handle)
    except Exception as exc:  # pylint: disable=broad-except
        raise ConnectionConfigError('kubeconfig %s is not valid YAML: %s' % (path, exc), path=path) from None
    if not isinstance(document, dict):
        raise ConnectionConfigError('kubeconfig %s is not a kubeconfig document (expected a mapping with clusters, users, contexts)' % path, path=path)
    return document


def _parse_kubeconfig_text(text):
    try:
        document = yaml.safe_load(text)
    except Exception as exc:  # pylint: disable=broad-except
        raise ConnectionConfigError('cluster option "kubeconfig" holds text that is not valid YAML: %s' % exc) from None
    if not isinstance(document, dict):
        raise ConnectionConfigError('cluster option "kubeconfig" must be a path, a kubeconfig mapping, or kubeconfig YAML text')
    return document


def _require_file(path, option, what):
    if not os.path.isfile(path):
        raise ConnectionConfigError('cluster option "%s" names %s, which does not exist: give the path of %s' % (option, path, what), path=path)


def _write_temp(data, suffix):
    """Write decoded PEM data from a cloud API into a private temporary file (the client needs a path)."""
    handle = tempfile.NamedTemporaryFile('wb', suffix=suffix, prefix='ferry-', delete=False)
    with handle:
        handle.write(data if isinstance(data, bytes) else data.encode('ascii'))
    os.chmod(handle.name, 0o600)
    return handle.name


def _as_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


# -- errors -------------------------------------------------------------------------------------

def translate_error(exc, cluster, method=None, path=None):
    """Turn a client-library exception into a ClusterError that says what to do."""
    where = cluster.name if cluster is not None else 'the cluster'
    host = cluster.host if cluster is not None else ''
    if ApiException is not None and isinstance(exc, ApiException):
        return api_exception_error(exc, where, method, path)
    text = str(exc)
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if len(chain) > 8:
            break
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or 'CERTIFICATE_VERIFY_FAILED' in text:
        return ClusterError(
            'TLS verification of %s (%s) failed: the server certificate is not signed by the CA Ferry was given. '
            'Set cluster option "ca_cert" to the cluster CA bundle (or fix certificate-authority-data in the kubeconfig); '
            'validate_certs=false only for throwaway test clusters. (%s)' % (where, host, _short(text)), host=host)
    if any(isinstance(e, ssl.SSLError) for e in chain) or 'SSLError' in text:
        return ClusterError('TLS handshake with %s (%s) failed: %s. Check the host is a Kubernetes API server and the client certificate, if any, is valid.'
                            % (where, host, _short(text)), host=host)
    if HAS_KUBERNETES and isinstance(exc, (urllib3.exceptions.MaxRetryError, urllib3.exceptions.NewConnectionError,
                                           urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError,
                                           ConnectionError, OSError)):
        return ClusterError('cannot reach the API server of %s at %s: %s. Check the address, the port, that the server is up '
                            'and that this control node may reach it through the firewall.' % (where, host, _short(text)), host=host)
    if isinstance(exc, ClusterError):
        return exc
    return ClusterError('request %s %s to %s failed: %s' % (method or '', path or '', where, _short(text)), host=host)


def api_exception_error(exc, where, method=None, path=None):
    status = getattr(exc, 'status', None)
    body = {}
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get('message') or exc.reason or ''
    reason = body.get('reason') or exc.reason
    if status == 401:
        text = ('%s rejected Ferry\'s credentials (401 Unauthorized): the token or certificate is wrong or has expired. '
                'Renew the service-account token (ferry.kube.footprint returns a fresh kubeconfig) or the cloud credentials.' % where)
    elif status == 403:
        text = ('%s denied the request (403 Forbidden): %s. Grant the permission to Ferry\'s service account '
                '(role ferry.kube.footprint installs the ClusterRole Ferry needs).' % (where, message))
    elif status == 404:
        text = '%s: %s %s not found (404): %s' % (where, method or '', path or '', message)
    else:
        text = '%s answered %s %s with %s %s: %s' % (where, method or '', path or '', status, reason, message)
    return ApiError(text, status=status, reason=reason, api_message=message,
                    api_details=body.get('details'))


def _short(text, limit=300):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit] + '...'
