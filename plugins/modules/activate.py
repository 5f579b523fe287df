#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: activate
short_description: Turn a hydrated standby copy of an app on or off
version_added: 0.1.0
description:
  - A DR copy restored with O(ferry.kube.restore#module:replicas=0) keeps its workloads at 0 replicas and its
    CronJobs and Jobs suspended, with the source's settings in the annotations C(ferry.dev/original-replicas) and
    C(ferry.dev/original-suspend).
  - V(active) scales every workload of O(namespace) back to its recorded replicas and resumes its CronJobs and Jobs, then
    validates health (rollouts ready, PVCs bound, Services with endpoints). This is the fast path of a failover.
  - V(standby) records the current settings and scales to 0 and suspends, for example on the old DR site after a
    failback.
author:
  - Ferry developers (@ferry)
options:
  namespace:
    description: Namespace of the copy.
    type: str
    required: true
  state:
    description: V(active) or V(standby).
    type: str
    choices: [active, standby]
    required: true
  validate:
    description: With V(active), wait until the workloads are healthy.
    type: bool
    default: true
  validate_timeout:
    description: Seconds to wait for health.
    type: int
    default: 300
extends_documentation_fragment:
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be scaled.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Fail over the shop to its hydrated copy
  ferry.kube.activate:
    cluster: {kubeconfig: /etc/ferry/clusters/dr.kubeconfig}
    namespace: shop
    state: active
'''

RETURN = r'''
workloads:
  description: Each workload and CronJob changed, with replicas (or suspend) before and after.
  returned: always
  type: list
  elements: dict
  sample: [{kind: Deployment, name: web, before: 0, after: 2}]
health:
  description: The health report (see M(ferry.kube.restore)).
  returned: when validated
  type: dict
'''

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import get_object, list_items
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.restore.apply import MERGE_PATCH
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import ORIGINAL_REPLICAS, ORIGINAL_SUSPEND

SCALABLE = [('apps/v1', 'Deployment', 'deployments'), ('apps/v1', 'StatefulSet', 'statefulsets'),
            ('apps.openshift.io/v1', 'DeploymentConfig', 'deploymentconfigs')]
SUSPENDABLE = [('batch/v1', 'CronJob', 'cronjobs'), ('batch/v1', 'Job', 'jobs')]


def _base(api_version):
    return '/api/%s' % api_version if '/' not in api_version else '/apis/%s' % api_version


def plan(cluster, namespace, state):
    """[(path, patch, change)] that bring the namespace's workloads to ``state``."""
    changes = []
    for api_version, kind, resource in SCALABLE + SUSPENDABLE:
        items = list_items(cluster, '%s/namespaces/%s/%s' % (_base(api_version), namespace, resource))
        for item in items or []:
            if item['metadata'].get('ownerReferences'):
                continue  # its owner scales or schedules it
            annotations = item['metadata'].get('annotations') or {}
            spec = item.get('spec') or {}
            path = '%s/namespaces/%s/%s/%s' % (_base(api_version), namespace, resource, item['metadata']['name'])
            if kind in ('CronJob', 'Job'):
                before = bool(spec.get('suspend'))
                if state == 'active':
                    if ORIGINAL_SUSPEND not in annotations:
                        continue  # not suspended by a standby restore: leave it as it is
                    after = annotations[ORIGINAL_SUSPEND] == 'true'
                    patch = {'spec': {'suspend': after}}
                else:
                    after = True
                    recorded = annotations.get(ORIGINAL_SUSPEND, 'true' if before else 'false')
                    patch = {'spec': {'suspend': True}, 'metadata': {'annotations': {ORIGINAL_SUSPEND: recorded}}}
            else:
                before = spec.get('replicas', 1)
                if state == 'active':
                    if ORIGINAL_REPLICAS not in annotations:
                        continue  # not a standby copy Ferry made: leave it as it is
                    after = int(annotations[ORIGINAL_REPLICAS])
                    patch = {'spec': {'replicas': after}}
                else:
                    after = 0
                    patch = {'spec': {'replicas': 0}, 'metadata': {'annotations': {ORIGINAL_REPLICAS: annotations.get(ORIGINAL_REPLICAS, str(before))}}}
            if before != after:
                changes.append((path, patch, {'kind': kind, 'api_version': api_version, 'name': item['metadata']['name'],
                                              'before': before, 'after': after}))
    return changes


def run(module):
    params = module.params
    cluster = module.connect()
    if get_object(cluster, 'v1', 'Namespace', params['namespace']) is None:
        raise FerryError('namespace %s does not exist on %s: restore or sync the app there first' % (params['namespace'], cluster.name))
    changes = plan(cluster, params['namespace'], params['state'])
    for path, patch, change in changes:
        cluster.request('PATCH', path, query={'dryRun': 'All'} if module.check_mode else None, body=patch, content_type=MERGE_PATCH)
    result = {'changed': bool(changes), 'workloads': [change for path, patch, change in changes]}
    if params['state'] == 'active' and params['validate'] and not module.check_mode:
        from ansible_collections.ferry.kube.plugins.module_utils.restore.health import validate  # pylint: disable=import-outside-toplevel
        targets = [{'apiVersion': c['api_version'], 'kind': c['kind'], 'metadata': {'name': c['name'], 'namespace': params['namespace']}}
                   for c in result['workloads'] if c['kind'] not in ('CronJob', 'Job')]
        targets += [{'apiVersion': 'v1', 'kind': kind, 'metadata': {'name': item['metadata']['name'], 'namespace': params['namespace']}}
                    for kind, resource in (('Service', 'services'), ('PersistentVolumeClaim', 'persistentvolumeclaims'))
                    for item in list_items(cluster, '/api/v1/namespaces/%s/%s' % (params['namespace'], resource)) or []]
        result['health'] = validate(cluster, targets, timeout=params['validate_timeout'])
        if not result['health']['healthy']:
            unhealthy = '; '.join('%s %s: %s' % (u['kind'], u['name'], u['reason']) for u in result['health']['unhealthy'][:20])
            raise FerryError('activated, but not healthy: %s' % unhealthy, **result)
    return result


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        namespace=dict(type='str', required=True),
        state=dict(type='str', choices=['active', 'standby'], required=True),
        validate=dict(type='bool', default=True),
        validate_timeout=dict(type='int', default=300),
    ))
    module.run(run)


if __name__ == '__main__':
    main()
