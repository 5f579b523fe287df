"""How fast the sandbox is: cluster start, and listing 10,000 objects through the HTTPS API.

    PYTHONPATH=sandbox .venv/bin/python sandbox/bench.py [--objects 10000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

from ferry_sandbox.cluster import Cluster


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--objects', type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        cluster = Cluster('bench', state).start()
        start_seconds = time.perf_counter() - started
        for i in range(args.objects):
            cluster.store.create('', 'configmaps', {'metadata': {'name': 'cm-%05d' % i, 'namespace': 'default', 'labels': {'i': str(i % 10)}},
                                                    'data': {'key': 'value-%d' % i}})
        from kubernetes import config  # pylint: disable=import-outside-toplevel
        api = config.new_client_from_config(cluster.kubeconfig_path)
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            response = api.call_api('/api/v1/configmaps', 'GET', auth_settings=['BearerToken'], _preload_content=False,
                                    _return_http_data_only=True)
            items = json.loads(response.data)['items']
            timings.append(time.perf_counter() - t)
        assert len(items) >= args.objects
        t = time.perf_counter()
        out = subprocess.run(['kubectl', '--kubeconfig', cluster.kubeconfig_path, 'get', 'configmaps', '-A', '-o', 'json'],
                             capture_output=True, check=True).stdout
        kubectl_seconds = time.perf_counter() - t
        cluster.stop()
    print('cluster start: %.3f s' % start_seconds)
    print('list %d objects over HTTPS (client parse included): min %.3f s, median %.3f s' % (len(items), min(timings), sorted(timings)[1]))
    print('kubectl get configmaps -A -o json: %.3f s (%d bytes)' % (kubectl_seconds, len(out)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
