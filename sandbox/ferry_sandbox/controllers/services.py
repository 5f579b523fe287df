"""Service -> Endpoints, and NodePort / LoadBalancer addresses that really carry TCP to pods."""

import os
import socket
import subprocess
import sys
import threading

from ..errors import ApiError
from ..selectors import matches_selector_dict
from .kernel_forwarding import KernelForwarding
from .workloads import pod_ready

PUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pump.py')


def _target_port(pod, port):
    target = port.get('targetPort', port.get('port'))
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in (pod.get('spec') or {}).get('containers') or []:
        for declared in container.get('ports') or []:
            if declared.get('name') == target:
                return int(declared['containerPort'])
    return None


def ready_pods(cluster, service):
    selector = (service.get('spec') or {}).get('selector')
    if not selector:
        return []
    return [p for p in cluster.store.list_refs('', 'pods', service['metadata']['namespace'])
            if matches_selector_dict({'matchLabels': selector}, p['metadata'].get('labels')) and pod_ready(p)
            and (p.get('status') or {}).get('podIP') and not p['metadata'].get('deletionTimestamp')]


def reconcile_endpoints(cluster, service, key):
    namespace, name = key
    if service is None:
        try:
            cluster.store.delete('', 'endpoints', namespace, name)
        except ApiError:
            pass
        return
    if not (service.get('spec') or {}).get('selector'):
        return  # user-managed endpoints
    pods = ready_pods(cluster, service)
    subsets = []
    if pods:
        ports = []
        for port in service['spec'].get('ports') or []:
            number = _target_port(pods[0], port)
            if number:
                entry = {'port': number, 'protocol': port.get('protocol', 'TCP')}
                if port.get('name'):
                    entry['name'] = port['name']
                ports.append(entry)
        subsets = [{'addresses': [{'ip': p['status']['podIP'], 'nodeName': cluster.node_name,
                                   'targetRef': {'kind': 'Pod', 'namespace': namespace, 'name': p['metadata']['name'], 'uid': p['metadata']['uid']}}
                                  for p in pods], 'ports': ports}]
    current = cluster.store.get_ref('', 'endpoints', namespace, name)
    body = {'apiVersion': 'v1', 'kind': 'Endpoints', 'metadata': {'name': name, 'namespace': namespace, 'labels': dict(service['metadata'].get('labels') or {})},
            'subsets': subsets}
    if current is None:
        try:
            cluster.store.create('', 'endpoints', body)
        except ApiError as exc:
            if exc.code not in (409, 403, 404):
                raise
    elif current.get('subsets') != subsets:
        body['metadata'] = dict(current['metadata'])
        cluster.store.update('', 'endpoints', body)


class TcpProxy:
    """Listens on (host, port) and forwards each connection to a ready pod chosen by ``pick()``."""

    def __init__(self, host, port, pick):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.pick = pick
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True, name='proxy-%s:%d' % (host, port))
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                client, _addr = self.listener.accept()
            except OSError:
                return
            target = self.pick()
            if target is None:
                client.close()  # no ready endpoint: refuse, as kube-proxy does
                continue
            try:
                upstream = socket.create_connection(target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            _hand_over(client, upstream)

    def close(self):
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass


def _hand_over(client, upstream):
    """Pump the connection in a process of its own (pump.py), reaped by a thread when both ends close."""
    try:
        # kube-proxy rewrites packets and leaves TCP to the two ends; a proxy that terminates TCP must not
        # add Nagle's delay to the small frames the ends send without it (a request waited for an ACK)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        process = subprocess.Popen([sys.executable, '-I', PUMP, str(client.fileno()), str(upstream.fileno())],
                                   pass_fds=(client.fileno(), upstream.fileno()), stdin=subprocess.DEVNULL)
    except OSError:
        process = None
    finally:
        client.close()  # the pump holds its own copies
        upstream.close()
    if process is not None:
        threading.Thread(target=process.wait, daemon=True, name='pump-reaper').start()


