"""API-version conversion for restore: table-driven cases, then real sandbox discovery and API servers."""

import base64
import copy

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube import objects
from ansible_collections.ferry.kube.plugins.module_utils.restore import convert
from ansible_collections.ferry.kube.plugins.module_utils.restore.convert import Conversion, TargetApis

MAX = convert.MAX_INT32


# -- targets: discovery as Cluster.discovery() gives it ---------------------------------------------

def entry(api_version, kind, preferred=True, subresource=False):
    group, version = convert.split_api_version(api_version)
    return {'group': group, 'version': version, 'group_version': api_version, 'resource': kind.lower() + 's', 'kind': kind,
            'namespaced': True, 'verbs': ['create', 'get', 'list'], 'short_names': [], 'preferred': preferred, 'subresource': subresource}


def apis(*served, openshift=None):
    """A TargetApis from 'group/version Kind' strings; the first version listed for a group is its preferred one."""
    preferred = {}
    entries = []
    for item in served:
        api_version, kind = item.split()
        group = convert.split_api_version(api_version)[0]
        preferred.setdefault(group, api_version)
        entries.append(entry(api_version, kind, preferred[group] == api_version))
    return TargetApis(entries, openshift=openshift)


BASE = ('v1 Namespace', 'v1 Service', 'v1 Secret', 'v1 ConfigMap', 'apps/v1 Deployment', 'apps/v1 DaemonSet', 'apps/v1 ReplicaSet',
        'apps/v1 StatefulSet', 'batch/v1 Job')
CURRENT_ONLY = ('batch/v1 CronJob', 'networking.k8s.io/v1 Ingress', 'networking.k8s.io/v1 IngressClass', 'networking.k8s.io/v1 NetworkPolicy',
                'policy/v1 PodDisruptionBudget', 'autoscaling/v2 HorizontalPodAutoscaler', 'autoscaling/v1 HorizontalPodAutoscaler',
                'rbac.authorization.k8s.io/v1 ClusterRole', 'storage.k8s.io/v1 StorageClass', 'scheduling.k8s.io/v1 PriorityClass',
                'coordination.k8s.io/v1 Lease', 'discovery.k8s.io/v1 EndpointSlice', 'apiextensions.k8s.io/v1 CustomResourceDefinition',
                'admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration', 'snapshot.storage.k8s.io/v1 VolumeSnapshot',
                'flowcontrol.apiserver.k8s.io/v1 FlowSchema')
CURRENT = apis(*BASE + CURRENT_ONLY)
OPENSHIFT = apis(*BASE + CURRENT_ONLY + ('route.openshift.io/v1 Route', 'apps.openshift.io/v1 DeploymentConfig', 'image.openshift.io/v1 ImageStream',
                                         'build.openshift.io/v1 BuildConfig', 'template.openshift.io/v1 Template'))
K1_21 = apis(*BASE + ('batch/v1 CronJob', 'batch/v1beta1 CronJob', 'networking.k8s.io/v1 Ingress', 'networking.k8s.io/v1beta1 Ingress',
                      'extensions/v1beta1 Ingress', 'policy/v1 PodDisruptionBudget', 'policy/v1beta1 PodDisruptionBudget',
                      'policy/v1beta1 PodSecurityPolicy', 'autoscaling/v1 HorizontalPodAutoscaler', 'autoscaling/v2beta1 HorizontalPodAutoscaler',
                      'autoscaling/v2beta2 HorizontalPodAutoscaler'))
K1_20 = apis(*BASE + ('batch/v1beta1 CronJob', 'networking.k8s.io/v1 Ingress', 'policy/v1beta1 PodDisruptionBudget',
                      'policy/v1beta1 PodSecurityPolicy', 'discovery.k8s.io/v1beta1 EndpointSlice', 'autoscaling/v1 HorizontalPodAutoscaler',
                      'autoscaling/v2beta1 HorizontalPodAutoscaler', 'autoscaling/v2beta2 HorizontalPodAutoscaler'))
K1_18 = apis(*BASE + ('networking.k8s.io/v1beta1 Ingress', 'networking.k8s.io/v1beta1 IngressClass', 'extensions/v1beta1 Ingress'))
K1_17 = apis(*BASE + ('networking.k8s.io/v1beta1 Ingress', 'extensions/v1beta1 Ingress', 'rbac.authorization.k8s.io/v1beta1 ClusterRole'))
K1_11 = apis(*BASE + ('autoscaling/v1 HorizontalPodAutoscaler', 'autoscaling/v2beta1 HorizontalPodAutoscaler'))


# -- realistic objects ----------------------------------------------------------------------------

def meta(name, namespace='shop', **extra):
    return dict({'name': name, 'namespace': namespace}, **extra)


def obj(api_version, kind, name, spec=None, namespace='shop', **top):
    result = {'apiVersion': api_version, 'kind': kind, 'metadata': meta(name, namespace) if namespace else {'name': name}}
    if spec is not None:
        result['spec'] = spec
    result.update(top)
    return result


def template(app='web', image='nginx:1.25'):
    return {'metadata': {'labels': {'app': app}},
            'spec': {'containers': [{'name': app, 'image': image, 'ports': [{'containerPort': 8080, 'name': 'http'}]}]}}


SELECTOR = {'matchLabels': {'app': 'web'}}

CERT = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfrontend\n-----END CERTIFICATE-----\n'
CA = '-----BEGIN CERTIFICATE-----\nMIIBpDCCAUqgAwIBAgIUca\n-----END CERTIFICATE-----'
KEY = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIplaceholder\n-----END PRIVATE KEY-----\n'

SERVICE = obj('v1', 'Service', 'frontend', {'selector': {'app': 'frontend'}, 'ports': [
    {'name': 'http', 'port': 80, 'targetPort': 8080}, {'name': 'metrics', 'port': 9090, 'targetPort': 'metrics'}]})


def restore_set(*items):
    index = {(item['kind'], item['metadata'].get('namespace'), item['metadata']['name']): item for item in items}
    return lambda kind, namespace, name: index.get((kind, namespace, name))


FIND_SERVICE = restore_set(SERVICE)


def route(spec, name='frontend', **metadata):
    result = obj('route.openshift.io/v1', 'Route', name, dict({'to': {'kind': 'Service', 'name': 'frontend', 'weight': 100}}, **spec))
    result['metadata'].update(metadata)
    return result


def ingress_v1(host, path, port, name='frontend', tls=None, **metadata):
    rule = {'http': {'paths': [{'path': path, 'pathType': 'Prefix', 'backend': {'service': {'name': 'frontend', 'port': port}}}]}}
    if host:
        rule = dict({'host': host}, **rule)
    result = obj('networking.k8s.io/v1', 'Ingress', name, {'rules': [rule]})
    if tls is not None:
        result['spec']['tls'] = tls
    result['metadata'].update(metadata)
    return result


def b64(text):
    return base64.b64encode(text.encode()).decode()


DC_ROLLING = obj('apps.openshift.io/v1', 'DeploymentConfig', 'frontend', {
    'replicas': 2, 'revisionHistoryLimit': 5, 'minReadySeconds': 10, 'paused': False, 'test': False,
    'selector': {'app': 'frontend', 'deploymentconfig': 'frontend'},
    'strategy': {'type': 'Rolling', 'activeDeadlineSeconds': 21600, 'resources': {},
                 'rollingParams': {'updatePeriodSeconds': 1, 'intervalSeconds': 1, 'timeoutSeconds': 600, 'maxSurge': '50%', 'maxUnavailable': 0,
                                   'pre': {'failurePolicy': 'Abort', 'execNewPod': {'containerName': 'frontend', 'command': ['/app/migrate']}}}},
    'template': {'metadata': {'labels': {'app': 'frontend', 'deploymentconfig': 'frontend'}},
                 'spec': {'containers': [{'name': 'frontend', 'image': ' ', 'ports': [{'containerPort': 8080}]},
                                         {'name': 'proxy', 'image': 'quay.io/example/proxy:2.1'}]}},
    'triggers': [{'type': 'ConfigChange'},
                 {'type': 'ImageChange', 'imageChangeParams': {
                     'automatic': True, 'containerNames': ['frontend'], 'from': {'kind': 'ImageStreamTag', 'name': 'frontend:latest', 'namespace': 'shop'},
                     'lastTriggeredImage': 'quay.io/example/frontend@sha256:0a1b2c'}}]})
