# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore changes on the way: namespaces, storage classes, image registries, replicas,
labels and annotations, and user patches (JSON patch or merge patch) on targets chosen by kind,
name, namespace, labels or a JMESPath expression.

Each transform works on a sanitised copy and returns nothing; ``Transforms.apply`` runs them in a
fixed order so a patch sees the object as the earlier transforms left it.
"""

from __future__ import annotations

import fnmatch

from ansible_collections.ferry.kube.plugins.module_utils.discovery import selectors
from ansible_collections.ferry.kube.plugins.module_utils.discovery.graph import containers, pod_spec
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError
from ansible_collections.ferry.kube.plugins.module_utils.kube.objects import split_api_version

try:
    import jsonpatch
    HAS_JSONPATCH = True
except ImportError:
    HAS_JSONPATCH = False
try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False

ORIGINAL_REPLICAS = 'ferry.dev/original-replicas'
ORIGINAL_SUSPEND = 'ferry.dev/original-suspend'
SCALABLE_KINDS = ('Deployment', 'StatefulSet', 'ReplicaSet', 'ReplicationController', 'DeploymentConfig')
NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: dicts merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Patch:
    """One user patch and the objects it targets."""

    def __init__(self, spec, index):
        self.where = 'patches[%d]' % index
        target = spec.get('target') or {}
        self.kind = target.get('kind')
        self.group = target.get('group')
        self.name = target.get('name')
        self.namespace = target.get('namespace')
        self.label_selector = None
        if target.get('label_selector'):
            try:
                self.label_selector = selectors.parse_selector(target['label_selector'])
            except FerryError as exc:
                raise FerryError('%s.target.label_selector: %s' % (self.where, exc)) from None
        self.expression = None
        if target.get('jmespath'):
            if not HAS_JMESPATH:
                raise FerryError('%s: a JMESPath target needs the Python library jmespath (pip install jmespath)' % self.where)
            try:
                self.expression = jmespath.compile(target['jmespath'])
            except jmespath.exceptions.JMESPathError as exc:
                raise FerryError('%s.target.jmespath %r is not a valid JMESPath expression: %s' % (self.where, target['jmespath'], exc)) from None
        self.json_patch = spec.get('json_patch')
        self.merge_patch = spec.get('merge_patch')
        if (self.json_patch is None) == (self.merge_patch is None):
            raise FerryError('%s: give exactly one of json_patch (a list of RFC 6902 operations) and merge_patch (an RFC 7386 document)' % self.where)
        if self.json_patch is not None:
            if not HAS_JSONPATCH:
                raise FerryError('%s: json_patch needs the Python library jsonpatch (pip install jsonpatch)' % self.where)
            try:
                self.compiled = jsonpatch.JsonPatch(self.json_patch)
            except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
                raise FerryError('%s.json_patch is not a valid RFC 6902 patch: %s' % (self.where, exc)) from None

    def targets(self, obj):
        meta = obj.get('metadata') or {}
        if self.kind and obj.get('kind') != self.kind:
            return False
        if self.group is not None and split_api_version(obj.get('apiVersion') or 'v1')[0] != self.group:
            return False
        if self.name and not fnmatch.fnmatchcase(meta.get('name') or '', self.name):
            return False
        if self.namespace and not fnmatch.fnmatchcase(meta.get('namespace') or '', self.namespace):
            return False
        if self.label_selector is not None and not selectors.matches(self.label_selector, meta.get('labels') or {}):
            return False
        if self.expression is None:
            return True
        try:
            return bool(self.expression.search(obj))
        except jmespath.exceptions.JMESPathError as exc:
            raise FerryError('%s.target.jmespath %r cannot be evaluated on %s %s/%s: %s'
                             % (self.where, self.expression.expression, obj.get('kind'), meta.get('namespace') or '', meta.get('name'), exc)) from None

    def apply(self, obj):
        if self.merge_patch is not None:
            return merge_patch(obj, self.merge_patch)
        try:
            return self.compiled.apply(obj)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            meta = obj.get('metadata') or {}
            raise FerryError('%s does not apply to %s %s/%s: %s' % (self.where, obj.get('kind'), meta.get('namespace') or '', meta.get('name'), exc)) from None


class Transforms:
    """The transforms of one restore, from the module's options."""

    def __init__(self, namespace_mapping=None, storage_class_mapping=None, image_rewrites=None, image_digests=None,
                 replicas=None, suspend_cron_jobs=None, add_labels=None, add_annotations=None, patches=None):
        self.namespace_mapping = dict(namespace_mapping or {})
        self.storage_class_mapping = dict(storage_class_mapping or {})
        self.image_rewrites = list(image_rewrites or [])
        self.image_digests = dict(image_digests or {})
        self.replicas = replicas
        self.suspend_cron_jobs = replicas == 0 if suspend_cron_jobs is None else suspend_cron_jobs
        self.add_labels = dict(add_labels or {})
        self.add_annotations = dict(add_annotations or {})
        self.patches = [Patch(spec, index) for index, spec in enumerate(patches or [])]
        for rewrite in self.image_rewrites:
            if not rewrite.get('from') or not rewrite.get('to'):
                raise FerryError('image_rewrites entries need "from" (a registry or repository prefix) and "to": got %r' % (rewrite,))
        if self.image_rewrites:
            from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import compile_rewrites  # pylint: disable=import-outside-toplevel
            try:
                compile_rewrites(self.image_rewrites)  # checked once here rather than failing on the first workload
            except ValueError as exc:
                raise FerryError('image_rewrites: %s' % exc) from None

    def target_namespace(self, namespace):
        return self.namespace_mapping.get(namespace, namespace) if namespace else namespace

    def apply(self, obj):
        """The transformed object (``obj`` is a sanitised copy and may be changed in place)."""
        self._namespaces(obj)
        self._storage_classes(obj)
        self._images(obj)
        self._replicas(obj)
        meta = obj.setdefault('metadata', {})
        if self.add_labels:
            meta['labels'] = dict(meta.get('labels') or {}, **self.add_labels)
        if self.add_annotations:
            meta['annotations'] = dict(meta.get('annotations') or {}, **self.add_annotations)
        for patch in self.patches:
            if patch.targets(obj):
                obj = patch.apply(obj)
        return obj

    # -- namespaces -----------------------------------------------------------------------------
    def _namespaces(self, obj):
        if not self.namespace_mapping:
            return
        meta = obj.setdefault('metadata', {})
        mapped = self.namespace_mapping
        if meta.get('namespace') in mapped:
            meta['namespace'] = mapped[meta['namespace']]
        kind = obj.get('kind')
        if kind == 'Namespace' and meta.get('name') in mapped:
            meta['name'] = mapped[meta['name']]
            labels = meta.get('labels') or {}
            if NAMESPACE_NAME_LABEL in labels:
                labels[NAMESPACE_NAME_LABEL] = meta['name']
        elif kind in ('RoleBinding', 'ClusterRoleBinding'):
            for subject in obj.get('subjects') or []:
                if subject.get('namespace') in mapped:
                    subject['namespace'] = mapped[subject['namespace']]
        elif kind == 'PersistentVolume':
            claim = (obj.get('spec') or {}).get('claimRef') or {}
            if claim.get('namespace') in mapped:
                claim['namespace'] = mapped[claim['namespace']]
        elif kind == 'NetworkPolicy':
            spec = obj.get('spec') or {}
            for rule in (spec.get('ingress') or []) + (spec.get('egress') or []):
                for peer in (rule.get('from') or []) + (rule.get('to') or []):
                    self._namespace_selector(peer.get('namespaceSelector'))

    def _namespace_selector(self, selector):
        """Selectors of namespaces by name (the label every namespace carries) follow the mapping."""
        if not selector:
            return
        labels = selector.get('matchLabels') or {}
        if labels.get(NAMESPACE_NAME_LABEL) in self.namespace_mapping:
            labels[NAMESPACE_NAME_LABEL] = self.namespace_mapping[labels[NAMESPACE_NAME_LABEL]]
        for expression in selector.get('matchExpressions') or []:
            if expression.get('key') == NAMESPACE_NAME_LABEL:
                expression['values'] = [self.namespace_mapping.get(value, value) for value in expression.get('values') or []]

    # -- storage classes ------------------------------------------------------------------------
    def _storage_classes(self, obj):
        if not self.storage_class_mapping:
            return
        kind = obj.get('kind')
        specs = []
        if kind in ('PersistentVolumeClaim', 'PersistentVolume'):
            specs.append(obj.get('spec') or {})
        elif kind == 'StatefulSet':
            specs.extend(claim.get('spec') or {} for claim in (obj.get('spec') or {}).get('volumeClaimTemplates') or [])
        for spec in specs:
            if spec.get('storageClassName') in self.storage_class_mapping:
                spec['storageClassName'] = self.storage_class_mapping[spec['storageClassName']]
        annotations = (obj.get('metadata') or {}).get('annotations') or {}
        legacy = 'volume.beta.kubernetes.io/storage-class'
        if annotations.get(legacy) in self.storage_class_mapping:
            annotations[legacy] = self.storage_class_mapping[annotations[legacy]]

    # -- images ---------------------------------------------------------------------------------
    def _images(self, obj):
        if not self.image_rewrites:
            return
        spec = pod_spec(obj)
        if spec is None:
            return
        from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import rewrite_image  # pylint: disable=import-outside-toplevel
        for container in containers(spec):
            if container.get('image'):
                container['image'] = rewrite_image(container['image'], self.image_rewrites, self.image_digests)

    # -- replicas -------------------------------------------------------------------------------
    def _replicas(self, obj):
        kind = obj.get('kind')
        if kind in SCALABLE_KINDS and self.replicas is not None:
            spec = obj.setdefault('spec', {})
            self._remember(obj, ORIGINAL_REPLICAS, str(spec.get('replicas', 1)))
            spec['replicas'] = self.replicas
        elif kind in ('CronJob', 'Job') and self.suspend_cron_jobs:
            # a standby copy must not run the app's batch work (a restored Job would run again at once)
            spec = obj.setdefault('spec', {})
            self._remember(obj, ORIGINAL_SUSPEND, 'true' if spec.get('suspend') else 'false')
            spec['suspend'] = True

    @staticmethod
    def _remember(obj, annotation, value):
        """Record the source's setting, unless an earlier restore of a standby already did."""
        obj.setdefault('metadata', {}).setdefault('annotations', {}).setdefault(annotation, value)
