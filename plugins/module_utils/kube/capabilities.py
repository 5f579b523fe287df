# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cluster is and can do: version, platform, APIs, storage and snapshot capability.

Feeds ``cluster_info`` and the snapshot-mechanism choice. Reads only.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube import footprint
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import list_items

DEFAULT_CLASS_ANNOTATIONS = ('storageclass.kubernetes.io/is-default-class', 'storageclass.beta.kubernetes.io/is-default-class')

# Provisioners whose volumes the cloud's own snapshot API can copy when no CSI snapshot class exists.
CLOUD_PROVISIONERS = {
    'ebs.csi.aws.com': 'aws-ebs',
    'kubernetes.io/aws-ebs': 'aws-ebs',
    'pd.csi.storage.gke.io': 'gce-pd',
    'kubernetes.io/gce-pd': 'gce-pd',
    'disk.csi.azure.com': 'azure-disk',
    'kubernetes.io/azure-disk': 'azure-disk',
    'file.csi.azure.com': 'azure-file',
    'kubernetes.io/azure-file': 'azure-file',
}

# (platform, how to recognise it from gitVersion), most specific first.
_VERSION_MARKERS = [('eks', '-eks-'), ('gke', '-gke.'), ('k3s', '+k3s'), ('rke2', '+rke2'), ('iks', '+IKS'), ('oke', '-oke')]
_PROVIDER_ID_PREFIXES = [('aks', 'azure://'), ('eks', 'aws://'), ('gke', 'gce://'), ('oke', 'oci://'), ('doks', 'digitalocean://'),
                         ('lke', 'linode://'), ('iks', 'ibm://')]


def served_group_versions(discovery):
    """Sorted ``group/version`` strings (``v1`` for core) the server serves."""
    return sorted({entry['group_version'] for entry in discovery})


def detect_platform(version, group_versions, nodes):
    """Best guess of the distribution: openshift, eks, gke, aks, oke, ..., else vanilla."""
    groups = {gv.split('/')[0] for gv in group_versions if '/' in gv}
    if 'config.openshift.io' in groups or 'route.openshift.io' in groups or 'apps.openshift.io' in groups:
        return 'openshift'
    git_version = (version or {}).get('gitVersion', '')
    for platform, marker in _VERSION_MARKERS:
        if marker in git_version:
            return platform
    for node in nodes or []:
        provider_id = (node.get('spec') or {}).get('providerID') or ''
        for platform, prefix in _PROVIDER_ID_PREFIXES:
            if provider_id.startswith(prefix):
                return platform
    if 'management.cattle.io' in groups:
        return 'rancher'
    return 'vanilla'


def storage_report(storage_classes, csi_drivers, snapshot_classes):
    """Storage classes with their snapshot mechanism, in the order Ferry will prefer it."""
    snapshot_drivers = {}
    for snap_class in snapshot_classes:
        snapshot_drivers.setdefault(snap_class.get('driver'), []).append(snap_class['metadata']['name'])
    csi_names = {d['metadata']['name'] for d in csi_drivers}
    report = []
    for sc in sorted(storage_classes, key=lambda s: s['metadata']['name']):
        annotations = sc['metadata'].get('annotations') or {}
        provisioner = sc.get('provisioner')
        if provisioner in snapshot_drivers:
            mechanism = 'csi-snapshot'
        elif provisioner in CLOUD_PROVISIONERS:
            mechanism = CLOUD_PROVISIONERS[provisioner]
        else:
            mechanism = 'live-read'
        report.append({
            'name': sc['metadata']['name'],
            'provisioner': provisioner,
            'default': any(annotations.get(a) == 'true' for a in DEFAULT_CLASS_ANNOTATIONS),
            'reclaim_policy': sc.get('reclaimPolicy', 'Delete'),
            'volume_binding_mode': sc.get('volumeBindingMode', 'Immediate'),
            'allow_volume_expansion': bool(sc.get('allowVolumeExpansion')),
            'csi': provisioner in csi_names,
            'snapshot_classes': snapshot_drivers.get(provisioner, []),
            'snapshot_mechanism': mechanism,
        })
    return report


def _served(discovery, group, resource):
    return next((e for e in discovery if e['group'] == group and e['resource'] == resource and e['preferred'] and not e['subresource']), None)


def list_resource(cluster, discovery, group, resource):
    """Items of a cluster-scoped resource (or all namespaces), None when not served or not readable."""
    entry = _served(discovery, group, resource)
    if entry is None:
        return None
    base = '/api/%s' % entry['version'] if entry['group'] == '' else '/apis/%s' % entry['group_version']
    return list_items(cluster, '%s/%s' % (base, entry['resource']), absent=(403, 404))