DC_ROLLING['metadata']['labels'] = {'app': 'frontend'}
DC_ROLLING['status'] = {'latestVersion': 7, 'replicas': 2}

DEPLOYMENT_FROM_DC = obj('apps/v1', 'Deployment', 'frontend', {
    'replicas': 2, 'revisionHistoryLimit': 5, 'minReadySeconds': 10, 'paused': False,
    'selector': {'matchLabels': {'app': 'frontend', 'deploymentconfig': 'frontend'}},
    'strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '50%', 'maxUnavailable': 0}},
    'template': {'metadata': {'labels': {'app': 'frontend', 'deploymentconfig': 'frontend'}},
                 'spec': {'containers': [{'name': 'frontend', 'image': 'quay.io/example/frontend@sha256:0a1b2c', 'ports': [{'containerPort': 8080}]},
                                         {'name': 'proxy', 'image': 'quay.io/example/proxy:2.1'}]}}})
DEPLOYMENT_FROM_DC['metadata']['labels'] = {'app': 'frontend'}

DC_RECREATE = obj('apps.openshift.io/v1', 'DeploymentConfig', 'db', {
    'replicas': 1,
    'strategy': {'type': 'Recreate', 'recreateParams': {'timeoutSeconds': 600, 'mid': {'failurePolicy': 'Retry', 'execNewPod': {'containerName': 'db'}}}},
    'template': {'metadata': {'labels': {'app': 'db'}},
                 'spec': {'containers': [{'name': 'db', 'image': 'image-registry.openshift-image-registry.svc:5000/shop/db@sha256:9f8e'}]}},
    'triggers': [{'type': 'ImageChange', 'imageChangeParams': {'containerNames': ['db'], 'from': {'kind': 'ImageStreamTag', 'name': 'db:10'}}}]})

HPA_V2BETA1_METRICS = [
    {'type': 'Resource', 'resource': {'name': 'cpu', 'targetAverageUtilization': 70}},
    {'type': 'Resource', 'resource': {'name': 'memory', 'targetAverageValue': '512Mi'}},
    {'type': 'Pods', 'pods': {'metricName': 'requests_per_second', 'selector': {'matchLabels': {'verb': 'GET'}}, 'targetAverageValue': '100'}},
    {'type': 'Object', 'object': {'target': {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'name': 'shop'}, 'metricName': 'requests',
                                  'targetValue': '2k'}},
    {'type': 'External', 'external': {'metricName': 'queue_depth', 'metricSelector': {'matchLabels': {'queue': 'orders'}}, 'targetAverageValue': '30'}},
    {'type': 'ContainerResource', 'containerResource': {'name': 'cpu', 'container': 'web', 'targetAverageUtilization': 60}},
]
HPA_V2_METRICS = [
    {'type': 'Resource', 'resource': {'name': 'cpu', 'target': {'type': 'Utilization', 'averageUtilization': 70}}},
    {'type': 'Resource', 'resource': {'name': 'memory', 'target': {'type': 'AverageValue', 'averageValue': '512Mi'}}},
    {'type': 'Pods', 'pods': {'metric': {'name': 'requests_per_second', 'selector': {'matchLabels': {'verb': 'GET'}}},
                              'target': {'type': 'AverageValue', 'averageValue': '100'}}},
    {'type': 'Object', 'object': {'describedObject': {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'name': 'shop'},
                                  'metric': {'name': 'requests'}, 'target': {'type': 'Value', 'value': '2k'}}},
    {'type': 'External', 'external': {'metric': {'name': 'queue_depth', 'selector': {'matchLabels': {'queue': 'orders'}}},
                                      'target': {'type': 'AverageValue', 'averageValue': '30'}}},
    {'type': 'ContainerResource', 'containerResource': {'name': 'cpu', 'container': 'web', 'target': {'type': 'Utilization', 'averageUtilization': 60}}},
]
SCALE_TARGET = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'web'}
BEHAVIOR = {'scaleDown': {'stabilizationWindowSeconds': 300, 'policies': [{'type': 'Pods', 'value': 1, 'periodSeconds': 60}]}}


def hpa(version, metrics, **spec):
    return obj('autoscaling/' + version, 'HorizontalPodAutoscaler', 'web',
               dict({'scaleTargetRef': SCALE_TARGET, 'minReplicas': 2, 'maxReplicas': 10, 'metrics': metrics}, **spec))


INGRESS_V1BETA1_SPEC = {
    'backend': {'serviceName': 'default-http', 'servicePort': 80},
    'tls': [{'hosts': ['shop.example.com'], 'secretName': 'shop-tls'}],
    'rules': [{'host': 'shop.example.com', 'http': {'paths': [
        {'path': '/', 'backend': {'serviceName': 'web', 'servicePort': 'http'}},
        {'path': '/api', 'pathType': 'Prefix', 'backend': {'serviceName': 'api', 'servicePort': '8080'}}]}}]}
INGRESS_V1_SPEC = {
    'defaultBackend': {'service': {'name': 'default-http', 'port': {'number': 80}}},
    'tls': [{'hosts': ['shop.example.com'], 'secretName': 'shop-tls'}],
    'rules': [{'host': 'shop.example.com', 'http': {'paths': [
        {'path': '/', 'pathType': 'ImplementationSpecific', 'backend': {'service': {'name': 'web', 'port': {'name': 'http'}}}},
        {'path': '/api', 'pathType': 'Prefix', 'backend': {'service': {'name': 'api', 'port': {'number': 8080}}}}]}}]}


def annotated(item, **annotations):
    item = copy.deepcopy(item)
    item['metadata']['annotations'] = annotations
    return item


def with_spec(item, api_version=None, **spec):
    item = copy.deepcopy(item)
    item['spec'].update(spec)
    if api_version:
        item['apiVersion'] = api_version
    return item


ENDPOINTS_V1BETA1 = [{'addresses': ['10.1.2.3'], 'conditions': {'ready': True},
                      'topology': {'kubernetes.io/hostname': 'node-1', 'topology.kubernetes.io/zone': 'eu-west-1a',
                                   'topology.kubernetes.io/region': 'eu-west-1'}}]
ENDPOINTS_V1 = [{'addresses': ['10.1.2.3'], 'conditions': {'ready': True}, 'nodeName': 'node-1', 'zone': 'eu-west-1a',
                 'deprecatedTopology': {'topology.kubernetes.io/region': 'eu-west-1'}}]
SLICE_PORTS = [{'name': 'http', 'port': 8080, 'protocol': 'TCP'}]

CRD_NAMES = {'plural': 'backups', 'singular': 'backup', 'kind': 'Backup', 'listKind': 'BackupList'}
WEBHOOK = {'name': 'validate.example.com', 'clientConfig': {'service': {'namespace': 'hooks', 'name': 'validator', 'path': '/validate'}},
           'rules': [{'apiGroups': ['apps'], 'apiVersions': ['v1'], 'operations': ['CREATE'], 'resources': ['deployments']}], 'sideEffects': 'None'}


# -- the table: (id, input, target, find, expected objects, expected converted_from, expected note fragments in order) ----

