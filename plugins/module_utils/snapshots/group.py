# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshot all volumes of an app together, between its pre- and post-hooks, and clean up after.

Each sync records what it made in a ConfigMap per namespace (``ferry-<sync>-snapshots``), so a
later run, or the clean-up after an interrupted one, finds every temporary snapshot, PVC, PV and
cloud resource, including those of cloud providers the cluster itself cannot list.
"""

from __future__ import annotations

import json
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.snapshots import csi, hooks
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import (
    CLOUD_OPTION, MANAGED_BY, SYNC_LABEL, TEMP_LABEL, Volume, choose_mechanism, temp_name,
)


class LiveRead:
    """No snapshot: agents read the live PVC (after the pre-hooks; post-hooks wait for the read)."""
    mechanism = 'live-read'

    def __init__(self, cluster, sync_id):
        self.cluster = cluster
        self.sync_id = sync_id

    def take(self, volume, _snapshot_class=None):
        return {'mechanism': self.mechanism, 'namespace': volume.namespace, 'snapshot': None}

    def wait_cut(self, ref, timeout):
        pass

    def wait_ready(self, ref, timeout):
        pass

    def expose(self, ref, volume):
        ref['pvc'] = volume.name
        ref['live'] = True
        return volume.name

    def cleanup(self, ref):
        return []


def load_volumes(cluster, namespace, pvc_names=None):
    """Bound PVCs of a namespace (all, or the named ones) with their PVs."""
    pvcs = cluster.get('/api/v1/namespaces/%s/persistentvolumeclaims' % namespace).get('items') or []
    found = {p['metadata']['name']: p for p in pvcs if (p['metadata'].get('labels') or {}).get(TEMP_LABEL) != 'true'}
    names = list(pvc_names) if pvc_names else sorted(found)
    missing = [n for n in names if n not in found]
    if missing:
        raise FerryError('namespace %s has no PVC %s' % (namespace, ', '.join(missing)))
    volumes = []
    for name in names:
        pvc = found[name]
        if (pvc.get('status') or {}).get('phase') != 'Bound':
            raise FerryError('PVC %s/%s is %s, not Bound: there is no data to snapshot yet'
                             % (namespace, name, (pvc.get('status') or {}).get('phase', 'Pending')))
        pv = cluster.get('/api/v1/persistentvolumes/%s' % pvc['spec']['volumeName'])
        volumes.append(Volume(pvc, pv))
    return volumes


def record_name(sync_id):
    return temp_name(sync_id, 'snapshots')


def save_record(cluster, namespace, sync_id, refs):
    """Write (or replace) the ConfigMap that lists what this sync made in ``namespace``."""
    labels = dict(MANAGED_BY)
    labels.update({TEMP_LABEL: 'true', SYNC_LABEL: sync_id})
    body = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': record_name(sync_id), 'namespace': namespace, 'labels': labels},
            'data': {'refs.json': json.dumps(refs, sort_keys=True)}}
    path = '/api/v1/namespaces/%s/configmaps' % namespace
    try:
        cluster.request('POST', path, body=body)
    except ApiError as exc:
        if exc.status != 409:
            raise
        cluster.request('PUT', '%s/%s' % (path, body['metadata']['name']), body=body)


def load_record(cluster, namespace, sync_id):
    try:
        config = cluster.get('/api/v1/namespaces/%s/configmaps/%s' % (namespace, record_name(sync_id)))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads((config.get('data') or {}).get('refs.json') or '[]')


def delete_record(cluster, namespace, sync_id):
    csi.delete_path(cluster, '/api/v1/namespaces/%s/configmaps/%s' % (namespace, record_name(sync_id)))


class AppSnapshot:
    """Takes, exposes and removes the snapshots of one app's volumes for one sync."""

    def __init__(self, cluster, sync_id, providers):
        self.cluster = cluster
        self.sync_id = sync_id
        self.providers = providers  # mechanism -> provider

    def plan(self, volumes, forced=None):
        classes = self.cluster.get('/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses').get('items') or [] \
            if self.cluster.find_resource(resource='volumesnapshotclasses', group='snapshot.storage.k8s.io') else []
        clouds = [m for m in self.providers if m not in ('csi-snapshot', 'live-read')]
        plans = []
        for volume in volumes:
            mechanism, snap_class, reason = choose_mechanism(volume, classes, clouds, forced)
            if mechanism not in self.providers:
                raise FerryError('volume %s needs the %s snapshot API; give its credentials (option "%s")'
                                 % (volume.key, mechanism, CLOUD_OPTION.get(mechanism, mechanism)))
            plans.append({'volume': volume, 'mechanism': mechanism, 'snapshot_class': snap_class, 'reason': reason})
        return plans

    def take(self, plans, pods, timeout=300, expose=True, run_hooks=True):
        """Snapshot all planned volumes together; returns per-volume results. Cleans up on failure."""
        started = time.monotonic()
        volumes = [p['volume'] for p in plans]
        hook_pods = hooks.pods_using(pods, volumes) if run_hooks else []
        pre = [h for h in (hooks.hooks_of(p, 'pre') for p in hook_pods) if h]
        post = [h for h in (hooks.hooks_of(p, 'post') for p in hook_pods) if h]
        refs, results, hook_results = [], [], []
        live = any(p['mechanism'] == 'live-read' for p in plans)
        post_ran = False
        try:
            hook_results += hooks.run_hooks(self.cluster, pre)
            try:
                for plan in plans:
                    ref = self.providers[plan['mechanism']].take(plan['volume'], plan['snapshot_class'])
                    ref.update(source_pvc=plan['volume'].name, mechanism=plan['mechanism'])
                    refs.append(ref)
                    self._save(refs, post if live else [])
                for ref in refs:
                    self.providers[ref['mechanism']].wait_cut(ref, timeout)
            finally:
                if not live:  # with a live read, the app stays quiesced until the data is read (release())
                    post_ran = True
                    hook_results += hooks.run_hooks(self.cluster, post)
            for plan, ref in zip(plans, refs):
                provider = self.providers[ref['mechanism']]
                provider.wait_ready(ref, timeout)
                if expose:
                    provider.expose(ref, plan['volume'])
                self._save(refs, post if live else [])
                results.append(dict(plan['volume'].summary(), mechanism=ref['mechanism'], reason=plan['reason'],
                                    snapshot=ref.get('snapshot'), snapshot_class=plan['snapshot_class'], exposed_pvc=ref.get('pvc'),
                                    point_in_time=ref.get('creation_time'), consistency=_consistency(ref['mechanism'], pre)))
        except Exception:
            self.cleanup_refs(refs)
            for namespace in {r['namespace'] for r in refs}:
                delete_record(self.cluster, namespace, self.sync_id)
            if live or not post_ran:  # a pre-hook failed, or the data will not be read: no pod stays quiesced
                try:
                    hooks.run_hooks(self.cluster, post)
                except FerryError:
                    pass  # the first error is the one to report
            raise
        return {'volumes': results, 'hooks': hook_results, 'duration': round(time.monotonic() - started, 3)}

    def _save(self, refs, deferred_post_hooks):
        by_namespace = {}
        for ref in refs:
            by_namespace.setdefault(ref['namespace'], []).append(ref)
        for namespace, items in by_namespace.items():
            record = {'refs': items, 'post_hooks': [h.describe() for h in deferred_post_hooks if h.namespace == namespace]}
            save_record(self.cluster, namespace, self.sync_id, record)

    def cleanup_refs(self, refs):
        removed = []
        for ref in refs:
            removed += self.providers[ref['mechanism']].cleanup(ref) if ref['mechanism'] in self.providers else []
        return removed

    def release(self, namespaces):
        """After the data is read: deferred post-hooks, then delete everything this sync recorded."""
        removed, hook_results = [], []
        for namespace in namespaces:
            record = load_record(self.cluster, namespace, self.sync_id)
            if record is None:
                continue
            deferred = [hooks.Hook.from_record(h) for h in record.get('post_hooks') or []]
            hook_results += hooks.run_hooks(self.cluster, deferred)
            removed += self.cleanup_refs(record.get('refs') or [])
            delete_record(self.cluster, namespace, self.sync_id)
        return removed, hook_results


