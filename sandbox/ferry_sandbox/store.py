"""The single source of truth of one sandbox cluster: objects, resourceVersions, watch events.

Semantics follow the API server where Ferry and ordinary clients can tell: uid, a cluster-wide
monotonic resourceVersion, 409 on stale updates, generation, generateName, finalizers with
deletionTimestamp, ownerReference garbage collection, namespace termination.
"""

import collections
import copy
import datetime
import random
import string
import threading
import uuid

from .errors import ApiError, already_exists, conflict, invalid, not_found
from .selectors import parse_fields, parse_labels

EVENT_HISTORY = 20000


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _suffix():
    return ''.join(random.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))


class Store:
    def __init__(self):
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._rv = 1000
        self._objects = collections.defaultdict(dict)   # (group, resource) -> {(namespace, name): obj}
        self._types = {}                                  # (group, resource) -> ResourceType
        self._events = collections.deque(maxlen=EVENT_HISTORY)  # (rv, type, group, resource, obj)
        self._subscribers = []
        self.admission = []   # fn(op, group, resource, obj, old) -> None; may mutate obj or raise ApiError

    # -- types ---------------------------------------------------------------------------------
    def register_type(self, rtype):
        with self._lock:
            self._types[rtype.key] = rtype

    def unregister_type(self, group, resource):
        with self._lock:
            self._types.pop((group, resource), None)
            removed = self._objects.pop((group, resource), {})
        for obj in removed.values():
            self._notify([('DELETED', group, resource, obj)])

    def rtype(self, group, resource):
        rtype = self._types.get((group, resource))
        if rtype is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        return rtype

    def types(self):
        with self._lock:
            return list(self._types.values())

    # -- reads -----------------------------------------------------------------------------------
    @property
    def resource_version(self):
        return self._rv

    def get(self, group, resource, namespace, name):
        with self._lock:
            obj = self._objects[(group, resource)].get((namespace or None, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get_ref(self, group, resource, namespace, name):
        """The stored object itself (read-only use, no copy): for fast serialisation."""
        return self._objects[(group, resource)].get((namespace or None, name))

    def list_refs(self, group, resource, namespace=None, label_selector=None, field_selector=None):
        labels_ok = parse_labels(label_selector)
        fields_ok = parse_fields(field_selector)
        with self._lock:
            items = list(self._objects[(group, resource)].items())
        result = []
        for (ns, _name), obj in items:
            if namespace and ns != namespace:
                continue
            if not labels_ok(obj['metadata'].get('labels')) or not fields_ok(obj):
                continue
            result.append(obj)
        result.sort(key=lambda o: (o['metadata'].get('namespace') or '', o['metadata']['name']))
        return result

    def list(self, group, resource, namespace=None, label_selector=None, field_selector=None):
        return copy.deepcopy(self.list_refs(group, resource, namespace, label_selector, field_selector))

    # -- writes ----------------------------------------------------------------------------------
    def create(self, group, resource, obj, dry_run=False):
        rtype = self.rtype(group, resource)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault('metadata', {})
        with self._lock:
            if not meta.get('name'):
                if meta.get('generateName'):
                    meta['name'] = meta['generateName'] + _suffix()
                else:
                    raise invalid(rtype.kind, None, 'metadata.name: Required value: name or generateName is required')
            namespace = meta.get('namespace') if rtype.namespaced else None
            if rtype.namespaced:
                if not namespace:
                    raise invalid(rtype.kind, meta['name'], 'metadata.namespace: Required value')
                ns = self._objects[('', 'namespaces')].get((None, namespace))
                if ns is None:
                    raise not_found('', 'namespaces', namespace)
                if ns['metadata'].get('deletionTimestamp'):
                    raise ApiError(403, 'Forbidden', '%s "%s" is forbidden: unable to create new content in namespace %s because it is being terminated'
                                   % (resource, meta['name'], namespace), {'name': meta['name'], 'kind': resource})
            else:
                meta.pop('namespace', None)
            if (namespace, meta['name']) in self._objects[(group, resource)]:
                raise already_exists(group, resource, meta['name'])
            obj['apiVersion'] = rtype.group_version(rtype.storage_version)  # stored once; served in any version
            obj['kind'] = rtype.kind
            meta['uid'] = str(uuid.uuid4())
            meta['creationTimestamp'] = now_iso()
            meta['generation'] = 1
            meta.pop('deletionTimestamp', None)
            meta.pop('resourceVersion', None)
            if 'status' in rtype.subresources:
                obj.pop('status', None)  # as the API server: status is the controllers' to write
            for hook in self.admission:
                hook('CREATE', group, resource, obj, None)
            if dry_run:
                return obj
            self._rv += 1
            meta['resourceVersion'] = str(self._rv)
            self._objects[(group, resource)][(namespace, meta['name'])] = obj
            self._record('ADDED', group, resource, obj)
            result = copy.deepcopy(obj)
        self._notify([('ADDED', group, resource, result)])
        return result

    def update(self, group, resource, obj, subresource=None, dry_run=False):
        rtype = self.rtype(group, resource)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault('metadata', {})
        namespace = meta.get('namespace') if rtype.namespaced else None
        events = []
        with self._lock:
            old = self._objects[(group, resource)].get((namespace, meta.get('name')))
            if old is None:
                raise not_found(group, resource, meta.get('name'))
            if meta.get('resourceVersion') and meta['resourceVersion'] != old['metadata']['resourceVersion']:
                raise conflict(group, resource, meta['name'])
            new = self._merge_update(rtype, old, obj, subresource)
            if new == old:
                return copy.deepcopy(old)
            for hook in self.admission:
                hook('UPDATE', group, resource, new, old)
            if dry_run:
                return new
            if new['metadata'].get('deletionTimestamp') and not new['metadata'].get('finalizers'):
                events += self._remove(group, resource, namespace, new['metadata']['name'])
            else:
                self._rv += 1
                new['metadata']['resourceVersion'] = str(self._rv)
                self._objects[(group, resource)][(namespace, new['metadata']['name'])] = new
                self._record('MODIFIED', group, resource, new)
                events.append(('MODIFIED', group, resource, copy.deepcopy(new)))
            result = copy.deepcopy(new)
        self._notify(events)
        return result

    def _merge_update(self, rtype, old, obj, subresource):
        new = copy.deepcopy(old)
        if subresource == 'status':
            new['status'] = obj.get('status', {})
            return new
        keep_status = 'status' in rtype.subresources and rtype.resource != 'namespaces'
        for key in list(new):
            if key not in ('metadata', 'apiVersion', 'kind') and not (keep_status and key == 'status'):
                new.pop(key)
        for key, value in obj.items():
            if key in ('metadata', 'apiVersion', 'kind') or (keep_status and key == 'status'):
                continue
            new[key] = value
        immutable = ('uid', 'creationTimestamp', 'namespace', 'name', 'generation', 'resourceVersion', 'deletionTimestamp', 'selfLink')
        for key, value in obj.get('metadata', {}).items():
            if key not in immutable:
                new['metadata'][key] = value
        for key in ('labels', 'annotations', 'finalizers', 'ownerReferences'):
            if key not in obj.get('metadata', {}):
                new['metadata'].pop(key, None)
        spec_old = {k: v for k, v in old.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}
        spec_new = {k: v for k, v in new.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}
        if spec_old != spec_new:
            new['metadata']['generation'] = old['metadata'].get('generation', 1) + 1
        return new

    def patch_status(self, group, resource, namespace, name, status):
        """Merge ``status`` into the object's status (controllers' convenience)."""
        with self._lock:
            current = self._objects[(group, resource)].get((namespace or None, name))
            if current is None:
                raise not_found(group, resource, name)
            merged = copy.deepcopy(current)
            merged.setdefault('status', {}).update(status)
            if merged == current:
                return copy.deepcopy(current)
            return self.update(group, resource, merged, subresource='status')

    def replace_status(self, group, resource, namespace, name, status):
        """Set the whole status (controllers that own it entirely)."""
        with self._lock:
            current = self._objects[(group, resource)].get((namespace or None, name))
            if current is None:
                raise not_found(group, resource, name)
            if current.get('status') == status:
                return copy.deepcopy(current)
            replaced = copy.deepcopy(current)
            replaced['status'] = status
            return self.update(group, resource, replaced, subresource='status')

    def delete(self, group, resource, namespace, name, propagation='Background', dry_run=False):
        rtype = self.rtype(group, resource)
        namespace = namespace if rtype.namespaced else None
        events = []
        with self._lock:
            obj = self._objects[(group, resource)].get((namespace, name))
            if obj is None:
                raise not_found(group, resource, name)
            if dry_run:
                return copy.deepcopy(obj)
            if resource == 'namespaces':
                events += self._terminate_namespace(obj)
            elif obj['metadata'].get('finalizers'):
                events += self._mark_deleting(group, resource, (namespace, name), obj)
                obj = self._objects[(group, resource)][(namespace, name)]
            else:
                events += self._remove(group, resource, namespace, name, propagation)
            result = copy.deepcopy(obj)
        self._notify(events)
        return result

    def _remove(self, group, resource, namespace, name, propagation='Background'):
        obj = self._objects[(group, resource)].pop((namespace, name), None)
        if obj is None:
            return []
        self._rv += 1
        obj['metadata']['resourceVersion'] = str(self._rv)
        self._record('DELETED', group, resource, obj)
        events = [('DELETED', group, resource, copy.deepcopy(obj))]
        events += self._collect_garbage(obj['metadata']['uid'], propagation)
        if namespace:
            events += self._finish_namespace(namespace)
        return events

    def _commit_modified(self, group, resource, key, obj):
        """Store a changed copy under a new resourceVersion; the MODIFIED event to notify."""
        self._rv += 1
        obj['metadata']['resourceVersion'] = str(self._rv)
        self._objects[(group, resource)][key] = obj
        self._record('MODIFIED', group, resource, obj)
        return ('MODIFIED', group, resource, copy.deepcopy(obj))

    def _mark_deleting(self, group, resource, key, obj):
        """Set deletionTimestamp (once): finalizers keep the object until they are removed."""
        if obj['metadata'].get('deletionTimestamp'):
            return []
        obj = copy.deepcopy(obj)
        obj['metadata']['deletionTimestamp'] = now_iso()
        return [self._commit_modified(group, resource, key, obj)]

    def _collect_garbage(self, owner_uid, propagation):
        events = []
        for (group, resource), objects in list(self._objects.items()):
            for (ns, name), dependent in list(objects.items()):
                refs = dependent['metadata'].get('ownerReferences') or []
                if not any(r.get('uid') == owner_uid for r in refs):
                    continue
                if propagation == 'Orphan':
                    dependent = copy.deepcopy(dependent)
                    dependent['metadata']['ownerReferences'] = [r for r in refs if r.get('uid') != owner_uid]
                    events.append(self._commit_modified(group, resource, (ns, name), dependent))
                elif dependent['metadata'].get('finalizers'):
                    events += self._mark_deleting(group, resource, (ns, name), dependent)
                else:
                    events += self._remove(group, resource, ns, name, propagation)
        return events

    def _terminate_namespace(self, namespace_obj):
        name = namespace_obj['metadata']['name']
        events = []
        if not namespace_obj['metadata'].get('deletionTimestamp'):
            namespace_obj = copy.deepcopy(namespace_obj)
            namespace_obj['metadata']['deletionTimestamp'] = now_iso()
            namespace_obj.setdefault('status', {})['phase'] = 'Terminating'
            events.append(self._commit_modified('', 'namespaces', (None, name), namespace_obj))
        for (group, resource), objects in list(self._objects.items()):
            for (ns, obj_name), obj in list(objects.items()):
                if ns != name:
                    continue
                if obj['metadata'].get('finalizers'):
                    events += self._mark_deleting(group, resource, (ns, obj_name), obj)
                else:
                    obj = objects.pop((ns, obj_name))
                    self._rv += 1
                    obj['metadata']['resourceVersion'] = str(self._rv)
                    self._record('DELETED', group, resource, obj)
                    events.append(('DELETED', group, resource, copy.deepcopy(obj)))
        events += self._finish_namespace(name)
        return events

    def _finish_namespace(self, name):
        namespace_obj = self._objects[('', 'namespaces')].get((None, name))
        if namespace_obj is None or not namespace_obj['metadata'].get('deletionTimestamp'):
            return []
        if any(ns == name for objects in self._objects.values() for (ns, _n) in objects):
            return []
        return self._remove('', 'namespaces', None, name)

    # -- events ----------------------------------------------------------------------------------
    def _record(self, event_type, group, resource, obj):
        self._events.append((self._rv, event_type, group, resource, obj))
        self._changed.notify_all()

    def subscribe(self, fn):
        self._subscribers.append(fn)

    def _notify(self, events):
        for event in events:
            for fn in list(self._subscribers):
                try:
                    fn(*event)
                except Exception:  # pylint: disable=broad-except
                    import traceback  # noqa: E402  pylint: disable=import-outside-toplevel
                    traceback.print_exc()

    def events_after(self, resource_version, timeout):
        """Events with rv > resource_version; waits up to ``timeout`` for the first. None if too old."""
        with self._lock:
            if self._events and resource_version < self._events[0][0] - 1 and len(self._events) == self._events.maxlen:
                return None
            if not any(e[0] > resource_version for e in reversed(self._events)) and timeout > 0:
                self._changed.wait(timeout)
            return [e for e in self._events if e[0] > resource_version]


def new_name(prefix):
    return prefix + ''.join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
