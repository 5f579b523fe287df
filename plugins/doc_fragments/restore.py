# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the options that shape an object restore: transforms, existing objects, validation."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  namespace_mapping:
    description: Source namespace to target namespace.
    type: dict
    default: {}
  storage_class_mapping:
    description: Source storage class to target storage class. A mapped StorageClass itself is not restored.
    type: dict
    default: {}
  image_rewrites:
    description:
      - Registry or repository prefixes to rewrite in container images, longest match first, for example the
        RV(ferry.kube.registry_sync#module:rewrites) of a registry sync.
    type: list
    elements: dict
    default: []
    suboptions:
      from:
        description: Source prefix (C(docker.io/library), C(registry.example.com/team)).
        type: str
        required: true
      to:
        description: Replacement prefix.
        type: str
        required: true
  image_digests:
    description: Source image reference to digest; rewritten images are pinned by digest where known.
    type: dict
    default: {}
  replicas:
    description:
      - Set every Deployment, StatefulSet, ReplicaSet and DeploymentConfig to this many replicas. The original count is
        kept in the annotation C(ferry.dev/original-replicas). V(0) keeps a DR copy hydrated but idle.
    type: int
  suspend_cron_jobs:
    description: Suspend CronJobs (the original setting kept in C(ferry.dev/original-suspend)). Default is true when O(replicas=0).
    type: bool
  add_labels:
    description: Labels added to every restored object.
    type: dict
    default: {}
  add_annotations:
    description: Annotations added to every restored object.
    type: dict
    default: {}
  patches:
    description: Patches applied to the objects their target selects, after the other transforms.
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description: Which objects; every given field must match.
        type: dict
        default: {}
        suboptions:
          kind:
            description: Kind.
            type: str
          group:
            description: API group (empty for the core group).
            type: str
          name:
            description: Name or shell pattern.
            type: str
          namespace:
            description: Namespace (after O(namespace_mapping)) or shell pattern.
            type: str
          label_selector:
            description: Label selector.
            type: str
          jmespath:
            description: JMESPath expression evaluated on the object; the object is targeted when it is truthy.
            type: str
      json_patch:
        description: RFC 6902 operations.
        type: list
        elements: dict
      merge_patch:
        description: RFC 7386 merge patch.
        type: dict
  existing:
    description:
      - What to do with objects that exist on the target and differ. V(skip) leaves them; V(update) merges three-way
        (fields Ferry set before and no longer wants are removed, fields others set are kept); V(replace) replaces them,
        deleting and recreating when an immutable field differs.
    type: str
    choices: [skip, update, replace]
    default: update
  restore_pvs:
    description:
      - V(static) restores statically provisioned PersistentVolumes only (dynamically provisioned ones are provisioned
        anew by their claims); V(all) restores every captured PV; V(none) none.
    type: str
    choices: [static, all, none]
    default: static
  validate:
    description: Validate health after the restore (not in check mode).
    type: bool
    default: true
  validate_timeout:
    description: Seconds to wait for the restored objects to become healthy.
    type: int
    default: 300
  fail_on_unhealthy:
    description: Fail when validation finds an unhealthy object or probe.
    type: bool
    default: true
  probes:
    description:
      - Checks run once the objects are healthy. Each has a C(name) and either C(http_get) (C(url), C(expected_status),
        C(contains), C(timeout), C(validate_certs), C(ca_file), C(headers)) or C(exec) (C(namespace), C(pod) or
        C(selector), C(container), C(command), C(expected_rc)).
      - Not logged, as headers may carry credentials.
    type: list
    elements: dict
    default: []
'''