CONVERTED = [
    # workloads -> apps/v1
    ('extensions-deployment', obj('extensions/v1beta1', 'Deployment', 'web', {'replicas': 3, 'rollbackTo': {'revision': 2}, 'template': template()},
                                  status={'replicas': 3}), CURRENT, None,
     [obj('apps/v1', 'Deployment', 'web', {'replicas': 3, 'template': template(), 'selector': SELECTOR, 'revisionHistoryLimit': MAX,
                                           'progressDeadlineSeconds': MAX,
                                           'strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': 1, 'maxUnavailable': 1}}})],
     'extensions/v1beta1 Deployment',
     ['spec.selector set to the pod template labels', 'spec.rollbackTo dropped', 'spec.revisionHistoryLimit set to 2147483647',
      'spec.progressDeadlineSeconds set to 2147483647', 'spec.strategy.rollingUpdate.maxSurge set to 1',
      'spec.strategy.rollingUpdate.maxUnavailable set to 1']),
    ('extensions-deployment-recreate',
     obj('extensions/v1beta1', 'Deployment', 'web', {'selector': SELECTOR, 'strategy': {'type': 'Recreate'}, 'revisionHistoryLimit': 5,
                                                     'template': template()}), CURRENT, None,
     [obj('apps/v1', 'Deployment', 'web', {'selector': SELECTOR, 'strategy': {'type': 'Recreate'}, 'revisionHistoryLimit': 5, 'template': template(),
                                           'progressDeadlineSeconds': MAX})],
     'extensions/v1beta1 Deployment', ['spec.progressDeadlineSeconds set to 2147483647 explicitly: extensions/v1beta1 had no progress deadline']),
    ('apps-v1beta1-deployment',
     obj('apps/v1beta1', 'Deployment', 'web', {'selector': SELECTOR, 'template': template(), 'progressDeadlineSeconds': 600,
                                               'strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}}}),
     CURRENT, None,
     [obj('apps/v1', 'Deployment', 'web', {'selector': SELECTOR, 'template': template(), 'progressDeadlineSeconds': 600, 'revisionHistoryLimit': 2,
                                           'strategy': {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}}})],
     'apps/v1beta1 Deployment', ['spec.revisionHistoryLimit set to 2 explicitly: apps/v1beta1 kept 2 old ReplicaSets']),
    ('apps-v1beta2-daemonset',
     obj('apps/v1beta2', 'DaemonSet', 'agent', {'selector': SELECTOR, 'template': template(), 'updateStrategy': {'type': 'RollingUpdate'}}),
     CURRENT, None, [obj('apps/v1', 'DaemonSet', 'agent', {'selector': SELECTOR, 'template': template(), 'updateStrategy': {'type': 'RollingUpdate'}})],
     'apps/v1beta2 DaemonSet', []),
    ('extensions-daemonset', obj('extensions/v1beta1', 'DaemonSet', 'agent', {'selector': SELECTOR, 'template': template(), 'templateGeneration': 4}),
     CURRENT, None, [obj('apps/v1', 'DaemonSet', 'agent', {'selector': SELECTOR, 'template': template(), 'updateStrategy': {'type': 'OnDelete'}})],
     'extensions/v1beta1 DaemonSet', ['spec.updateStrategy.type set to OnDelete explicitly: extensions/v1beta1 replaced pods only when deleted']),
    ('apps-v1beta1-statefulset', obj('apps/v1beta1', 'StatefulSet', 'db', {'serviceName': 'db', 'replicas': 2, 'template': template('db', 'postgres:16')}),
     CURRENT, None,
     [obj('apps/v1', 'StatefulSet', 'db', {'serviceName': 'db', 'replicas': 2, 'template': template('db', 'postgres:16'),
                                           'selector': {'matchLabels': {'app': 'db'}}, 'updateStrategy': {'type': 'OnDelete'}})],
     'apps/v1beta1 StatefulSet', ['spec.selector set', 'spec.updateStrategy.type set to OnDelete']),
    ('extensions-replicaset', obj('extensions/v1beta1', 'ReplicaSet', 'web-5d8f', {'replicas': 1, 'selector': SELECTOR, 'template': template()}),
     CURRENT, None, [obj('apps/v1', 'ReplicaSet', 'web-5d8f', {'replicas': 1, 'selector': SELECTOR, 'template': template()})],
     'extensions/v1beta1 ReplicaSet', []),
    # Ingress
    ('extensions-ingress', obj('extensions/v1beta1', 'Ingress', 'shop', INGRESS_V1BETA1_SPEC), CURRENT, None,
     [obj('networking.k8s.io/v1', 'Ingress', 'shop', INGRESS_V1_SPEC)], 'extensions/v1beta1 Ingress', []),
    ('networking-v1beta1-ingress-class-and-resource',
     annotated(obj('networking.k8s.io/v1beta1', 'Ingress', 'static', {
         'backend': {'resource': {'apiGroup': 'storage.example.com', 'kind': 'Bucket', 'name': 'assets'}},
         'rules': [{'http': {'paths': [{'path': '/shop', 'pathType': 'Exact', 'backend': {'serviceName': 'web', 'servicePort': 80}}]}}]}),
         **{'kubernetes.io/ingress.class': 'nginx'}), CURRENT, None,
     [annotated(obj('networking.k8s.io/v1', 'Ingress', 'static', {
         'defaultBackend': {'resource': {'apiGroup': 'storage.example.com', 'kind': 'Bucket', 'name': 'assets'}}, 'ingressClassName': 'nginx',
         'rules': [{'http': {'paths': [{'path': '/shop', 'pathType': 'Exact', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}}]}}]}),
         **{'kubernetes.io/ingress.class': 'nginx'})],
     'networking.k8s.io/v1beta1 Ingress', ["spec.ingressClassName set to 'nginx' from the kubernetes.io/ingress.class annotation (kept); an IngressClass"]),
    ('ingress-class-in-restore-set',
     annotated(obj('extensions/v1beta1', 'Ingress', 'shop', {'backend': {'serviceName': 'web', 'servicePort': 80}}),
               **{'kubernetes.io/ingress.class': 'public'}),
     CURRENT, restore_set(obj('networking.k8s.io/v1', 'IngressClass', 'public', {'controller': 'k8s.io/ingress-nginx'}, namespace=None)),
     [annotated(obj('networking.k8s.io/v1', 'Ingress', 'shop', {'defaultBackend': {'service': {'name': 'web', 'port': {'number': 80}}},
                                                                'ingressClassName': 'public'}), **{'kubernetes.io/ingress.class': 'public'})],
     'extensions/v1beta1 Ingress', ['its IngressClass is in the restore set']),
    ('ingress-gce-class-stays-an-annotation',
     annotated(obj('extensions/v1beta1', 'Ingress', 'shop', {'backend': {'serviceName': 'web', 'servicePort': 80}}), **{'kubernetes.io/ingress.class': 'gce'}),
     CURRENT, None,
     [annotated(obj('networking.k8s.io/v1', 'Ingress', 'shop', {'defaultBackend': {'service': {'name': 'web', 'port': {'number': 80}}}}),
                **{'kubernetes.io/ingress.class': 'gce'})], 'extensions/v1beta1 Ingress', []),
    ('ingress-v1-down-to-v1beta1',
     obj('networking.k8s.io/v1', 'Ingress', 'shop', {
         'ingressClassName': 'nginx', 'defaultBackend': {'service': {'name': 'default-http', 'port': {'number': 80}}},
         'rules': [{'host': 'shop.example.com', 'http': {'paths': [
             {'path': '/', 'pathType': 'Prefix', 'backend': {'service': {'name': 'web', 'port': {'name': 'http'}}}}]}}]}),
     K1_18, None,
     [obj('networking.k8s.io/v1beta1', 'Ingress', 'shop', {
         'ingressClassName': 'nginx', 'backend': {'serviceName': 'default-http', 'servicePort': 80},
         'rules': [{'host': 'shop.example.com', 'http': {'paths': [
             {'path': '/', 'pathType': 'Prefix', 'backend': {'serviceName': 'web', 'servicePort': 'http'}}]}}]})],
     'networking.k8s.io/v1 Ingress', []),
    ('ingress-v1-down-to-pre-1.18',
     obj('networking.k8s.io/v1', 'Ingress', 'shop', {'ingressClassName': 'nginx', 'rules': [{'http': {'paths': [
         {'path': '/', 'pathType': 'Prefix', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}}]}}]}),
     K1_17, None,
     [annotated(obj('networking.k8s.io/v1beta1', 'Ingress', 'shop', {'rules': [{'http': {'paths': [
         {'path': '/', 'backend': {'serviceName': 'web', 'servicePort': 80}}]}}]}), **{'kubernetes.io/ingress.class': 'nginx'})],
     'networking.k8s.io/v1 Ingress', ["spec.ingressClassName 'nginx' moved to the kubernetes.io/ingress.class annotation", 'pathType Prefix dropped']),
    # HorizontalPodAutoscaler
    ('hpa-v2beta1-to-v2', hpa('v2beta1', HPA_V2BETA1_METRICS), CURRENT, None, [hpa('v2', HPA_V2_METRICS)], 'autoscaling/v2beta1 HorizontalPodAutoscaler', []),
    ('hpa-v2beta1-to-v2beta2', hpa('v2beta1', HPA_V2BETA1_METRICS), apis('autoscaling/v2beta2 HorizontalPodAutoscaler'), None, [hpa('v2beta2', HPA_V2_METRICS)],
     'autoscaling/v2beta1 HorizontalPodAutoscaler', []),
    ('hpa-v2beta2-to-v2', hpa('v2beta2', HPA_V2_METRICS, behavior=BEHAVIOR), CURRENT, None, [hpa('v2', HPA_V2_METRICS, behavior=BEHAVIOR)],
     'autoscaling/v2beta2 HorizontalPodAutoscaler', []),
    ('hpa-v2-to-v2beta2', hpa('v2', HPA_V2_METRICS, behavior=BEHAVIOR), K1_21, None, [hpa('v2beta2', HPA_V2_METRICS, behavior=BEHAVIOR)],
     'autoscaling/v2 HorizontalPodAutoscaler', []),
    ('hpa-v2-to-v2beta1', hpa('v2', HPA_V2_METRICS, behavior=BEHAVIOR), K1_11, None, [hpa('v2beta1', HPA_V2BETA1_METRICS)],
     'autoscaling/v2 HorizontalPodAutoscaler', ['spec.behavior (scale-up/down policies) dropped']),
    # batch, policy, networking, discovery
    ('cronjob-v1beta1-to-v1', obj('batch/v1beta1', 'CronJob', 'report', {'schedule': '0 3 * * *', 'jobTemplate': {'spec': {'template': template()}}}),
     CURRENT, None, [obj('batch/v1', 'CronJob', 'report', {'schedule': '0 3 * * *', 'jobTemplate': {'spec': {'template': template()}}})],
     'batch/v1beta1 CronJob', []),
    ('cronjob-v1-to-v1beta1', obj('batch/v1', 'CronJob', 'report', {'schedule': '0 3 * * *', 'timeZone': 'Europe/Paris', 'jobTemplate': {}}),
     K1_20, None, [obj('batch/v1beta1', 'CronJob', 'report', {'schedule': '0 3 * * *', 'jobTemplate': {}})],
     'batch/v1 CronJob', ["spec.timeZone 'Europe/Paris' dropped: batch/v1beta1 has none"]),
    ('pdb-v1beta1-to-v1', obj('policy/v1beta1', 'PodDisruptionBudget', 'web', {'minAvailable': 1, 'selector': SELECTOR}), CURRENT, None,
     [obj('policy/v1', 'PodDisruptionBudget', 'web', {'minAvailable': 1, 'selector': SELECTOR})], 'policy/v1beta1 PodDisruptionBudget', []),
    ('pdb-v1beta1-empty-selector', obj('policy/v1beta1', 'PodDisruptionBudget', 'all', {'maxUnavailable': 0, 'selector': {}}), CURRENT, None,
     [obj('policy/v1', 'PodDisruptionBudget', 'all', {'maxUnavailable': 0, 'selector': {}})], 'policy/v1beta1 PodDisruptionBudget',
     ['spec.selector is empty: it selected no pods in policy/v1beta1 but selects every pod of the namespace in policy/v1']),
    ('pdb-v1-to-v1beta1',
     obj('policy/v1', 'PodDisruptionBudget', 'web', {'minAvailable': 1, 'selector': SELECTOR, 'unhealthyPodEvictionPolicy': 'AlwaysAllow'}), K1_20, None,
     [obj('policy/v1beta1', 'PodDisruptionBudget', 'web', {'minAvailable': 1, 'selector': SELECTOR})], 'policy/v1 PodDisruptionBudget',
     ['spec.unhealthyPodEvictionPolicy dropped']),
    ('extensions-networkpolicy', obj('extensions/v1beta1', 'NetworkPolicy', 'deny', {'podSelector': {}, 'policyTypes': ['Ingress']}), CURRENT, None,
     [obj('networking.k8s.io/v1', 'NetworkPolicy', 'deny', {'podSelector': {}, 'policyTypes': ['Ingress']})], 'extensions/v1beta1 NetworkPolicy', []),
    ('extensions-psp-to-policy', obj('extensions/v1beta1', 'PodSecurityPolicy', 'restricted', {'privileged': False}, namespace=None), K1_21, None,
     [obj('policy/v1beta1', 'PodSecurityPolicy', 'restricted', {'privileged': False}, namespace=None)], 'extensions/v1beta1 PodSecurityPolicy', []),
    ('endpointslice-v1beta1-to-v1', obj('discovery.k8s.io/v1beta1', 'EndpointSlice', 'web-x7k2', addressType='IPv4', endpoints=ENDPOINTS_V1BETA1,
                                        ports=SLICE_PORTS), CURRENT, None,
     [obj('discovery.k8s.io/v1', 'EndpointSlice', 'web-x7k2', addressType='IPv4', endpoints=ENDPOINTS_V1, ports=SLICE_PORTS)],
     'discovery.k8s.io/v1beta1 EndpointSlice', []),
    ('endpointslice-v1-to-v1beta1', obj('discovery.k8s.io/v1', 'EndpointSlice', 'web-x7k2', addressType='IPv4', endpoints=ENDPOINTS_V1, ports=SLICE_PORTS),
     K1_20, None, [obj('discovery.k8s.io/v1beta1', 'EndpointSlice', 'web-x7k2', addressType='IPv4', endpoints=ENDPOINTS_V1BETA1, ports=SLICE_PORTS)],
     'discovery.k8s.io/v1 EndpointSlice', []),
    # apiVersion-only rewrites between identical schemas
    ('rbac-v1beta1-to-v1', obj('rbac.authorization.k8s.io/v1beta1', 'ClusterRole', 'reader', namespace=None, rules=[{'verbs': ['get']}]), CURRENT, None,
     [obj('rbac.authorization.k8s.io/v1', 'ClusterRole', 'reader', namespace=None, rules=[{'verbs': ['get']}])],
     'rbac.authorization.k8s.io/v1beta1 ClusterRole', []),
    ('rbac-v1-down-to-v1beta1', obj('rbac.authorization.k8s.io/v1', 'ClusterRole', 'reader', namespace=None, rules=[]), K1_17, None,
     [obj('rbac.authorization.k8s.io/v1beta1', 'ClusterRole', 'reader', namespace=None, rules=[])], 'rbac.authorization.k8s.io/v1 ClusterRole', []),
    ('storageclass-v1beta1', obj('storage.k8s.io/v1beta1', 'StorageClass', 'fast', namespace=None, provisioner='ebs.csi.aws.com'), CURRENT, None,
     [obj('storage.k8s.io/v1', 'StorageClass', 'fast', namespace=None, provisioner='ebs.csi.aws.com')], 'storage.k8s.io/v1beta1 StorageClass', []),
    ('priorityclass-v1alpha1', obj('scheduling.k8s.io/v1alpha1', 'PriorityClass', 'high', namespace=None, value=1000), CURRENT, None,
     [obj('scheduling.k8s.io/v1', 'PriorityClass', 'high', namespace=None, value=1000)], 'scheduling.k8s.io/v1alpha1 PriorityClass', []),
    ('lease-v1beta1', obj('coordination.k8s.io/v1beta1', 'Lease', 'leader', {'holderIdentity': 'web-0'}), CURRENT, None,
     [obj('coordination.k8s.io/v1', 'Lease', 'leader', {'holderIdentity': 'web-0'})], 'coordination.k8s.io/v1beta1 Lease', []),
    ('volumesnapshot-v1beta1', obj('snapshot.storage.k8s.io/v1beta1', 'VolumeSnapshot', 'data', {'source': {'persistentVolumeClaimName': 'data'}}),
     CURRENT, None, [obj('snapshot.storage.k8s.io/v1', 'VolumeSnapshot', 'data', {'source': {'persistentVolumeClaimName': 'data'}})],
     'snapshot.storage.k8s.io/v1beta1 VolumeSnapshot', []),
    # apiextensions, admissionregistration
    ('crd-v1beta1-to-v1',
     obj('apiextensions.k8s.io/v1beta1', 'CustomResourceDefinition', 'backups.example.com', namespace=None, spec={
         'group': 'example.com', 'scope': 'Namespaced', 'names': CRD_NAMES, 'version': 'v1',
         'validation': {'openAPIV3Schema': {'type': 'object', 'properties': {'spec': {'type': 'object'}}}}, 'subresources': {'status': {}},
         'additionalPrinterColumns': [{'name': 'Phase', 'type': 'string', 'JSONPath': '.status.phase'}]}),
     CURRENT, None,
     [obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'backups.example.com', namespace=None, spec={
         'group': 'example.com', 'scope': 'Namespaced', 'names': CRD_NAMES, 'versions': [{
             'name': 'v1', 'served': True, 'storage': True, 'subresources': {'status': {}},
             'schema': {'openAPIV3Schema': {'type': 'object', 'properties': {'spec': {'type': 'object'}}, 'x-kubernetes-preserve-unknown-fields': True}},
             'additionalPrinterColumns': [{'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'}]}]})],
     'apiextensions.k8s.io/v1beta1 CustomResourceDefinition', ['unknown fields are kept', 'structural schemas']),
    ('crd-v1beta1-without-schema-with-webhook',
     obj('apiextensions.k8s.io/v1beta1', 'CustomResourceDefinition', 'backups.example.com', namespace=None, spec={
         'group': 'example.com', 'scope': 'Cluster', 'names': CRD_NAMES, 'preserveUnknownFields': False,
         'versions': [{'name': 'v1alpha1', 'served': True, 'storage': False}, {'name': 'v1', 'served': True, 'storage': True}],
         'conversion': {'strategy': 'Webhook', 'webhookClientConfig': {'service': {'namespace': 'ops', 'name': 'convert'}}}}),
     CURRENT, None,
     [obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'backups.example.com', namespace=None, spec={
         'group': 'example.com', 'scope': 'Cluster', 'names': CRD_NAMES,
         'versions': [{'name': name, 'served': True, 'storage': name == 'v1',
                       'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}} for name in ('v1alpha1', 'v1')],
         'conversion': {'strategy': 'Webhook', 'webhook': {'clientConfig': {'service': {'namespace': 'ops', 'name': 'convert'}},
                                                           'conversionReviewVersions': ['v1beta1']}}})],
     'apiextensions.k8s.io/v1beta1 CustomResourceDefinition',
     ['version v1alpha1 has no schema; apiextensions.k8s.io/v1 requires one', 'version v1 has no schema']),
    ('webhook-v1beta1-to-v1', obj('admissionregistration.k8s.io/v1beta1', 'ValidatingWebhookConfiguration', 'validator', namespace=None, webhooks=[WEBHOOK]),
     CURRENT, None,
     [obj('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', 'validator', namespace=None, webhooks=[dict(
         WEBHOOK, failurePolicy='Ignore', matchPolicy='Exact', timeoutSeconds=30, admissionReviewVersions=['v1beta1'])])],
     'admissionregistration.k8s.io/v1beta1 ValidatingWebhookConfiguration',
     ['webhook validate.example.com: v1beta1 defaults of failurePolicy, matchPolicy, timeoutSeconds, admissionReviewVersions set explicitly']),
    # OpenShift -> Kubernetes
    ('deploymentconfig-rolling', DC_ROLLING, CURRENT, None, [DEPLOYMENT_FROM_DC], 'apps.openshift.io/v1 DeploymentConfig',
     ['DeploymentConfig lifecycle hooks dropped: pre', 'container frontend image set to quay.io/example/frontend@sha256:0a1b2c',
      'DeploymentConfig triggers dropped: ConfigChange, ImageChange(frontend:latest)']),
    ('deploymentconfig-recreate', DC_RECREATE, CURRENT, None,
     [obj('apps/v1', 'Deployment', 'db', {'replicas': 1, 'selector': {'matchLabels': {'app': 'db'}}, 'strategy': {'type': 'Recreate'},
                                          'template': DC_RECREATE['spec']['template']})],
     'apps.openshift.io/v1 DeploymentConfig',
     ['spec.selector set to the pod template labels', 'lifecycle hooks dropped: mid', 'triggers dropped: ImageChange(db:10)',
      'is in the OpenShift internal registry, which the target cannot pull from']),
    ('deploymentconfig-custom-strategy-and-timeout',
     with_spec(DC_ROLLING, strategy={'type': 'Custom', 'customParams': {'image': 'deployer:1'}}, triggers=[]), CURRENT, None,
     [with_spec(DEPLOYMENT_FROM_DC, strategy={'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}},
                template=DC_ROLLING['spec']['template'])],
     'apps.openshift.io/v1 DeploymentConfig', ['Custom strategy not expressible in a Deployment: RollingUpdate used instead']),
    ('deploymentconfig-rolling-timeout',
     with_spec(DC_ROLLING, strategy={'type': 'Rolling', 'rollingParams': {'timeoutSeconds': 1800}}, triggers=[]), CURRENT, None,
     [with_spec(DEPLOYMENT_FROM_DC, strategy={'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}},
                progressDeadlineSeconds=1800, template=DC_ROLLING['spec']['template'])],
     'apps.openshift.io/v1 DeploymentConfig', ['rollingParams.timeoutSeconds 1800 became progressDeadlineSeconds']),
    ('deploymentconfig-unresolved-image',
     with_spec(DC_ROLLING, triggers=[{'type': 'ImageChange', 'imageChangeParams': {
         'containerNames': ['frontend'], 'from': {'kind': 'ImageStreamTag', 'name': 'frontend:latest'}}}]),
     CURRENT, None, [with_spec(DEPLOYMENT_FROM_DC, template=DC_ROLLING['spec']['template'])], 'apps.openshift.io/v1 DeploymentConfig',
     ['lifecycle hooks dropped: pre', 'container frontend has no image (an ImageChange trigger from frontend:latest set it on OpenShift): set its image',
      'triggers dropped: ImageChange(frontend:latest)']),
    ('deploymentconfig-legacy-v1', with_spec(DC_ROLLING, 'v1', triggers=[], strategy={'type': 'Recreate'}), CURRENT, None,
     [with_spec(DEPLOYMENT_FROM_DC, strategy={'type': 'Recreate'}, template=DC_ROLLING['spec']['template'])], 'v1 DeploymentConfig', []),
    ('deploymentconfig-openshift-without-capability', with_spec(DC_ROLLING, triggers=[], strategy={'type': 'Recreate'}),
     apis(*BASE + ('route.openshift.io/v1 Route',)), None,
     [with_spec(DEPLOYMENT_FROM_DC, strategy={'type': 'Recreate'}, template=DC_ROLLING['spec']['template'])], 'apps.openshift.io/v1 DeploymentConfig',
     ['the target is OpenShift without the DeploymentConfig API']),
    ('route-edge-tls-secret',
     route({'host': 'shop.example.com', 'path': '/app', 'port': {'targetPort': 8080}, 'wildcardPolicy': 'None',
            'tls': {'termination': 'edge', 'certificate': CERT, 'key': KEY, 'caCertificate': CA, 'insecureEdgeTerminationPolicy': 'Redirect'}},
           labels={'app': 'frontend'}),
     CURRENT, FIND_SERVICE,
     [{'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'frontend-tls', 'namespace': 'shop', 'labels': {'app': 'frontend'}},
       'type': 'kubernetes.io/tls', 'data': {'tls.crt': b64(CERT + CA + '\n'), 'tls.key': b64(KEY)}},
      ingress_v1('shop.example.com', '/app', {'number': 80}, tls=[{'hosts': ['shop.example.com'], 'secretName': 'frontend-tls'}], labels={'app': 'frontend'})],
     'route.openshift.io/v1 Route',
     ['certificate and key moved to the kubernetes.io/tls Secret frontend-tls (with its CA chain appended to tls.crt)',
      'insecureEdgeTerminationPolicy Redirect']),
    ('route-named-target-port', route({'host': 'metrics.example.com', 'port': {'targetPort': 'metrics'}}), CURRENT, FIND_SERVICE,
     [ingress_v1('metrics.example.com', '/', {'number': 9090})], 'route.openshift.io/v1 Route', []),
    ('route-service-port-name', route({'host': 'shop.example.com', 'port': {'targetPort': 'http'}}), CURRENT, FIND_SERVICE,
     [ingress_v1('shop.example.com', '/', {'number': 80})], 'route.openshift.io/v1 Route', []),
    ('route-service-not-in-restore-set', route({'host': 'shop.example.com', 'port': {'targetPort': 8080}}), CURRENT, None,
     [ingress_v1('shop.example.com', '/', {'number': 8080})], 'route.openshift.io/v1 Route',
     ["Service frontend is not in the restore set: the route's targetPort 8080 is assumed to be the Service port"]),
    ('route-no-port-first-service-port', route({'host': 'shop.example.com'}), CURRENT, FIND_SERVICE,
     [ingress_v1('shop.example.com', '/', {'number': 80})], 'route.openshift.io/v1 Route', ['the route names no port: the Ingress uses the first port (80)']),
    ('route-reencrypt-default-cert-allow',
     route({'host': 'shop.example.com', 'port': {'targetPort': 8080},
            'tls': {'termination': 'reencrypt', 'destinationCACertificate': CA, 'insecureEdgeTerminationPolicy': 'Allow'}}),
     CURRENT, FIND_SERVICE, [ingress_v1('shop.example.com', '/', {'number': 80}, tls=[{'hosts': ['shop.example.com']}])], 'route.openshift.io/v1 Route',
     ["the route used the router's default certificate", 'nginx.ingress.kubernetes.io/backend-protocol: "HTTPS"', 'insecureEdgeTerminationPolicy Allow']),
    ('route-wildcard-alternate-backends-router-annotations',
     route({'host': 'www.example.com', 'port': {'targetPort': 8080}, 'wildcardPolicy': 'Subdomain',
            'alternateBackends': [{'kind': 'Service', 'name': 'frontend-canary', 'weight': 10}]},
           annotations={'haproxy.router.openshift.io/timeout': '60s'}),
     CURRENT, FIND_SERVICE, [ingress_v1('*.example.com', '/', {'number': 80}, annotations={'haproxy.router.openshift.io/timeout': '60s'})],
     'route.openshift.io/v1 Route',
     ['the Ingress host is *.example.com', 'alternateBackends dropped: an Ingress cannot split traffic by weight; all traffic goes to frontend '
      '(was shared with frontend-canary (weight 10))', 'OpenShift router annotations have no effect on an Ingress: haproxy.router.openshift.io/timeout']),
    ('route-without-host', route({'port': {'targetPort': 8080}}), CURRENT, FIND_SERVICE, [ingress_v1(None, '/', {'number': 80})],
     'route.openshift.io/v1 Route', ['the route had no spec.host']),
    ('route-to-v1beta1-ingress', route({'host': 'shop.example.com', 'port': {'targetPort': 8080}}), K1_18, FIND_SERVICE,
     [obj('networking.k8s.io/v1beta1', 'Ingress', 'frontend', {'rules': [{'host': 'shop.example.com', 'http': {'paths': [
         {'path': '/', 'pathType': 'Prefix', 'backend': {'serviceName': 'frontend', 'servicePort': 80}}]}}]})], 'route.openshift.io/v1 Route', []),
    ('project-to-namespace', obj('project.openshift.io/v1', 'Project', 'shop', {'finalizers': ['kubernetes']}, namespace=None,
                                 status={'phase': 'Active'}),
     CURRENT, None, [{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'shop'}}], 'project.openshift.io/v1 Project', []),
]

# (id, input, target, find, fragments the reason must contain)
UNCONVERTIBLE = [
    ('psp-removed', obj('policy/v1beta1', 'PodSecurityPolicy', 'restricted', {}, namespace=None), CURRENT, None,
     ['policy/v1beta1 PodSecurityPolicy restricted:', 'removed in Kubernetes 1.25', 'pod-security.kubernetes.io/enforce']),
    ('extensions-psp-removed', obj('extensions/v1beta1', 'PodSecurityPolicy', 'restricted', {}, namespace=None), CURRENT, None,
     ['extensions/v1beta1 PodSecurityPolicy restricted:', 'Pod Security Admission']),
    ('cr-without-crd', obj('velero.io/v1', 'Schedule', 'nightly', {'schedule': '@daily'}), CURRENT, None,
     ['velero.io/v1 Schedule shop/nightly:', 'install the CRD schedules.velero.io first or include it in the restore']),
    ('cr-plural-guess', obj('crd.projectcalico.org/v1', 'NetworkPolicy', 'deny', {}), CURRENT, None, ['networkpolicies.crd.projectcalico.org']),
    ('cr-with-crd-in-restore-set', obj('example.com/v1', 'Backup', 'daily', {}), CURRENT,
     restore_set(obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'backups.example.com', {}, namespace=None)),
     ['the CRD backups.example.com is in this restore set: restore the CRD first']),
    ('cr-other-version-served', obj('example.com/v1alpha1', 'Backup', 'daily', {}), apis(*BASE + ('example.com/v2 Backup',)), None,
     ['the installed CRD serves Backup only as example.com/v2', 'serves v1alpha1']),
    ('builtin-no-known-conversion', obj('flowcontrol.apiserver.k8s.io/v1beta1', 'FlowSchema', 'system', {}, namespace=None), CURRENT, None,
     ['serves FlowSchema only as flowcontrol.apiserver.k8s.io/v1 and Ferry knows no conversion from flowcontrol.apiserver.k8s.io/v1beta1']),
    ('imagestream-on-kubernetes', obj('image.openshift.io/v1', 'ImageStream', 'frontend', {}), CURRENT, None,
     ['the target is not OpenShift (it serves no image.openshift.io API)', 'push the images to a registry']),
    ('buildconfig-on-kubernetes', obj('build.openshift.io/v1', 'BuildConfig', 'frontend', {}), CURRENT, None, ['build the images in CI']),
    ('template-on-kubernetes', obj('template.openshift.io/v1', 'Template', 'app', {}), CURRENT, None, ['oc process']),
    ('legacy-imagestream-on-kubernetes', obj('v1', 'ImageStream', 'frontend', {}), CURRENT, None, ['v1 ImageStream shop/frontend:', 'image.openshift.io']),
    ('scc-on-kubernetes', obj('security.openshift.io/v1', 'SecurityContextConstraints', 'anyuid', namespace=None), CURRENT, None,
     ['Pod Security Admission']),
    ('route-passthrough', route({'host': 'db.example.com', 'tls': {'termination': 'passthrough'}}), CURRENT, FIND_SERVICE,
     ['route.openshift.io/v1 Route shop/frontend:', 'TLS passthrough', 'nginx.ingress.kubernetes.io/ssl-passthrough']),
    ('route-no-port-no-service', route({'host': 'shop.example.com'}), CURRENT, None,
     ['the route names no port and its Service frontend is not in the restore set']),
    ('route-to-non-service', route({'to': {'kind': 'Pod', 'name': 'x'}}), CURRENT, None, ['does not point at a Service']),
    ('workload-without-labels', obj('extensions/v1beta1', 'Deployment', 'bare', {'template': {'spec': {'containers': []}}}), CURRENT, None,
     ['apps/v1 requires spec.selector']),
    ('hpa-v2-target-v2beta1-cannot-express', hpa('v2', [{'type': 'External', 'external': {
        'metric': {'name': 'lag'}, 'target': {'type': 'Utilization', 'averageUtilization': 5}}}]), K1_11, None,
     ['a External metric with a Utilization target cannot be expressed in autoscaling/v2beta1']),
    ('webhook-side-effects-unknown', obj('admissionregistration.k8s.io/v1beta1', 'ValidatingWebhookConfiguration', 'old', namespace=None,
                                         webhooks=[dict(WEBHOOK, sideEffects='Unknown')]), CURRENT, None,
     ['declares sideEffects Unknown', 'allows only None or NoneOnDryRun']),
    ('no-apiversion', {'kind': 'ConfigMap', 'metadata': {'name': 'x'}}, CURRENT, None, ['no apiVersion or kind']),
]

