"""Agent pods: the Secret, Pod and Service an agent needs, who it runs as, how it is reached, and the sweep."""

import copy
import json
import threading
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ansible_collections.ferry.kube.plugins.module_utils.agent.pki import SyncPKI
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError, FerryError
from ansible_collections.ferry.kube.plugins.module_utils.sync import agents
from ansible_collections.ferry.kube.plugins.module_utils.sync.agents import Agent, AgentSpec, app_user, last_event

NS = 'shop'
BASE = '/api/v1/namespaces/%s' % NS
COLLECTIONS = ('pods', 'services', 'secrets', 'configmaps', 'persistentvolumeclaims', 'nodes')


class FakeCluster:
    """Objects by API path; ``get`` and ``request`` as ``kube.connection.Cluster`` offers them, every call recorded.

    ``on_create(path, body)`` may fill in what controllers would (pod status, node ports).
    """

    name = 'fake'

    def __init__(self, objects=None, on_create=None):
        self.objects = dict(objects or {})
        self.on_create = on_create
        self.calls = []

    def get(self, path, **params):
        self.calls.append(('GET', path, params))
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        if path.rsplit('/', 1)[-1] not in COLLECTIONS:
            raise ApiError('%s not found' % path, status=404)
        items = [copy.deepcopy(body) for key, body in sorted(self.objects.items()) if key.rsplit('/', 1)[0] == path]
        return {'items': [item for item in items if _selected(item, params.get('labelSelector'))]}

    def request(self, method, path, body=None, **_params):
        self.calls.append((method, path, body))
        if method == 'POST':
            key = '%s/%s' % (path, body['metadata']['name'])
            if key in self.objects:
                raise ApiError('%s already exists' % key, status=409)
            self.objects[key] = copy.deepcopy(body)
            if self.on_create:
                self.on_create(key, self.objects[key])
            return body
        if method == 'DELETE':
            if path not in self.objects:
                raise ApiError('%s not found' % path, status=404)
            return self.objects.pop(path)
        raise AssertionError('unexpected %s %s' % (method, path))

    def writes(self):
        return [(method, path) for method, path, _body in self.calls if method not in ('GET', 'WATCH')]


def _selected(item, selector):
    labels = item['metadata'].get('labels') or {}
    for term in filter(None, (selector or '').split(',')):
        key, _eq, value = term.partition('=')
        if key not in labels or (_eq and labels[key] != value):
            return False
    return True


def spec(role='source', listens=True, read_only=True, run_as=None, exposure='NodePort', claims=None):
    args = ['stage', '--once'] if listens else ['push', '--root', '/data/data', '--to', '127.0.0.9:30001', '--sync-id', 's1']
    return AgentSpec(NS, 'ferry/agent:0.1.0', role, args, claims if claims is not None else {'data': 'ferry-s1-data-ro', 'logs': 'ferry-s1-logs-ro'},
                     read_only=read_only, exposure=exposure, run_as=run_as, listens=listens)


@pytest.fixture(scope='module')
def pki():
    return SyncPKI.create('s1')


