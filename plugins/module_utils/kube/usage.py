# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apps (one per Service: a micro-service) and the volume data each replicates, for accounting.

A Service's app owns the PVCs mounted by the pods it selects, and the claims of the workloads
whose pod templates it selects (StatefulSet volumeClaimTemplates included), so an app with no
running pod still counts its data. A PVC used by several apps counts once, for the first app by
name, so the pooled total is never inflated.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import list_items
from ansible_collections.ferry.kube.plugins.module_utils.snapshots.volumes import parse_quantity

GIB = 2 ** 30
WORKLOADS = (('apps/v1', 'deployments'), ('apps/v1', 'statefulsets'), ('apps/v1', 'daemonsets'), ('apps/v1', 'replicasets'), ('batch/v1', 'jobs'))


def _selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def _claims_of_pod_spec(spec):
    return {(v.get('persistentVolumeClaim') or {}).get('claimName') for v in (spec or {}).get('volumes') or []} - {None}


def _list(cluster, path):
    return list_items(cluster, path) or []  # a workload API the cluster does not serve has no apps


def namespace_apps(cluster, namespace):
    """[{name, namespace, pvcs: [...], bytes}] for every Service of the namespace that selects pods."""
    base = '/api/v1/namespaces/%s' % namespace
    services = _list(cluster, base + '/services')
    pods = _list(cluster, base + '/pods')
    claims = {c['metadata']['name']: c for c in _list(cluster, base + '/persistentvolumeclaims')}
    workloads = []
    for api_version, resource in WORKLOADS:
        workloads += _list(cluster, '/apis/%s/namespaces/%s/%s' % (api_version, namespace, resource))
    apps, counted = [], set()
    for service in sorted(services, key=lambda s: s['metadata']['name']):
        selector = (service.get('spec') or {}).get('selector')
        if not selector:
            continue  # no selector: endpoints managed elsewhere, not a micro-service of this namespace
        used = set()
        for pod in pods:
            if _selects(selector, pod['metadata'].get('labels')):
                used |= _claims_of_pod_spec(pod.get('spec'))
        for workload in workloads:
            template = (workload.get('spec') or {}).get('template') or {}
            if not _selects(selector, (template.get('metadata') or {}).get('labels')):
                continue
            used |= _claims_of_pod_spec(template.get('spec'))
            for claim_template in (workload.get('spec') or {}).get('volumeClaimTemplates') or []:
                prefix = '%s-%s-' % (claim_template['metadata']['name'], workload['metadata']['name'])
                used |= {name for name in claims if name.startswith(prefix) and name[len(prefix):].isdigit()}
        mine = sorted((used & set(claims)) - counted)
        counted |= set(mine)
        size = sum(_claim_bytes(claims[name]) for name in mine)
        apps.append({'name': service['metadata']['name'], 'namespace': namespace, 'pvcs': mine, 'bytes': size, 'gb': round(size / GIB, 3)})
    return apps


def _claim_bytes(claim):
    capacity = (claim.get('status') or {}).get('capacity') or ((claim.get('spec') or {}).get('resources') or {}).get('requests') or {}
    return parse_quantity(capacity.get('storage', '0'))