# (id, input, target): served by the target, returned untouched.
AS_IS = [
    ('deployment-on-current', obj('apps/v1', 'Deployment', 'web', {'selector': SELECTOR, 'template': template()}), CURRENT),
    ('autoscaling-v1-everywhere', obj('autoscaling/v1', 'HorizontalPodAutoscaler', 'web', {'scaleTargetRef': SCALE_TARGET, 'maxReplicas': 3}), K1_11),
    ('extensions-ingress-on-1.21', obj('extensions/v1beta1', 'Ingress', 'shop', INGRESS_V1BETA1_SPEC), K1_21),
    ('route-on-openshift', route({'host': 'shop.example.com'}), OPENSHIFT),
    ('deploymentconfig-on-openshift', DC_ROLLING, OPENSHIFT),
    ('imagestream-on-openshift', obj('image.openshift.io/v1', 'ImageStream', 'frontend', {}), OPENSHIFT),
    ('vanilla-ingress-on-openshift', ingress_v1('shop.example.com', '/', {'number': 80}), OPENSHIFT),
]


def ids(table):
    return [row[0] for row in table]


@pytest.mark.parametrize('name, source, target, find, expected, converted_from, notes', CONVERTED, ids=ids(CONVERTED))
def test_conversion(name, source, target, find, expected, converted_from, notes):
    result = convert.convert(source, target, find)
    assert result.unconvertible is None, result.unconvertible
    assert result.objects == expected
    assert result.converted_from == converted_from
    assert len(result.notes) == len(notes), result.notes
    for note, fragment in zip(result.notes, notes):
        assert fragment in note
    for item in result.objects:
        assert target.serves(item['apiVersion'], item['kind'])


