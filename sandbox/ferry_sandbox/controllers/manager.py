"""Runs reconcilers off the store's events, one worker thread, plus a periodic resync.

Reconcilers are functions ``fn(cluster, obj_or_None, key)`` registered per (group, resource); the
key is (namespace, name). A failing reconcile is retried on the next resync.
"""

import collections
import threading
import time
import traceback

RESYNC_SECONDS = 0.25


class Manager:
    def __init__(self, cluster):
        self.cluster = cluster
        self.reconcilers = collections.defaultdict(list)   # (group, resource) -> [fn]
        self.watchers = collections.defaultdict(list)      # (group, resource) -> [fn(event, obj)] for cross-resource triggers
        self.periodic = []                                  # fn(cluster) run every resync
        self._queue = collections.OrderedDict()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name='sandbox-controllers-%s' % cluster.name)

    def register(self, group, resource, fn):
        self.reconcilers[(group, resource)].append(fn)

    def watch(self, group, resource, fn):
        self.watchers[(group, resource)].append(fn)

    def enqueue(self, group, resource, namespace, name):
        with self._lock:
            self._queue[(group, resource, namespace, name)] = True
            self._lock.notify()

    def _on_event(self, event, group, resource, obj):
        meta = obj.get('metadata') or {}
        if (group, resource) in self.reconcilers:
            self.enqueue(group, resource, meta.get('namespace'), meta.get('name'))
        for fn in self.watchers.get((group, resource), ()):
            try:
                fn(event, obj)
            except Exception:  # pylint: disable=broad-except
                traceback.print_exc()

    def start(self):
        self.cluster.store.subscribe(self._on_event)
        for (group, resource) in list(self.reconcilers):
            for obj in self.cluster.store.list_refs(group, resource):
                self.enqueue(group, resource, obj['metadata'].get('namespace'), obj['metadata']['name'])
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            self._lock.notify()
        self._thread.join(5)

    def _run(self):
        last_resync = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if not self._queue:
                    self._lock.wait(RESYNC_SECONDS)
                items = list(self._queue)
                self._queue.clear()
            for group, resource, namespace, name in items:
                self._reconcile(group, resource, namespace, name)
            if time.monotonic() - last_resync >= RESYNC_SECONDS:
                last_resync = time.monotonic()
                for fn in self.periodic:
                    self._safely(fn, self.cluster)

    def _reconcile(self, group, resource, namespace, name):
        obj = self.cluster.store.get(group, resource, namespace, name)
        for fn in self.reconcilers[(group, resource)]:
            self._safely(fn, self.cluster, obj, (namespace, name))

    @staticmethod
    def _safely(fn, *args):
        try:
            fn(*args)
        except Exception:  # pylint: disable=broad-except
            traceback.print_exc()


def owner_ref(obj, controller=True):
    return {'apiVersion': obj['apiVersion'], 'kind': obj['kind'], 'name': obj['metadata']['name'], 'uid': obj['metadata']['uid'],
            'controller': controller, 'blockOwnerDeletion': True}


def owned_by(obj, owner_uid):
    return any(r.get('uid') == owner_uid and r.get('controller') for r in obj['metadata'].get('ownerReferences') or [])


def record_event(cluster, obj, reason, message, event_type='Normal', component='sandbox'):
    """An Event about ``obj``, as kubelets and controllers emit them."""
    meta = obj['metadata']
    namespace = meta.get('namespace') or 'default'
    name = '%s.%x' % (meta['name'], time.monotonic_ns())
    now = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    try:
        cluster.store.create('', 'events', {
            'metadata': {'name': name, 'namespace': namespace},
            'involvedObject': {'kind': obj.get('kind'), 'name': meta['name'], 'namespace': meta.get('namespace'), 'uid': meta.get('uid'),
                               'apiVersion': obj.get('apiVersion')},
            'reason': reason, 'message': message, 'type': event_type, 'source': {'component': component},
            'firstTimestamp': now, 'lastTimestamp': now, 'count': 1, 'reportingComponent': component})
    except Exception:  # pylint: disable=broad-except
        pass  # a namespace being deleted: events are best effort, as in a real cluster
