# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn captured objects into objects another cluster accepts as new.

Drops what the source cluster assigned (uid, resourceVersion, managedFields, generation, status,
creation time, cluster IPs, auto-assigned node ports, node names, volume binding), and leaves out
what the target's controllers make by themselves (ReplicaSets and Pods of workloads, Jobs of
CronJobs, Endpoints and EndpointSlices the target computes, service-account token Secrets, the
API server's own ``default/kubernetes`` Service). Owner references are kept aside and
re-established after the owners exist on the target (their uids differ there).
"""

from __future__ import annotations

import copy
import json

METADATA_DROPPED = ('uid', 'resourceVersion', 'managedFields', 'generation', 'creationTimestamp', 'selfLink',
                    'deletionTimestamp', 'deletionGracePeriodSeconds', 'ownerReferences')
ANNOTATIONS_DROPPED = (
    'deployment.kubernetes.io/revision',
    'pv.kubernetes.io/bind-completed', 'pv.kubernetes.io/bound-by-controller',
    'volume.kubernetes.io/selected-node', 'volume.beta.kubernetes.io/storage-provisioner', 'volume.kubernetes.io/storage-provisioner',
    'control-plane.alpha.kubernetes.io/leader',
    # OpenShift assigns these ranges per cluster; the target assigns its own
    'openshift.io/sa.scc.mcs', 'openshift.io/sa.scc.supplemental-groups', 'openshift.io/sa.scc.uid-range',
)
JOB_CONTROLLER_LABELS = ('controller-uid', 'batch.kubernetes.io/controller-uid', 'job-name', 'batch.kubernetes.io/job-name')
CONTROLLER_OWNED = {('ReplicaSet', 'Deployment'), ('Pod', 'ReplicaSet'), ('Pod', 'StatefulSet'), ('Pod', 'DaemonSet'), ('Pod', 'Job'),
                    ('Job', 'CronJob'), ('ControllerRevision', 'StatefulSet'), ('ControllerRevision', 'DaemonSet'),
                    ('ReplicationController', 'DeploymentConfig'), ('Pod', 'ReplicationController'), ('EndpointSlice', 'Service')}
SYSTEM_CONFIG_MAPS = ('kube-root-ca.crt', 'openshift-service-ca.crt')
# EndpointSlices these controllers write are computed again by the target's own controllers
COMPUTED_SLICES = {'endpointslice-controller.k8s.io': 'endpoint slice of a selector Service: the target computes them',
                   'endpointslicemirroring-controller.k8s.io': 'endpoint slice mirrored from Endpoints: the target mirrors them'}
PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by'


def skip_reason(obj, capture_index, restore_pvs='static'):
    """Why ``obj`` is not restored at all, or None."""
    kind = obj.get('kind')
    meta = obj.get('metadata') or {}
    for owner in meta.get('ownerReferences') or []:
        if (kind, owner.get('kind')) in CONTROLLER_OWNED:
            return 'made by its %s %s on the target' % (owner.get('kind'), owner.get('name'))
    if kind == 'Secret' and obj.get('type') == 'kubernetes.io/service-account-token':
        return 'service-account token: the target issues its own'
    if kind == 'ConfigMap' and meta.get('name') in SYSTEM_CONFIG_MAPS:
        return 'published in every namespace by the target itself'
    labels = meta.get('labels') or {}
    if kind in ('Service', 'Endpoints', 'EndpointSlice') and meta.get('namespace') == 'default' and \
            'kubernetes' in (meta.get('name'), labels.get('kubernetes.io/service-name')):
        return "the API server's own Service: every cluster publishes its own"
    if kind == 'Endpoints':
        service = capture_index.get(('Service', meta.get('namespace'), meta.get('name')))
        if service is not None and (service.get('spec') or {}).get('selector'):
            return 'endpoints of a selector Service: the target computes them'
    if kind == 'EndpointSlice' and labels.get('endpointslice.kubernetes.io/managed-by') in COMPUTED_SLICES:
        return COMPUTED_SLICES[labels['endpointslice.kubernetes.io/managed-by']]
    if kind == 'PersistentVolume' and restore_pvs != 'all':
        if restore_pvs == 'none':
            return 'restore_pvs=none'
        if PROVISIONED_BY in (meta.get('annotations') or {}):
            return 'dynamically provisioned: its claim provisions a new volume on the target'
    return None


def sanitize(obj, pv_restored=None):
    """A copy of ``obj`` fit to create on another cluster. ``pv_restored(name)`` tells whether a claim's PV comes too."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault('metadata', {})
    for field in METADATA_DROPPED:
        meta.pop(field, None)
    if meta.get('annotations'):
        for annotation in ANNOTATIONS_DROPPED:
            meta['annotations'].pop(annotation, None)
        if not meta['annotations']:
            del meta['annotations']
    obj.pop('status', None)
    cleaner = _CLEANERS.get(obj.get('kind'))
    if cleaner is not None:
        cleaner(obj, pv_restored)
    return obj