@pytest.mark.parametrize('name, source, target, find, fragments', UNCONVERTIBLE, ids=ids(UNCONVERTIBLE))
def test_unconvertible_is_named_with_a_reason(name, source, target, find, fragments):
    result = convert.convert(source, target, find)
    assert result.objects == [] and result.converted_from is None
    for fragment in fragments:
        assert fragment in result.unconvertible


@pytest.mark.parametrize('name, source, target', AS_IS, ids=ids(AS_IS))
def test_served_objects_pass_through_untouched(name, source, target):
    result = convert.convert(source, target)
    assert result == Conversion([source], None, [], None)
    assert result.objects[0] is source


INPUTS = [(row[0], row[1], row[2], row[3]) for row in CONVERTED + UNCONVERTIBLE]


@pytest.mark.parametrize('name, source, target, find', INPUTS, ids=ids(INPUTS))
def test_input_is_never_modified(name, source, target, find):
    before = copy.deepcopy(source)
    result = convert.convert(source, target, find)
    assert source == before
    for item in result.objects:  # and the output shares nothing with it
        item['metadata']['name'] = 'changed'
        for value in (item.get('spec') or {}).values():
            if isinstance(value, dict):
                value['changed'] = True
    assert source == before


def test_route_with_tls_applies_the_secret_before_the_ingress():
    source = route({'host': 'shop.example.com', 'port': {'targetPort': 'http'}, 'tls': {'termination': 'edge', 'certificate': CERT, 'key': KEY}})
    secret, ingress = convert.convert(source, CURRENT, FIND_SERVICE).objects
    assert secret['kind'] == 'Secret' and secret['type'] == 'kubernetes.io/tls'
    assert base64.b64decode(secret['data']['tls.crt']).decode() == CERT
    assert base64.b64decode(secret['data']['tls.key']).decode() == KEY
    assert ingress['spec']['tls'] == [{'hosts': ['shop.example.com'], 'secretName': 'frontend-tls'}]


