"""Discovery (``Capture``) vs ``kubectl get -A -o json`` of the same resource types, in one run (issue #6).

    bench/discovery/run.sh [--namespaces 100] [--objects 100] [--reps 5] [--profile] [--nodelay] [--work DIR]

Starts a sandbox cluster in its own process (its API server must not share the GIL with the
measured client), creates ``--namespaces`` namespaces ``ns-000``... with ``--objects`` objects each
(a realistic mix; Deployments add ReplicaSets and Pods, the controllers Endpoints and the like),
waits for the controllers to settle, then times, alternating which goes first:

  ferry    a fresh Python process: import, connect, ``Capture(cluster, Selection(['ns-*'])).run()``
  kubectl  ``kubectl get <the types Ferry lists> -A -o json > /dev/null`` (the same versions;
           kubectl's discovery cache warm, as it is in daily use)

Both are whole-process wall times. Figures are min / median / max over ``--reps``; the ratio is
Ferry's median over kubectl's (the target: at most 1.5x). Both tools' objects in ``ns-*`` are
counted per kind and compared. When the target is missed, or with ``--profile``, one more Ferry
process is profiled (cProfile, list workers included) and its imports itemised (-X importtime).
"""

import argparse
import base64
import collections
import fnmatch
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import ROOT, timed  # noqa: E402 pylint: disable=wrong-import-position

sys.path.insert(0, os.path.join(ROOT, '.build', 'collections'))
sys.path.insert(0, os.path.join(ROOT, 'sandbox'))

PATTERN = 'ns-*'
TARGET = 1.5
CLUSTER = 'bench'

# What one measured Ferry process runs: argv = kubeconfig, namespace pattern, cProfile output ('' = none).
# Prints one JSON line: its phases' seconds and what it captured.
FERRY_SCRIPT = r'''
import fnmatch, json, sys, time
started = time.perf_counter()
kubeconfig, pattern, profile_to = sys.argv[1:4]
from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.discovery.capture import Capture
from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection
imported = time.perf_counter()
if profile_to:  # connect and capture, list workers included; the imports are itemised by -X importtime
    import cProfile, pstats, threading
    from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Inventory
    workers, local, unprofiled = [], threading.local(), getattr(Inventory, '_list', None)

    def profiled(self, job):
        if not hasattr(local, 'profiler'):
            local.profiler = cProfile.Profile()
            workers.append(local.profiler)
        local.profiler.enable()
        try:
            return unprofiled(self, job)
        finally:
            local.profiler.disable()
    if unprofiled is not None:  # else the main thread only
        Inventory._list = profiled
    profiler = cProfile.Profile()
    profiler.enable()
cluster = connection.connect({'kubeconfig': kubeconfig})
connected = time.perf_counter()
document = Capture(cluster, Selection([pattern])).run()
captured = time.perf_counter()
if profile_to:
    profiler.disable()
    stats = pstats.Stats(profiler)
    for worker in workers:
        stats.add(worker)
    stats.dump_stats(profile_to)
kinds = {}
for obj in document['objects']:
    if fnmatch.fnmatchcase((obj.get('metadata') or {}).get('namespace') or '', pattern):
        key = '%s %s' % (obj.get('apiVersion', '').rpartition('/')[0], obj.get('kind'))
        kinds[key] = kinds.get(key, 0) + 1
print(json.dumps({'import': imported - started, 'connect': connected - imported, 'capture': captured - connected,
                  'document_seconds': document['seconds'], 'resource_types': document['resource_types'],
                  'objects': len(document['objects']), 'kinds': kinds}))
'''

# The sandbox with TCP_NODELAY on its API connections, as a real kube-apiserver (Go) has them. As shipped,
# its server writes a response's headers and body in two sends with Nagle on: each response then waits
# for the client's delayed ACK (about 40 ms on Linux), which is most of a small request's time.
NODELAY_SANDBOX = '''
import sys
from ferry_sandbox.server import ApiHandler
from ferry_sandbox.cli import main
ApiHandler.disable_nagle_algorithm = True
sys.exit(main(sys.argv[1:]))
'''


# -- the dataset ----------------------------------------------------------------------------------

def _labels(namespace, app):
    return {'app.kubernetes.io/name': app, 'app.kubernetes.io/part-of': namespace, 'tier': 'backend' if int(app[-1]) % 2 else 'frontend'}


