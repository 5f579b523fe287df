#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: usage_info
short_description: Count the apps and volume data a policy replicates, and the licence units they need
version_added: 0.1.0
description:
  - For the namespaces of a cluster (or a DR policy), lists the apps (one per Service, that is one micro-service) and
    the GB of persistent volumes each one replicates.
  - Computes the licence units of the per-app-per-GB model, each app unit covering one micro-service and 200 GB, with
    the allowance pooled across apps, and extra storage units of 200 GB each. Two apps with 300 GB and 100 GB need two
    app units and no storage unit.
  - With O(max_apps) or O(max_gb), fails with a clear message when the usage is over the limit, so a sync stops
    before it starts.
  - Reads only.
author:
  - Ferry developers (@ferry)
options:
  namespaces:
    description: Namespaces whose apps are counted.
    type: list
    elements: str
    required: true
  policy:
    description: Name of the DR policy, reported with the usage.
    type: str
  max_apps:
    description: Most apps the policy may replicate.
    type: int
  max_gb:
    description: Most GB of volume data the policy may replicate.
    type: float
extends_documentation_fragment:
  - ferry.kube.cluster
  - ferry.kube.attributes
  - ferry.kube.attributes.INFO_MODULE
'''

EXAMPLES = r'''
- name: What does the shop policy replicate?
  ferry.kube.usage_info:
    cluster: {kubeconfig: /etc/ferry/clusters/prod.kubeconfig}
    namespaces: [shop, payments]
    policy: shop
    max_apps: 20
    max_gb: 2000
  register: usage

- name: Units
  ansible.builtin.debug:
    msg: "{{ usage.units.app_units }} app units, {{ usage.units.storage_units }} storage units"
'''

RETURN = r'''
policy:
  description: The policy name given.
  returned: always
  type: str
  sample: shop
cluster:
  description: Cluster display name.
  returned: always
  type: str
  sample: prod
apps:
  description: One entry per app.
  returned: always
  type: list
  elements: dict
  sample: [{name: web, namespace: shop, pvcs: [web-data], bytes: 1073741824, gb: 1.0}]
units:
  description: Totals and licence units.
  returned: always
  type: dict
  sample: {apps: 2, gb: 400.0, app_units: 2, included_gb: 400, storage_units: 0}
'''

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.usage import namespace_apps
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.scaleout import check_limits, licence_units


def run(module):
    params = module.params
    cluster = module.connect()
    apps = []
    for namespace in params['namespaces']:
        apps += namespace_apps(cluster, namespace)
    units = licence_units(apps)
    result = {'changed': False, 'policy': params['policy'], 'cluster': cluster.name, 'apps': apps, 'units': units}
    problems = check_limits(units, params['max_apps'], params['max_gb'])
    if problems:
        raise FerryError('policy %s is over its limits: %s' % (params['policy'] or '(unnamed)', '; '.join(problems)), apps=apps, units=units)
    return result


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        namespaces=dict(type='list', elements='str', required=True),
        policy=dict(type='str'),
        max_apps=dict(type='int'),
        max_gb=dict(type='float'),
    ))
    module.run(run)


if __name__ == '__main__':
    main()