def test_a_source_agent_mounts_the_snapshot_claims_read_only_and_runs_unprivileged(pki):
    agent = Agent(FakeCluster(), 's1', spec(), pki)
    pod = agent._pod()
    assert pod['metadata'] == {'name': 'ferry-s1-agent-source-0', 'namespace': NS, 'labels': {
        'app.kubernetes.io/managed-by': 'ferry', 'ferry.dev/temporary': 'true', 'ferry.dev/sync-id': 's1',
        'ferry.dev/agent-role': 'source', 'ferry.dev/agent': 'ferry-s1-agent-source-0'}}
    pod_spec = pod['spec']
    assert pod_spec['restartPolicy'] == 'OnFailure' and pod_spec['automountServiceAccountToken'] is False
    assert pod_spec['securityContext'] == {'runAsNonRoot': True, 'runAsUser': 65532, 'runAsGroup': 65532, 'seccompProfile': {'type': 'RuntimeDefault'},
                                           'fsGroup': 65532, 'fsGroupChangePolicy': 'OnRootMismatch'}, 'the TLS Secret is group-readable to the agent'
    [container] = pod_spec['containers']
    assert container['image'] == 'ferry/agent:0.1.0'
    assert container['args'] == ['stage', '--once', '--listen', '$(POD_IP):8443', '--tls', '/etc/ferry/tls']
    assert container['env'] == [{'name': 'POD_IP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}}]
    assert container['securityContext'] == {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True, 'capabilities': {'drop': ['ALL']}}
    assert container['resources'] == {'requests': {'cpu': '250m', 'memory': '256Mi'}, 'limits': {'cpu': '2', 'memory': '2Gi'}}
    assert container['ports'] == [{'name': 'transfer', 'containerPort': 8443}]
    assert container['readinessProbe'] == {'tcpSocket': {'port': 8443}, 'periodSeconds': 1}
    assert container['volumeMounts'] == [
        {'name': 'tls', 'mountPath': '/etc/ferry/tls', 'readOnly': True}, {'name': 'tmp', 'mountPath': '/tmp'},
        {'name': 'data-0', 'mountPath': '/data/data', 'readOnly': True}, {'name': 'data-1', 'mountPath': '/data/logs', 'readOnly': True}]
    assert pod_spec['volumes'] == [
        {'name': 'tls', 'secret': {'secretName': 'ferry-s1-agent-source-0', 'defaultMode': 0o440}}, {'name': 'tmp', 'emptyDir': {}},
        {'name': 'data-0', 'persistentVolumeClaim': {'claimName': 'ferry-s1-data-ro', 'readOnly': True}},
        {'name': 'data-1', 'persistentVolumeClaim': {'claimName': 'ferry-s1-logs-ro', 'readOnly': True}}]


def test_a_sink_agent_writes_its_claims(pki):
    pod = Agent(FakeCluster(), 's1', spec(role='sink', read_only=False, claims={'data': 'data'}), pki, index=3)._pod()
    assert pod['metadata']['name'] == 'ferry-s1-agent-sink-3'
    assert pod['metadata']['labels']['ferry.dev/agent-role'] == 'sink'
    mounts = pod['spec']['containers'][0]['volumeMounts']
    assert mounts[2] == {'name': 'data-0', 'mountPath': '/data/data', 'readOnly': False}
    assert pod['spec']['volumes'][2] == {'name': 'data-0', 'persistentVolumeClaim': {'claimName': 'data', 'readOnly': False}}


def test_an_agent_that_does_not_listen_has_no_port_probe_or_service(pki):
    cluster = FakeCluster()
    agent = Agent(cluster, 's1', spec(listens=False, claims={'data': 'ferry-s1-data-ro'}), pki)
    container = agent._pod()['spec']['containers'][0]
    assert '--listen' not in container['args'] and container['args'][-2:] == ['--tls', '/etc/ferry/tls']
    assert 'ports' not in container and 'readinessProbe' not in container
    assert agent.start(timeout=1) is None
    assert cluster.writes() == [('POST', BASE + '/secrets'), ('POST', BASE + '/pods')]
    assert agent.stop() == [BASE + '/pods/ferry-s1-agent-source-0', BASE + '/secrets/ferry-s1-agent-source-0']
    assert not cluster.objects


def pod_of(run_as_user=None, run_as_group=None, fs_group=None, container_users=(), phase='Running'):
    security = {k: v for k, v in (('runAsUser', run_as_user), ('runAsGroup', run_as_group), ('fsGroup', fs_group)) if v is not None}
    containers = [{'name': 'c%d' % n, 'securityContext': {'runAsUser': user} if user is not None else {}} for n, user in enumerate(container_users or [None])]
    return {'metadata': {'name': 'app', 'namespace': NS}, 'spec': {'securityContext': security, 'containers': containers}, 'status': {'phase': phase}}


def test_agents_run_as_the_user_the_apps_pods_declare():
    assert app_user([]) is None
    assert app_user([pod_of()]) is None
    assert app_user([pod_of(run_as_user=1000, run_as_group=3000, fs_group=2000)]) == (1000, 3000, 2000)
    assert app_user([pod_of(run_as_user=1000)]) == (1000, 1000, None), 'the group defaults to the user'
    assert app_user([pod_of(run_as_user=1000, run_as_group=3000, fs_group=2000, container_users=[1001])]) == (1001, 3000, 2000), \
        "a container's runAsUser wins over the pod's"
    assert app_user([pod_of(fs_group=2000, container_users=[None, 999])]) is None, 'a sidecar after the app container does not decide'
    assert app_user([pod_of(fs_group=2000, container_users=[999, 1337])]) == (999, 999, 2000), 'the first container is the app'
    assert app_user([pod_of(), pod_of(run_as_user=70)]) == (70, 70, None), 'the first pod that declares a user'


def test_the_pod_security_context_follows_run_as(pki):
    def security(run_as):
        return Agent(FakeCluster(), 's1', spec(run_as=run_as), pki)._pod()['spec']['securityContext']

    assert security((1000, 3000, 2000)) == {'runAsNonRoot': True, 'runAsUser': 1000, 'runAsGroup': 3000, 'fsGroup': 2000,
                                            'fsGroupChangePolicy': 'OnRootMismatch', 'seccompProfile': {'type': 'RuntimeDefault'}}
    assert security(app_user([pod_of(run_as_user=999)])) == {'runAsNonRoot': True, 'runAsUser': 999, 'runAsGroup': 999, 'fsGroup': 999,
                                                             'fsGroupChangePolicy': 'OnRootMismatch', 'seccompProfile': {'type': 'RuntimeDefault'}}
    assert security((0, 0, None))['runAsNonRoot'] is False, 'an app that runs as root gets a root agent'


def test_the_secret_holds_a_certificate_for_the_agents_role_in_this_sync(pki):
    agent = Agent(FakeCluster(), 's1', spec(role='sink', read_only=False), pki)
    secret = agent._secret()
    assert (secret['kind'], secret['type']) == ('Secret', 'Opaque')
    assert secret['metadata'] == {'name': 'ferry-s1-agent-sink-0', 'namespace': NS, 'labels': agent.labels}
    assert sorted(secret['stringData']) == ['ca.crt', 'tls.crt', 'tls.key']
    assert secret['stringData']['ca.crt'] == pki.ca_pem
    cert = x509.load_pem_x509_certificate(secret['stringData']['tls.crt'].encode())
    subject = {attribute.oid: attribute.value for attribute in cert.subject}
    assert subject == {NameOID.COMMON_NAME: 'ferry-s1-agent-sink-0', NameOID.ORGANIZATIONAL_UNIT_NAME: 'sink',
                       NameOID.ORGANIZATION_NAME: 'ferry-sync-s1'}
    assert cert.issuer == x509.load_pem_x509_certificate(pki.ca_pem.encode()).subject


@pytest.mark.parametrize('exposure', ['NodePort', 'LoadBalancer'])
def test_the_service_exposes_only_this_agent(pki, exposure):
    agent = Agent(FakeCluster(), 's1', spec(exposure=exposure), pki)
    service = agent._service()
    assert service['metadata'] == {'name': agent.name, 'namespace': NS, 'labels': agent.labels}
    assert service['spec'] == {'type': exposure, 'selector': {'ferry.dev/agent': agent.name},
                               'ports': [{'name': 'transfer', 'port': 8443, 'targetPort': 8443}]}


def test_names_stay_dns_labels_for_long_sync_ids(pki):
    agent = Agent(FakeCluster(), 'Nightly_Backup-' + 'x' * 80, spec(), pki)
    assert len(agent.name) <= 63 and agent.name == agent.name.lower() and '_' not in agent.name
    assert agent.labels['ferry.dev/agent'] == agent.name


def ready_cluster(exposure_status=None, node_addresses=None, pod_status=None):
    """A fake cluster where created pods run on node-1 and Services get node port 31234."""
    def on_create(path, body):
        if '/pods/' in path:
            body['spec']['nodeName'] = 'node-1'
            body['status'] = pod_status or {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True'}]}
        if '/services/' in path:
            body['spec']['ports'][0]['nodePort'] = 31234
            body['status'] = exposure_status or {}

    addresses = node_addresses or [{'type': 'InternalIP', 'address': '10.0.0.5'}, {'type': 'ExternalIP', 'address': '203.0.113.5'}]
    return FakeCluster({'/api/v1/nodes/node-1': {'metadata': {'name': 'node-1'}, 'status': {'addresses': addresses}}}, on_create)


def test_a_node_port_agent_is_reached_at_its_nodes_external_address(pki):
    cluster = ready_cluster()
    agent = Agent(cluster, 's1', spec(), pki)
    assert agent.start(timeout=5) == ('203.0.113.5', 31234)
    assert cluster.writes() == [('POST', BASE + '/secrets'), ('POST', BASE + '/pods'), ('POST', BASE + '/services')]
    assert agent.stop() == [BASE + '/services/' + agent.name, BASE + '/pods/' + agent.name, BASE + '/secrets/' + agent.name]
    assert list(cluster.objects) == ['/api/v1/nodes/node-1']

    internal_only = ready_cluster(node_addresses=[{'type': 'InternalIP', 'address': '10.0.0.5'}])
    assert Agent(internal_only, 's1', spec(), pki).start(timeout=5) == ('10.0.0.5', 31234)


def test_a_load_balancer_agent_is_reached_at_its_ingress(pki):
    hostname = ready_cluster(exposure_status={'loadBalancer': {'ingress': [{'hostname': 'abc.elb.example.com'}]}})
    assert Agent(hostname, 's1', spec(exposure='LoadBalancer'), pki).start(timeout=5) == ('abc.elb.example.com', 8443)
    address = ready_cluster(exposure_status={'loadBalancer': {'ingress': [{'ip': '198.51.100.7'}]}})
    assert Agent(address, 's1', spec(exposure='LoadBalancer'), pki).start(timeout=5) == ('198.51.100.7', 8443)


class ChangingCluster(FakeCluster):
    """The agent's pod becomes ready at its ``changes_at``-th look; a watch wakes up at that change (or is refused)."""

    def __init__(self, refuse_watch=False, changes_at=3):
        node = {'metadata': {'name': 'node-1'}, 'status': {'addresses': [{'type': 'InternalIP', 'address': '10.0.0.5'}]}}
        super().__init__({'/api/v1/nodes/node-1': node}, self._created)
        self.refuse_watch = refuse_watch
        self.changes_at = changes_at
        self.versioned = True
        self.looks = 0

    def _created(self, path, body):
        if '/pods/' in path:
            body['spec']['nodeName'] = 'node-1'
            if self.versioned:
                body['metadata']['resourceVersion'] = '7'
            body['status'] = {'phase': 'Pending', 'conditions': [{'type': 'Ready', 'status': 'False'}]}
        if '/services/' in path:
            body['spec']['ports'][0]['nodePort'] = 31234

    def get(self, path, **params):
        if '/pods/' in path:
            self.looks += 1
            if self.looks >= self.changes_at:
                self.objects[path]['status'] = {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True'}]}
        return super().get(path, **params)

    def wait_for_change(self, path, resource_version, seconds):
        self.calls.append(('WATCH', path, resource_version))
        if self.refuse_watch:
            raise ApiError('pods is forbidden: cannot watch', status=403)
        return True


def test_an_agent_waits_for_its_pod_to_change_and_polls_where_the_cluster_will_not_watch(pki):
    cluster = ChangingCluster()
    agent = Agent(cluster, 's1', spec(), pki)
    assert agent.start(timeout=30) == ('10.0.0.5', 31234)
    pod = BASE + '/pods/' + agent.name
    # each look at the pod is followed by a watch from the version it saw, until the pod is ready
    assert [call[:2] for call in cluster.calls if call[1] == pod] == [('GET', pod), ('WATCH', pod), ('GET', pod), ('WATCH', pod), ('GET', pod)]
    assert [call[2] for call in cluster.calls if call[0] == 'WATCH'] == ['7', '7']

    refused = ChangingCluster(refuse_watch=True)
    agent = Agent(refused, 's1', spec(), pki)
    assert agent.start(timeout=30) == ('10.0.0.5', 31234)
    assert [call[0] for call in refused.calls if call[1] == BASE + '/pods/' + agent.name] == ['GET', 'WATCH', 'GET', 'GET'], \
        'asked to watch once, then polled'

    unversioned = ChangingCluster()
    unversioned.versioned = False
    agent = Agent(unversioned, 's1', spec(), pki)
    assert agent.start(timeout=30) == ('10.0.0.5', 31234)
    assert [call[0] for call in unversioned.calls if call[1] == BASE + '/pods/' + agent.name] == ['GET', 'GET', 'GET'], \
        'a pod without a resourceVersion is polled: a watch from no version would end at once'


def test_a_watch_ends_when_the_object_changes_or_its_time_runs_out(sandbox_cluster, connect):
    cluster = connect(sandbox_cluster('source'))
    cluster.request('POST', '/api/v1/namespaces', body={'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}})
    path = BASE + '/configmaps/settings'
    cluster.request('POST', BASE + '/configmaps', body={'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'settings'}, 'data': {'a': '1'}})
    cluster.request('POST', BASE + '/configmaps', body={'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'other'}, 'data': {'a': '1'}})
    version = cluster.get(path)['metadata']['resourceVersion']

    def change(name):
        time.sleep(0.3)
        cluster.request('PATCH', '%s/configmaps/%s' % (BASE, name), body={'data': {'a': '2'}}, content_type='application/merge-patch+json')

    # another object's change does not end the watch: its time does
    other = threading.Thread(target=change, args=('other',))
    other.start()
    assert cluster.wait_for_change(path, version, 1) is False
    other.join()

    changed = threading.Thread(target=change, args=('settings',))
    changed.start()
    assert cluster.wait_for_change(path, version, 30) is True
    changed.join()
    # a change made before the watch, after the version the waiter saw, is seen too
    assert cluster.wait_for_change(path, version, 30) is True


def test_an_agent_that_never_gets_ready_fails_with_its_phase_and_reason(pki):
    waiting = {'phase': 'Pending', 'conditions': [{'type': 'Ready', 'status': 'False'}],
               'containerStatuses': [{'state': {'waiting': {'reason': 'ImagePullBackOff', 'message': 'no such image ferry/agent:0.1.0'}}}]}
    agent = Agent(ready_cluster(pod_status=waiting), 's1', spec(), pki)
    with pytest.raises(FerryError, match=r'agent pod shop/ferry-s1-agent-source-0 did not become ready \(waited up to 0 s; '
                                         r'phase Pending, 0 restarts; ImagePullBackOff: no such image ferry/agent:0.1.0\)'):
        agent.start(timeout=0.3)
    failed = Agent(ready_cluster(pod_status={'phase': 'Failed'}), 's1', spec(), pki)
    with pytest.raises(FerryError, match='phase Failed, 0 restarts; no reason given'):
        failed.start(timeout=60)  # a failed pod fails at once, not at the timeout


def test_start_replaces_objects_an_interrupted_attempt_of_the_same_sync_left(pki):
    cluster = ready_cluster()
    stale = Agent(cluster, 's1', spec(), pki)
    cluster.objects[BASE + '/secrets/' + stale.name] = {'metadata': {'name': stale.name, 'labels': {}}}
    agent = Agent(cluster, 's1', spec(), pki)
    agent.start(timeout=5)
    assert cluster.writes()[:4] == [('POST', BASE + '/secrets'), ('DELETE', BASE + '/secrets/' + agent.name),
                                    ('POST', BASE + '/secrets'), ('POST', BASE + '/pods')]
    assert cluster.objects[BASE + '/secrets/' + agent.name]['metadata']['labels'] == agent.labels


def test_stop_tolerates_objects_already_gone(pki):
    cluster = ready_cluster()
    agent = Agent(cluster, 's1', spec(), pki)
    agent.start(timeout=5)
    del cluster.objects[BASE + '/pods/' + agent.name]
    assert agent.stop() == [BASE + '/services/' + agent.name, BASE + '/secrets/' + agent.name]
    assert agent.stop() == []


def test_last_event_is_the_last_json_record_of_that_event():
    log = '\n'.join([
        'Traceback (most recent call last):',
        json.dumps({'event': 'progress', 'files': 1}),
        '["not", "a", "record"]',
        json.dumps({'event': 'result', 'files': 2}),
        '{"event": "progress", "files": 3',  # torn
        json.dumps({'event': 'progress', 'files': 4}),
        '"a string"',
        '',
    ])
    assert last_event(log, 'progress') == {'event': 'progress', 'files': 4}
    assert last_event(log, 'result') == {'event': 'result', 'files': 2}
    assert last_event(log, 'error') is None
    assert last_event('', 'result') is None and last_event(None, 'result') is None


def test_wait_finished_returns_the_result_or_the_agents_error(pki, monkeypatch):
    cluster = FakeCluster()
    agent = Agent(cluster, 's1', spec(listens=False), pki)
    path = BASE + '/pods/' + agent.name
    logs = {'text': '\n'.join([json.dumps({'event': 'progress', 'bytes_scanned': 10}), json.dumps({'event': 'result', 'bytes_sent': 7})])}
    monkeypatch.setattr(agent, 'logs', lambda tail=40: logs['text'])

    cluster.objects[path] = {'metadata': {'name': agent.name}, 'status': {'phase': 'Succeeded'}}
    assert agent.wait_finished(5) == {'event': 'result', 'bytes_sent': 7}

    logs['text'] = json.dumps({'event': 'error', 'reason': 'cannot reach the sink at 10.0.0.5:31234: timed out'})
    cluster.objects[path]['status'] = {'phase': 'Failed'}
    with pytest.raises(FerryError, match=r'agent shop/ferry-s1-agent-source-0 failed: cannot reach the sink at 10.0.0.5:31234: timed out'):
        agent.wait_finished(5)

    logs['text'] = json.dumps({'event': 'progress'})
    cluster.objects[path]['status'] = {'phase': 'Running'}
    with pytest.raises(FerryError, match=r'did not finish in 0 s; agent log: \{"event": "progress"\}'):
        agent.wait_finished(0.3)


# -- sweep ---------------------------------------------------------------------------------------------------

def agent_objects(cluster, sync_id, pki, role='source', image='busybox:1'):
    """The Secret, Pod and Service of an agent of ``sync_id``, as a sync that crashed would have left them."""
    agent = Agent(cluster, sync_id, AgentSpec(NS, image, role, ['stage', '--once'], {}, read_only=True), pki)
    for collection, body in (('secrets', agent._secret()), ('pods', agent._pod()), ('services', agent._service())):
        cluster.request('POST', '%s/%s' % (BASE, collection), body=body)
    return agent


SELECTOR = 'ferry.dev/temporary=true,app.kubernetes.io/managed-by=ferry,ferry.dev/agent-role'


def test_sweep_selects_agent_objects_by_label_and_keeps_those_of_running_syncs(pki):
    cluster = FakeCluster()
    crashed = agent_objects(cluster, 'crashed', pki)
    running = agent_objects(cluster, 'running', pki, role='sink')
    app = {'metadata': {'name': 'web', 'labels': {'app': 'web'}}}
    temporary_claim = {'metadata': {'name': 'ferry-crashed-data-ro', 'labels': {'ferry.dev/temporary': 'true', 'app.kubernetes.io/managed-by': 'ferry',
                                                                                'ferry.dev/sync-id': 'crashed'}}}
    cluster.objects.update({BASE + '/pods/web': app, BASE + '/secrets/ferry-crashed-data-ro': temporary_claim})
    cluster.calls = []

    removed = agents.sweep(cluster, [NS, 'other'], keep_sync_ids={'running'})
    assert removed == ['%s/%s/%s' % (BASE, collection, crashed.name) for collection in ('pods', 'services', 'secrets')]
    assert [(call[1], call[2]) for call in cluster.calls if call[0] == 'GET'] == [
        ('/api/v1/namespaces/%s/%s' % (namespace, collection), {'labelSelector': SELECTOR})
        for namespace in (NS, 'other') for collection in ('pods', 'services', 'secrets')]
    left = sorted(cluster.objects)
    assert left == sorted([BASE + '/pods/web', BASE + '/secrets/ferry-crashed-data-ro'] +
                          ['%s/%s/%s' % (BASE, collection, running.name) for collection in ('pods', 'services', 'secrets')])
    assert agents.sweep(cluster, [NS], keep_sync_ids={'running'}) == []


def test_sweep_on_a_cluster_removes_a_crashed_syncs_agent_and_keeps_a_running_one(sandbox_cluster, connect, pki):
    cluster = connect(sandbox_cluster('source'))
    cluster.request('POST', '/api/v1/namespaces', body={'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}})
    crashed = agent_objects(cluster, 'crashed', pki)
    running = agent_objects(cluster, 'running', pki, role='sink')
    cluster.request('POST', BASE + '/pods', body={'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'web', 'labels': {'app': 'web'}},
                                                  'spec': {'containers': [{'name': 'web', 'image': 'nginx:1'}]}})

    removed = agents.sweep(cluster, [NS], keep_sync_ids=['running'])
    assert sorted(removed) == sorted('%s/%s/%s' % (BASE, collection, crashed.name) for collection in ('pods', 'services', 'secrets'))

    def names(collection):
        return sorted(item['metadata']['name'] for item in cluster.get('%s/%s' % (BASE, collection))['items']
                      if item['metadata']['name'].startswith(('ferry-', 'web')))

    assert names('pods') == [running.name, 'web']
    assert names('services') == [running.name]
    assert names('secrets') == [running.name]