def namespace_objects(namespace, count):
    """``count`` objects of a realistic mix for one namespace: (API collection path, body) pairs.

    Per 100: 30 ConfigMaps, 20 Secrets, 10 Services, 10 Deployments (replicas 0 or 1),
    10 ServiceAccounts, 5 Roles, 5 RoleBindings, 5 PVCs, 5 Ingresses; other counts scale it.
    """
    mix = [('configmap', 30), ('secret', 20), ('service', 10), ('deployment', 10), ('serviceaccount', 10),
           ('role', 5), ('rolebinding', 5), ('pvc', 5), ('ingress', 5)]
    scale = count / 100.0
    plan = [(kind, max(1, int(round(n * scale)))) for kind, n in mix]
    plan[0] = (plan[0][0], plan[0][1] + count - sum(n for _k, n in plan))  # ConfigMaps take the rounding
    core, apps, rbac, net = '/api/v1/namespaces/%s/' % namespace, '/apis/apps/v1/namespaces/%s/' % namespace, \
        '/apis/rbac.authorization.k8s.io/v1/namespaces/%s/' % namespace, '/apis/networking.k8s.io/v1/namespaces/%s/' % namespace
    objects = []
    for kind, number in plan:
        for i in range(number):
            app = 'app-%02d' % (i % 10)
            meta = {'name': '%s-%03d' % (kind, i), 'namespace': namespace, 'labels': _labels(namespace, app),
                    'annotations': {'ferry.dev/bench': 'discovery', 'owner': 'team-%d' % (i % 4)}}
            if kind == 'configmap':
                data = {'app.properties': '\n'.join('key.%d=value-%d-%s' % (k, i, namespace) for k in range(12)),
                        'LOG_LEVEL': 'info', 'FEATURE_FLAGS': 'a,b,c'}
                objects.append((core + 'configmaps', {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': meta, 'data': data}))
            elif kind == 'secret':
                data = {'username': _b64('user-%d' % i), 'password': _b64('p%032x' % (i * 7919)), 'tls.key': _b64('k' * 256)}
                objects.append((core + 'secrets', {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': meta, 'type': 'Opaque', 'data': data}))
            elif kind == 'service':
                spec = {'selector': {'app.kubernetes.io/name': app}, 'ports': [{'name': 'http', 'port': 80, 'targetPort': 8080, 'protocol': 'TCP'}]}
                objects.append((core + 'services', {'apiVersion': 'v1', 'kind': 'Service', 'metadata': meta, 'spec': spec}))
            elif kind == 'deployment':
                labels = {'app.kubernetes.io/name': app, 'deployment': meta['name']}
                container = {'name': 'main', 'image': 'registry.example.com/%s:1.%d' % (app, i), 'ports': [{'containerPort': 8080}],
                             'env': [{'name': 'LOG_LEVEL', 'valueFrom': {'configMapKeyRef': {'name': 'configmap-%03d' % i, 'key': 'LOG_LEVEL'}}}],
                             'resources': {'requests': {'cpu': '50m', 'memory': '64Mi'}}}
                pod = {'serviceAccountName': 'serviceaccount-%03d' % (i % 10), 'containers': [container]}
                spec = {'replicas': i % 2, 'selector': {'matchLabels': labels}, 'template': {'metadata': {'labels': labels}, 'spec': pod}}
                objects.append((apps + 'deployments', {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': meta, 'spec': spec}))
            elif kind == 'serviceaccount':
                objects.append((core + 'serviceaccounts', {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': meta}))
            elif kind == 'role':
                rules = [{'apiGroups': [''], 'resources': ['configmaps', 'secrets'], 'verbs': ['get', 'list', 'watch']},
                         {'apiGroups': ['apps'], 'resources': ['deployments'], 'verbs': ['get', 'list']}]
                objects.append((rbac + 'roles', {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'Role', 'metadata': meta, 'rules': rules}))
            elif kind == 'rolebinding':
                body = {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'RoleBinding', 'metadata': meta,
                        'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'role-%03d' % i},
                        'subjects': [{'kind': 'ServiceAccount', 'name': 'serviceaccount-%03d' % i, 'namespace': namespace}]}
                objects.append((rbac + 'rolebindings', body))
            elif kind == 'pvc':
                spec = {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '1Gi'}}}
                objects.append((core + 'persistentvolumeclaims', {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': meta, 'spec': spec}))
            elif kind == 'ingress':
                backend = {'service': {'name': 'service-%03d' % i, 'port': {'number': 80}}}
                spec = {'rules': [{'host': '%s.%s.example.com' % (meta['name'], namespace),
                                   'http': {'paths': [{'path': '/', 'pathType': 'Prefix', 'backend': backend}]}}]}
                objects.append((net + 'ingresses', {'apiVersion': 'networking.k8s.io/v1', 'kind': 'Ingress', 'metadata': meta, 'spec': spec}))
    return objects


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def populate(connect, namespaces, per_namespace, workers=16):
    """Create the namespaces and their objects through the API; returns the seconds it took.

    Each worker thread has its own connection (``connect()``): one client's connection pool is
    smaller than the number of workers.
    """
    started = time.perf_counter()
    names = ['ns-%03d' % i for i in range(namespaces)]
    local = threading.local()

    def post(job):
        if not hasattr(local, 'cluster'):
            local.cluster = connect()
        path, body = job
        local.cluster.request('POST', path, body=body)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(post, [('/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}) for name in names]))
        jobs = [job for name in names for job in namespace_objects(name, per_namespace)]
        list(pool.map(post, jobs))
    return time.perf_counter() - started


def settle(cluster, timeout=120):
    """Wait until the controllers are done: every Deployment has its ReplicaSet and Pods, and no count moves between two looks."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        deployments = cluster.get('/apis/apps/v1/deployments')['items']
        counts = tuple(len(cluster.get(path)['items']) for path in (
            '/apis/apps/v1/replicasets', '/api/v1/pods', '/api/v1/endpoints', '/apis/discovery.k8s.io/v1/endpointslices',
            '/api/v1/persistentvolumeclaims', '/api/v1/serviceaccounts', '/api/v1/secrets', '/api/v1/configmaps'))
        done = counts[0] >= len(deployments) and counts[1] >= sum(d['spec'].get('replicas', 1) for d in deployments)
        if done and counts == last:
            return
        last = counts
        time.sleep(1.0)
    sys.stderr.write('warning: the cluster was still changing after %d s; the two tools may see different objects\n' % timeout)


# -- the two measured commands --------------------------------------------------------------------

def kubectl_names(types):
    """kubectl's fully qualified names of the discovery entries: ``configmaps``, ``deployments.v1.apps``."""
    return [entry['resource'] if entry['group'] == '' else '%s.%s.%s' % (entry['resource'], entry['version'], entry['group']) for entry in types]


def kubectl_argv(kubeconfig, cache, names):
    return ['kubectl', '--kubeconfig', kubeconfig, '--cache-dir', cache, 'get', ','.join(names), '-A', '-o', 'json']


def run_kubectl(argv):
    """Whole-process seconds and peak RSS of kubectl writing its JSON to /dev/null."""
    seconds, _out, peak = timed(['sh', '-c', 'exec %s >/dev/null' % ' '.join(shlex.quote(a) for a in argv)], cold=False)
    return {'seconds': seconds, 'rss': peak}


def run_ferry(kubeconfig, profile_to=''):
    seconds, out, peak = timed([sys.executable, '-c', FERRY_SCRIPT, kubeconfig, PATTERN, profile_to], env=os.environ.copy(), cold=False)
    result = json.loads(out.strip().splitlines()[-1])
    result.update(seconds=seconds, rss=peak)
    return result


def kubectl_kinds(argv):
    """Objects per 'group kind' that kubectl lists in the selected namespaces (also warms kubectl's discovery cache)."""
    proc = subprocess.run(argv, capture_output=True, check=True)
    kinds = collections.Counter()
    for item in json.loads(proc.stdout)['items']:
        if fnmatch.fnmatchcase((item.get('metadata') or {}).get('namespace') or '', PATTERN):
            kinds['%s %s' % (item.get('apiVersion', '').rpartition('/')[0], item.get('kind'))] += 1
    return kinds, len(proc.stdout)


# -- reporting ------------------------------------------------------------------------------------

def spread(values, fmt='%.2f'):
    return ('%s / %s / %s' % (fmt, fmt, fmt)) % (min(values), statistics.median(values), max(values))


def print_profile(path, limits=(('cumulative', 30), ('tottime', 15))):
    import pstats  # pylint: disable=import-outside-toplevel
    for order, limit in limits:
        print('\n--- cProfile of connect + Capture.run() in one Ferry process, its list workers added (their times overlap), top %d by %s ---'
              % (limit, order))
        stats = pstats.Stats(path, stream=sys.stdout)
        stats.strip_dirs().sort_stats(order).print_stats(limit)


def print_imports(runs=3, limit=10):
    """The import phase by top-level package (self times of ``python -X importtime``, median of ``runs``)."""
    imports = '\n'.join(line for line in FERRY_SCRIPT.splitlines() if line.startswith('from ansible_collections'))
    per_run = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, '-X', 'importtime', '-c', imports], capture_output=True, text=True, check=True)
        totals = collections.Counter()
        for line in proc.stderr.splitlines():
            if line.startswith('import time:') and '|' in line and 'self' not in line:
                own, _cumulative, module = line[len('import time:'):].split('|')
                name = module.strip()
                package = 'ferry.kube' if name.startswith('ansible_collections') else name.split('.')[0]
                totals[package] += int(own) / 1e6
        per_run.append(totals)
    packages = set().union(*per_run)
    median = {name: statistics.median(run[name] for run in per_run) for name in packages}
    print('\n--- the import phase by top-level package (python -X importtime self times, median of %d) ---' % runs)
    print('total %.2f s' % sum(median.values()))
    for name, seconds in sorted(median.items(), key=lambda item: -item[1])[:limit]:
        print('  %-28s %.3f s' % (name, seconds))


def sandbox_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'sandbox'), os.environ.get('PYTHONPATH', '')]))


def start_sandbox(state, nodelay=False):
    """A sandbox cluster in its own process; its kubeconfig. ``down`` stops it (state.json has its pid)."""
    up = ['up', '--state-dir', state, '--cluster', CLUSTER]
    if not nodelay:
        subprocess.run([sys.executable, '-m', 'ferry_sandbox'] + up + ['--detach'], check=True, env=sandbox_env(), stdout=subprocess.DEVNULL)
        return os.path.join(state, CLUSTER, 'kubeconfig')
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, 'sandbox.log'), 'ab') as log:
        process = subprocess.Popen([sys.executable, '-c', NODELAY_SANDBOX] + up, env=sandbox_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(state, 'state.json')):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit('the sandbox did not start; see %s' % os.path.join(state, 'sandbox.log'))
        time.sleep(0.05)
    return os.path.join(state, CLUSTER, 'kubeconfig')


def stop_sandbox(state):
    subprocess.run([sys.executable, '-m', 'ferry_sandbox', 'down', '--state-dir', state], check=False, env=sandbox_env(), stdout=subprocess.DEVNULL)


def measure(args, kubeconfig, work):
    """Create the dataset, check what both tools see, then the alternating timed runs."""
    from ansible_collections.ferry.kube.plugins.module_utils.kube import connection  # pylint: disable=import-outside-toplevel
    from ansible_collections.ferry.kube.plugins.module_utils.discovery.inventory import Selection, namespaced_types  # pylint: disable=import-outside-toplevel
    cluster = connection.connect({'kubeconfig': kubeconfig})
    create_seconds = populate(lambda: connection.connect({'kubeconfig': kubeconfig}), args.namespaces, args.objects)
    settle(cluster)
    types = namespaced_types(cluster.discovery(), Selection([PATTERN]))
    argv = kubectl_argv(kubeconfig, os.path.join(work, 'kube-cache'), kubectl_names(types))
    kube_kinds, json_bytes = kubectl_kinds(argv)  # warms kubectl's discovery cache too
    warm = run_ferry(kubeconfig)  # warm-up (byte-compiled modules, page cache), not counted
    kubectl_version = subprocess.run(['kubectl', 'version', '--client'], capture_output=True, text=True, check=False).stdout.split('\n', 1)[0]
    print('dataset: %d namespaces x %d objects created (%.0f s, not measured); %d namespaced objects in %s once the controllers settled'
          % (args.namespaces, args.objects, create_seconds, sum(kube_kinds.values()), PATTERN))
    print('kubectl %s; the %d resource types Ferry lists: %s' % (kubectl_version.split(':')[-1].strip(), len(types), ','.join(kubectl_names(types))))
    ferry_runs, kube_runs = [], []
    for rep in range(args.reps):
        for tool in ('ferry', 'kubectl') if rep % 2 == 0 else ('kubectl', 'ferry'):
            if tool == 'ferry':
                ferry_runs.append(run_ferry(kubeconfig))
            else:
                kube_runs.append(run_kubectl(argv))
    return {'types': types, 'kube_kinds': kube_kinds, 'json_bytes': json_bytes, 'warm': warm, 'ferry': ferry_runs, 'kubectl': kube_runs}


def report(args, kubeconfig, work, measured):
    types, kube_kinds, ferry_runs, kube_runs = measured['types'], measured['kube_kinds'], measured['ferry'], measured['kubectl']
    ferry_kinds = collections.Counter(measured['warm']['kinds'])
    fs, ks = [r['seconds'] for r in ferry_runs], [r['seconds'] for r in kube_runs]
    ratio = statistics.median(fs) / statistics.median(ks)
    paired = statistics.median(f / k for f, k in zip(fs, ks))
    print('%d repetitions, alternating which goes first; whole-process wall seconds, min / median / max\n' % args.reps)
    print('%-46s %24s %14s %9s' % ('', 'seconds', 'peak RSS MiB', 'objects'))
    print('%-46s %24s %14.0f %9d' % ('ferry: new process, connect, Capture.run()', spread(fs), statistics.median(r['rss'] for r in ferry_runs),
                                     sum(ferry_kinds.values())))
    print('%-46s %24s' % ('  import', spread([r['import'] for r in ferry_runs])))
    print('%-46s %24s' % ('  connect (one /version call)', spread([r['connect'] for r in ferry_runs])))
    print('%-46s %24s' % ('  Capture.run(), its document["seconds"]', spread([r['document_seconds'] for r in ferry_runs])))
    rest = [r['seconds'] - r['import'] - r['connect'] - r['capture'] for r in ferry_runs]
    print('%-46s %24s' % ('  the rest (interpreter start, output, exit)', spread(rest)))
    print('%-46s %24s %14.0f %9d' % ('kubectl get <%d types> -A -o json >/dev/null' % len(types), spread(ks), statistics.median(r['rss'] for r in kube_runs),
                                     sum(kube_kinds.values())))
    print('\nratio ferry / kubectl: %.2fx of the medians (%.2fx median of the paired runs); target <= %.1fx: %s'
          % (ratio, paired, TARGET, 'met' if ratio <= TARGET else 'NOT MET'))
    print('resource types: Ferry listed %d (document resource_types %d), kubectl was given the same %d; kubectl\'s JSON: %.1f MB'
          % (len(types), measured['warm']['resource_types'], len(types), measured['json_bytes'] / 1e6))
    if ferry_kinds == kube_kinds:
        kinds = ', '.join('%s %d' % (key.split()[-1], count) for key, count in sorted(kube_kinds.items()))
        print('objects in %s: both see the same %d (%s)' % (PATTERN, sum(kube_kinds.values()), kinds))
    else:
        print('objects in %s DIFFER: ferry %d, kubectl %d' % (PATTERN, sum(ferry_kinds.values()), sum(kube_kinds.values())))
        for key in sorted(set(ferry_kinds) | set(kube_kinds)):
            if ferry_kinds[key] != kube_kinds[key]:
                print('  %-40s ferry %6d  kubectl %6d' % (key.strip(), ferry_kinds[key], kube_kinds[key]))
    counts = sorted({sum(run['kinds'].values()) for run in ferry_runs})
    if counts != [sum(ferry_kinds.values())]:
        print('warning: the timed Ferry runs captured %s objects in %s: the cluster changed during the benchmark' % (counts, PATTERN))
    if args.profile or ratio > TARGET:
        profile = os.path.join(work, 'ferry.prof')
        run_ferry(kubeconfig, profile)
        print_profile(profile)
        print_imports()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--namespaces', type=int, default=100)
    parser.add_argument('--objects', type=int, default=100, help='objects created per namespace (controllers add more)')
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--profile', action='store_true', help='profile one Ferry run even when the target is met')
    parser.add_argument('--nodelay', action='store_true',
                        help="TCP_NODELAY on the sandbox's API connections, as a real API server has them (the sandbox as shipped stalls ~40 ms a response)")
    parser.add_argument('--work', default=None, help='working directory (default: a temporary one, removed)')
    args = parser.parse_args()
    if not shutil.which('kubectl'):
        raise SystemExit('kubectl is needed (Debian: apt-get install kubernetes-client)')
    work = args.work or tempfile.mkdtemp(prefix='ferry-bench-discovery-', dir=os.environ.get('FERRY_BENCH_DIR'))
    state = os.path.join(work, 'sandbox')
    try:
        kubeconfig = start_sandbox(state, args.nodelay)
        measured = measure(args, kubeconfig, work)
        return report(args, kubeconfig, work, measured)
    finally:
        stop_sandbox(state)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