def _service(obj, pv_restored):
    spec = obj.get('spec') or {}
    declared = _last_applied_ports(obj)
    if spec.get('clusterIP') != 'None':  # headless stays headless
        spec.pop('clusterIP', None)
        spec.pop('clusterIPs', None)
    else:
        spec.pop('clusterIPs', None)
    spec.pop('healthCheckNodePort', None)
    for port in spec.get('ports') or []:
        if 'nodePort' in port and port['nodePort'] not in declared:
            del port['nodePort']  # auto-assigned: the target assigns its own (a fixed one could clash)


def _last_applied_ports(obj):
    """Node ports the user declared (kubectl's last-applied configuration names them)."""
    text = ((obj.get('metadata') or {}).get('annotations') or {}).get('kubectl.kubernetes.io/last-applied-configuration')
    try:
        declared = json.loads(text) if text else {}
    except ValueError:
        return set()
    return {port.get('nodePort') for port in (declared.get('spec') or {}).get('ports') or [] if port.get('nodePort')}


def _pvc(obj, pv_restored):
    spec = obj.get('spec') or {}
    if spec.get('volumeName') and not (pv_restored and pv_restored(spec['volumeName'])):
        del spec['volumeName']
    for field in ('dataSource', 'dataSourceRef'):
        spec.pop(field, None)  # a snapshot or clone source of the source cluster; the data comes from Ferry


def _pv(obj, pv_restored):
    claim = (obj.get('spec') or {}).get('claimRef')
    if claim:
        for field in ('uid', 'resourceVersion'):
            claim.pop(field, None)


def _pod(obj, pv_restored):
    spec = obj.get('spec') or {}
    spec.pop('nodeName', None)


def _job(obj, pv_restored):
    spec = obj.get('spec') or {}
    if spec.get('manualSelector'):
        return
    spec.pop('selector', None)  # the target's Job controller writes a selector with the new uid
    labels = ((spec.get('template') or {}).get('metadata') or {}).get('labels') or {}
    for label in JOB_CONTROLLER_LABELS:
        labels.pop(label, None)


def _service_account(obj, pv_restored):
    name = (obj.get('metadata') or {}).get('name')
    secrets = [ref for ref in obj.get('secrets') or [] if not (ref.get('name') or '').startswith('%s-token-' % name)
               and not (ref.get('name') or '').startswith('%s-dockercfg-' % name)]
    if secrets:
        obj['secrets'] = secrets
    else:
        obj.pop('secrets', None)


def _namespace(obj, pv_restored):
    obj.pop('spec', None)  # only the kubernetes finalizer, which the target adds itself


def _route(obj, pv_restored):
    annotations = (obj.get('metadata') or {}).get('annotations') or {}
    if annotations.get('openshift.io/host.generated') == 'true':
        (obj.get('spec') or {}).pop('host', None)  # the target's router names it after its own domain


_CLEANERS = {
    'Service': _service,
    'PersistentVolumeClaim': _pvc,
    'PersistentVolume': _pv,
    'Pod': _pod,
    'Job': _job,
    'ServiceAccount': _service_account,
    'Namespace': _namespace,
    'Route': _route,
}
