# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a capture onto a cluster: select, sanitise, transform, convert, apply tier by tier,
re-link owners, and report per object what happened and why.

A failed object does not stop the others: every object is tried in its tier, and the result
names each failure with the API's reason. Objects that need a CRD restored in the same run are
converted only after the CRD is served (discovery is read again after the definitions tier).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import Graph, describe_key, key_of
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import get_object, object_path, split_api_version
from ansible_collections.ferry.kube.plugins.module_utils.restore.apply import MERGE_PATCH, Applier, for_diff
from ansible_collections.ferry.kube.plugins.module_utils.restore.convert import TargetApis, convert
from ansible_collections.ferry.kube.plugins.module_utils.restore.order import in_tiers
from ansible_collections.ferry.kube.plugins.module_utils.restore.sanitize import sanitize, skip_reason

APPLY_WORKERS = 8
CRD_TIMEOUT = 60.0
CHANGING = ('created', 'updated', 'replaced', 'relinked')


class Selection:
    """Which captured objects to restore: namespaces, apps (names from the capture), kinds."""

    def __init__(self, namespaces=None, apps=None, include_kinds=None, exclude_kinds=None):
        self.namespaces = set(namespaces or [])
        self.apps = list(apps or [])
        self.include_kinds = set(include_kinds or [])
        self.exclude_kinds = set(exclude_kinds or [])

    def keys(self, capture):
        """The keys of the selected objects (None: every object)."""
        if self.apps:
            known = {app['name']: app for app in capture.get('apps') or []}
            unknown = [name for name in self.apps if name not in known]
            if unknown:
                raise FerryError('apps %s are not in the restore point; it has: %s' % (', '.join(unknown), ', '.join(sorted(known)) or 'none'))
            wanted = set()
            for name in self.apps:
                wanted.update(known[name]['objects'])
                wanted.update(known[name]['cluster_objects'])
            return wanted
        if self.namespaces:
            return self._brought_by_namespaces(capture)
        return None

    def _brought_by_namespaces(self, capture):
        """The selected namespaces' objects and the cluster-scoped ones they depend on (not those of other namespaces)."""
        objects = capture.get('objects') or []
        plurals = {((o.get('spec') or {}).get('group'), ((o.get('spec') or {}).get('names') or {}).get('kind')):
                   ((o.get('spec') or {}).get('names') or {}).get('plural') for o in objects if o.get('kind') == 'CustomResourceDefinition'}
        graph = Graph(objects, plurals)
        roots = [key for key in graph.nodes if key[2] in self.namespaces or (key[1] == 'Namespace' and key[3] in self.namespaces)]
        return {describe_key(key) for key in graph.closure(roots) if not key[2] or key[2] in self.namespaces}

    def wants(self, obj, selected_keys):
        meta = obj.get('metadata') or {}
        if self.namespaces and meta.get('namespace') and meta['namespace'] not in self.namespaces:
            return False
        if self.namespaces and obj.get('kind') == 'Namespace' and meta.get('name') not in self.namespaces:
            return False
        if self.include_kinds and obj.get('kind') not in self.include_kinds:
            return False
        if obj.get('kind') in self.exclude_kinds:
            return False
        return selected_keys is None or describe_key(key_of(obj)) in selected_keys


