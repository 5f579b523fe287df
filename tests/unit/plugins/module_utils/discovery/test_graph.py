"""The dependency graph and app grouping from plain object lists: every edge kind, with its reason, and no cluster."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.discovery.apps import group_apps, images_of, volume_of
from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import Graph, describe_key, key_of
from kube_objects import obj, owner, pod_spec, workload

NS = 'ns'
DIGEST = 'sha256:' + 'ab' * 32


def brings(graph, source):
    """What ``source`` brings: {'Kind ns/name': reason}."""
    return {describe_key(target): reason for target, reason in graph.brings.get(key_of(source), {}).items()}


def graph_of(*objects, plurals=None):
    return Graph(list(objects), plurals)


def test_keys_and_descriptions():
    deployment = workload('Deployment', 'web')
    assert key_of(deployment) == ('apps', 'Deployment', NS, 'web')
    assert describe_key(key_of(deployment)) == 'Deployment.apps ns/web'
    assert describe_key(key_of(obj('Namespace', NS))) == 'Namespace ns'
    assert describe_key(key_of(obj('StorageClass', 'fast'))) == 'StorageClass.storage.k8s.io fast'


# -- pod spec references ----------------------------------------------------------------------------

EVERY_REFERENCE = pod_spec(
    {'name': 'app', 'image': 'app:1',
     'envFrom': [{'configMapRef': {'name': 'env-cm'}}, {'secretRef': {'name': 'env-secret'}}],
     'env': [{'name': 'A', 'valueFrom': {'configMapKeyRef': {'name': 'key-cm', 'key': 'a'}}},
             {'name': 'B', 'valueFrom': {'secretKeyRef': {'name': 'key-secret', 'key': 'b'}}},
             {'name': 'C', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
             {'name': 'D', 'value': 'plain'}]},
    serviceAccountName='runner', priorityClassName='high', runtimeClassName='gvisor',
    imagePullSecrets=[{'name': 'pull'}],
    initContainers=[{'name': 'init', 'image': 'init:1', 'envFrom': [{'secretRef': {'name': 'init-secret'}}]}],
    volumes=[{'name': 'a', 'configMap': {'name': 'vol-cm'}},
             {'name': 'b', 'secret': {'secretName': 'vol-secret'}},
             {'name': 'c', 'persistentVolumeClaim': {'claimName': 'data'}},
             {'name': 'd', 'projected': {'sources': [{'configMap': {'name': 'proj-cm'}}, {'secret': {'name': 'proj-secret'}},
                                                     {'serviceAccountToken': {'path': 'token'}}, {'downwardAPI': {'items': []}}]}},
             {'name': 'e', 'csi': {'driver': 'secrets-store.csi.k8s.io', 'nodePublishSecretRef': {'name': 'csi-secret'}}},
             {'name': 'f', 'cephfs': {'monitors': ['m'], 'secretRef': {'name': 'ceph-secret'}}},
             {'name': 'g', 'azureFile': {'secretName': 'azure-secret', 'shareName': 's'}},
             {'name': 'h', 'emptyDir': {}}])
REFERENCED = [('ConfigMap', 'env-cm', 'reads env from'), ('Secret', 'env-secret', 'reads env from'), ('ConfigMap', 'key-cm', 'reads env from'),
              ('Secret', 'key-secret', 'reads env from'), ('Secret', 'init-secret', 'reads env from'), ('ServiceAccount', 'runner', 'runs as'),
              ('Secret', 'pull', 'pulls images with'), ('ConfigMap', 'vol-cm', 'mounts'), ('Secret', 'vol-secret', 'mounts'),
              ('PersistentVolumeClaim', 'data', 'mounts'), ('ConfigMap', 'proj-cm', 'mounts'), ('Secret', 'proj-secret', 'mounts'),
              ('Secret', 'csi-secret', 'mounts with'), ('Secret', 'ceph-secret', 'mounts with'), ('Secret', 'azure-secret', 'mounts with')]


@pytest.mark.parametrize('kind', ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'Pod', 'ReplicaSet'])
def test_a_pod_spec_brings_everything_it_names(kind):
    runner = workload(kind, 'runner', spec=EVERY_REFERENCE)
    dependencies = [obj(ref_kind, name) for ref_kind, name, reason in REFERENCED]
    dependencies += [obj('Namespace', NS), obj('PriorityClass', 'high'), obj('RuntimeClass', 'gvisor'), obj('ConfigMap', 'unused')]
    graph = graph_of(runner, *dependencies)
    expected = {describe_key(key_of(obj(ref_kind, name))): reason for ref_kind, name, reason in REFERENCED}
    expected.update({'Namespace ns': 'lives in', 'PriorityClass.scheduling.k8s.io high': 'is scheduled with',
                     'RuntimeClass.node.k8s.io gvisor': 'runs with'})
    assert brings(graph, runner) == expected
    assert graph.missing == []


def test_references_to_absent_objects_are_missing_unless_optional():
    runner = workload('Deployment', 'web', spec=EVERY_REFERENCE)
    graph = graph_of(runner, obj('Namespace', NS))
    missing = {(m['kind'], m['name']): m for m in graph.missing}
    assert missing[('Secret', 'csi-secret')] == {'from': 'Deployment.apps ns/web', 'kind': 'Secret', 'namespace': NS, 'name': 'csi-secret',
                                                 'reason': 'mounts with'}
    assert set(missing) == {(ref_kind, name) for ref_kind, name, reason in REFERENCED} | {('RuntimeClass', 'gvisor')}
    assert missing[('RuntimeClass', 'gvisor')]['namespace'] is None
    assert ('PriorityClass', 'high') not in missing, 'a PriorityClass may be a built-in one'


def test_the_default_service_account_is_optional():
    graph = graph_of(workload('Deployment', 'web'))
    assert [m['kind'] for m in graph.missing] == ['Namespace']
    with_default = graph_of(workload('Deployment', 'web'), obj('ServiceAccount', 'default'))
    assert brings(with_default, workload('Deployment', 'web'))['ServiceAccount ns/default'] == 'runs as'
    legacy = graph_of(workload('Pod', 'p', spec=pod_spec('p', serviceAccount='old')), obj('ServiceAccount', 'old'))
    assert brings(legacy, workload('Pod', 'p'))['ServiceAccount ns/old'] == 'runs as'


def test_references_stay_in_their_namespace():
    graph = graph_of(workload('Deployment', 'web', spec=pod_spec('web', volumes=[{'name': 'c', 'configMap': {'name': 'cm'}}])),
                     obj('ConfigMap', 'cm', namespace='other'))
    assert 'ConfigMap other/cm' not in brings(graph, workload('Deployment', 'web'))
    assert {'kind': 'ConfigMap', 'name': 'cm', 'namespace': NS} in [{k: m[k] for k in ('kind', 'name', 'namespace')} for m in graph.missing]


# -- owners -----------------------------------------------------------------------------------------

def test_owner_references_link_both_ways_by_uid():
    deployment = workload('Deployment', 'web', uid='d1')
    replica_set = workload('ReplicaSet', 'web-5d9c', uid='r1', owners=[owner('Deployment', 'web', 'd1')])
    pod = workload('Pod', 'web-5d9c-x', uid='p1', owners=[owner('ReplicaSet', 'web-5d9c', 'r1')])
    graph = graph_of(deployment, replica_set, pod)
    assert brings(graph, deployment)['ReplicaSet.apps ns/web-5d9c'] == 'owns'
    assert brings(graph, replica_set) == {'Deployment.apps ns/web': 'is owned by', 'Pod ns/web-5d9c-x': 'owns'}
    assert brings(graph, pod) == {'ReplicaSet.apps ns/web-5d9c': 'is owned by'}
    assert graph.owner_in_graph(key_of(pod)) and not graph.owner_in_graph(key_of(deployment))
    assert describe_key(key_of(pod)) in {describe_key(key) for key in graph.closure([key_of(deployment)])}


def test_an_owner_is_found_by_uid_even_under_another_name_and_else_by_name():
    renamed = workload('Deployment', 'web', uid='d1')
    child = obj('ConfigMap', 'child', owners=[owner('Deployment', 'stale-name', 'd1')])
    by_name = obj('ConfigMap', 'orphan', owners=[owner('Deployment', 'web', 'other-uid')])
    graph = graph_of(renamed, child, by_name)
    assert brings(graph, child) == {'Deployment.apps ns/web': 'is owned by'}
    assert brings(graph, by_name) == {'Deployment.apps ns/web': 'is owned by'}
    assert not graph.owner_in_graph(key_of(by_name)), 'only a uid proves the owner is this very object'


def test_an_object_owned_in_the_graph_is_not_a_top_level_workload():
    job = workload('Job', 'report-1', uid='j1', owners=[owner('CronJob', 'report', 'c1')])
    graph = graph_of(workload('CronJob', 'report', uid='c1'), job)
    assert graph.workloads_selected(NS, selector_map={'app': 'report'}) == [('batch', 'CronJob', NS, 'report')]


# -- volumes ----------------------------------------------------------------------------------------

def test_statefulset_claim_templates_bring_their_claims_by_ordinal():
    db = workload('StatefulSet', 'db', volumeClaimTemplates=[{'metadata': {'name': 'data'}}, {'metadata': {'name': 'logs'}}])
    claims = [obj('PersistentVolumeClaim', name) for name in ('data-db-0', 'data-db-12', 'logs-db-1', 'data-db-x-0', 'data-dbx-0', 'data-db-')]
    graph = graph_of(db, *claims)
    claimed = {name for name, reason in brings(graph, db).items() if reason == 'claims'}
    assert claimed == {'PersistentVolumeClaim ns/data-db-0', 'PersistentVolumeClaim ns/data-db-12', 'PersistentVolumeClaim ns/logs-db-1'}
    assert brings(graph, claims[0]) == {'StatefulSet.apps ns/db': 'is claimed by'}


def test_claim_volume_and_storage_class():
    claim = obj('PersistentVolumeClaim', 'data', spec={'volumeName': 'pv-1', 'storageClassName': 'fast'})
    volume = obj('PersistentVolume', 'pv-1', spec={'storageClassName': 'fast', 'claimRef': {'namespace': NS, 'name': 'data'}})
    graph = graph_of(claim, volume, obj('StorageClass', 'fast'))
    assert brings(graph, claim) == {'PersistentVolume pv-1': 'is bound to', 'StorageClass.storage.k8s.io fast': 'is provisioned by'}
    assert brings(graph, volume) == {'StorageClass.storage.k8s.io fast': 'is provisioned by'}, 'a PV does not bring its claim'
    unbound = graph_of(obj('PersistentVolumeClaim', 'data', spec={'volumeName': 'gone', 'storageClassName': ''}))
    assert [(m['kind'], m['name'], m['reason']) for m in unbound.missing if m['kind'] != 'Namespace'] == [('PersistentVolume', 'gone', 'is bound to')]


# -- services and routing ---------------------------------------------------------------------------

def test_a_service_and_the_workloads_it_selects_bring_each_other_and_its_endpoints():
    web = workload('Deployment', 'web', pod_labels={'app': 'web', 'tier': 'front'})
    other = workload('Deployment', 'other')
    service = obj('Service', 'web', spec={'selector': {'app': 'web'}})
    endpoints = obj('Endpoints', 'web')
    own_slice = obj('EndpointSlice', 'web-abc', labels={'kubernetes.io/service-name': 'web'})
    foreign_slice = obj('EndpointSlice', 'db-abc', labels={'kubernetes.io/service-name': 'db'})
    graph = graph_of(web, other, service, endpoints, own_slice, foreign_slice)
    assert brings(graph, service) == {'Deployment.apps ns/web': 'selects', 'Endpoints ns/web': 'has endpoints',
                                      'EndpointSlice.discovery.k8s.io ns/web-abc': 'has endpoints'}
    assert brings(graph, web) == {'Service ns/web': 'is exposed by'}
    assert brings(graph, other) == {}
    assert brings(graph, endpoints) == {}, 'endpoints do not bring their Service'


def test_a_service_without_selector_selects_nothing():
    graph = graph_of(workload('Deployment', 'web'), obj('Service', 'external', spec={'ports': [{'port': 80}]}), obj('Endpoints', 'external'))
    assert brings(graph, obj('Service', 'external')) == {'Endpoints ns/external': 'has endpoints'}


@pytest.mark.parametrize('ingress', [
    obj('Ingress', 'web', spec={
        'ingressClassName': 'nginx', 'tls': [{'hosts': ['a'], 'secretName': 'web-tls'}],
        'defaultBackend': {'service': {'name': 'fallback', 'port': {'number': 80}}},
        'rules': [{'http': {'paths': [{'path': '/', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}},
                                      {'path': '/r', 'backend': {'resource': {'kind': 'Bucket', 'name': 'b'}}}]}}]}),
    obj('Ingress', 'web', api_version='networking.k8s.io/v1beta1', spec={
        'ingressClassName': 'nginx', 'tls': [{'secretName': 'web-tls'}], 'backend': {'serviceName': 'fallback', 'servicePort': 80},
        'rules': [{'host': 'a', 'http': {'paths': [{'backend': {'serviceName': 'web', 'servicePort': 'http'}}]}}, {'host': 'b'}]}),
    obj('Ingress', 'web', api_version='extensions/v1beta1', spec={
        'ingressClassName': 'nginx', 'tls': [{'secretName': 'web-tls'}], 'backend': {'serviceName': 'fallback', 'servicePort': 80},
        'rules': [{'http': {'paths': [{'backend': {'serviceName': 'web', 'servicePort': 80}}]}}]}),
], ids=['v1', 'networking-v1beta1', 'extensions-v1beta1'])
def test_an_ingress_brings_its_backends_tls_secret_and_class(ingress):
    services = [obj('Service', name, spec={'selector': {'app': name}}) for name in ('web', 'fallback')]
    graph = graph_of(ingress, *services, obj('Secret', 'web-tls'), obj('IngressClass', 'nginx'))
    assert {name: reason for name, reason in brings(graph, ingress).items() if name != 'Namespace ns'} == {
        'Service ns/web': 'routes to', 'Service ns/fallback': 'routes to', 'Secret ns/web-tls': 'serves TLS with',
        'IngressClass.networking.k8s.io nginx': 'is served by'}
    assert brings(graph, services[0]) == {describe_key(key_of(ingress)): 'is routed to by'}


def test_an_ingress_class_is_optional_but_a_backend_is_not():
    ingress = obj('Ingress', 'web', spec={'ingressClassName': 'gone', 'defaultBackend': {'service': {'name': 'nope', 'port': {'number': 1}}}})
    graph = graph_of(ingress, obj('Namespace', NS))
    assert [(m['kind'], m['name'], m['reason']) for m in graph.missing] == [('Service', 'nope', 'routes to')]


def test_a_route_brings_its_service_and_alternate_backends():
    route = obj('Route', 'web', spec={'to': {'kind': 'Service', 'name': 'web'},
                                      'alternateBackends': [{'kind': 'Service', 'name': 'canary', 'weight': 10}]})
    services = [obj('Service', name) for name in ('web', 'canary')]
    graph = graph_of(route, *services, obj('Namespace', NS))
    assert brings(graph, route) == {'Service ns/web': 'routes to', 'Service ns/canary': 'routes to', 'Namespace ns': 'lives in'}
    assert brings(graph, services[1]) == {'Route.route.openshift.io ns/web': 'is routed to by', 'Namespace ns': 'lives in'}


# -- access -----------------------------------------------------------------------------------------

def test_bindings_grant_roles_and_service_accounts_bring_their_bindings():
    account = obj('ServiceAccount', 'web', imagePullSecrets=[{'name': 'pull'}, {'name': 'gone'}])
    role = obj('Role', 'reader')
    binding = obj('RoleBinding', 'reader', roleRef={'kind': 'Role', 'name': 'reader'},
                  subjects=[{'kind': 'ServiceAccount', 'name': 'web'}, {'kind': 'User', 'name': 'alice'}])
    to_cluster_role = obj('RoleBinding', 'view', roleRef={'kind': 'ClusterRole', 'name': 'view'},
                          subjects=[{'kind': 'ServiceAccount', 'name': 'web', 'namespace': NS}])
    cluster_binding = obj('ClusterRoleBinding', 'web-nodes', roleRef={'kind': 'ClusterRole', 'name': 'nodes'},
                          subjects=[{'kind': 'ServiceAccount', 'name': 'web', 'namespace': NS}])
    elsewhere = obj('ClusterRoleBinding', 'other', roleRef={'kind': 'ClusterRole', 'name': 'nodes'},
                    subjects=[{'kind': 'ServiceAccount', 'name': 'web', 'namespace': 'other'}, {'kind': 'ServiceAccount', 'name': 'no-namespace'}])
    graph = graph_of(account, role, binding, to_cluster_role, cluster_binding, elsewhere, obj('ClusterRole', 'view'), obj('ClusterRole', 'nodes'),
                     obj('Secret', 'pull'), obj('Namespace', NS))
    assert brings(graph, account) == {
        'RoleBinding.rbac.authorization.k8s.io ns/reader': 'is granted roles by', 'RoleBinding.rbac.authorization.k8s.io ns/view': 'is granted roles by',
        'ClusterRoleBinding.rbac.authorization.k8s.io web-nodes': 'is granted roles by', 'Secret ns/pull': 'pulls images with',
        'Namespace ns': 'lives in'}
    assert brings(graph, binding) == {'Role.rbac.authorization.k8s.io ns/reader': 'grants', 'Namespace ns': 'lives in'}
    assert brings(graph, to_cluster_role)['ClusterRole.rbac.authorization.k8s.io view'] == 'grants'
    assert brings(graph, cluster_binding) == {'ClusterRole.rbac.authorization.k8s.io nodes': 'grants'}
    assert not [m for m in graph.missing if m['name'] == 'gone'], "a service account's pull secret is optional"
    assert None not in graph.brings, 'a subject that is not in the graph brings nothing'


def test_a_binding_to_an_absent_role_is_missing():
    graph = graph_of(obj('Namespace', NS), obj('RoleBinding', 'b', roleRef={'kind': 'Role', 'name': 'gone'}))
    assert [(m['kind'], m['namespace'], m['name'], m['reason']) for m in graph.missing] == [('Role', NS, 'gone', 'grants')]


# -- about workloads: autoscalers, budgets, policies -------------------------------------------------

@pytest.mark.parametrize('target, scaled', [
    ({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'web'}, 'Deployment.apps ns/web'),
    ({'kind': 'Deployment', 'name': 'web'}, 'Deployment.apps ns/web'),
    ({'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'name': 'db'}, 'StatefulSet.apps ns/db'),
    ({'apiVersion': 'v1', 'kind': 'ReplicationController', 'name': 'legacy'}, 'ReplicationController ns/legacy'),
])
def test_an_autoscaler_and_its_target_bring_each_other(target, scaled):
    hpa = obj('HorizontalPodAutoscaler', 'hpa', spec={'scaleTargetRef': target})
    workloads = [workload('Deployment', 'web'), workload('StatefulSet', 'db'), workload('ReplicationController', 'legacy')]
    graph = graph_of(hpa, *workloads)
    assert brings(graph, hpa) == {scaled: 'scales'}
    assert [name for name in (describe_key(key_of(w)) for w in workloads) if brings(graph, hpa).get(name)] == [scaled]
    assert {describe_key(key_of(w)): brings(graph, w) for w in workloads}[scaled] == {'HorizontalPodAutoscaler.autoscaling ns/hpa': 'is scaled by'}


def test_budgets_and_policies_are_brought_by_the_workloads_they_select_not_the_other_way():
    web, db = workload('Deployment', 'web'), workload('StatefulSet', 'db')
    budget = obj('PodDisruptionBudget', 'web', spec={'minAvailable': 1, 'selector': {'matchLabels': {'app': 'web'}}})
    null_budget = obj('PodDisruptionBudget', 'none', spec={'minAvailable': 1})
    deny_all = obj('NetworkPolicy', 'default-deny', spec={'podSelector': {}, 'policyTypes': ['Ingress']})
    db_only = obj('NetworkPolicy', 'db', spec={'podSelector': {'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['db']}]}})
    graph = graph_of(web, db, budget, null_budget, deny_all, db_only)
    assert brings(graph, web) == {'PodDisruptionBudget.policy ns/web': 'is protected by',
                                  'NetworkPolicy.networking.k8s.io ns/default-deny': 'is governed by'}
    assert brings(graph, db) == {'NetworkPolicy.networking.k8s.io ns/default-deny': 'is governed by',
                                 'NetworkPolicy.networking.k8s.io ns/db': 'is governed by'}
    for policy in (budget, null_budget, deny_all, db_only):
        assert brings(graph, policy) == {}, 'a policy never brings the workloads it governs'
    assert set(graph.closure([key_of(deny_all)])) == {key_of(deny_all)}


# -- Helm, custom resources -------------------------------------------------------------------------

def test_helm_release_secrets_come_with_the_release_objects():
    release = {'meta.helm.sh/release-name': 'shop'}
    deployment = workload('Deployment', 'web', annotations=release)
    secrets = [obj('Secret', 'sh.helm.release.v1.shop.v1', type='helm.sh/release.v1', labels={'owner': 'helm', 'name': 'shop', 'version': '1'}),
               obj('Secret', 'sh.helm.release.v1.shop.v2', type='helm.sh/release.v1', labels={'name': 'shop', 'version': '2'}),
               obj('Secret', 'sh.helm.release.v1.other.v1', type='helm.sh/release.v1', labels={'owner': 'helm', 'name': 'other'}),
               obj('Secret', 'not-helm', type='Opaque', labels={'owner': 'helm', 'name': 'shop'}),
               obj('Secret', 'sh.helm.release.v1.shop.v1', namespace='other', type='helm.sh/release.v1', labels={'owner': 'helm', 'name': 'shop'})]
    graph = graph_of(deployment, *secrets)
    assert brings(graph, deployment) == {'Secret ns/sh.helm.release.v1.shop.v1': 'is managed by Helm release shop',
                                         'Secret ns/sh.helm.release.v1.shop.v2': 'is managed by Helm release shop'}


def test_a_custom_resource_brings_its_definition_by_its_plural():
    cart = obj('Cart', 'default', api_version='shop.example.com/v1')
    policy = obj('Policy', 'p', api_version='acme.io/v1')
    definitions = [obj('CustomResourceDefinition', 'carts.shop.example.com'), obj('CustomResourceDefinition', 'policies.acme.io')]
    graph = graph_of(cart, policy, *definitions, plurals={('acme.io', 'Policy'): 'policies'})
    assert brings(graph, cart) == {'CustomResourceDefinition.apiextensions.k8s.io carts.shop.example.com': 'is defined by'}
    assert brings(graph, policy) == {'CustomResourceDefinition.apiextensions.k8s.io policies.acme.io': 'is defined by'}
    without_plurals = graph_of(policy, *definitions)
    assert brings(without_plurals, policy) == {}, 'a guessed plural (policys) finds nothing'
    knative = obj('Service', 'hello', api_version='serving.knative.dev/v1', spec={'template': {}})
    graph = graph_of(knative, obj('CustomResourceDefinition', 'services.serving.knative.dev'), plurals={('serving.knative.dev', 'Service'): 'services'})
    assert brings(graph, knative) == {'CustomResourceDefinition.apiextensions.k8s.io services.serving.knative.dev': 'is defined by'}, \
        'a custom kind named like a built-in one still has its CRD'
    builtin = graph_of(workload('Deployment', 'web'), obj('CustomResourceDefinition', 'deployments.apps'))
    assert brings(builtin, workload('Deployment', 'web')) == {}


# -- closure ----------------------------------------------------------------------------------------

def test_closure_reaches_transitively_and_keeps_the_first_edge():
    web = workload('Deployment', 'web', uid='d1', spec=pod_spec('web', volumes=[{'name': 'd', 'persistentVolumeClaim': {'claimName': 'data'}}]))
    claim = obj('PersistentVolumeClaim', 'data', spec={'volumeName': 'pv-1', 'storageClassName': 'fast'})
    service = obj('Service', 'web', spec={'selector': {'app': 'web'}})
    graph = graph_of(web, claim, service, obj('PersistentVolume', 'pv-1', spec={'storageClassName': 'fast'}), obj('StorageClass', 'fast'),
                     obj('ConfigMap', 'unused'), obj('Namespace', NS))
    reached = graph.closure([key_of(service), ('', 'Pod', NS, 'not-in-graph')])
    described = {describe_key(key): (describe_key(edge[0]), edge[1]) if edge else None for key, edge in reached.items()}
    assert described == {
        'Service ns/web': None,
        'Deployment.apps ns/web': ('Service ns/web', 'selects'),
        'Namespace ns': ('Service ns/web', 'lives in'),
        'PersistentVolumeClaim ns/data': ('Deployment.apps ns/web', 'mounts'),
        'PersistentVolume pv-1': ('PersistentVolumeClaim ns/data', 'is bound to'),
        'StorageClass.storage.k8s.io fast': ('PersistentVolumeClaim ns/data', 'is provisioned by'),
    }


# -- apps -------------------------------------------------------------------------------------------

def test_apps_merge_services_sharing_a_workload_and_stand_alone_workloads_are_apps_of_their_own():
    db = workload('StatefulSet', 'db', labels={'app.kubernetes.io/instance': 'orders-db'})
    headless = obj('Service', 'db-headless', spec={'clusterIP': 'None', 'selector': {'app': 'db'}})
    client = obj('Service', 'db', spec={'selector': {'app': 'db'}})
    web = workload('Deployment', 'web', spec=pod_spec('web', volumes=[{'name': 'c', 'configMap': {'name': 'web-config'}}]))
    web_service = obj('Service', 'web', spec={'selector': {'app': 'web'}})
    worker = workload('Deployment', 'worker', labels={'app': 'jobs'})
    orphan_service = obj('Service', 'legacy', spec={'selector': {'app': 'gone'}})
    objects = [db, headless, client, web, web_service, worker, orphan_service, obj('ConfigMap', 'web-config'), obj('ConfigMap', 'unused'),
               obj('Namespace', NS), obj('ConfigMap', 'stray', namespace='ns2')]
    graph = graph_of(*objects)
    apps, unassigned = group_apps(graph, set(graph.nodes))
    by_name = {app['name']: app for app in apps}
    assert set(by_name) == {'orders-db', 'web', 'jobs', 'legacy'}
    assert by_name['orders-db']['services'] == ['db', 'db-headless'] and by_name['orders-db']['workloads'] == ['StatefulSet/db']
    assert by_name['web']['services'] == ['web'] and by_name['web']['workloads'] == ['Deployment/web']
    assert by_name['web']['objects'] == ['ConfigMap ns/web-config', 'Service ns/web', 'Deployment.apps ns/web'], 'in key order: group, kind, name'
    assert by_name['web']['cluster_objects'] == ['Namespace ns']
    assert by_name['jobs']['services'] == [] and by_name['jobs']['workloads'] == ['Deployment/worker']
    assert by_name['legacy']['workloads'] == [], 'a Service selecting nothing is an app of its own'
    assert unassigned == {'ns': ['ConfigMap ns/unused'], 'ns2': ['ConfigMap ns2/stray']}


def test_app_names_come_from_agreeing_labels_else_the_first_service_and_stay_unique():
    labelled = [workload('Deployment', name, pod_labels={'app': 'shop', 'part': name}, labels=labels)
                for name, labels in (('web', {'app.kubernetes.io/name': 'shop'}), ('api', {'app.kubernetes.io/name': 'shop-api'}))]
    service = obj('Service', 'front', spec={'selector': {'app': 'shop'}})
    twin = workload('Deployment', 'front', pod_labels={'app': 'twin'})
    graph = graph_of(service, twin, *labelled)
    apps, unassigned = group_apps(graph, set(graph.nodes))
    assert sorted(app['name'] for app in apps) == ['front', 'front-2'], 'labels that disagree name nothing; a second "front" is numbered'
    assert {tuple(app['workloads']) for app in apps} == {('Deployment/api', 'Deployment/web'), ('Deployment/front',)}


def test_only_captured_objects_make_apps():
    web, service = workload('Deployment', 'web'), obj('Service', 'web', spec={'selector': {'app': 'web'}})
    graph = graph_of(web, service, obj('ConfigMap', 'cm'))
    apps, unassigned = group_apps(graph, {key_of(service)})
    assert [(app['name'], app['workloads'], app['objects']) for app in apps] == [('web', [], ['Service ns/web'])]
    assert unassigned == {}


def test_volumes_of_an_app():
    claim_spec = {'volumeName': 'pv-1', 'storageClassName': 'fast', 'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}
    claim = obj('PersistentVolumeClaim', 'data', spec=claim_spec, status={'phase': 'Bound', 'capacity': {'storage': '2Gi'}})
    pending = obj('PersistentVolumeClaim', 'new', spec={'resources': {'requests': {'storage': '500Mi'}}, 'volumeMode': 'Block'})
    volumes = [{'name': 'd', 'persistentVolumeClaim': {'claimName': 'data'}}, {'name': 'n', 'persistentVolumeClaim': {'claimName': 'new'}}]
    web = workload('Deployment', 'web', spec=pod_spec('web', volumes=volumes))
    graph = graph_of(web, claim, pending, obj('PersistentVolume', 'pv-1', spec={'csi': {'driver': 'ebs.csi.aws.com'}}))
    apps, unassigned = group_apps(graph, set(graph.nodes))
    assert apps[0]['volumes'] == [
        {'name': 'data', 'namespace': NS, 'size': '2Gi', 'bytes': 2 ** 31, 'storage_class': 'fast', 'pv': 'pv-1', 'access_modes': ['ReadWriteOnce'],
         'volume_mode': 'Filesystem', 'phase': 'Bound', 'driver': 'ebs.csi.aws.com'},
        {'name': 'new', 'namespace': NS, 'size': '500Mi', 'bytes': 500 * 2 ** 20, 'storage_class': None, 'pv': None, 'access_modes': [],
         'volume_mode': 'Block', 'phase': None, 'driver': None}]
    in_tree = graph_of(claim, obj('PersistentVolume', 'pv-1', spec={'nfs': {'server': 'n', 'path': '/'}}))
    assert group_apps(in_tree, set())[0] == []
    assert volume_of(in_tree, key_of(claim))['driver'] == 'nfs'


def test_images_with_the_digest_a_pod_resolved():
    spec = pod_spec('web', {'name': 'sidecar', 'image': 'proxy:2'}, initContainers=[{'name': 'init', 'image': 'init:1'}])
    deployment = workload('Deployment', 'web', spec=spec)
    pod = workload('Pod', 'web-1', spec=spec)
    pod['status'] = {
        'containerStatuses': [{'name': 'web', 'imageID': 'docker-pullable://registry/web@' + DIGEST}, {'name': 'sidecar', 'imageID': ''}],
        'initContainerStatuses': [{'name': 'init', 'imageID': 'init@' + DIGEST.replace('ab', 'cd')}]}
    other = workload('Deployment', 'not-asked', spec=pod_spec('unrelated'))
    graph = graph_of(deployment, pod, other, obj('ConfigMap', 'cm'))
    assert images_of(graph, [key_of(deployment), key_of(pod), key_of(obj('ConfigMap', 'cm'))]) == [
        {'image': 'init:1', 'digest': DIGEST.replace('ab', 'cd')}, {'image': 'proxy:2', 'digest': None}, {'image': 'web:1', 'digest': DIGEST}]
    assert images_of(graph, [key_of(deployment)]) == [{'image': 'init:1', 'digest': None}, {'image': 'proxy:2', 'digest': None},
                                                      {'image': 'web:1', 'digest': None}], 'a template has no status to resolve digests'
