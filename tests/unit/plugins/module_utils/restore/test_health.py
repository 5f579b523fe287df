"""Post-restore health validation against sandbox clusters: what is healthy, what is not and why, and user probes."""

import os
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object
from ansible_collections.ferry.kube.plugins.module_utils.restore import health
from ferry_sandbox.cluster import Cluster
from ferry_sandbox.images import default_images
from tls import make_ca_and_server

NS = 'shop'
FAST = {'interval': 0.2}


def namespace(cluster, name=NS):
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}})


def deployment(name, replicas=1, simulate=None, annotations=None, image='nginx:1.27', args=None):
    template_annotations = {'sandbox.ferry.dev/simulate': simulate} if simulate else {}
    container = {'name': 'app', 'image': image}
    if args:  # a real process: a readiness probe nothing answers keeps it from counting as ready between crashes
        container.update(args=args, readinessProbe={'tcpSocket': {'port': 9}})
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'namespace': NS, 'annotations': annotations or {}},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': name}},
                     'template': {'metadata': {'labels': {'app': name}, 'annotations': template_annotations},
                                  'spec': {'containers': [container]}}}}


def service(name, app):
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': name, 'namespace': NS},
            'spec': {'selector': {'app': app}, 'ports': [{'port': 80, 'targetPort': 8080}]}}


def pvc(name, storage_class=None):
    spec = {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}
    if storage_class:
        spec['storageClassName'] = storage_class
    return {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': name, 'namespace': NS}, 'spec': spec}


def job(name, simulate=None):
    annotations = {'sandbox.ferry.dev/simulate': simulate} if simulate else {}
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name, 'namespace': NS},
            'spec': {'backoffLimit': 0, 'template': {'metadata': {'annotations': annotations},
                                                     'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'migrate', 'image': 'busybox'}]}}}}


def pod(name, simulate=None):
    annotations = {'sandbox.ferry.dev/simulate': simulate} if simulate else {}
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'namespace': NS, 'labels': {'role': name}, 'annotations': annotations},
            'spec': {'containers': [{'name': 'main', 'image': 'nginx'}]}}


@pytest.fixture(scope='module')
def shared_dr(tmp_path_factory):
    """One sandbox cluster for the tests that do not stop it (a connection's first discovery takes most of a second)."""
    sandbox = Cluster('dr', str(tmp_path_factory.mktemp('health') / 'dr'), local_images=default_images())
    sandbox.start()
    yield connection.connect({'kubeconfig': sandbox.kubeconfig_path})
    sandbox.stop()


@pytest.fixture
def dr(shared_dr):
    return shared_dr


@pytest.fixture
def ns(shared_dr, request):
    """A fresh namespace per test on the shared cluster."""
    name = 'shop-%s' % re.sub('[^a-z0-9]+', '-', request.node.name.lower())[5:40].strip('-')
    namespace(shared_dr, name)
    return name


def restore(cluster, into, *objects):
    """Create the objects in namespace ``into`` as a restore would; returns them as given to validate()."""
    for obj in objects:
        obj['metadata']['namespace'] = into
        create_object(cluster, obj)
    return list(objects)


def by_name(report, key='objects'):
    return {(o['kind'], o['name']): o for o in report[key]}


