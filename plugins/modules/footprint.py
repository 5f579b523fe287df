#!/usr/bin/python
# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: footprint
short_description: Install or remove Ferry's service account and minimal ClusterRole in a cluster
version_added: 0.1.0
description:
  - Ferry installs nothing permanent in a managed cluster but one namespace holding a ServiceAccount (with a token
    Secret), a ClusterRole granting only what Ferry's modules use, a ClusterRoleBinding, and optionally a ConfigMap
    naming the agent image.
  - With O(state=present) it creates or updates them and can write a token-based kubeconfig for the service account
    (the credential to register the cluster with). The token never appears in results, diffs or logs.
  - With O(state=absent) it removes them again.
  - Each rule of the ClusterRole and why it is there is listed in the C(rules) result and in the collection docs.
author:
  - Ferry developers (@ferry)
options:
  state:
    description: Whether the footprint should exist.
    type: str
    choices: [present, absent]
    default: present
  namespace:
    description: Namespace holding Ferry's service account.
    type: str
    default: ferry-system
  name:
    description: Name of the ServiceAccount, ClusterRole and ClusterRoleBinding.
    type: str
    default: ferry
  agent_image:
    description: Image of Ferry's agent pods, recorded in the C(ferry-config) ConfigMap for later runs and M(ferry.kube.cluster_info).
    type: str
  kubeconfig_path:
    description:
      - Write a kubeconfig for the service account here (mode 0600), pointing at the same API server.
      - With O(state=absent), the file is removed.
    type: path
  token_wait_timeout:
    description: Seconds to wait for the cluster to fill the service-account token Secret before falling back to a TokenRequest.
    type: int
    default: 30
  token_expiration:
    description: Lifetime in seconds of a token from the TokenRequest fallback (clusters that no longer fill token Secrets).
    type: int
    default: 31536000
extends_documentation_fragment:
  - ferry.kube.cluster
  - ferry.kube.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
'''

EXAMPLES = r'''
- name: Install Ferry's footprint and save the service-account kubeconfig
  ferry.kube.footprint:
    cluster:
      kubeconfig: ~/.kube/admin.yaml
      context: prod
    agent_image: registry.example.com/ferry/agent:0.1.0
    kubeconfig_path: /etc/ferry/clusters/prod.kubeconfig

- name: Remove it
  ferry.kube.footprint:
    cluster:
      kubeconfig: ~/.kube/admin.yaml
      context: prod
    state: absent
    kubeconfig_path: /etc/ferry/clusters/prod.kubeconfig
'''

RETURN = r'''
objects:
  description: Each object of the footprint and what was (or, in check mode, would be) done to it.
  returned: always
  type: list
  elements: dict
  sample: [{kind: ClusterRole, name: ferry, namespace: null, action: created}]
service_account:
  description: The service account as C(system:serviceaccount:<namespace>:<name>).
  returned: always
  type: str
  sample: system:serviceaccount:ferry-system:ferry
kubeconfig_path:
  description: Where the service-account kubeconfig was written (null when not asked for).
  returned: always
  type: str
  sample: /etc/ferry/clusters/prod.kubeconfig
token_source:
  description: C(secret) (a long-lived token Secret) or C(token-request) (a time-bound token).
  returned: when a kubeconfig was written
  type: str
  sample: secret
rules:
  description: The ClusterRole's rules, each with the reason Ferry needs it.
  returned: always
  type: list
  elements: dict
  sample: [{api_groups: [""], resources: [pods], verbs: [get, list, create, delete], why: run transient agent pods}]