def test_the_hpa_metrics_survive_a_round_trip_down_and_up():
    down = convert.convert(hpa('v2', HPA_V2_METRICS), K1_11).objects[0]
    assert down['apiVersion'] == 'autoscaling/v2beta1'
    assert convert.convert(down, CURRENT).objects == [hpa('v2', HPA_V2_METRICS)]


# -- TargetApis -----------------------------------------------------------------------------------

def test_target_apis_reads_discovery_entries():
    entries = [entry('apps/v1', 'Deployment'), entry('apps/v1', 'Scale', subresource='scale'), entry('autoscaling/v2', 'HorizontalPodAutoscaler'),
               entry('autoscaling/v1', 'HorizontalPodAutoscaler', preferred=False), entry('autoscaling/v2beta2', 'HorizontalPodAutoscaler', preferred=False),
               entry('example.com/v1beta1', 'Backup', preferred=False), entry('example.com/v1alpha1', 'Backup', preferred=False)]
    target = TargetApis(entries)
    assert target.openshift is False
    assert target.serves('apps/v1', 'Deployment') and not target.serves('apps/v1beta2', 'Deployment')
    assert not target.serves('apps/v1', 'Scale')  # subresources are not served kinds
    assert target.preferred_version('autoscaling', 'HorizontalPodAutoscaler') == 'autoscaling/v2'
    assert target.versions('autoscaling', 'HorizontalPodAutoscaler') == ['autoscaling/v2', 'autoscaling/v1', 'autoscaling/v2beta2']
    assert target.preferred_version('example.com', 'Backup') == 'example.com/v1beta1'  # none preferred: the newest
    assert target.preferred_version('batch', 'CronJob') is None


