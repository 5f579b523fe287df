"""Discovery documents (/apis, /apis/<group>, /apis/<group>/<version>, /api/v1) from the served types."""

_SUBRESOURCE_VERBS = {'status': ['get', 'patch', 'update'], 'scale': ['get', 'patch', 'update'], 'log': ['get'], 'exec': ['create', 'get'],
                      'token': ['create'], 'eviction': ['create'], 'finalize': ['update']}


class Discovery:
    def __init__(self, store):
        self.store = store

    def _types(self):
        return self.store.types()

    def _group_versions(self):
        """group -> versions in preference order (first seen wins)."""
        groups = {}
        for rtype in self._types():
            versions = groups.setdefault(rtype.group, [])
            for version in rtype.versions:
                if version not in versions:
                    versions.append(version)
        return groups

    def group_list(self):
        groups = []
        for name, versions in sorted(self._group_versions().items(), key=lambda kv: (kv[0].count('.') > 1, kv[0])):
            if name == '':
                continue
            groups.append(self._group_doc(name, versions))
        return {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': groups}

    @staticmethod
    def _group_doc(name, versions):
        entries = [{'groupVersion': '%s/%s' % (name, v), 'version': v} for v in versions]
        return {'name': name, 'versions': entries, 'preferredVersion': entries[0]}

    def group(self, name):
        versions = self._group_versions().get(name)
        if not versions or name == '':
            return None
        return dict(self._group_doc(name, versions), kind='APIGroup', apiVersion='v1')

    def resource_list(self, group, version):
        rows = [t for t in self._types() if t.group == group and version in t.versions]
        if not rows:
            return None
        resources = []
        for rtype in sorted(rows, key=lambda t: t.resource):
            entry = {'name': rtype.resource, 'singularName': rtype.singular, 'namespaced': rtype.namespaced, 'kind': rtype.kind,
                     'verbs': list(rtype.verbs)}
            if rtype.short_names:
                entry['shortNames'] = list(rtype.short_names)
            if rtype.categories:
                entry['categories'] = list(rtype.categories)
            resources.append(entry)
            for sub in rtype.subresources:
                kind = 'Scale' if sub == 'scale' else ('TokenRequest' if sub == 'token' else rtype.kind)
                resources.append({'name': '%s/%s' % (rtype.resource, sub), 'singularName': '', 'namespaced': rtype.namespaced,
                                  'kind': kind, 'verbs': _SUBRESOURCE_VERBS.get(sub, ['get'])})
        group_version = '%s/%s' % (group, version) if group else version
        return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': group_version, 'resources': resources}

    def served_type(self, group, version, resource):
        for rtype in self._types():
            if rtype.group == group and rtype.resource == resource and version in rtype.versions:
                return rtype
        return None

    # -- OpenAPI v3, as far as kubectl needs it: which PATCH endpoints take fieldValidation ---------
    def openapi_root(self):
        paths = {}
        for group, versions in self._group_versions().items():
            for version in versions:
                key = 'api/%s' % version if group == '' else 'apis/%s/%s' % (group, version)
                paths[key] = {'serverRelativeURL': '/openapi/v3/%s?hash=%d' % (key, len(self._types()))}
        return {'paths': paths}

    def openapi_group_version(self, key):
        parts = key.strip('/').split('/')
        if parts[0] == 'api' and len(parts) == 2:
            group, version = '', parts[1]
        elif parts[0] == 'apis' and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        rows = [t for t in self._types() if t.group == group and version in t.versions]
        if not rows:
            return None
        prefix = '/api/%s' % version if group == '' else '/apis/%s/%s' % (group, version)
        paths = {}
        for rtype in rows:
            scope = '/namespaces/{namespace}' if rtype.namespaced else ''
            operation = {'x-kubernetes-group-version-kind': {'group': group, 'version': version, 'kind': rtype.kind},
                         'parameters': [{'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}},
                                        {'name': 'dryRun', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}},
                                        {'name': 'fieldManager', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}}],
                         'responses': {'200': {'description': 'OK'}}}
            paths['%s%s/%s/{name}' % (prefix, scope, rtype.resource)] = {'patch': operation}
        return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': 'sandbox'}, 'paths': paths, 'components': {'schemas': {}}}
