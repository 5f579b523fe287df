#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: pool
short_description: Create, check, rotate the key of, apply retention to and prune a storage pool
version_added: 0.1.0
description:
  - A storage pool holds restore points (volume trees and object manifests) encrypted, compressed and deduplicated,
    on a local directory, S3, Google Cloud Storage or Azure Blob Storage.
  - Creates the pool when it does not exist yet (O(settings) apply then), and then in this order, as asked, rotates
    its passphrase, applies a retention policy, prunes and checks it.
  - The same engine is available without Ansible as C(bin/ferry pool).
author:
  - Ferry developers (@ferry)
options:
  state:
    description: V(present) makes sure the pool exists.
    type: str
    choices: [present]
    default: present
  settings:
    description: Settings of a new pool; an existing pool keeps its own (reported in RV(pool)).
    type: dict
    suboptions:
      compression_level:
        description: zstd level for chunks.
        type: int
      pack_size:
        description: Bytes per pack object.
        type: int
      cipher:
        description: Authenticated encryption of the pool's objects.
        type: str
        choices: [aes-256-gcm, chacha20-poly1305]
  copy_ids_from:
    description:
      - Another pool whose chunk naming a new pool shares, so that restore points can be copied between them without
        re-chunking (a local short-term pool and an object-storage long-term one, say).
    type: dict
    suboptions:
      location:
        description: Location of the other pool.
        type: str
        required: true
      passphrase:
        description: Its passphrase.
        type: str
        required: true
      options:
        description:
          - Its backend settings, as in O(pool.options).
          - The whole dict is kept out of logs, since it may carry credentials.
        type: dict
  new_passphrase:
    description:
      - Rotate the passphrase. A key slot for this passphrase is added and the slots the current passphrase opens are
        removed; no data is re-encrypted. Once done, the pool opens with O(new_passphrase) only and a second run
        changes nothing.
    type: str
  retention:
    description:
      - Restore points to keep per group; the others are forgotten. The newest point of each group is always kept.
      - Rules as restic's C(forget). Space is reclaimed by O(prune).
    type: dict
    suboptions:
      last:
        description: Keep the newest N points.
        type: int
      hourly:
        description: Keep the newest point of each of the last N hours that have points.
        type: int
      daily:
        description: Keep the newest point of each of the last N days that have points.
        type: int
      weekly:
        description: Keep the newest point of each of the last N weeks that have points.
        type: int
      monthly:
        description: Keep the newest point of each of the last N months that have points.
        type: int
      yearly:
        description: Keep the newest point of each of the last N years that have points.
        type: int
      within:
        description: Keep every point within this duration before the newest one (C(36h), C(7d), C(2w), C(6m), C(1y6m)).
        type: str
  retention_groups:
    description:
      - Apply O(retention) only to the restore points of these groups (a pool shared by several policies). Default is every group,
        each on its own.
    type: list
    elements: str
  prune:
    description: Delete data no restore point uses and repack packs that are mostly garbage. Waits for no one; fails if a backup holds the pool.
    type: bool
    default: false
  check:
    description:
      - V(structure) checks that every point's manifests and trees are readable and every chunk is indexed and stored;
        V(read_data) also reads every pack and verifies every byte. The module fails, naming the damaged points and
        files, when the pool is damaged.
    type: str
    choices: [none, structure, read_data]
    default: none
extends_documentation_fragment:
  - ferry.kube.pool
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff lists the restore points before and after retention.
'''

EXAMPLES = r'''
- name: A pool on S3 with the passphrase from the vault
  ferry.kube.pool:
    pool:
      location: s3://dr-backups/shop
      passphrase: "{{ vault_pool_passphrase }}"
      options: {region: eu-west-1}

- name: Nightly maintenance of the DR-local pool, passphrase from a Secret
  ferry.kube.pool:
    cluster: {kubeconfig: /etc/ferry/dr.kubeconfig}
    pool:
      location: /var/lib/ferry/pools/shop
      passphrase_secret: {namespace: ferry-system, name: shop-pool}
    retention: {hourly: 24, daily: 7, weekly: 4, monthly: 12}
    prune: true
    check: structure

- name: A long-term pool that points can be copied into
  ferry.kube.pool:
    pool:
      location: azure://archive/shop
      passphrase: "{{ vault_archive_passphrase }}"
      options: {account_url: "https://ferryarchive.blob.core.windows.net", use_identity: true}
    copy_ids_from:
      location: /var/lib/ferry/pools/shop
      passphrase: "{{ vault_pool_passphrase }}"
'''

RETURN = r'''
created:
  description: Whether the pool was created by this run (or would be, in check mode).
  returned: always
  type: bool
pool:
  description: What the pool holds and how it is set up.
  returned: always
  type: dict
  sample: {location: /var/lib/ferry/pools/shop, points: 14, packs: 230, bytes_stored: 3857000000, cipher: aes-256-gcm,
           compression: zstd-3, key_slots: 1}
passphrase_rotated:
  description: Whether the passphrase was rotated (or would be).
  returned: always
  type: bool
