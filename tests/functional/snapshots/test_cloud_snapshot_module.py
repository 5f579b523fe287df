"""ferry.kube.snapshot with the gcp option, as Ansible runs it, against a sandbox cluster and the recorded
Compute Engine API: the PD volume without a snapshot class gets a GCE snapshot, a disk made from it is
given to the namespace as a static PV and claim, and state=absent deletes all of it."""

import json
import os
import subprocess
import sys

from ansible_collections.ferry.kube.plugins.module_utils.kube import connection
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import create_object, get_object
from fake_gce import PROJECT, SOURCE, TOKEN, ZONE, FakeCompute
from fake_http import ScriptedServer
from ferry_sandbox import pytest_plugin
from shop_app import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'snapshot.py')
NS = 'shop'

sandbox_cluster = pytest_plugin.sandbox_cluster  # the fixture, for this module


def run_module(tmp_path, args, check_mode=False):
    path = tmp_path / ('args-%d.json' % len(list(tmp_path.glob('args-*.json'))))
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=check_mode)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, '.build', 'collections'), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, MODULE, str(path)], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert TOKEN not in proc.stdout + proc.stderr, 'the access token never reaches the output'
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def pd_claim(cluster):
    """A bound claim on a static PV of the GCE PD CSI driver (the sandbox has no snapshot class for it)."""
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}})
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'PersistentVolume', 'metadata': {'name': 'pv-pd', 'labels': {'topology.kubernetes.io/zone': ZONE}},
                            'spec': {'capacity': {'storage': '10Gi'}, 'accessModes': ['ReadWriteOnce'], 'storageClassName': 'premium-rwo',
                                     'csi': {'driver': 'pd.csi.storage.gke.io', 'volumeHandle': SOURCE, 'fsType': 'ext4'},
                                     'claimRef': {'namespace': NS, 'name': 'db-data'}}})
    create_object(cluster, {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'db-data', 'namespace': NS},
                            'spec': {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'premium-rwo', 'volumeName': 'pv-pd',
                                     'resources': {'requests': {'storage': '10Gi'}}}})
    wait_for(lambda: get_object(cluster, 'v1', 'PersistentVolumeClaim', 'db-data', NS)['status'].get('phase') == 'Bound')


def test_a_pd_volume_is_snapshotted_through_compute_engine_and_released(sandbox_cluster, tmp_path):
    box = sandbox_cluster('source')
    cluster = connection.connect({'kubeconfig': box.kubeconfig_path})
    pd_claim(cluster)
    compute = FakeCompute()
    compute.add_disk(SOURCE, type='https://www.googleapis.com/compute/v1/projects/%s/zones/%s/diskTypes/pd-ssd' % (PROJECT, ZONE))
    with ScriptedServer(compute) as server:
        compute.server = server
        base = {'cluster': {'kubeconfig': box.kubeconfig_path}, 'sync_id': 'nightly-1', 'namespace': NS, 'wait_timeout': 120}
        gcp = {'access_token': TOKEN, 'project': PROJECT, 'compute_url': server.url}

        planned = run_module(tmp_path, base, check_mode=True)  # without the gcp option: a live read, and why
        assert planned['volumes'][0]['mechanism'] == 'live-read' and 'give the gcp option' in planned['volumes'][0]['reason']

        taken = run_module(tmp_path, dict(base, gcp=gcp))
        assert taken['changed'] and not taken.get('failed'), taken
        volume = taken['volumes'][0]
        assert volume['mechanism'] == 'gce-pd' and 'gce-pd snapshot API' in volume['reason']
        assert volume['consistency'] == 'crash-consistent' and volume['point_in_time']
        snapshot = 'projects/%s/global/snapshots/%s' % (PROJECT, volume['snapshot'])
        assert compute.snapshots[snapshot]['sourceDisk'].endswith(SOURCE)
        exposed = get_object(cluster, 'v1', 'PersistentVolumeClaim', volume['exposed_pvc'], NS)
        pv = get_object(cluster, 'v1', 'PersistentVolume', exposed['spec']['volumeName'])
        restored = pv['spec']['csi']['volumeHandle']
        assert pv['spec']['csi']['driver'] == 'pd.csi.storage.gke.io' and compute.disks[restored]['sourceSnapshot'].endswith(snapshot)
        assert pv['spec']['nodeAffinity']['required']['nodeSelectorTerms'][0]['matchExpressions'][0]['values'] == [ZONE]

        again = run_module(tmp_path, dict(base, gcp=gcp))  # the same sync again: nothing new is taken
        assert not again['changed'] and again['volumes'][0]['snapshot'] == volume['snapshot']

        released = run_module(tmp_path, dict(base, gcp=gcp, state='absent'))
        assert released['changed']
        assert set(compute.disks) == {SOURCE} and not compute.snapshots, 'the restored disk and the snapshot are deleted'
        names = [c['metadata']['name'] for c in cluster.get('/api/v1/namespaces/%s/persistentvolumeclaims' % NS)['items']]
        assert names == ['db-data'], 'the temporary claim is gone'
        assert not run_module(tmp_path, dict(base, gcp=gcp, state='absent'))['changed'], 'releasing twice changes nothing'