def permissions(cluster, probes=None):
    """Which of Ferry's needed permissions the connected identity holds (SelfSubjectAccessReview)."""
    result = []
    for verb, group, resource in probes or footprint.PERMISSION_PROBES:
        main, _sep, sub = resource.partition('/')
        review = {'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SelfSubjectAccessReview',
                  'spec': {'resourceAttributes': {'verb': verb, 'group': group, 'resource': main, 'subresource': sub}}}
        try:
            status = cluster.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', body=review)[1].get('status') or {}
            allowed = bool(status.get('allowed'))
        except ApiError as exc:
            if exc.status not in (403, 404):
                raise
            allowed = None  # cannot tell
        result.append({'verb': verb, 'group': group, 'resource': resource, 'allowed': allowed})
    return result


def footprint_state(cluster, namespace=None, name=footprint.DEFAULT_NAME):
    """Whether Ferry's ServiceAccount, ClusterRole/Binding and agent image setting are present.

    The account's namespace is read from the ClusterRoleBinding, so a footprint installed in a
    namespace of the user's choice is found too.
    """
    def exists(path):
        try:
            return cluster.get(path)
        except ApiError as exc:
            if exc.status in (403, 404):
                return None
            raise

    binding = exists('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/%s' % name)
    subject = next((s for s in (binding or {}).get('subjects') or [] if s.get('kind') == 'ServiceAccount'), None)
    namespace = namespace or (subject or {}).get('namespace') or footprint.DEFAULT_NAMESPACE
    account = (subject or {}).get('name') or name
    config = exists('/api/v1/namespaces/%s/configmaps/%s' % (namespace, footprint.CONFIG_MAP))
    role = exists('/apis/rbac.authorization.k8s.io/v1/clusterroles/%s' % name)
    wanted = footprint.cluster_role(name)['rules']
    return {
        'namespace': namespace,
        'service_account': exists('/api/v1/namespaces/%s/serviceaccounts/%s' % (namespace, account)) is not None,
        'cluster_role': role is not None,
        'cluster_role_current': role is not None and role.get('rules') == wanted,
        'cluster_role_binding': binding is not None,
        'agent_image': ((config or {}).get('data') or {}).get('agent_image'),
    }


def gather(cluster, check_permissions=True):
    """The whole capability report of a cluster."""
    discovery = cluster.discovery()
    group_versions = served_group_versions(discovery)
    version = cluster.server_version
    nodes = list_resource(cluster, discovery, '', 'nodes') or []
    namespaces = list_resource(cluster, discovery, '', 'namespaces')
    storage_classes = list_resource(cluster, discovery, 'storage.k8s.io', 'storageclasses') or []
    csi_drivers = list_resource(cluster, discovery, 'storage.k8s.io', 'csidrivers') or []
    snapshot_classes = list_resource(cluster, discovery, 'snapshot.storage.k8s.io', 'volumesnapshotclasses')
    report = {
        'name': cluster.name,
        'host': cluster.host,
        'version': {
            'git_version': version.get('gitVersion'),
            'major': version.get('major'),
            'minor': version.get('minor'),
            'platform': version.get('platform'),
        },
        'platform': detect_platform(version, group_versions, nodes),
        'api_group_versions': group_versions,
        'namespaces': sorted(ns['metadata']['name'] for ns in namespaces) if namespaces is not None else None,
        'nodes': len(nodes),
        'storage_classes': storage_report(storage_classes, csi_drivers, snapshot_classes or []),
        'csi_drivers': sorted(d['metadata']['name'] for d in csi_drivers),
        'snapshot_api': snapshot_classes is not None,
        'volume_snapshot_classes': [
            {'name': c['metadata']['name'], 'driver': c.get('driver'), 'deletion_policy': c.get('deletionPolicy'),
             'default': (c['metadata'].get('annotations') or {}).get('snapshot.storage.kubernetes.io/is-default-class') == 'true'}
            for c in sorted(snapshot_classes or [], key=lambda c: c['metadata']['name'])
        ],
        'ferry': footprint_state(cluster),
    }
    if check_permissions:
        perms = permissions(cluster)
        report['permissions'] = perms
        report['missing_permissions'] = ['%s %s%s' % (p['verb'], p['group'] + '/' if p['group'] else '', p['resource'])
                                         for p in perms if p['allowed'] is False]
    return report