retention:
  description: Points kept (with the rules that keep them) and points forgotten.
  returned: when O(retention) is given
  type: dict
  sample: {kept: [{id: 20261201T020000Z-1a2b3c4d, group: prod/shop/web, reasons: [newest, daily 2026-12-01]}], removed: []}
prune:
  description: What prune deleted and repacked (in check mode, what it would delete at least).
  returned: when O(prune=true)
  type: dict
  sample: {packs_deleted: 12, packs_repacked: 2, bytes_freed: 201326592}
check:
  description: The result of the check.
  returned: when O(check) is not V(none)
  type: dict
  sample: {ok: true, points: 14, packs: 230, errors: [], damaged: []}
'''

from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule
from ansible_collections.ferry.kube.plugins.module_utils.pool import options as pool_options
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError
from ansible_collections.ferry.kube.plugins.module_utils.pool.engine import keep_freed_memory, pool_summary
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool, PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.retention import PolicyError


def run(module):
    try:
        return _run(module)
    except (PoolError, BackendError, PolicyError) as exc:
        raise FerryError(str(exc)) from None


def _run(module):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.check import check
    from ansible_collections.ferry.kube.plugins.module_utils.pool.prune import forget, prune

    params = module.params
    passphrase = pool_options.passphrase_of(module, params['pool'])
    backend = pool_options.backend_of(params['pool'])
    result = {'changed': False, 'created': False, 'passphrase_rotated': False}
    if backend.size('config') is None:
        result.update(changed=True, created=True)
        if module.check_mode:
            result['pool'] = {'location': backend.location, 'points': 0}
            return result
        source = None
        if params['copy_ids_from']:
            source = pool_options.open_pool(module, params['copy_ids_from'], params['copy_ids_from']['passphrase'])
        pool, rotate_now = Pool.create(backend, passphrase, params['settings'], copy_ids_from=source), False
    else:
        pool, rotate_now = _open_or_rotated(backend, passphrase, params['new_passphrase'])

    if params['new_passphrase'] and rotate_now:
        result.update(changed=True, passphrase_rotated=True)
        if not module.check_mode:
            rotate(pool, passphrase, params['new_passphrase'])

    if params['retention']:
        before = pool.point_ids()
        report = forget(pool, params['retention'], dry_run=module.check_mode, groups=params['retention_groups'] or None)
        result['retention'] = report
        if report['removed']:
            result['changed'] = True
            result['diff'] = {'before': {'points': before}, 'after': {'points': [p for p in before if p not in report['removed']]}}
    if params['prune']:
        report = prune(pool, dry_run=module.check_mode)
        result['prune'] = report
        freed = report.get('bytes_freed_at_least' if module.check_mode else 'bytes_freed', 0)
        if freed or report['packs_repacked']:
            result['changed'] = True
    if params['check'] != 'none':
        report = check(pool, read_data=params['check'] == 'read_data')
        result['check'] = report
        if not report['ok']:
            raise FerryError('the pool at %s is damaged: %s' % (backend.location, '; '.join(report['errors'][:10])), **result)
    result['pool'] = pool_summary(pool)
    pool.close()
    return result


def _open_or_rotated(backend, passphrase, new_passphrase):
    """(pool, True) opened with the current passphrase, or (pool, False) with the new one when a rotation already happened."""
    try:
        return Pool.open(backend, passphrase), True
    except PoolError:
        if not new_passphrase:
            raise
    return Pool.open(backend, new_passphrase), False  # a second run of a rotation: nothing left to do


def rotate(pool, passphrase, new_passphrase):
    from ansible_collections.ferry.kube.plugins.module_utils.pool import crypto
    old_slots = []
    for slot in pool.key_slots():
        try:
            crypto.open_slot(pool.backend.read('keys/%s' % slot), passphrase)
        except crypto.KeyError_:
            continue
        old_slots.append(slot)
    pool.add_key(new_passphrase, 'rotated')
    for slot in old_slots:
        pool.remove_key(slot)


def main():
    keep_freed_memory()
    module = FerryModule(argument_spec=dict(
        pool=pool_options.pool_option(),
        cluster=cluster_option(),
        state=dict(type='str', choices=['present'], default='present'),
        settings=dict(type='dict', options=dict(
            compression_level=dict(type='int'),
            pack_size=dict(type='int'),
            cipher=dict(type='str', choices=['aes-256-gcm', 'chacha20-poly1305']),
        )),
        copy_ids_from=dict(type='dict', options=dict(
            location=dict(type='str', required=True),
            passphrase=dict(type='str', required=True, no_log=True),
            options=dict(type='dict', no_log=True),
        )),
        new_passphrase=dict(type='str', no_log=True),
        retention=dict(type='dict', options=dict(
            last=dict(type='int'), hourly=dict(type='int'), daily=dict(type='int'), weekly=dict(type='int'),
            monthly=dict(type='int'), yearly=dict(type='int'), within=dict(type='str'),
        )),
        retention_groups=dict(type='list', elements='str'),
        prune=dict(type='bool', default=False),
        check=dict(type='str', choices=['none', 'structure', 'read_data'], default='none'),
    ), requires_kubernetes=False)
    module.run(run)


if __name__ == '__main__':
    main()
