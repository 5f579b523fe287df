# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run copies where: one ``Job`` per image, and the target repository a source repository goes to.

Apart from the engine (``replicate.py``) so that ``sync`` can list the jobs while the engine is still being
compiled (a module Ansible ships is compiled at every run).
"""

from __future__ import annotations

import threading

from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryError
from ansible_collections.ferry.kube.plugins.module_utils.registry.record import entry_key
from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import Reference, is_repository_path, match_rewrite, parse_prefix

COUNTERS = ('manifests_copied', 'blobs_copied', 'blobs_skipped', 'blobs_mounted', 'blobs_foreign', 'bytes_copied', 'bytes_skipped', 'bytes_mounted')


class Job:
    """One image to replicate: where it is, where it goes, and (as the run goes on) what happened to it."""

    def __init__(self, source, repository, reference, tag, target_repository):
        self.source = source  # RegistryClient
        self.repository = repository
        self.reference = reference  # what to read: the digest if given, else the tag
        self.tag = tag  # what to tag at the target (None: by digest only)
        self.target_repository = target_repository
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        """Forget a plan (to make it again, checking the target)."""
        self.manifests = []  # (Manifest, reference to push it as), children first
        self.blobs = []  # descriptors to find at the target
        self.error = None
        self.trusted = False  # taken as present from the record, without asking the target
        self.image_blobs = [0, 0]  # blobs and bytes of the image's manifests, counted per manifest (what a later run skips)
        self.result = {key: 0 for key in COUNTERS}
        self.result.update(source=self.source_ref(), status='planned', from_record=False)

    @property
    def key(self):
        """The record's key: target repository and tag (or digest, for an image copied by digest only)."""
        return entry_key(self.target_repository, self.tag, self.reference)

    @property
    def source_name(self):
        return '%s/%s' % (self.source.name, self.repository)

    def source_ref(self):
        ref = Reference(self.source.name, self.repository, self.tag, self.reference if ':' in self.reference else None)
        return str(ref)

    def count(self, **amounts):
        with self._lock:
            for key, amount in amounts.items():
                self.result[key] += amount

    def count_image(self, blobs, size):
        with self._lock:
            self.image_blobs[0] += blobs
            self.image_blobs[1] += size


def compile_mapping(mapping):
    """Rules [(normalised source prefix, target repository prefix)] from ``[{'from':..., 'to':...}]``, longest first."""
    rules = []
    for index, rule in enumerate(mapping or []):
        try:
            source = parse_prefix(rule['from'])
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError('mapping %d: %s' % (index + 1, exc)) from None
        target = (rule.get('to') or '').strip('/')
        if not is_repository_path(target):
            raise RegistryError('mapping %d: "to" must be a repository path on the target, like mirror/team (not %r)' % (index + 1, rule.get('to')))
        rules.append((source, target))
    rules.sort(key=lambda pair: len(pair[0]), reverse=True)
    return rules


def target_repository(ref, target_prefix=None, mapping_rules=()):
    """Where a source repository goes: the longest matching mapping rule, else ``target_prefix/<source path>``."""
    mapped = match_rewrite(ref.name, [(source, 'x/' + target) for source, target in mapping_rules])
    if mapped is not None:
        return mapped[2:]
    prefix = (target_prefix or '').strip('/')
    return '%s/%s' % (prefix, ref.repository) if prefix else ref.repository