class Restore:
    """``Restore(cluster, capture, transforms, ...).run()`` -> the result dict."""

    def __init__(self, cluster, capture, transforms, selection=None, existing='update', dry_run=False, restore_pvs='static',
                 workers=APPLY_WORKERS, diff=False):
        self.cluster = cluster
        self.capture = capture
        self.transforms = transforms
        self.selection = selection or Selection()
        self.applier = Applier(cluster, existing, dry_run)
        self.dry_run = dry_run
        self.restore_pvs = restore_pvs
        self.workers = workers
        self.diff = diff
        self.results = []
        self.diffs = []
        self.created_namespaces = set()

    # -- planning -------------------------------------------------------------------------------
    def plan(self):
        """``[(captured object, desired object)]``: sanitised and transformed, not yet converted. Excluded ones are recorded with reasons."""
        objects = self.capture.get('objects') or []
        index = {(o.get('kind'), (o.get('metadata') or {}).get('namespace'), (o.get('metadata') or {}).get('name')): o for o in objects}
        selected = self.selection.keys(self.capture)
        restored_pvs = set()
        candidates = []
        for obj in objects:
            if not self.selection.wants(obj, selected):
                continue
            reason = skip_reason(obj, index, self.restore_pvs)
            if reason is None and obj.get('kind') == 'StorageClass' and obj['metadata']['name'] in self.transforms.storage_class_mapping:
                reason = 'storage class mapped to %s on the target' % self.transforms.storage_class_mapping[obj['metadata']['name']]
            if reason is not None:
                self._record(obj, 'excluded', reason)
                continue
            if obj.get('kind') == 'PersistentVolume':
                restored_pvs.add(obj['metadata']['name'])
            candidates.append(obj)
        return [(obj, self.transforms.apply(sanitize(obj, pv_restored=restored_pvs.__contains__))) for obj in candidates]

    # -- running --------------------------------------------------------------------------------
    def run(self):
        started = time.monotonic()
        pairs = self.plan()
        by_name = {(o['kind'], o['metadata'].get('namespace'), o['metadata']['name']): o for source, o in pairs}
        target = None
        uid_map = {}  # source uid -> (apiVersion, kind, name, target uid)
        for tier, work in in_tiers(pairs, obj_of=lambda pair: pair[1]):
            if target is None or tier != 'definitions' and target.stale:
                target = _Target(self.cluster)
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix='ferry-restore') as pool:
                outcomes = list(pool.map(lambda pair: self._restore_one(pair[1], target.apis, by_name), work))
            for (source, obj), outcome in zip(work, outcomes):
                for applied, result in outcome:
                    if result.get('uid'):
                        target_ref = (applied['apiVersion'], applied['kind'], applied['metadata']['name'], result['uid'])
                        uid_map[(source.get('metadata') or {}).get('uid')] = target_ref
            if tier == 'definitions':
                self._wait_for_definitions([obj for source, obj in work])
                target.stale = True
            if tier == 'namespaces':
                self.created_namespaces = {r['name'] for r in self.results if r['kind'] == 'Namespace' and r['action'] == 'created'}
        self._relink_owners(pairs, uid_map)
        return self._result(started)

    def _restore_one(self, obj, apis, by_name):
        conversion = convert(obj, apis, lambda kind, namespace, name: by_name.get((kind, namespace, name)))
        if conversion.unconvertible:
            if self.dry_run and _defined_in(obj, by_name):
                self._record(obj, 'created', 'would be created once its CustomResourceDefinition is (not validated in check mode)')
            else:
                self._record(obj, 'unconvertible', conversion.unconvertible)
            return []
        done = []
        for converted in conversion.objects:
            try:
                outcome = self.applier.apply(converted)
            except (ApiError, FerryError) as exc:
                if not self._in_new_namespace(converted, exc):
                    self._record(converted, 'failed', getattr(exc, 'message', str(exc)), converted_from=conversion.converted_from,
                                 notes=conversion.notes, status=getattr(exc, 'status', None))
                    continue
                # a dry run did not create its namespace, so the server could not validate it
                outcome = {'action': 'created', 'reason': 'would be created in a namespace this restore creates (not validated in check mode)',
                           'before': None, 'after': converted, 'uid': None}
            self._record(converted, outcome['action'], outcome['reason'], converted_from=conversion.converted_from, notes=conversion.notes)
            if self.diff and outcome['action'] in CHANGING:
                self.diffs.append({'before_header': _header(converted), 'after_header': _header(converted),
                                   'before': for_diff(outcome['before']), 'after': for_diff(outcome['after'])})
            done.append((converted, outcome))
        return done

    def _in_new_namespace(self, obj, exc):
        namespace = (obj.get('metadata') or {}).get('namespace')
        return self.dry_run and getattr(exc, 'status', None) == 404 and namespace in self.created_namespaces

    def _record(self, obj, action, reason, converted_from=None, notes=None, status=None):
        meta = obj.get('metadata') or {}
        entry = {'kind': obj.get('kind'), 'api_version': obj.get('apiVersion'), 'namespace': meta.get('namespace'), 'name': meta.get('name'),
                 'action': action, 'reason': reason}
        if converted_from:
            entry['converted_from'] = converted_from
        if notes:
            entry['notes'] = list(notes)
        if status:
            entry['status'] = status
        self.results.append(entry)

    def _wait_for_definitions(self, definitions):
        """CRDs are usable once Established: wait, so their custom resources are not refused."""
        if self.dry_run:
            return
        deadline = time.monotonic() + CRD_TIMEOUT
        for crd in definitions:
            name = crd['metadata']['name']
            while True:
                live = get_object(self.cluster, 'apiextensions.k8s.io/v1', 'CustomResourceDefinition', name)
                conditions = {c.get('type'): c.get('status') for c in ((live or {}).get('status') or {}).get('conditions') or []}
                if conditions.get('Established') == 'True':
                    break
                if time.monotonic() > deadline:
                    for entry in self.results:
                        if entry['kind'] == 'CustomResourceDefinition' and entry['name'] == name:
                            entry.update(action='failed', reason='not Established after %.0f s: its custom resources will fail' % CRD_TIMEOUT)
                    break
                time.sleep(0.25)

    def _relink_owners(self, pairs, uid_map):
        """Owner references point at owners by uid: re-point them at the restored owners."""
        applied = {(r['kind'], r['namespace'], r['name']): r for r in self.results if r['action'] in ('created', 'updated', 'replaced', 'unchanged')}
        for source, obj in pairs:
            references = []
            for owner in (source.get('metadata') or {}).get('ownerReferences') or []:
                mapped = uid_map.get(owner.get('uid'))
                if mapped is not None:
                    reference = {'apiVersion': mapped[0], 'kind': mapped[1], 'name': mapped[2], 'uid': mapped[3]}
                    for flag in ('controller', 'blockOwnerDeletion'):
                        if flag in owner:
                            reference[flag] = owner[flag]
                    references.append(reference)
            meta = obj.get('metadata') or {}
            if not references or (obj['kind'], meta.get('namespace'), meta.get('name')) not in applied or self.dry_run:
                continue
            live = get_object(self.cluster, obj['apiVersion'], obj['kind'], meta['name'], meta.get('namespace')) or {}
            current = [{k: v for k, v in ref.items() if k in ('apiVersion', 'kind', 'name', 'uid', 'controller', 'blockOwnerDeletion')}
                       for ref in (live.get('metadata') or {}).get('ownerReferences') or []]
            if current == references:
                continue
            try:
                self.cluster.request('PATCH', object_path(self.cluster, obj), body={'metadata': {'ownerReferences': references}}, content_type=MERGE_PATCH)
                entry = applied[(obj['kind'], meta.get('namespace'), meta.get('name'))]
                if entry['action'] == 'unchanged':
                    entry['action'], entry['reason'] = 'relinked', 'owner references re-pointed at the restored owners'
            except ApiError as exc:
                self._record(obj, 'failed', 'could not re-link its owners: %s' % exc.message)

    def _result(self, started):
        counts = {}
        for entry in self.results:
            counts[entry['action']] = counts.get(entry['action'], 0) + 1
        failed = [entry for entry in self.results if entry['action'] == 'failed']
        return {
            'changed': any(entry['action'] in CHANGING for entry in self.results),
            'objects': self.results,
            'counts': counts,
            'failures': failed,
            'unconvertible': [entry for entry in self.results if entry['action'] == 'unconvertible'],
            'diff': self.diffs,
            'seconds': round(time.monotonic() - started, 3),
        }


class _Target:
    """The target's served APIs, read again once definitions were restored."""

    def __init__(self, cluster):
        self.apis = TargetApis(cluster.discovery(refresh=True))
        self.stale = False


def _defined_in(obj, by_name):
    """Whether a CRD restored in this run defines ``obj``'s kind."""
    group = split_api_version(obj.get('apiVersion') or 'v1')[0]
    for (kind, namespace, name), candidate in by_name.items():
        spec = candidate.get('spec') or {}
        if kind == 'CustomResourceDefinition' and spec.get('group') == group and (spec.get('names') or {}).get('kind') == obj.get('kind'):
            return True
    return False


def _header(obj):
    meta = obj.get('metadata') or {}
    group = split_api_version(obj.get('apiVersion') or 'v1')[0]
    kind = '%s.%s' % (obj['kind'], group) if group else obj['kind']
    return '%s %s/%s' % (kind, meta.get('namespace') or '', meta.get('name'))
