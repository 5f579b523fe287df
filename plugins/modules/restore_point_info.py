#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: restore_point_info
short_description: List the restore points of a storage pool
version_added: 0.1.0
description:
  - Lists the restore points a storage pool holds, oldest first, with their group, tags, volumes, sizes and
    statistics, or one point by id, id prefix or V(latest).
  - Reads only.
author:
  - Ferry developers (@ferry)
options:
  point:
    description: One point to describe, by id, unique id prefix or V(latest) (within O(group) when given).
    type: str
  group:
    description: Only points of this group (for example C(cluster/namespace/app)).
    type: str
  tags:
    description: Only points carrying all these tags.
    type: dict
extends_documentation_fragment:
  - ferry.kube.pool
  - ferry.kube.cluster
  - ferry.kube.attributes
  - ferry.kube.attributes.INFO_MODULE
'''

EXAMPLES = r'''
- name: Restore points of the shop app
  ferry.kube.restore_point_info:
    pool:
      location: s3://dr-backups/shop
      passphrase: "{{ vault_pool_passphrase }}"
    group: prod/shop/web
  register: points

- name: The newest one
  ansible.builtin.debug:
    msg: "{{ points.points | last }}"
'''

RETURN = r'''
points:
  description: Matching restore points, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{id: 20261201T020000Z-1a2b3c4d, time: "2026-12-01T02:00:00Z", group: prod/shop/web, tags: {app: web},
            parent: 20261201T010000Z-9f8e7d6c, volumes: {data: {files: 20026, bytes: 2117796346}}, metadata: {objects: 81234},
            stats: {bytes_new: 41943040, bytes_stored: 23068672, seconds: 1.9}}]
pool:
  description: What the pool holds.
  returned: always
  type: dict
  sample: {location: s3://dr-backups/shop, points: 14, packs: 230, bytes_stored: 3857000000}
'''

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError
from ansible_collections.ferry.kube.plugins.module_utils.pool.engine import describe_point, pool_summary
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError


def run(module):
    params = module.params
    pool = pool_options.open_pool(module, params['pool'])
    try:
        if params['point']:
            points = [pool.resolve_point(params['point'], params['group'])]
        else:
            points = [p for p in pool.points() if params['group'] is None or p.get('group') == params['group']]
        wanted = {k: str(v) for k, v in (params['tags'] or {}).items()}
        points = [p for p in points if all((p.get('tags') or {}).get(k) == v for k, v in wanted.items())]
        return {'changed': False, 'points': [describe_point(p) for p in points], 'pool': pool_summary(pool)}
    except (PoolError, BackendError) as exc:
        raise FerryError(str(exc)) from None
    finally:
        pool.close()


def main():
    module = FerryModule(argument_spec=dict(
        pool=pool_options.pool_option(),
        cluster=cluster_option(),
        point=dict(type='str'),
        group=dict(type='str'),
        tags=dict(type='dict'),
    ), requires_kubernetes=False)
    module.run(run)


if __name__ == '__main__':
    main()