'''

import base64
import copy
import os
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube import footprint
from ansible_collections.ferry.kube.plugins.module_utils.kube.connection import cluster_option
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import (
    create_object, delete_object, get_object, replace_object,
)
from ansible_collections.ferry.kube.plugins.module_utils.module import FerryModule

# Fields compared (and owned) per object; everything else on the live object is left alone.
_OWNED_FIELDS = ('rules', 'roleRef', 'subjects', 'data', 'type')
_IMMUTABLE_FIELDS = ('roleRef', 'type')


def _key(obj):
    meta = obj['metadata']
    return '%s/%s%s' % (obj['kind'], meta.get('namespace') + '/' if meta.get('namespace') else '', meta['name'])


def _view(obj):
    """What a diff shows of an object: owned fields and labels, never Secret data."""
    if obj is None:
        return None
    meta = obj.get('metadata') or {}
    shown = {'labels': meta.get('labels') or {}}
    for field in _OWNED_FIELDS:
        if field in obj and not (obj['kind'] == 'Secret' and field == 'data'):
            shown[field] = obj[field]
    return shown


def _needs_change(desired, live):
    labels = (live['metadata'].get('labels') or {})
    if any(labels.get(k) != v for k, v in (desired['metadata'].get('labels') or {}).items()):
        return True
    return any(field in desired and desired[field] != live.get(field) for field in _OWNED_FIELDS)


def _merged(desired, live):
    merged = copy.deepcopy(live)
    merged['metadata'].setdefault('labels', {}).update(desired['metadata'].get('labels') or {})
    merged['metadata'].setdefault('annotations', {}).update(desired['metadata'].get('annotations') or {})
    for field in _OWNED_FIELDS:
        if field in desired:
            merged[field] = desired[field]
    return merged


def ensure_present(cluster, desired_objects, check_mode):
    actions, before, after = [], {}, {}
    new_namespaces = set()
    for desired in desired_objects:
        meta = desired['metadata']
        if meta.get('namespace') in new_namespaces:
            live = None  # in check mode its namespace does not exist yet: nothing to read or dry-run
        else:
            live = get_object(cluster, desired['apiVersion'], desired['kind'], meta['name'], meta.get('namespace'))
        before[_key(desired)] = _view(live)
        if live is None:
            if not (check_mode and meta.get('namespace') in new_namespaces):
                create_object(cluster, desired, dry_run=check_mode)
            if desired['kind'] == 'Namespace' and check_mode:
                new_namespaces.add(meta['name'])
            action = 'created'
        elif desired['kind'] != 'Secret' and _needs_change(desired, live):
            if any(field in desired and desired[field] != live.get(field) for field in _IMMUTABLE_FIELDS):
                delete_object(cluster, live, dry_run=check_mode)
                if not check_mode:
                    _wait_gone(cluster, desired)
                create_object(cluster, desired, dry_run=check_mode)
                action = 'recreated'
            else:
                replace_object(cluster, _merged(desired, live), live, dry_run=check_mode)
                action = 'updated'
        else:
            action = 'unchanged'
        after[_key(desired)] = _view(desired) if action != 'unchanged' else _view(live)
        actions.append({'kind': desired['kind'], 'name': meta['name'], 'namespace': meta.get('namespace'), 'action': action})
    return actions, before, after


def ensure_absent(cluster, namespace, name, check_mode):
    actions, before, after = [], {}, {}
    targets = [o for o in footprint.objects(namespace, name, agent_image='-') if o['kind'] in ('ClusterRoleBinding', 'ClusterRole')]
    ns_obj = get_object(cluster, 'v1', 'Namespace', namespace)
    if ns_obj is not None and (ns_obj['metadata'].get('labels') or {}).get('app.kubernetes.io/managed-by') == 'ferry':
        targets.append(ns_obj)  # Ferry made the namespace: removing it removes the account, token and config.
    else:
        targets.extend(o for o in footprint.objects(namespace, name, agent_image='-') if o['kind'] in ('ServiceAccount', 'Secret', 'ConfigMap'))
    for obj in targets:
        meta = obj['metadata']
        live = get_object(cluster, obj['apiVersion'], obj['kind'], meta['name'], meta.get('namespace'))
        if live is None:
            continue
        before[_key(obj)] = _view(live)
        after[_key(obj)] = None
        delete_object(cluster, live, dry_run=check_mode)
        actions.append({'kind': obj['kind'], 'name': meta['name'], 'namespace': meta.get('namespace'), 'action': 'deleted'})
    return actions, before, after


def _wait_gone(cluster, obj, timeout=30):
    meta = obj['metadata']
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_object(cluster, obj['apiVersion'], obj['kind'], meta['name'], meta.get('namespace')) is None:
            return
        time.sleep(0.2)
    raise FerryError('%s %s is still being deleted after %ss; try again later' % (obj['kind'], meta['name'], timeout))


def service_account_token(cluster, namespace, name, wait_timeout, expiration):
    """(token, ca_pem or None, source): the token Secret's, else a TokenRequest's."""
    deadline = time.monotonic() + wait_timeout
    while True:
        secret = get_object(cluster, 'v1', 'Secret', name + '-token', namespace)
        data = (secret or {}).get('data') or {}
        if data.get('token'):
            ca = base64.b64decode(data['ca.crt']).decode('ascii') if data.get('ca.crt') else None
            return base64.b64decode(data['token']).decode('ascii'), ca, 'secret'
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    request = {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest', 'spec': {'expirationSeconds': expiration}}
    try:
        status = cluster.request('POST', '/api/v1/namespaces/%s/serviceaccounts/%s/token' % (namespace, name), body=request)[1]['status']
    except ApiError as exc:
        raise FerryError('the cluster filled no token into Secret %s/%s-token within %ss and refused a TokenRequest: %s'
                         % (namespace, name, wait_timeout, exc.message)) from None
    return status['token'], None, 'token-request'


def kubeconfig_text(cluster, token, ca_pem, context_name):
    import yaml  # pylint: disable=import-outside-toplevel
    cluster_entry = {'server': cluster.host}
    ca_file = cluster.configuration.ssl_ca_cert
    if ca_pem is None and ca_file and os.path.isfile(ca_file):
        with open(ca_file, 'r', encoding='ascii') as handle:
            ca_pem = handle.read()
    if ca_pem:
        cluster_entry['certificate-authority-data'] = base64.b64encode(ca_pem.encode('ascii')).decode('ascii')
    if not cluster.configuration.verify_ssl:
        cluster_entry['insecure-skip-tls-verify'] = True
    document = {
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': context_name,
        'clusters': [{'name': context_name, 'cluster': cluster_entry}],
        'users': [{'name': context_name, 'user': {'token': token}}],
        'contexts': [{'name': context_name, 'context': {'cluster': context_name, 'user': context_name}}],
    }
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False)


def _read(path):
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_private(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = path + '.tmp'
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.replace(temp, path)


def run(module):
    params = module.params
    cluster = module.connect()
    namespace, name = params['namespace'], params['name']
    result = {'service_account': 'system:serviceaccount:%s:%s' % (namespace, name), 'kubeconfig_path': params['kubeconfig_path'],
              'rules': [{'api_groups': g, 'resources': r, 'verbs': v, 'why': why} for g, r, v, why in footprint.RULES]}
    path = params['kubeconfig_path']
    if params['state'] == 'present':
        actions, before, after = ensure_present(cluster, footprint.objects(namespace, name, params['agent_image']), module.check_mode)
        if path and not module.check_mode:
            token, ca_pem, source = service_account_token(cluster, namespace, name, params['token_wait_timeout'], params['token_expiration'])
            module.ansible.no_log_values.add(token)
            text = kubeconfig_text(cluster, token, ca_pem, '%s-%s' % (cluster.name, name))
            if _read(path) != text:
                _write_private(path, text)
                actions.append({'kind': 'File', 'name': path, 'namespace': None, 'action': 'written'})
            result['token_source'] = source
        elif path and module.check_mode and not os.path.exists(path):
            actions.append({'kind': 'File', 'name': path, 'namespace': None, 'action': 'written'})
    else:
        actions, before, after = ensure_absent(cluster, namespace, name, module.check_mode)
        if path and os.path.exists(path):
            if not module.check_mode:
                os.remove(path)
            actions.append({'kind': 'File', 'name': path, 'namespace': None, 'action': 'deleted'})
    result['objects'] = actions
    result['changed'] = any(a['action'] != 'unchanged' for a in actions)
    if module.diff_mode:
        result['diff'] = {'before': before, 'after': after}
    return result


def main():
    module = FerryModule(argument_spec=dict(
        cluster=cluster_option(),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        namespace=dict(type='str', default=footprint.DEFAULT_NAMESPACE),
        name=dict(type='str', default=footprint.DEFAULT_NAME),
        agent_image=dict(type='str'),
        kubeconfig_path=dict(type='path'),
        token_wait_timeout=dict(type='int', default=30, no_log=False),
        token_expiration=dict(type='int', default=31536000, no_log=False),
    ))
    module.run(run)


if __name__ == '__main__':
    main()