def test_target_apis_detects_openshift_unless_told():
    served = [entry('apps/v1', 'Deployment'), entry('route.openshift.io/v1', 'Route')]
    assert TargetApis(served).openshift is True
    assert TargetApis(served, openshift=False).openshift is False
    assert TargetApis([entry('apps/v1', 'Deployment')], openshift=True).openshift is True


def test_version_priority_orders_as_kubernetes_does():
    versions = ['v1alpha1', 'v2beta1', 'v1', 'v1beta2', 'v2', 'v1beta1', 'v2beta2']
    assert sorted(versions, key=convert.version_priority, reverse=True) == ['v2', 'v1', 'v2beta2', 'v2beta1', 'v1beta2', 'v1beta1', 'v1alpha1']


# -- real sandbox API servers: discovery, and objects read from one cluster created on another -------------
# One test with three clusters (current 1.31, 1.21, OpenShift): discovery costs about 0.8 s per sandbox cluster.

SERVER_FIELDS = ('uid', 'resourceVersion', 'creationTimestamp', 'generation', 'managedFields', 'selfLink')


def test_sandbox_clusters(sandbox_cluster, connect):
    current = connect(sandbox_cluster('current'))
    legacy = connect(sandbox_cluster('legacy', version='1.21'))
    ocp = connect(sandbox_cluster('ocp', openshift=True))
    check_discovery(TargetApis(current.discovery()), TargetApis(legacy.discovery()), TargetApis(ocp.discovery()))
    restore_from_1_21(legacy, current)
    restore_from_openshift(ocp, current)