def test_healthy_app_is_reported_healthy(dr, ns):
    objects = restore(dr, ns, deployment('web', replicas=2), service('web', 'web'), pvc('data'), job('migrate'),
                      {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings', 'namespace': NS}, 'data': {'a': '1'}})
    calls = []
    report = health.validate(dr, objects, timeout=15, progress=lambda *args: calls.append(args), **FAST)
    assert report['healthy'] is True, report
    assert report['checked'] == 4 and report['skipped'] == 1 and report['unhealthy'] == [] and report['probes'] == []
    reasons = {k: o['reason'] for k, o in by_name(report).items()}
    assert reasons[('Deployment', 'web')] == '2/2 replicas available'
    assert reasons[('Service', 'web')] == '2 ready endpoints'
    assert reasons[('PersistentVolumeClaim', 'data')].startswith('Bound to pvc-')
    assert reasons[('Job', 'migrate')] == 'complete (1 succeeded)'
    assert calls[-1] == (4, 4, []) and report['summary'] == '4 of 4 objects healthy'
    assert report['duration_seconds'] < 15


def test_other_workload_kinds_and_standalone_objects(dr, ns):
    labels = {'app': 'cache'}
    sts = {'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'name': 'db', 'namespace': NS},
           'spec': {'replicas': 2, 'serviceName': 'db', 'selector': {'matchLabels': {'app': 'db'}},
                    'template': {'metadata': {'labels': {'app': 'db'}}, 'spec': {'containers': [{'name': 'db', 'image': 'postgres'}]}}}}
    ds = {'apiVersion': 'apps/v1', 'kind': 'DaemonSet', 'metadata': {'name': 'agent', 'namespace': NS},
          'spec': {'selector': {'matchLabels': {'app': 'agent'}},
                   'template': {'metadata': {'labels': {'app': 'agent'}}, 'spec': {'containers': [{'name': 'a', 'image': 'fluentd'}]}}}}
    rs = {'apiVersion': 'apps/v1', 'kind': 'ReplicaSet', 'metadata': {'name': 'cache', 'namespace': NS},
          'spec': {'replicas': 1, 'selector': {'matchExpressions': [{'key': 'app', 'operator': 'In', 'values': ['cache']}]},
                   'template': {'metadata': {'labels': labels}, 'spec': {'containers': [{'name': 'c', 'image': 'redis'}]}}}}
    report = health.validate(dr, restore(dr, ns, sts, ds, rs, pod('tools')), timeout=15, **FAST)
    assert report['healthy'] is True, report
    reasons = {k: o['reason'] for k, o in by_name(report).items()}
    assert reasons == {('StatefulSet', 'db'): '2/2 replicas ready', ('DaemonSet', 'agent'): '1/1 pods ready',
                       ('ReplicaSet', 'cache'): '1/1 replicas available', ('Pod', 'tools'): 'Ready'}


def test_crashing_deployment_names_crash_loop_and_back_off_events(dr, ns):
    objects = restore(dr, ns, deployment('api', simulate='crash'))
    report = health.validate(dr, objects, timeout=3, **FAST)
    assert report['healthy'] is False and report['timed_out'] is True
    assert 3 <= report['duration_seconds'] < 10
    [bad] = report['unhealthy']
    assert (bad['kind'], bad['name'], bad['reason']) == ('Deployment', 'api', '0/1 replicas available')
    text = '\n'.join(bad['details'])
    assert 'container app waiting: CrashLoopBackOff' in text
    assert 'last terminated: Error (exit code 1)' in text
    assert 'event BackOff' in text and 'Back-off restarting failed container app' in text
    assert all(line.startswith('pod api-') for line in bad['details']), bad['details']
    assert len(bad['details']) <= health.MAX_DETAILS
    assert 'timed out after 3s' in report['summary']


@pytest.mark.skipif(os.geteuid() != 0, reason='the sandbox runs local-image pods in mount namespaces, which needs root')
def test_really_crashing_container_shows_its_last_log_lines(dr, ns):
    script = 'import sys; print("starting"); print("FATAL: cannot connect to db:5432"); sys.exit(3)'
    objects = restore(dr, ns, deployment('worker', image='ferry-demo/tools:1', args=[script]))
    report = health.validate(dr, objects, timeout=2.5, **FAST)
    [bad] = report['unhealthy']
    text = '\n'.join(bad['details'])
    assert 'exit code 3' in text
    assert 'last log lines of container app: ' in text and 'FATAL: cannot connect to db:5432' in text


def test_unready_pods_leave_the_service_without_endpoints(dr, ns):
    objects = restore(dr, ns, deployment('shop', simulate='unready'), service('storefront', 'shop'))
    report = health.validate(dr, objects, timeout=2, **FAST)
    unhealthy = by_name(report, 'unhealthy')
    svc = unhealthy[('Service', 'storefront')]
    assert svc['reason'] == 'no ready endpoints (selector app=shop)'
    assert any('Readiness probe failed' in line for line in svc['details']), svc['details']
    assert any('condition ContainersReady=False: ContainersNotReady' in line for line in svc['details'])
    assert unhealthy[('Deployment', 'shop')]['reason'] == '0/1 replicas available'


def test_failed_job_fails_fast_and_says_why(dr, ns):
    objects = restore(dr, ns, job('migrate', simulate='fail'), deployment('slow', simulate='crash'))
    timeout = 30
    report = health.validate(dr, objects, timeout=timeout, **FAST)
    assert report['duration_seconds'] < 10 < timeout
    assert report['timed_out'] is False and 'stopped early: Job %s/migrate' % ns in report['summary']
    failed = by_name(report, 'unhealthy')[('Job', 'migrate')]
    assert failed['reason'] == 'failed: BackoffLimitExceeded: Job has reached the specified backoff limit'
    text = '\n'.join(failed['details'])
    assert 'container migrate terminated: Error (exit code 1)' in text
    assert 'event BackoffLimitExceeded' in text


def test_failed_standalone_pod_is_terminal(dr, ns):
    failing = pod('once', simulate='fail')
    failing['spec']['restartPolicy'] = 'Never'
    report = health.validate(dr, restore(dr, ns, failing), timeout=30, **FAST)
    assert report['duration_seconds'] < 10
    assert report['unhealthy'][0]['reason'] == 'Failed'


def test_workloads_at_zero_replicas_are_a_healthy_standby(dr, ns):
    objects = restore(dr, ns, deployment('web', replicas=0, annotations={'ferry.dev/original-replicas': '3'}), service('web', 'web'),
                      deployment('batch', replicas=0))
    report = health.validate(dr, objects, timeout=5, **FAST)
    assert report['healthy'] is True, report
    reasons = {k: o['reason'] for k, o in by_name(report).items()}
    assert reasons[('Deployment', 'web')] == 'scaled to 0 (standby; 3 replicas when activated)'
    assert reasons[('Deployment', 'batch')] == 'scaled to 0 (standby)'
    assert reasons[('Service', 'web')] == 'no endpoints: every workload it selects is scaled to 0 (standby)'


def test_claims_that_cannot_bind_and_first_consumer_binding(dr, ns):
    create_object(dr, {'apiVersion': 'storage.k8s.io/v1', 'kind': 'StorageClass', 'metadata': {'name': 'late'},
                       'provisioner': 'csi.sandbox.ferry.dev', 'volumeBindingMode': 'WaitForFirstConsumer'})
    create_object(dr, {'apiVersion': 'storage.k8s.io/v1', 'kind': 'StorageClass', 'metadata': {'name': 'elsewhere'},
                       'provisioner': 'example.com/no-such-driver', 'volumeBindingMode': 'Immediate'})
    objects = restore(dr, ns, pvc('orphan', 'no-such-class'), pvc('later', 'late'), pvc('stuck', 'elsewhere'))
    report = health.validate(dr, objects, timeout=1, **FAST)
    reasons = {k: o['reason'] for k, o in by_name(report).items()}
    assert reasons[('PersistentVolumeClaim', 'orphan')] == 'Pending: StorageClass "no-such-class" does not exist on this cluster'
    assert reasons[('PersistentVolumeClaim', 'later')] == 'Pending until a pod uses it (StorageClass late binds on first consumer)'
    assert reasons[('PersistentVolumeClaim', 'stuck')] == 'Pending: not provisioned yet by example.com/no-such-driver (StorageClass elsewhere)'
    assert sorted(u['name'] for u in report['unhealthy']) == ['orphan', 'stuck']


def test_deployment_config_on_openshift(sandbox_cluster, connect):
    cluster = connect(sandbox_cluster('ocp', openshift=True))
    namespace(cluster)
    dc = {'apiVersion': 'apps.openshift.io/v1', 'kind': 'DeploymentConfig', 'metadata': {'name': 'legacy', 'namespace': NS},
          'spec': {'replicas': 2, 'selector': {'app': 'legacy'},
                   'template': {'metadata': {'labels': {'app': 'legacy'}}, 'spec': {'containers': [{'name': 'l', 'image': 'httpd'}]}}}}
    live = create_object(cluster, dc)
    report = health.validate(cluster, [dc], timeout=0, **FAST)
    assert report['unhealthy'][0]['reason'].startswith('not rolled out yet')
    assert 'no pods match its selector app=legacy' in report['unhealthy'][0]['details']
    live['status'] = {'observedGeneration': live['metadata']['generation'], 'replicas': 2, 'availableReplicas': 1}
    cluster.request('PUT', '/apis/apps.openshift.io/v1/namespaces/%s/deploymentconfigs/legacy/status' % NS, body=live)
    assert health.validate(cluster, [dc], timeout=0, **FAST)['unhealthy'][0]['reason'] == '1/2 replicas available'


def observed(cluster, name, timeout=10):
    """Wait until the Deployment's controller has observed its generation."""
    deadline = time.monotonic() + timeout
    while True:
        live = cluster.request('GET', '/apis/apps/v1/namespaces/%s/deployments/%s' % (NS, name))[1]
        if live.get('status', {}).get('observedGeneration') == live['metadata']['generation']:
            return live
        assert time.monotonic() < deadline, 'the sandbox never observed deployment %s' % name
        time.sleep(0.05)


def test_an_unreachable_api_makes_objects_unhealthy_without_crashing(sandbox_cluster, connect):
    sandbox = sandbox_cluster('dr')
    cluster = connect(sandbox)
    namespace(cluster)
    objects = restore(cluster, NS, deployment('api', simulate='crash'), pvc('data', 'no-such-class'))
    observed(cluster, 'api')  # the state last read is then the controller's, not a race with it

    def stop_the_cluster(healthy, total, pending):
        sandbox.stop()
        cluster.api_client.rest_client.pool_manager.clear()  # its open connections die with it (the sandbox's threads would serve them on)

    report = health.validate(cluster, objects, timeout=1, progress=stop_the_cluster, **FAST)
    assert report['healthy'] is False and len(report['unhealthy']) == 2
    for bad in report['unhealthy']:
        assert bad['reason'].startswith('cannot read its state: cannot reach the API server'), bad
    assert by_name(report, 'unhealthy')[('Deployment', 'api')]['details'] == ['state when last read: 0/1 replicas available']


class _Site(BaseHTTPRequestHandler):
    seen_headers = []

    def do_GET(self):  # noqa: N802 - the http.server API
        self.seen_headers.append(dict(self.headers))
        status, body = {'/healthz': (200, b'status: ok'), '/busy': (503, b'overloaded')}.get(self.path.split('?')[0], (404, b'no'))
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site(tmp_path):
    """An HTTP and an HTTPS server on loopback (the HTTPS one with a certificate from a private CA)."""
    tls = make_ca_and_server(str(tmp_path))
    servers = [ThreadingHTTPServer(('127.0.0.1', 0), _Site), ThreadingHTTPServer(('127.0.0.1', 0), _Site)]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls['cert'], tls['key'])
    servers[1].socket = context.wrap_socket(servers[1].socket, server_side=True)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {'http': 'http://127.0.0.1:%d' % servers[0].server_address[1], 'https': 'https://127.0.0.1:%d' % servers[1].server_address[1],
           'ca': tls['ca']}
    for server in servers:
        server.shutdown()
        server.server_close()


def test_http_probes_pass_fail_and_keep_secrets_out(dr, ns, site):
    http, https = site['http'], site['https']
    probes = [
        {'name': 'health', 'http_get': {'url': http + '/healthz', 'contains': 'ok', 'headers': {'Authorization': 'Bearer s3cr3t-token'}}},
        {'name': 'busy', 'http_get': {'url': http + '/busy'}},
        {'name': 'busy-expected', 'http_get': {'url': http + '/busy', 'expected_status': [200, 503]}},
        {'name': 'wrong-body', 'http_get': {'url': 'http://admin:hunter2@%s/healthz?token=abc123' % http[len('http://'):], 'contains': 'READY'}},
        {'name': 'tls-private-ca', 'http_get': {'url': https + '/healthz', 'ca_file': site['ca']}},
        {'name': 'tls-unverified', 'http_get': {'url': https + '/healthz'}},
        {'name': 'tls-no-validation', 'http_get': {'url': https + '/healthz', 'validate_certs': False}},
        {'name': 'nothing-listens', 'http_get': {'url': 'http://127.0.0.1:9/', 'timeout': 1}},
    ]
    started = time.monotonic()
    report = health.validate(dr, [], probes=probes, timeout=1, **FAST)
    assert 1 <= time.monotonic() - started < 10  # failing probes were retried until the timeout
    results = {p['name']: p for p in report['probes']}
    assert [p['name'] for p in report['probes']] == [p['name'] for p in probes]
    assert report['healthy'] is False and report['summary'] == '0 of 0 objects healthy; 4 of 8 probes passed'
    assert results['health'] == {'name': 'health', 'healthy': True, 'reason': 'GET %s/healthz answered HTTP 200 containing \'ok\'' % http}
    assert results['busy']['reason'] == 'GET %s/busy answered HTTP 503, expected 200' % http and not results['busy']['healthy']
    assert results['busy-expected']['healthy']
    assert results['wrong-body']['reason'] == "GET %s/healthz?token=*** answered HTTP 200 but the body (10 bytes) does not contain 'READY'" % http
    assert results['tls-private-ca']['healthy'] and results['tls-no-validation']['healthy']
    assert not results['tls-unverified']['healthy'] and 'CERTIFICATE_VERIFY_FAILED' in results['tls-unverified']['reason']
    assert not results['nothing-listens']['healthy'] and 'refused' in results['nothing-listens']['reason'].lower()
    sent = [h.get('Authorization') for h in _Site.seen_headers]
    assert 'Bearer s3cr3t-token' in sent and 'Basic YWRtaW46aHVudGVyMg==' in sent  # admin:hunter2 from the URL
    for secret in ('s3cr3t', 'hunter2', 'abc123', 'admin'):
        assert secret not in repr(report)


def test_probes_wait_for_healthy_objects_and_exec_is_refused_clearly(dr, ns, site):
    objects = restore(dr, ns, deployment('web'), pod('toolbox'))
    probes = [{'name': 'db-ping', 'exec': {'namespace': ns, 'pod': 'toolbox', 'command': ['pg_isready', '-h', 'db'], 'expected_rc': 0}},
              {'name': 'by-selector', 'exec': {'namespace': ns, 'selector': 'app=web', 'command': 'cat /tmp/ready'}},
              {'name': 'no-pod', 'exec': {'namespace': ns, 'selector': 'app=nothing', 'command': ['true']}},
              {'name': 'site', 'http_get': {'url': site['http'] + '/healthz'}}]
    report = health.validate(dr, objects, probes=probes, timeout=2, **FAST)
    assert report['checked'] == 2 and not report['unhealthy']
    results = {p['name']: p for p in report['probes']}
    refused = results['db-ping']
    assert refused['healthy'] is False
    assert refused['reason'] == ('exec refused by the API server for pod %s/toolbox (container main): '
                                 '400 BadRequest: the sandbox does not implement pods/exec (see sandbox/README.md)' % ns)
    assert results['by-selector']['reason'].startswith('exec refused by the API server for pod %s/web-' % ns)
    assert results['no-pod'] == {'name': 'no-pod', 'healthy': False, 'reason': 'no running pod matches selector app=nothing in namespace %s' % ns}
    assert results['site']['healthy'] is True


def test_refused_exec_is_not_retried_until_the_timeout(dr, ns):
    restore(dr, ns, pod('toolbox'))
    time.sleep(0.3)
    probes = [{'name': 'ping', 'exec': {'namespace': ns, 'pod': 'toolbox', 'command': ['true']}}]
    report = health.validate(dr, [], probes=probes, timeout=20, **FAST)
    assert report['duration_seconds'] < 5 and 'exec refused' in report['probes'][0]['reason']


def test_invalid_probes_are_reported():
    report = health.validate(None, [], probes=[{'name': 'x'}, {'http_get': {'url': 'ftp://host/file'}}, {'exec': {'namespace': 'a'}}], timeout=5)
    assert [p['reason'] for p in report['probes']] == [
        'invalid probe: give http_get or exec', "invalid probe: url 'ftp://host/file' is not an http:// or https:// URL",
        'invalid probe: exec needs namespace, command and pod or selector']
    assert report['probes'][1]['name'] == 'probe 2' and report['duration_seconds'] < 1


def test_selector_strings_and_safe_urls():
    assert health.selector_string({'matchLabels': {'b': '2', 'a': '1'}, 'matchExpressions': [
        {'key': 'tier', 'operator': 'In', 'values': ['web', 'api']}, {'key': 'canary', 'operator': 'DoesNotExist'},
        {'key': 'zone', 'operator': 'Exists'}, {'key': 'env', 'operator': 'NotIn', 'values': ['dev']}]}) == \
        'a=1,b=2,tier in (web,api),!canary,zone,env notin (dev)'
    assert health.selector_string({'app': 'web'}) == 'app=web'
    assert health.selector_string(None) == ''
    assert health.safe_url('https://u:p@host:8443/x?sig=abc&v=1#frag') == 'https://host:8443/x?sig=***&v=***'


def test_exec_refusal_is_found_along_the_exception_chain():
    body = '{"kind":"Status","status":"Failure","message":"pods \\"db-0\\" is forbidden: cannot create pods/exec","reason":"Forbidden","code":403}'
    try:
        try:
            raise RuntimeError("(0)\nReason: Handshake status 403 Forbidden -+-+- {'content-type': 'application/json'} -+-+- " + body)
        except RuntimeError:
            raise ValueError('unrelated failure while reporting it')  # pylint: disable=raise-missing-from
    except ValueError as exc:
        assert health.exec_refusal(exc) == (403, '403 Forbidden: pods "db-0" is forbidden: cannot create pods/exec')
    assert health.exec_refusal(OSError('connection reset')) is None


def test_workload_rules_the_sandbox_does_not_produce():
    """Status shapes of real controllers: a stalled rollout, StatefulSet revisions, a DaemonSet on no node, an old ReplicaSet."""
    check = health._Validation._check_workload  # pylint: disable=protected-access

    def live(spec, status, generation=2):
        status = dict(status, observedGeneration=status.get('observedGeneration', 2))
        return {'metadata': {'name': 'w', 'generation': generation}, 'spec': spec, 'status': status}

    stalled = live({'replicas': 3}, {'availableReplicas': 1, 'readyReplicas': 1, 'updatedReplicas': 3, 'conditions': [
        {'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded'}]})
    assert check('Deployment', stalled) == (False, '1/3 replicas available; progress deadline exceeded', False)
    rolling = live({'replicas': 2}, {'availableReplicas': 2, 'readyReplicas': 2, 'updatedReplicas': 2, 'replicas': 3})
    assert check('Deployment', rolling) == (False, 'rollout finishing: 1 old replicas still running', False)
    assert check('Deployment', live({'replicas': 2}, {'observedGeneration': 1}))[1] == \
        'not rolled out yet: its controller has not observed generation 2 (observed: 1)'
    same_revision = live({'replicas': 2}, {'readyReplicas': 2, 'currentRevision': 'db-1', 'updateRevision': 'db-1'})
    assert check('StatefulSet', same_revision) == (True, '2/2 replicas ready', False)
    assert check('StatefulSet', live({'replicas': 2}, {'readyReplicas': 2, 'currentRevision': 'db-1', 'updateRevision': 'db-2'}))[1] == \
        '0/2 replicas updated'
    assert check('DaemonSet', live({}, {'desiredNumberScheduled': 0})) == (True, 'no node selected (0 pods desired)', False)
    owned = live({'replicas': 1}, {})
    owned['metadata']['ownerReferences'] = [{'kind': 'Deployment', 'name': 'web', 'controller': True}]
    assert check('ReplicaSet', owned) is None


def test_a_crash_looping_container_caught_running_between_crashes_still_shows_its_last_exit_and_logs():
    class Recorded(health._Validation):  # pylint: disable=protected-access
        def __init__(self):  # pylint: disable=super-init-not-called
            self.asked = []

        def events(self, namespace, name, kind, warnings_only=False):
            return ['event BackOff (x2): Back-off restarting failed container app in pod %s' % name]

        def log_tail(self, namespace, pod, container):
            self.asked.append((pod, container))
            return ['FATAL: cannot connect to db:5432']

    pod = {'metadata': {'namespace': NS, 'name': 'worker-1'},
           'status': {'phase': 'Running', 'containerStatuses': [{
               'name': 'app', 'ready': False, 'restartCount': 2, 'state': {'running': {'startedAt': '2026-12-02T13:30:00Z'}},
               'lastState': {'terminated': {'reason': 'Error', 'exitCode': 3}}}]}}
    validation = Recorded()
    texts = [text for _priority, _subject, text in validation._pod_items(pod, ('pod', 'worker-1'))]  # pylint: disable=protected-access
    assert 'container app last terminated: Error (exit code 3), 2 restarts' in texts
    assert 'last log lines of container app: FATAL: cannot connect to db:5432' in texts
    assert validation.asked == [('worker-1', 'app')]
