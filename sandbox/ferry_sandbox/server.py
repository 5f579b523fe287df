"""The HTTPS API server of a sandbox cluster: discovery, CRUD, watch, patch, auth and RBAC."""

import base64
import datetime
import json
import os
import re
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from . import rbac
from .errors import ApiError, bad_request, not_found
from .patch import apply_patch
from .selectors import parse_fields, parse_labels

_RESOURCE_PATH = re.compile(r'^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))'
                            r'(?:/namespaces/(?P<ns>[^/]+))?(?:/(?P<resource>[^/]+))?(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$')
TABLE_ACCEPT = 'as=Table'


class Request:
    """One parsed resource request."""

    def __init__(self, group, version, namespace, resource, name, sub):
        self.group, self.version, self.namespace, self.resource, self.name, self.sub = group, version, namespace, resource, name, sub


def parse_resource_path(path):
    match = _RESOURCE_PATH.match(path)
    if not match:
        return None
    group = '' if match.group('core') else match.group('group')
    version = match.group('core') or match.group('version')
    namespace, resource, name, sub = match.group('ns'), match.group('resource'), match.group('name'), match.group('sub')
    if namespace and resource is None:
        # /api/v1/namespaces/<name>: the namespace object itself
        return Request(group, version, None, 'namespaces', namespace, None)
    if namespace and resource and group == '' and resource in ('status', 'finalize') and name is None:
        return Request(group, version, None, 'namespaces', namespace, resource)
    return Request(group, version, namespace, resource, name, sub)


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this each answer waits for a delayed ACK
    server_version = 'ferry-sandbox'
    cluster = None  # set on the subclass made per server

    def log_message(self, fmt, *args):
        if os.environ.get('FERRY_SANDBOX_DEBUG'):
            super().log_message(fmt, *args)

    # -- plumbing -------------------------------------------------------------------------------
    def _body(self):
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length and not self._body_read else b''
        self._body_read = True
        if not raw:
            return None
        content_type = (self.headers.get('Content-Type') or '').split(';')[0]
        try:
            if content_type.endswith('yaml'):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request('the request body is not valid JSON: %s' % exc) from None

    def _send(self, code, payload, content_type='application/json'):
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(',', ':')).encode()
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Audit-Id', str(time.monotonic_ns()))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def _error(self, error):
        self._send(error.code, error.status())

    def _handle(self):
        self._body_read = False
        try:
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
            user = self._authenticate()
            self.cluster.dispatch(self, parsed.path, query, user)
        except ApiError as error:
            self._drain_body()
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            return
        try:
            self._drain_body()
        except OSError:
            pass

    def _drain_body(self):
        """Read a request body no handler read (an error answered first): left in a keep-alive
        connection, it would be taken for the start of the next request."""
        if not self._body_read:
            self._body_read = True
            length = int(self.headers.get('Content-Length') or 0)
            if length:
                self.rfile.read(length)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def _authenticate(self):
        header = self.headers.get('Authorization') or ''
        if not header.startswith('Bearer '):
            raise ApiError(401, 'Unauthorized', 'Unauthorized')
        user = self.cluster.user_for_token(header[len('Bearer '):].strip())
        if user is None:
            raise ApiError(401, 'Unauthorized', 'Unauthorized')
        return user

    def stream_start(self):
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()

    def stream_chunk(self, data):
        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()

    def stream_end(self):
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()