class Exposure:
    """Keeps NodePort and LoadBalancer listeners in line with the Services."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.proxies = {}  # (namespace, name, address, port, service port) -> TcpProxy
        self.turn = 0
        self.kernel = KernelForwarding.create('-'.join(cluster.node_ip.split('.')[1:3]))
        self.pumped = set()  # (address, port) the kernel could not take: the userspace proxy carries them

    def reconcile(self, cluster, service, key):
        namespace, name = key
        wanted = set()
        if service is not None and service['spec'].get('type') in ('NodePort', 'LoadBalancer'):
            lb_ip = None
            if service['spec']['type'] == 'LoadBalancer':
                ingress = ((service.get('status') or {}).get('loadBalancer') or {}).get('ingress') or []
                lb_ip = ingress[0]['ip'] if ingress else cluster.allocate_lb_ip()
                if not ingress:
                    cluster.store.patch_status('', 'services', namespace, name, {'loadBalancer': {'ingress': [{'ip': lb_ip, 'ipMode': 'VIP'}]}})
            for port in service['spec'].get('ports') or []:
                if port.get('nodePort'):
                    wanted.add((namespace, name, cluster.node_ip, int(port['nodePort']), port.get('port')))
                if lb_ip:
                    wanted.add((namespace, name, lb_ip, int(port['port']), port.get('port')))
        for proxy_key in [k for k in self.proxies if k[:2] == (namespace, name) and k not in wanted]:
            self.proxies.pop(proxy_key).close()
            if self.kernel is not None:
                self._forward_in_kernel(cluster, service, proxy_key[2], proxy_key[3], [])
                self.pumped.discard(proxy_key[2:4])
        for proxy_key in wanted - set(self.proxies):
            _ns, _name, address, listen_port, service_port = proxy_key
            try:
                self.proxies[proxy_key] = TcpProxy(address, listen_port, self._picker(namespace, name, service_port, address, listen_port))
            except OSError as exc:
                from .manager import record_event  # pylint: disable=import-outside-toplevel
                record_event(cluster, service, 'FailedToExpose', 'cannot listen on %s:%d: %s' % (address, listen_port, exc), 'Warning', 'kube-proxy')
        if self.kernel is not None:
            for _ns, _name, address, listen_port, service_port in [k for k in self.proxies if k[:2] == (namespace, name)]:
                if (address, listen_port) not in self.pumped:
                    self._forward_in_kernel(cluster, service, address, listen_port, self._endpoints(service, service_port))

    def _forward_in_kernel(self, cluster, service, address, listen_port, endpoints):
        try:
            self.kernel.forward(address, listen_port, endpoints)
        except (OSError, subprocess.SubprocessError) as exc:
            # The userspace listener carries this address from now on: a rule set later would reset the
            # connections it carries then. Rules the address had before are dropped if the kernel lets us.
            self.pumped.add((address, listen_port))
            if endpoints:  # (asking for none is what just failed otherwise)
                try:
                    self.kernel.forward(address, listen_port, [])
                except (OSError, subprocess.SubprocessError):
                    pass
            if service is not None:
                from .manager import record_event  # pylint: disable=import-outside-toplevel
                record_event(cluster, service, 'FailedToForward', 'cannot set the kernel rules of %s:%d: %s' % (address, listen_port, exc),
                             'Warning', 'kube-proxy')

    def _endpoints(self, service, service_port):
        """(pod IP, target port) of each ready pod behind ``service_port``."""
        port = next((p for p in service['spec'].get('ports') or [] if p.get('port') == service_port), None)
        if port is None:
            return []
        targets = ((pod['status']['podIP'], _target_port(pod, port)) for pod in ready_pods(self.cluster, service))
        return [(address, number) for address, number in targets if number]

    def _picker(self, namespace, name, service_port, address, listen_port):
        def pick():
            if self.kernel is not None and (address, listen_port) not in self.pumped:
                # No rule for it yet (no ready endpoint, or the rule is being set): refused, as kube-proxy's
                # REJECT rule refuses a Service without endpoints. Pumped, it would be reset once its rule
                # came (see kernel_forwarding.py).
                return None
            service = self.cluster.store.get_ref('', 'services', namespace, name)
            endpoints = self._endpoints(service, service_port) if service is not None else []
            if not endpoints:
                return None
            self.turn += 1
            return endpoints[self.turn % len(endpoints)]
        return pick

    def stop(self):
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies.clear()
        if self.kernel is not None:
            self.kernel.close()


def install(manager):
    cluster = manager.cluster
    exposure = Exposure(cluster)
    manager.register('', 'services', reconcile_endpoints)
    manager.register('', 'services', exposure.reconcile)

    def pod_changed(_event, pod):
        for service in cluster.store.list_refs('', 'services', pod['metadata']['namespace']):
            selector = (service.get('spec') or {}).get('selector')
            if selector and matches_selector_dict({'matchLabels': selector}, pod['metadata'].get('labels')):
                manager.enqueue('', 'services', service['metadata']['namespace'], service['metadata']['name'])
    manager.watch('', 'pods', pod_changed)
    return exposure
