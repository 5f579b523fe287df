"""Start and stop sandbox clusters: ``python -m ferry_sandbox up|down|status``.

    python -m ferry_sandbox up --state-dir /tmp/sb --cluster source --cluster dr \\
        --cluster legacy:version=1.21 --cluster ocp:openshift [--detach]

Each cluster gets ``<state-dir>/<name>/kubeconfig`` (admin) and ``kubeconfig-restricted`` (a
read-only service account). ``<state-dir>/state.json`` lists them for scripts and tests.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from .cluster import Cluster
from .images import default_images, load_images


def parse_cluster_spec(text):
    """``name[:version=1.21][:openshift]`` -> (name, options)."""
    name, *options = text.split(':')
    spec = {'version': '1.31', 'extras': []}
    for option in options:
        if option.startswith('version='):
            spec['version'] = option.split('=', 1)[1]
        elif option == 'openshift':
            spec['extras'].append('openshift')
        elif option:
            raise SystemExit('unknown cluster option %r in %r (use version=1.NN or openshift)' % (option, text))
    if not name.replace('-', '').isalnum():
        raise SystemExit('cluster name %r must be letters, digits and dashes' % name)
    return name, spec


def state_path(state_dir):
    return os.path.join(state_dir, 'state.json')


def load_state(state_dir):
    with open(state_path(state_dir), 'r', encoding='utf-8') as handle:
        return json.load(handle)


def start_clusters(state_dir, specs, images=None):
    clusters = []
    for name, spec in specs:
        cluster = Cluster(name, os.path.join(state_dir, name), version=spec['version'], api_groups_extra=spec['extras'],
                          local_images=images if images is not None else default_images())
        cluster.start()
        clusters.append(cluster)
    state = {'pid': os.getpid(), 'clusters': {c.name: {
        'kubeconfig': c.kubeconfig_path, 'restricted_kubeconfig': c.restricted_kubeconfig_path, 'api_url': c.api_url,
        'ca_file': c.ca_file, 'node_ip': c.node_ip, 'version': c.version, 'extras': list(c.extras), 'state_dir': c.state_dir}
        for c in clusters}}
    temp = state_path(state_dir) + '.tmp'
    with open(temp, 'w', encoding='utf-8') as handle:
        json.dump(state, handle, indent=2)
    os.replace(temp, state_path(state_dir))
    return clusters


def cmd_up(args):
    os.makedirs(args.state_dir, exist_ok=True)
    specs = [parse_cluster_spec(c) for c in args.cluster or ['source', 'dr']]
    if args.detach:
        if os.path.exists(state_path(args.state_dir)):
            os.remove(state_path(args.state_dir))
        log = open(os.path.join(args.state_dir, 'sandbox.log'), 'ab')  # pylint: disable=consider-using-with
        command = [sys.executable, '-m', 'ferry_sandbox', 'up', '--state-dir', args.state_dir] + \
            sum((['--cluster', c] for c in args.cluster or ['source', 'dr']), []) + (['--images', args.images] if args.images else [])
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(state_path(args.state_dir)):
            if process.poll() is not None:
                sys.stderr.write('sandbox failed to start; see %s\n' % os.path.join(args.state_dir, 'sandbox.log'))
                return 1
            if time.monotonic() > deadline:
                process.terminate()
                sys.stderr.write('sandbox did not start within 60 s\n')
                return 1
            time.sleep(0.05)
        _print_state(load_state(args.state_dir))
        return 0
    # Many threads share this interpreter (API servers, controllers, the Services' accept loops); one
    # back from a socket call waits for the lock up to the switch interval, 5 ms by default. The
    # proxies pump in processes of their own now (controllers/pump.py); the short interval still
    # kept a staged restore through a NodePort a little faster (9.9-10.1 s against 10.2-11.0 s).
    sys.setswitchinterval(0.0005)
    images = load_images(args.images) if args.images else None
    clusters = start_clusters(args.state_dir, specs, images)
    _print_state(load_state(args.state_dir))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    for cluster in clusters:
        cluster.stop()
    try:
        os.remove(state_path(args.state_dir))
    except FileNotFoundError:
        pass
    return 0


def _print_state(state):
    for name, info in state['clusters'].items():
        print('%-10s %s  kubeconfig=%s  (Kubernetes %s%s)' % (name, info['api_url'], info['kubeconfig'], info['version'],
                                                             ', ' + ', '.join(info['extras']) if info['extras'] else ''))
    sys.stdout.flush()


def cmd_down(args):
    try:
        state = load_state(args.state_dir)
    except FileNotFoundError:
        print('no sandbox is running in %s' % args.state_dir)
        return 0
    pid = state['pid']
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    if os.path.exists(state_path(args.state_dir)):
        os.remove(state_path(args.state_dir))
    print('sandbox in %s stopped' % args.state_dir)
    return 0


def cmd_status(args):
    try:
        _print_state(load_state(args.state_dir))
    except FileNotFoundError:
        print('no sandbox is running in %s' % args.state_dir)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m ferry_sandbox', description='Local Kubernetes stand-in clusters for tests and the demo.')
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='start clusters')
    up.add_argument('--state-dir', required=True)
    up.add_argument('--cluster', action='append', help='name[:version=1.NN][:openshift]; repeat for more clusters')
    up.add_argument('--images', help='YAML file of local images that really run (name: {entrypoint: [...], cmd: [...]})')
    up.add_argument('--detach', action='store_true', help='run in the background; stop with "down"')
    down = sub.add_parser('down', help='stop detached clusters')
    down.add_argument('--state-dir', required=True)
    status = sub.add_parser('status', help='list running clusters')
    status.add_argument('--state-dir', required=True)
    args = parser.parse_args(argv)
    return {'up': cmd_up, 'down': cmd_down, 'status': cmd_status}[args.command](args)