def check_discovery(current, legacy, ocp):
    assert (current.openshift, legacy.openshift, ocp.openshift) == (False, False, True)
    assert current.preferred_version('autoscaling', 'HorizontalPodAutoscaler') == 'autoscaling/v2'
    assert legacy.preferred_version('autoscaling', 'HorizontalPodAutoscaler') == 'autoscaling/v1'
    assert legacy.serves('extensions/v1beta1', 'Ingress') and not current.serves('extensions/v1beta1', 'Ingress')
    assert not legacy.serves('extensions/v1beta1', 'Deployment')  # gone since 1.16, as on a real 1.21

    v1beta1_ingress = obj('networking.k8s.io/v1beta1', 'Ingress', 'shop', INGRESS_V1BETA1_SPEC)
    assert convert.convert(v1beta1_ingress, legacy).converted_from is None
    assert convert.convert(v1beta1_ingress, current).objects == [obj('networking.k8s.io/v1', 'Ingress', 'shop', INGRESS_V1_SPEC)]
    assert convert.convert(hpa('v2', HPA_V2_METRICS), legacy).objects == [hpa('v2beta2', HPA_V2_METRICS)]
    assert convert.convert(hpa('v2beta1', HPA_V2BETA1_METRICS), current).objects == [hpa('v2', HPA_V2_METRICS)]
    for version in ('v1beta1', 'v1'):
        cronjob = obj('batch/%s' % version, 'CronJob', 'report', {'schedule': '@hourly', 'jobTemplate': {}})
        assert convert.convert(cronjob, legacy).converted_from is None
    assert convert.convert(obj('batch/v1beta1', 'CronJob', 'report', {}), current).objects[0]['apiVersion'] == 'batch/v1'
    assert convert.convert(obj('policy/v1beta1', 'PodDisruptionBudget', 'web', {}), current).objects[0]['apiVersion'] == 'policy/v1'

    assert convert.convert(DC_ROLLING, ocp).objects == [DC_ROLLING]
    assert convert.convert(DC_ROLLING, current).objects == [DEPLOYMENT_FROM_DC]
    plain = route({'host': 'shop.example.com', 'port': {'targetPort': 8080}})
    assert convert.convert(plain, ocp).converted_from is None
    assert convert.convert(plain, current, FIND_SERVICE).objects == [ingress_v1('shop.example.com', '/', {'number': 80})]
    assert convert.convert(plain, legacy, FIND_SERVICE).objects == [ingress_v1('shop.example.com', '/', {'number': 80})]
    assert convert.convert(ingress_v1('shop.example.com', '/', {'number': 80}), ocp).converted_from is None
    assert 'is not OpenShift' in convert.convert(obj('image.openshift.io/v1', 'ImageStream', 'frontend', {}), current).unconvertible


def capture(cluster, item):
    """Create ``item`` on the source cluster, read it back and strip what the server added, as a backup would."""
    objects.create_object(cluster, item)
    live = objects.get_object(cluster, item['apiVersion'], item['kind'], item['metadata']['name'], item['metadata'].get('namespace'))
    live.pop('status', None)
    for key in SERVER_FIELDS:
        live['metadata'].pop(key, None)
    if live['kind'] == 'Service':
        for key in ('clusterIP', 'clusterIPs'):
            live['spec'].pop(key, None)
    return live


def restore(cluster, captured):
    """Convert every captured object for ``cluster`` and create the results there; the server validates them."""
    target = TargetApis(cluster.discovery())
    find = restore_set(*captured)
    created, notes = [], []
    for item in captured:
        result = convert.convert(item, target, find)
        assert result.unconvertible is None, result.unconvertible
        notes.extend(result.notes)
        for converted in result.objects:
            created.append(objects.create_object(cluster, converted))
    return created, notes


def namespace(name):
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}


def in_namespace(item, name):
    item = copy.deepcopy(item)
    item['metadata']['namespace'] = name
    return item


def restore_from_1_21(legacy, current):
    objects.create_object(legacy, namespace('shop'))
    captured = [namespace('shop')] + [capture(legacy, item) for item in (
        obj('networking.k8s.io/v1beta1', 'Ingress', 'shop', INGRESS_V1BETA1_SPEC),
        annotated(obj('extensions/v1beta1', 'Ingress', 'static', {'backend': {'serviceName': 'web', 'servicePort': 80}}),
                  **{'kubernetes.io/ingress.class': 'nginx'}),
        obj('batch/v1beta1', 'CronJob', 'report', {'schedule': '0 3 * * *', 'jobTemplate': {'spec': {'template': {
            'spec': {'restartPolicy': 'OnFailure', 'containers': [{'name': 'report', 'image': 'busybox:1.36'}]}}}}}),
        obj('policy/v1beta1', 'PodDisruptionBudget', 'web', {'minAvailable': 1, 'selector': SELECTOR}),
        hpa('v2beta1', HPA_V2BETA1_METRICS[:2]),
    )]
    # A 1.21 API server (real or sandbox) no longer serves extensions/v1beta1 Deployments: this one is as captured from a 1.15 cluster.
    captured.append(obj('extensions/v1beta1', 'Deployment', 'web', {'replicas': 2, 'template': template()}))

    created, notes = restore(current, captured)

    by_kind = {(item['kind'], item['metadata']['name']): item for item in created}
    assert by_kind[('Ingress', 'shop')]['apiVersion'] == 'networking.k8s.io/v1'
    assert by_kind[('Ingress', 'shop')]['spec']['defaultBackend'] == {'service': {'name': 'default-http', 'port': {'number': 80}}}
    assert by_kind[('Ingress', 'static')]['spec']['ingressClassName'] == 'nginx'
    assert by_kind[('CronJob', 'report')]['apiVersion'] == 'batch/v1'
    assert by_kind[('PodDisruptionBudget', 'web')]['apiVersion'] == 'policy/v1'
    assert by_kind[('HorizontalPodAutoscaler', 'web')]['spec']['metrics'] == HPA_V2_METRICS[:2]
    deployment = objects.get_object(current, 'apps/v1', 'Deployment', 'web', 'shop')
    assert deployment['spec']['selector'] == SELECTOR
    assert deployment['spec']['revisionHistoryLimit'] == MAX
    assert any('spec.selector set to the pod template labels' in note for note in notes)


def restore_from_openshift(ocp, current):
    objects.create_object(ocp, namespace('storefront'))
    tls = {'termination': 'edge', 'certificate': CERT, 'key': KEY}
    captured = [namespace('storefront')] + [capture(ocp, in_namespace(item, 'storefront')) for item in (
        SERVICE, DC_ROLLING, route({'host': 'shop.example.com', 'port': {'targetPort': 8080}, 'tls': tls}))]

    created, notes = restore(current, captured)

    assert [(item['apiVersion'], item['kind']) for item in created] == [
        ('v1', 'Namespace'), ('v1', 'Service'), ('apps/v1', 'Deployment'), ('v1', 'Secret'), ('networking.k8s.io/v1', 'Ingress')]
    deployment = objects.get_object(current, 'apps/v1', 'Deployment', 'frontend', 'storefront')
    assert deployment['spec']['template']['spec']['containers'][0]['image'] == 'quay.io/example/frontend@sha256:0a1b2c'
    ingress = objects.get_object(current, 'networking.k8s.io/v1', 'Ingress', 'frontend', 'storefront')
    assert ingress['spec']['rules'][0]['http']['paths'][0]['backend'] == {'service': {'name': 'frontend', 'port': {'number': 80}}}
    assert ingress['spec']['tls'] == [{'hosts': ['shop.example.com'], 'secretName': 'frontend-tls'}]
    assert objects.get_object(current, 'v1', 'Secret', 'frontend-tls', 'storefront')['type'] == 'kubernetes.io/tls'
    assert any('DeploymentConfig triggers dropped' in note for note in notes)