class ApiServer:
    """Serves one cluster's API over HTTPS on 127.0.0.1."""

    def __init__(self, cluster, cert_file, key_file, port=0):
        handler = type('Handler', (ApiHandler,), {'cluster': cluster})
        self.httpd = ThreadingHTTPServer(('127.0.0.1', port), handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.2}, daemon=True,
                                       name='sandbox-api-%s' % cluster.name)

    def start(self):
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- request handling (called with the cluster as self's owner) ------------------------------------------------

class Dispatcher:
    """Mixed into Cluster: turns HTTP requests into store operations."""

    list_pages = None  # continue-token id -> the list a paginated response was cut from

    def dispatch(self, handler, path, query, user):
        method = handler.command
        if path in ('/version', '/version/'):
            return handler._send(200, self.version_info())
        if path in ('/healthz', '/readyz', '/livez'):
            return handler._send(200, b'ok', 'text/plain')
        if path in ('/api', '/api/'):
            return handler._send(200, {'kind': 'APIVersions', 'versions': ['v1'],
                                       'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1:%d' % self.port}]})
        if path in ('/apis', '/apis/'):
            return handler._send(200, self.discovery.group_list())
        if path in ('/openapi/v3', '/openapi/v3/'):
            return handler._send(200, self.discovery.openapi_root())
        if path.startswith('/openapi/v3/'):
            doc = self.discovery.openapi_group_version(path[len('/openapi/v3/'):])
            if doc is None:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            return handler._send(200, doc)
        if path.startswith('/openapi/'):
            raise ApiError(404, 'NotFound', 'the sandbox serves OpenAPI v3 only')
        if path == '/api/v1':
            return handler._send(200, self.discovery.resource_list('', 'v1'))
        parts = path.strip('/').split('/')
        if parts[0] == 'apis' and len(parts) == 2:
            group = self.discovery.group(parts[1])
            if group is None:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            return handler._send(200, group)
        if parts[0] == 'apis' and len(parts) == 3:
            resources = self.discovery.resource_list(parts[1], parts[2])
            if resources is None:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            return handler._send(200, resources)
        request = parse_resource_path(path)
        if request is None or request.resource is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        rtype = self.discovery.served_type(request.group, request.version, request.resource)
        if rtype is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if request.namespace and not rtype.namespaced:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        verb = self._verb(method, request, query)
        resource_name = request.resource + ('/' + request.sub if request.sub else '')
        if not rbac.allowed(self.store, user, verb, request.group, resource_name, request.namespace, request.name):
            message = rbac.forbidden_message(user, verb, request.group, resource_name, request.namespace, request.name)
            raise ApiError(403, 'Forbidden', message, {'name': request.name, 'group': request.group, 'kind': request.resource})
        return self._serve_resource(handler, method, verb, request, rtype, query, user)

    @staticmethod
    def _verb(method, request, query):
        if method in ('GET', 'HEAD'):
            if str(query.get('watch', '')).lower() in ('1', 'true'):
                return 'watch'
            return 'get' if request.name else 'list'
        return {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch',
                'DELETE': 'delete' if request.name else 'deletecollection'}[method]

    def _out(self, obj, version, rtype):
        """The object as served in ``version`` (a shallow copy when the version differs)."""
        served = rtype.group_version(version)
        if obj.get('apiVersion') == served:
            return obj
        out = dict(obj)
        out['apiVersion'] = served
        return out

    def _serve_resource(self, handler, method, verb, request, rtype, query, user):
        group, resource, namespace, name = request.group, request.resource, request.namespace, request.name
        dry_run = query.get('dryRun') == 'All'
        if request.sub:
            return self._serve_subresource(handler, method, request, rtype, query, user)
        if verb == 'list':
            return self._list(handler, request, rtype, query)
        if verb == 'watch':
            return self._watch(handler, request, rtype, query)
        if verb == 'get':
            obj = self.store.get_ref(group, resource, namespace, name)
            if obj is None:
                raise not_found(group, resource, name)
            return handler._send(200, self._out(obj, request.version, rtype))
        if verb == 'create':
            body = self._require_body(handler)
            if rtype.resource in ('selfsubjectaccessreviews', 'selfsubjectrulesreviews', 'tokenreviews'):
                return handler._send(201, self.review(rtype.resource, body, user))
            if namespace:
                body.setdefault('metadata', {})['namespace'] = namespace
            self._check_kind(body, rtype, request.version)
            created = self.store.create(group, resource, body, dry_run=dry_run)
            return handler._send(201, self._out(created, request.version, rtype))
        if verb == 'update':
            body = self._require_body(handler)
            self._check_kind(body, rtype, request.version)
            meta = body.setdefault('metadata', {})
            if meta.get('name') and meta['name'] != name:
                raise bad_request('the name of the object (%s) does not match the name on the URL (%s)' % (meta['name'], name))
            meta['name'] = name
            if namespace:
                meta['namespace'] = namespace
            if self.store.get_ref(group, resource, namespace, name) is None:
                created = self.store.create(group, resource, body, dry_run=dry_run)  # PUT creates, as the API server does
                return handler._send(201, self._out(created, request.version, rtype))
            updated = self.store.update(group, resource, body, dry_run=dry_run)
            return handler._send(200, self._out(updated, request.version, rtype))
        if verb == 'patch':
            return self._patch(handler, request, rtype, query, None)
        if verb == 'delete':
            body = self._body_or_empty(handler)
            propagation = body.get('propagationPolicy') or query.get('propagationPolicy') or 'Background'
            if body.get('orphanDependents') is True:
                propagation = 'Orphan'
            deleted = self.store.delete(group, resource, namespace, name, propagation=propagation, dry_run=dry_run)
            return handler._send(200, self._out(deleted, request.version, rtype))
        if verb == 'deletecollection':
            self._body_or_empty(handler)
            for obj in self.store.list_refs(group, resource, namespace, query.get('labelSelector'), query.get('fieldSelector')):
                self.store.delete(group, resource, obj['metadata'].get('namespace'), obj['metadata']['name'], dry_run=dry_run)
            return handler._send(200, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success'})
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    def _require_body(self, handler):
        body = handler._body()
        if not isinstance(body, dict):
            raise bad_request('the request needs a JSON object body')
        return body

    @staticmethod
    def _body_or_empty(handler):
        body = handler._body()
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _check_kind(body, rtype, version):
        if body.get('kind') and body['kind'] != rtype.kind:
            raise bad_request('the kind %s of the object does not match the resource %s (%s)' % (body['kind'], rtype.resource, rtype.kind))
        if body.get('apiVersion') and body['apiVersion'] != rtype.group_version(version):
            raise bad_request('the API version in the data (%s) does not match the expected API version (%s)'
                              % (body['apiVersion'], rtype.group_version(version)))

    def _patch(self, handler, request, rtype, query, subresource):
        group, resource, namespace, name = request.group, request.resource, request.namespace, request.name
        body = handler._body()
        content_type = handler.headers.get('Content-Type')
        current = self.store.get(group, resource, namespace, name)
        if current is None:
            if (content_type or '').startswith('application/apply-patch'):
                body.setdefault('metadata', {}).update({'name': name, 'namespace': namespace})
                return handler._send(201, self._out(self.store.create(group, resource, body, dry_run=query.get('dryRun') == 'All'),
                                                    request.version, rtype))
            raise not_found(group, resource, name)
        current['apiVersion'] = rtype.group_version(request.version)
        patched = apply_patch(current, body, content_type)
        if not isinstance(patched, dict):
            raise bad_request('the patch must leave an object')
        patched.setdefault('metadata', {})['name'] = name
        if namespace:
            patched['metadata']['namespace'] = namespace
        rv = (body.get('metadata') or {}).get('resourceVersion') if isinstance(body, dict) else None
        if not rv:
            patched['metadata'].pop('resourceVersion', None)
        updated = self.store.update(group, resource, patched, subresource=subresource, dry_run=query.get('dryRun') == 'All')
        return handler._send(200, self._out(updated, request.version, rtype))

    def _list(self, handler, request, rtype, query):
        start, rv, items = 0, str(self.store.resource_version), None
        if query.get('continue'):
            try:
                token = json.loads(base64.urlsafe_b64decode(query['continue'].encode()))
                start, rv = int(token['start']), token['rv']
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, 'BadRequest', 'the continue token is not valid') from None
            items = self.list_pages.get(token.get('id'))  # the snapshot the first page was cut from
        if items is None:
            items = self.store.list_refs(request.group, request.resource, request.namespace, query.get('labelSelector'), query.get('fieldSelector'))
        limit = int(query.get('limit') or 0)
        metadata = {'resourceVersion': rv}
        if limit and start + limit < len(items):
            page = items[start:start + limit]
            snapshot_id = '%s-%d' % (rv, id(items))
            self.list_pages[snapshot_id] = items
            while len(self.list_pages) > 32:
                self.list_pages.pop(next(iter(self.list_pages)))
            metadata['continue'] = base64.urlsafe_b64encode(json.dumps({'start': start + limit, 'rv': rv, 'id': snapshot_id}).encode()).decode()
            metadata['remainingItemCount'] = len(items) - start - limit
        else:
            page = items[start:]
        if TABLE_ACCEPT in (handler.headers.get('Accept') or ''):
            return handler._send(200, self._table(page, metadata))
        served = rtype.group_version(request.version)
        payload = {'kind': rtype.kind + 'List', 'apiVersion': served, 'metadata': metadata,
                   'items': [o if o.get('apiVersion') == served else dict(o, apiVersion=served) for o in page]}
        return handler._send(200, payload)

    @staticmethod
    def _table(items, metadata):
        now = datetime.datetime.now(datetime.timezone.utc)
        rows = []
        for obj in items:
            created = obj['metadata'].get('creationTimestamp')
            age = ''
            if created:
                seconds = int((now - datetime.datetime.fromisoformat(created.replace('Z', '+00:00'))).total_seconds())
                age = '%ds' % seconds if seconds < 120 else ('%dm' % (seconds // 60) if seconds < 7200 else '%dh' % (seconds // 3600))
            rows.append({'cells': [obj['metadata']['name'], age],
                         'object': {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': obj['metadata']}})
        return {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1', 'metadata': metadata,
                'columnDefinitions': [{'name': 'Name', 'type': 'string', 'format': 'name', 'description': 'Name', 'priority': 0},
                                      {'name': 'Age', 'type': 'string', 'format': '', 'description': 'Age', 'priority': 0}],
                'rows': rows}

    def _watch(self, handler, request, rtype, query):
        labels_ok = parse_labels(query.get('labelSelector'))
        fields_ok = parse_fields(query.get('fieldSelector'))
        timeout = float(query.get('timeoutSeconds') or 1800)
        deadline = time.monotonic() + timeout
        served = rtype.group_version(request.version)
        handler.stream_start()
        rv_text = query.get('resourceVersion') or ''
        if rv_text in ('', '0'):
            # No resourceVersion: start with the current state as ADDED events, as the API server does.
            for obj in self.store.list_refs(request.group, request.resource, request.namespace, query.get('labelSelector'),
                                            query.get('fieldSelector')):
                handler.stream_chunk(json.dumps({'type': 'ADDED', 'object': dict(obj, apiVersion=served)}).encode() + b'\n')
            last = self.store.resource_version
        else:
            last = int(rv_text)
        try:
            while time.monotonic() < deadline:
                events = self.store.events_after(last, min(1.0, max(0.0, deadline - time.monotonic())))
                if events is None:
                    gone = {'type': 'ERROR', 'object': {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'code': 410, 'reason': 'Expired',
                                                        'message': 'too old resource version: %s' % rv_text}}
                    handler.stream_chunk(json.dumps(gone).encode() + b'\n')
                    break
                for rv, event_type, group, resource, obj in events:
                    last = max(last, rv)
                    if (group, resource) != (request.group, request.resource):
                        continue
                    if request.namespace and obj['metadata'].get('namespace') != request.namespace:
                        continue
                    if not labels_ok(obj['metadata'].get('labels')) or not fields_ok(obj):
                        continue
                    handler.stream_chunk(json.dumps({'type': event_type, 'object': dict(obj, apiVersion=served)}).encode() + b'\n')
            handler.stream_end()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            handler.close_connection = True

    def _serve_subresource(self, handler, method, request, rtype, query, user):
        sub = request.sub
        if sub not in rtype.subresources:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if sub == 'status' and method in ('GET',):
            obj = self.store.get_ref(request.group, request.resource, request.namespace, request.name)
            if obj is None:
                raise not_found(request.group, request.resource, request.name)
            return handler._send(200, self._out(obj, request.version, rtype))
        if sub == 'status' and method == 'PUT':
            body = self._require_body(handler)
            body.setdefault('metadata', {}).update({'name': request.name, 'namespace': request.namespace})
            updated = self.store.update(request.group, request.resource, body, subresource='status', dry_run=query.get('dryRun') == 'All')
            return handler._send(200, self._out(updated, request.version, rtype))
        if sub == 'status' and method == 'PATCH':
            return self._patch(handler, request, rtype, query, 'status')
        if sub == 'scale':
            return self._scale(handler, method, request, rtype)
        if sub == 'log' and method == 'GET':
            return handler._send(200, self.pod_log(request.namespace, request.name, query).encode(), 'text/plain')
        if sub == 'token' and method == 'POST':
            body = self._require_body(handler)
            return handler._send(201, self.issue_token(request.namespace, request.name, body))
        if sub == 'finalize' and method == 'PUT':
            body = self._require_body(handler)
            current = self.store.get('', 'namespaces', None, request.name)
            if current is None:
                raise not_found('', 'namespaces', request.name)
            current['spec'] = body.get('spec') or {}
            return handler._send(200, self.store.update('', 'namespaces', current))
        if sub == 'exec':
            raise ApiError(400, 'BadRequest', 'the sandbox does not implement pods/exec (see sandbox/README.md)')
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    def _scale(self, handler, method, request, rtype):
        obj = self.store.get(request.group, request.resource, request.namespace, request.name)
        if obj is None:
            raise not_found(request.group, request.resource, request.name)
        if method in ('PUT', 'PATCH'):
            body = handler._body() or {}
            replicas = (body.get('spec') or {}).get('replicas')
            if replicas is None:
                raise bad_request('spec.replicas is required')
            obj['spec']['replicas'] = int(replicas)
            obj = self.store.update(request.group, request.resource, obj)
        selector = (obj['spec'].get('selector') or {}).get('matchLabels') or {}
        scale = {'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
                 'metadata': {k: obj['metadata'][k] for k in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp') if k in obj['metadata']},
                 'spec': {'replicas': obj['spec'].get('replicas', 1)},
                 'status': {'replicas': (obj.get('status') or {}).get('replicas', 0),
                            'selector': ','.join('%s=%s' % kv for kv in sorted(selector.items()))}}
        return handler._send(200, scale)
