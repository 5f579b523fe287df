# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which resource types to capture, and listing them fast.

Every namespaced type the cluster serves and may list is captured, custom resources included,
in one version per group (the group's preferred one). A type is listed cluster-wide in one paged
call and filtered here when many namespaces are selected: one request per type instead of one per
type and namespace, which is what makes discovery of 100 namespaces cost about one
``kubectl get -A`` per type.
"""

from __future__ import annotations

import fnmatch
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.discovery import selectors
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import collection_path

PAGE_SIZE = 2000
LIST_WORKERS = 8
PER_NAMESPACE_LIMIT = 4  # at most this many selected namespaces are listed one by one

# Never captured: volatile, virtual or derived types that no restore needs.
SKIPPED_GROUPS = {'metrics.k8s.io', 'authorization.k8s.io', 'authentication.k8s.io', 'events.k8s.io'}
SKIPPED_RESOURCES = {
    ('', 'events'), ('', 'bindings'), ('', 'componentstatuses'),
    ('coordination.k8s.io', 'leases'),  # leader-election locks belong to the running controllers
    ('image.openshift.io', 'imagestreamtags'), ('image.openshift.io', 'imagetags'), ('image.openshift.io', 'imagestreamimages'),
    ('image.openshift.io', 'imagestreamimports'), ('image.openshift.io', 'imagestreammappings'),
    ('project.openshift.io', 'projectrequests'), ('authorization.openshift.io', 'localresourceaccessreviews'),
    ('authorization.openshift.io', 'localsubjectaccessreviews'), ('authorization.openshift.io', 'subjectrulesreviews'),
    ('authorization.openshift.io', 'selfsubjectrulesreviews'), ('authorization.openshift.io', 'resourceaccessreviews'),
    ('authorization.openshift.io', 'subjectaccessreviews'), ('authorization.openshift.io', 'rolebindingrestrictions'),
    ('security.openshift.io', 'podsecuritypolicyreviews'), ('security.openshift.io', 'podsecuritypolicyselfsubjectreviews'),
    ('security.openshift.io', 'podsecuritypolicysubjectreviews'),
}
# Groups that serve old copies of kinds a newer group serves too: the same objects show in both,
# so a uid seen in the newer group wins.
LEGACY_GROUPS = ('extensions',)

# Cluster-scoped types a selection can depend on; the graph decides which objects of them to keep.
CLUSTER_DEPENDENCIES = [
    ('', 'namespaces'), ('', 'persistentvolumes'), ('storage.k8s.io', 'storageclasses'),
    ('scheduling.k8s.io', 'priorityclasses'), ('rbac.authorization.k8s.io', 'clusterroles'),
    ('rbac.authorization.k8s.io', 'clusterrolebindings'), ('networking.k8s.io', 'ingressclasses'),
    ('node.k8s.io', 'runtimeclasses'),
]


class Selection:
    """What to capture: namespaces (names or shell patterns), a label selector, resource filters."""

    def __init__(self, namespaces=None, exclude_namespaces=None, label_selector=None, include_resources=None, exclude_resources=None):
        self.namespaces = list(namespaces or [])
        self.exclude_namespaces = list(exclude_namespaces or [])
        self.label_selector = label_selector or None
        self.include_resources = [r.lower() for r in include_resources or []]
        self.exclude_resources = [r.lower() for r in exclude_resources or []]
        if not self.namespaces:
            raise FerryError('select at least one namespace (names or patterns such as "shop-*"; "*" selects all)')

    def wants_namespace(self, name):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude_namespaces):
            return False
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.namespaces)

    @property
    def explicit_namespaces(self):
        """The namespace names when no pattern is used, else None."""
        if any(set(pattern) & set('*?[') for pattern in self.namespaces):
            return None
        return sorted(set(self.namespaces))

    def wants_type(self, entry):
        names = _type_names(entry)
        if self.include_resources and not names & set(self.include_resources):
            return False
        return not names & set(self.exclude_resources)


def _type_names(entry):
    """Every way a user may name a type: resource, resource.group, kind, kind.group, short names."""
    names = {entry['resource'], entry['kind'].lower()}
    names.update(short.lower() for short in entry['short_names'])
    if entry['group']:
        names.update('%s.%s' % (name, entry['group']) for name in list(names))
    return names


def namespaced_types(discovery, selection):
    """One discovery entry per namespaced, listable type: the group's preferred version when served."""
    chosen = {}
    for entry in discovery:
        if entry['subresource'] or not entry['namespaced'] or 'list' not in entry['verbs']:
            continue
        if entry['group'] in SKIPPED_GROUPS or (entry['group'], entry['resource']) in SKIPPED_RESOURCES:
            continue
        if not selection.wants_type(entry):
            continue
        key = (entry['group'], entry['resource'])
        if key not in chosen or (entry['preferred'] and not chosen[key]['preferred']):
            chosen[key] = entry
    # legacy groups last, so their duplicates of a newer group's objects are recognised by uid
    return sorted(chosen.values(), key=lambda e: (e['group'] in LEGACY_GROUPS, e['group'], e['resource']))


def cluster_types(discovery):
    """Discovery entries of the cluster-scoped dependency types the cluster serves."""
    wanted = {key: None for key in CLUSTER_DEPENDENCIES}
    for entry in discovery:
        key = (entry['group'], entry['resource'])
        if key in wanted and not entry['subresource'] and 'list' in entry['verbs']:
            if wanted[key] is None or entry['preferred']:
                wanted[key] = entry
    return [entry for entry in wanted.values() if entry is not None]


def list_all(cluster, path, label_selector=None):
    """Every item of a list, page by page, each with its apiVersion and kind filled in."""
    items, query = [], {'limit': PAGE_SIZE}
    if label_selector:
        query['labelSelector'] = label_selector
    while True:
        page = cluster.get(path, **query)
        api_version, list_kind = page.get('apiVersion'), page.get('kind') or ''
        if api_version and list_kind.endswith('List'):  # items of a list carry no apiVersion and kind of their own
            for item in page.get('items') or []:
                item.setdefault('apiVersion', api_version)
                item.setdefault('kind', list_kind[:-len('List')])
        items.extend(page.get('items') or [])
        token = (page.get('metadata') or {}).get('continue')
        if not token:
            return items
        query['continue'] = token


class Inventory:
    """The objects of a selection plus the cluster-scoped objects they may depend on, as listed now."""

    def __init__(self, cluster, selection, workers=LIST_WORKERS):
        self.cluster = cluster
        self.selection = selection
        self.workers = workers
        self.objects = []          # namespaced objects in the selection (label selector applied)
        self.unlabelled = []       # namespaced objects outside a label selector: candidates for dependencies
        self.cluster_objects = []  # cluster-scoped objects of CLUSTER_DEPENDENCIES types
        self.namespaces = []
        self.types = []
        self.warnings = []

    def collect(self):
        discovery = self.cluster.discovery()
        self.types = namespaced_types(discovery, self.selection)
        namespace_entry = [e for e in cluster_types(discovery) if e['resource'] == 'namespaces']
        all_namespaces = [item['metadata']['name'] for item in list_all(self.cluster, collection_path(namespace_entry[0]))] if namespace_entry else []
        self.namespaces = sorted(name for name in all_namespaces if self.selection.wants_namespace(name))
        if not self.namespaces:
            raise FerryError('no namespace of cluster %s matches %s (excluding %s); it has: %s'
                             % (self.cluster.name, self.selection.namespaces, self.selection.exclude_namespaces or 'none',
                                ', '.join(all_namespaces[:30]) or 'none'))
        jobs = []
        per_namespace = len(self.namespaces) <= PER_NAMESPACE_LIMIT
        for entry in self.types:
            scopes = self.namespaces if per_namespace else [None]
            for namespace in scopes:
                jobs.append(('namespaced', entry, namespace))
        jobs.extend(('cluster', entry, None) for entry in cluster_types(discovery))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-list') as pool:
            results = list(pool.map(self._list, jobs))
        self._gather(jobs, results)
        return self

    def _list(self, job):
        scope, entry, namespace = job
        path = collection_path(entry, namespace) if namespace else _all_namespaces_path(entry)
        try:
            return list_all(self.cluster, path)
        except ApiError as exc:
            if exc.status in (403, 404, 405, 503):
                what = '%s.%s' % (entry['resource'], entry['group']) if entry['group'] else entry['resource']
                self.warnings.append('%s not captured%s: %s' % (what, ' in %s' % namespace if namespace else '', exc.message))
                return []
            raise

    def _gather(self, jobs, results):
        wanted = set(self.namespaces)
        selector = self.selection.label_selector
        seen_uids = set()
        matches = _selector_matcher(selector) if selector else None
        for (scope, entry, namespace), items in zip(jobs, results):
            if scope == 'cluster':
                self.cluster_objects.extend(items)
                continue
            for item in items:
                meta = item.get('metadata') or {}
                if meta.get('namespace') not in wanted:
                    continue
                uid = meta.get('uid')
                if uid:
                    if uid in seen_uids:
                        continue  # the same object served by a legacy group too
                    seen_uids.add(uid)
                if matches is None or matches(meta.get('labels') or {}):
                    self.objects.append(item)
                else:
                    self.unlabelled.append(item)


def _all_namespaces_path(entry):
    base = '/api/%s' % entry['version'] if entry['group'] == '' else '/apis/%s' % entry['group_version']
    return '%s/%s' % (base, entry['resource'])


def _selector_matcher(selector):
    """A matcher for a label selector string (equality, inequality, set-based, existence)."""
    requirements = selectors.parse_selector(selector)
    return lambda labels: selectors.matches(requirements, labels)