def _consistency(mechanism, pre_hooks):
    if mechanism == 'live-read':
        return 'application-quiesced' if pre_hooks else 'live (files may change while read)'
    return 'application-consistent' if pre_hooks else 'crash-consistent'


def sweep(cluster, namespaces, keep_sync_ids=(), providers_for=None):
    """Remove temporary objects and records of syncs that are not running (crashed or interrupted).

    With ``providers_for(sync_id)`` (the snapshot providers of that sync), what a leftover record lists
    is released too: deferred post-hooks run, cloud snapshots and volumes are deleted.
    """
    removed = []
    selector = '%s=true,app.kubernetes.io/managed-by=ferry' % TEMP_LABEL
    for namespace in namespaces:
        for config in cluster.get('/api/v1/namespaces/%s/configmaps' % namespace, labelSelector=selector).get('items') or []:
            sync_id = (config['metadata'].get('labels') or {}).get(SYNC_LABEL)
            if sync_id in keep_sync_ids:
                continue
            if providers_for is not None and sync_id:
                released, _hooks = AppSnapshot(cluster, sync_id, providers_for(sync_id)).release([namespace])
                removed += released + ['configmap %s/%s' % (namespace, config['metadata']['name'])]
            else:
                removed += csi.delete_path(cluster, '/api/v1/namespaces/%s/configmaps/%s' % (namespace, config['metadata']['name']))
    return removed + csi.sweep(cluster, namespaces, keep_sync_ids)
