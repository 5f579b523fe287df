# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options every module that restores objects shares (``ferry.kube.restore``, ``ferry.kube.sync``):
their argument spec (documented by the ``ferry.kube.restore`` doc fragment), the transforms they
make, and how failures and an unhealthy result are reported."""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.restore.transforms import Transforms

RESTORED = ('created', 'updated', 'replaced', 'unchanged', 'relinked')


def argument_spec():
    """A fresh copy (Ansible mutates specs)."""
    patch_target = dict(kind=dict(type='str'), group=dict(type='str'), name=dict(type='str'), namespace=dict(type='str'),
                        label_selector=dict(type='str'), jmespath=dict(type='str'))
    return dict(
        namespace_mapping=dict(type='dict', default={}),
        storage_class_mapping=dict(type='dict', default={}),
        image_rewrites=dict(type='list', elements='dict', default=[], options={'from': dict(type='str', required=True), 'to': dict(type='str', required=True)}),
        image_digests=dict(type='dict', default={}),
        replicas=dict(type='int'),
        suspend_cron_jobs=dict(type='bool'),
        add_labels=dict(type='dict', default={}),
        add_annotations=dict(type='dict', default={}),
        patches=dict(type='list', elements='dict', default=[], options=dict(
            target=dict(type='dict', default={}, options=patch_target),
            json_patch=dict(type='list', elements='dict'),
            merge_patch=dict(type='dict'),
        )),
        existing=dict(type='str', choices=['skip', 'update', 'replace'], default='update'),
        restore_pvs=dict(type='str', choices=['static', 'all', 'none'], default='static'),
        validate=dict(type='bool', default=True),
        validate_timeout=dict(type='int', default=300),
        fail_on_unhealthy=dict(type='bool', default=True),
        probes=dict(type='list', elements='dict', default=[], no_log=True),  # headers may carry credentials
    )


def transforms_of(params, namespace_mapping=None):
    mapping = dict(params['namespace_mapping'] or {})
    mapping.update(namespace_mapping or {})
    return Transforms(mapping, params['storage_class_mapping'], params['image_rewrites'], params['image_digests'],
                      params['replicas'], params['suspend_cron_jobs'], params['add_labels'], params['add_annotations'], params['patches'])


def raise_failures(result, what='restore'):
    """Fail naming every object that failed, with the API's reason."""
    if result['failures']:
        named = '; '.join('%s %s/%s: %s' % (e['kind'], e['namespace'] or '', e['name'], e['reason']) for e in result['failures'][:20])
        raise FerryError('%d of %d objects failed to %s: %s' % (len(result['failures']), len(result['objects']), what, named), **result)


def validate_after(cluster, result, params):
    """Health validation of what was restored (``result['health']``); fails when unhealthy and asked to."""
    if not params['validate']:
        return
    from ansible_collections.ferry.kube.plugins.module_utils.restore.health import validate  # pylint: disable=import-outside-toplevel
    restored = [{'apiVersion': e['api_version'], 'kind': e['kind'], 'metadata': {'name': e['name'], 'namespace': e['namespace']}}
                for e in result['objects'] if e['action'] in RESTORED]
    result['health'] = validate(cluster, restored, timeout=params['validate_timeout'], probes=params['probes'])
    if params['fail_on_unhealthy'] and not result['health']['healthy']:
        unhealthy = '; '.join('%s %s/%s: %s' % (u['kind'], u['namespace'] or '', u['name'], u['reason']) for u in result['health']['unhealthy'][:20])
        probes = '; '.join('probe %s: %s' % (p['name'], p['reason']) for p in result['health']['probes'] if not p['healthy'])
        raise FerryError('restored, but not healthy: %s' % '; '.join(part for part in (unhealthy, probes) if part), **result)
