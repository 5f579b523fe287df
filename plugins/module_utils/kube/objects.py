# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create, read, replace and delete objects by their apiVersion and kind, as raw JSON.

The REST path comes from the cluster's discovery, so any served type works, custom resources
included. Mutations take ``dry_run`` so check mode is validated by the API server itself.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, ClusterError


def split_api_version(api_version):
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``''``, ``v1``)."""
    group, _sep, version = api_version.rpartition('/')
    return group, version


def resource_for(cluster, api_version, kind):
    """The discovery entry serving ``kind`` at ``api_version``; a clear error when not served."""
    group, version = split_api_version(api_version)
    matches = cluster.find_resource(kind=kind, group=group, version=version)
    if not matches:
        raise ClusterError('%s does not serve %s %s: the API group version is not installed (a missing CRD or an API removed in this Kubernetes version)'
                           % (cluster.name, api_version, kind), api_version=api_version, kind=kind)
    return matches[0]


def collection_path(entry, namespace=None):
    base = '/api/%s' % entry['version'] if entry['group'] == '' else '/apis/%s' % entry['group_version']
    if entry['namespaced']:
        if not namespace:
            raise ClusterError('%s is namespaced: give the object a metadata.namespace' % entry['kind'])
        base += '/namespaces/%s' % namespace
    return '%s/%s' % (base, entry['resource'])


def object_path(cluster, obj):
    entry = resource_for(cluster, obj['apiVersion'], obj['kind'])
    meta = obj.get('metadata') or {}
    return '%s/%s' % (collection_path(entry, meta.get('namespace')), meta['name'])


def _dry_run(dry_run):
    return {'dryRun': 'All'} if dry_run else None


def list_items(cluster, path, absent=(404,)):
    """Items of a list call, or None when the answer is one of the ``absent`` statuses
    (404: the API is not served; 403 where the caller treats "may not read" as "cannot tell")."""
    try:
        return cluster.get(path).get('items') or []
    except ApiError as exc:
        if exc.status in absent:
            return None
        raise


def get_object(cluster, api_version, kind, name, namespace=None):
    """The live object, or None when it does not exist."""
    entry = resource_for(cluster, api_version, kind)
    try:
        return cluster.get('%s/%s' % (collection_path(entry, namespace), name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def create_object(cluster, obj, dry_run=False):
    entry = resource_for(cluster, obj['apiVersion'], obj['kind'])
    path = collection_path(entry, (obj.get('metadata') or {}).get('namespace'))
    return cluster.request('POST', path, query=_dry_run(dry_run), body=obj)[1]


def replace_object(cluster, obj, live, dry_run=False):
    """PUT ``obj`` over ``live`` (optimistic concurrency through live's resourceVersion)."""
    body = dict(obj)
    body['metadata'] = dict(obj.get('metadata') or {})
    body['metadata']['resourceVersion'] = live['metadata']['resourceVersion']
    return cluster.request('PUT', object_path(cluster, obj), query=_dry_run(dry_run), body=body)[1]


def delete_object(cluster, obj, dry_run=False, propagation='Background'):
    """Delete; returns False when it was already gone."""
    body = {'apiVersion': 'v1', 'kind': 'DeleteOptions', 'propagationPolicy': propagation}
    try:
        cluster.request('DELETE', object_path(cluster, obj), query=_dry_run(dry_run), body=body)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True
