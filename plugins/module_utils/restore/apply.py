# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply one desired object to the target under an existing-object policy.

- ``skip``: an existing object is left alone.
- ``update``: three-way: fields Ferry set last time and no longer wants are removed, fields it
  wants are set, fields others set (defaults, controllers, other tools) are kept. What Ferry set
  is remembered as the object's *shape* (field names only, never values, so a Secret's data does
  not end up in an annotation).
- ``replace``: the object is replaced by the desired one; when the API refuses because a field is
  immutable, it is deleted and created again.

An object whose live state already holds every desired field is unchanged, whatever the policy:
that is what makes a second identical restore change nothing.
"""

from __future__ import annotations

import json
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import (
    create_object, delete_object, get_object, object_path, replace_object)

SHAPE_ANNOTATION = 'ferry.dev/restored-fields'
POLICIES = ('skip', 'update', 'replace')
MERGE_PATCH = 'application/merge-patch+json'
SERVER_OWNED = ('uid', 'resourceVersion', 'managedFields', 'generation', 'creationTimestamp', 'selfLink')
HIDDEN = '<hidden>'
LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'


def shape(value):
    """Field names of a document, recursively; lists and values become None (merge patch replaces lists whole)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return None


def contained(desired, live):
    """Whether ``live`` holds every field of ``desired`` with the same value (extra live fields are fine; a null field may be absent)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(contained(value, live[key]) if key in live else value is None for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(contained(d, v) for d, v in zip(desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live  # JSON true is not 1
    return desired == live  # numbers as numbers: 1 == 1.0


def three_way_patch(last_shape, desired, live):
    """The merge patch taking ``live`` to ``desired``, removing fields in ``last_shape`` no longer desired."""
    patch = {}
    last_shape = last_shape if isinstance(last_shape, dict) else {}
    live = live if isinstance(live, dict) else {}
    for key, value in desired.items():
        if isinstance(value, dict) and isinstance(live.get(key), dict):
            sub = three_way_patch(last_shape.get(key), value, live[key])
            if sub:
                patch[key] = sub
        elif key not in live or not contained(value, live[key]):
            patch[key] = value
    for key in last_shape:
        if key not in desired and key in live:
            patch[key] = None
    return patch


def with_shape(obj):
    """``obj`` carrying its own shape as an annotation (the shape of the object without it)."""
    desired = json.loads(json.dumps(obj))
    annotations = desired.setdefault('metadata', {}).setdefault('annotations', {})
    annotations.pop(SHAPE_ANNOTATION, None)
    if not annotations:
        del desired['metadata']['annotations']
    recorded = json.dumps(shape(desired), separators=(',', ':'), sort_keys=True)
    desired['metadata'].setdefault('annotations', {})[SHAPE_ANNOTATION] = recorded
    return desired


def without_shape(obj):
    result = json.loads(json.dumps(obj))
    annotations = (result.get('metadata') or {}).get('annotations')
    if annotations:
        annotations.pop(SHAPE_ANNOTATION, None)
        if not annotations:
            del result['metadata']['annotations']
    return result


def recorded_shape(live):
    text = ((live.get('metadata') or {}).get('annotations') or {}).get(SHAPE_ANNOTATION)
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def for_diff(obj):
    """An object as a diff shows it: without server bookkeeping, secret values hidden."""
    if obj is None:
        return {}
    shown = json.loads(json.dumps(obj))
    meta = shown.get('metadata') or {}
    for field in SERVER_OWNED:
        meta.pop(field, None)
    (meta.get('annotations') or {}).pop(SHAPE_ANNOTATION, None)
    shown.pop('status', None)
    if shown.get('kind') == 'Secret':
        for field in ('data', 'stringData'):
            if isinstance(shown.get(field), dict):
                shown[field] = {key: HIDDEN for key in shown[field]}
        annotations = meta.get('annotations') or {}
        if LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = HIDDEN  # kubectl apply keeps the whole Secret there, in clear
    return shown


class Applier:
    """Applies desired objects to one cluster; thread-safe (one per restore)."""

    def __init__(self, cluster, policy='update', dry_run=False, delete_timeout=60.0):
        if policy not in POLICIES:
            raise FerryError('existing=%r is not a policy: choose one of %s' % (policy, ', '.join(POLICIES)))
        self.cluster = cluster
        self.policy = policy
        self.dry_run = dry_run
        self.delete_timeout = delete_timeout

    def apply(self, obj):
        """``{'action', 'reason', 'before', 'after', 'uid'}`` for one object; raises ApiError/FerryError on failure."""
        meta = obj.get('metadata') or {}
        live = get_object(self.cluster, obj['apiVersion'], obj['kind'], meta.get('name'), meta.get('namespace'))
        desired = with_shape(obj)
        if live is None:
            created = create_object(self.cluster, desired, dry_run=self.dry_run)
            return self._outcome('created', 'did not exist', None, created or desired)
        if contained(without_shape(obj), live):
            return self._outcome('unchanged', 'already as restored', live, live)
        if self.policy == 'skip':
            return self._outcome('skipped', 'exists and differs; existing=skip leaves it (use update or replace)', live, live)
        if self.policy == 'update':
            patch = three_way_patch(recorded_shape(live), desired, live)
            try:
                after = self.cluster.request('PATCH', object_path(self.cluster, desired), query={'dryRun': 'All'} if self.dry_run else None,
                                             body=patch, content_type=MERGE_PATCH)[1]
            except ApiError as exc:
                if exc.status == 422:
                    raise FerryError('%s (a field that cannot change differs: existing=replace deletes and recreates the object)' % exc.message,
                                     status=exc.status) from None
                raise
            return self._outcome('updated', 'differed from the restore point', live, after)
        return self._replace(desired, live)

    def _replace(self, desired, live):
        try:
            after = replace_object(self.cluster, desired, live, dry_run=self.dry_run)
            return self._outcome('replaced', 'differed from the restore point', live, after)
        except ApiError as exc:
            if exc.status != 422:
                raise
        # an immutable field differs: recreate
        delete_object(self.cluster, desired, dry_run=self.dry_run, propagation='Foreground' if not self.dry_run else 'Background')
        if not self.dry_run:
            self._wait_gone(desired)
        created = create_object(self.cluster, desired, dry_run=self.dry_run) if not self.dry_run else desired
        return self._outcome('replaced', 'recreated: an immutable field differed', live, created)

    def _wait_gone(self, obj):
        meta = obj['metadata']
        deadline = time.monotonic() + self.delete_timeout
        while get_object(self.cluster, obj['apiVersion'], obj['kind'], meta['name'], meta.get('namespace')) is not None:
            if time.monotonic() > deadline:
                raise FerryError('%s %s was deleted to be recreated but is still there after %.0f s (finalizers: %s)'
                                 % (obj['kind'], meta['name'], self.delete_timeout, ', '.join(meta.get('finalizers') or []) or 'none'))
            time.sleep(0.2)

    @staticmethod
    def _outcome(action, reason, before, after):
        return {'action': action, 'reason': reason, 'before': before, 'after': after,
                'uid': ((after or {}).get('metadata') or {}).get('uid')}
