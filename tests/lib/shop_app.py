"""A realistic app namespace for discovery and restore tests: two micro-services, a CronJob, RBAC,
policies, a Helm release, a custom resource and a few objects nobody uses."""

import base64
import json
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object

NS = 'shop'


def meta(name, namespace=NS, **extra):
    result = {'name': name}
    if namespace:
        result['namespace'] = namespace
    result.update(extra)
    return result


def pod_template(app, service_account='default', volumes=None, env=None, image='registry.example.com/shop/%s:1.0', annotations=None):
    container = {'name': app, 'image': image % app if '%s' in image else image, 'ports': [{'containerPort': 8080}]}
    if env:
        container.update(env)
    spec = {'serviceAccountName': service_account, 'containers': [container]}
    if volumes:
        spec['volumes'] = volumes
    template_meta = {'labels': {'app': app}}
    if annotations:
        template_meta['annotations'] = annotations
    return {'metadata': template_meta, 'spec': spec}


def shop_objects(namespace=NS, helm_release='shop'):
    release = base64.b64encode(json.dumps({'name': helm_release, 'version': 1}).encode()).decode()
    objects = [
        {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace, 'labels': {'team': 'shop'}}},
        {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition', 'metadata': {'name': 'carts.shop.example.com'},
         'spec': {'group': 'shop.example.com', 'scope': 'Namespaced',
                  'names': {'plural': 'carts', 'singular': 'cart', 'kind': 'Cart', 'listKind': 'CartList'},
                  'versions': [{'name': 'v1', 'served': True, 'storage': True,
                                'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}}]}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': meta('web-config', namespace), 'data': {'greeting': 'hello'}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': meta('unused', namespace), 'data': {'x': '1'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': meta('db-creds', namespace), 'type': 'Opaque', 'stringData': {'password': 's3cret'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': meta('regcred', namespace), 'type': 'Opaque', 'stringData': {'x': 'y'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': meta('sh.helm.release.v1.%s.v1' % helm_release, namespace,
                                                                labels={'owner': 'helm', 'name': helm_release, 'version': '1'}),
         'type': 'helm.sh/release.v1', 'data': {'release': release}},
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': meta('web', namespace)},
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'Role', 'metadata': meta('web-reader', namespace),
         'rules': [{'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get']}]},
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'RoleBinding', 'metadata': meta('web-reader', namespace),
         'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'web-reader'},
         'subjects': [{'kind': 'ServiceAccount', 'name': 'web', 'namespace': namespace}]},
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRole', 'metadata': {'name': '%s-node-reader' % namespace},
         'rules': [{'apiGroups': [''], 'resources': ['nodes'], 'verbs': ['get']}]},
        {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'ClusterRoleBinding', 'metadata': {'name': '%s-web-node-reader' % namespace},
         'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': '%s-node-reader' % namespace},
         'subjects': [{'kind': 'ServiceAccount', 'name': 'web', 'namespace': namespace}]},
        {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': meta('web-data', namespace),
         'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard', 'resources': {'requests': {'storage': '1Gi'}}}},
        {'apiVersion': 'apps/v1', 'kind': 'Deployment',
         'metadata': meta('web', namespace, labels={'app.kubernetes.io/name': 'storefront', 'app.kubernetes.io/managed-by': 'Helm'},
                          annotations={'meta.helm.sh/release-name': helm_release}),
         'spec': {'replicas': 2, 'selector': {'matchLabels': {'app': 'web'}},
                  'template': pod_template('web', 'web', volumes=[{'name': 'config', 'configMap': {'name': 'web-config'}},
                                                                  {'name': 'data', 'persistentVolumeClaim': {'claimName': 'web-data'}}],
                                           env={'env': [{'name': 'DB_PASSWORD', 'valueFrom': {'secretKeyRef': {'name': 'db-creds', 'key': 'password'}}}]})}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': meta('web', namespace),
         'spec': {'selector': {'app': 'web'}, 'ports': [{'port': 80, 'targetPort': 8080}]}},
        {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'metadata': meta('web', namespace),
         'spec': {'rules': [{'host': 'shop.example.com', 'http': {'paths': [
             {'path': '/', 'pathType': 'Prefix', 'backend': {'service': {'name': 'web', 'port': {'number': 80}}}}]}}]}},
        {'apiVersion': 'autoscaling/v2', 'kind': 'HorizontalPodAutoscaler', 'metadata': meta('web', namespace),
         'spec': {'scaleTargetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': 'web'}, 'minReplicas': 2, 'maxReplicas': 5,
                  'metrics': [{'type': 'Resource', 'resource': {'name': 'cpu', 'target': {'type': 'Utilization', 'averageUtilization': 70}}}]}},
        {'apiVersion': 'policy/v1', 'kind': 'PodDisruptionBudget', 'metadata': meta('web', namespace),
         'spec': {'minAvailable': 1, 'selector': {'matchLabels': {'app': 'web'}}}},
        {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': meta('default-deny', namespace),
         'spec': {'podSelector': {}, 'policyTypes': ['Ingress']}},
        {'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': meta('db', namespace, labels={'app': 'db'}),
         'spec': {'replicas': 1, 'serviceName': 'db-headless', 'selector': {'matchLabels': {'app': 'db'}},
                  'template': pod_template('db', env={'envFrom': [{'secretRef': {'name': 'db-creds'}}]}),
                  'volumeClaimTemplates': [{'metadata': {'name': 'data'}, 'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'standard',
                                                                                   'resources': {'requests': {'storage': '2Gi'}}}}]}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': meta('db-headless', namespace),
         'spec': {'clusterIP': 'None', 'selector': {'app': 'db'}, 'ports': [{'port': 5432}]}},
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': meta('db', namespace),
         'spec': {'selector': {'app': 'db'}, 'ports': [{'port': 5432}]}},
        {'apiVersion': 'batch/v1', 'kind': 'CronJob', 'metadata': meta('report', namespace),
         'spec': {'schedule': '0 3 * * *', 'jobTemplate': {'spec': {'template': {
             'metadata': {'labels': {'app': 'report'}},
             'spec': {'restartPolicy': 'OnFailure', 'imagePullSecrets': [{'name': 'regcred'}],
                      'containers': [{'name': 'report', 'image': 'registry.example.com/shop/report:2.1',
                                      'envFrom': [{'configMapRef': {'name': 'report-settings'}}]}]}}}}}},
        {'apiVersion': 'shop.example.com/v1', 'kind': 'Cart', 'metadata': meta('default-cart', namespace), 'spec': {'currency': 'EUR'}},
    ]
    return objects


def create_shop(cluster, namespace=NS):
    """Create the shop through the API (the CRD first: the Cart kind is served once it is established)."""
    for obj in shop_objects(namespace):
        if obj['kind'] == 'Cart':
            cluster.discovery(refresh=True)
        create_object(cluster, obj)


def wait_for(predicate, timeout=10.0):
    """Poll until ``predicate()`` is true (controllers act asynchronously)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError('condition not met in %.0f s' % timeout)
