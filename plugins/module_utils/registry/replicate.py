# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication engine: plan what a target registry lacks by comparing digests, then copy only that.

Three phases, each on a thread pool of ``concurrency`` workers:

1. plan, per image: the source manifest's digest (a HEAD). When the record of earlier runs (``record.py``)
   says this target repository and tag were verified with the same source digest, the image is present
   and costs that one HEAD; one recorded image per run, picked at random, is checked at the target
   anyway, and when the target disagrees every image is checked. Without a usable record (or with
   ``verify``) the digest is compared with the target's (a second HEAD). Otherwise the manifest
   (and, for an index, each child the target lacks) is read and verified, and each blob is checked with
   a HEAD at the target.
2. blobs, per digest: the first target repository that needs a blob gets it by a cross-repository mount
   when the target already holds it elsewhere (or source and target are one registry), else by a
   streamed, verified copy; the other repositories that need it mount it from there.
3. manifests, per image: children of an index before the index, then the tag.

Nothing is written in check mode; the plan is reported as what would be copied.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ansible_collections.ferry.kube.plugins.module_utils.registry.client import (
    DEFAULT_CHUNK_SIZE,
    FOREIGN_LAYER_TYPES,
    Manifest,
    VerifiedStream,
    digest_of,
)
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import NotFoundError, RegistryError, RetryableError
from ansible_collections.ferry.kube.plugins.module_utils.registry.jobs import COUNTERS
from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import parse
from ansible_collections.ferry.kube.plugins.module_utils.workers import Background, parallel

BLOB_ATTEMPTS = 3


def platform_name(platform):
    platform = platform or {}
    parts = [platform.get('os') or 'unknown', platform.get('architecture') or 'unknown']
    if platform.get('variant'):
        parts.append(platform['variant'])
    return '/'.join(parts)


def platform_matches(platform, wanted):
    """``wanted`` is ``os/arch[/variant]``, as in ``linux/arm64/v8``; arm64 without a variant is v8."""
    platform = platform or {}
    parts = wanted.strip().lower().split('/')
    if len(parts) < 2 or platform.get('os') != parts[0] or platform.get('architecture') != parts[1]:
        return False
    if len(parts) > 2:
        variant = platform.get('variant') or ('v8' if parts[1] == 'arm64' else None)
        return variant == parts[2]
    return True


class Replicator:
    """Copies jobs' images to ``target``; ``run(jobs)`` returns the summary with one result per job."""

    def __init__(self, target, concurrency=4, chunk_size=DEFAULT_CHUNK_SIZE, platforms=None, check_mode=False, report=None, record=None,
                 verify=False):
        """``record``: a ``record.Record`` of this target (None: none kept); ``verify``: check every image at the target anyway."""
        self.target = target
        self.record = record
        self.verify = verify
        self.concurrency = max(1, int(concurrency or 1))
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        self.platforms = [p for p in (platforms or []) if p]
        self.platform_key = sorted(p.strip().lower() for p in self.platforms)
        self.check_mode = check_mode
        self.report = report
        self.progress = None  # a pool.progress.Progress while blobs and manifests are copied
        self._lock = threading.Lock()
        self._claimed = {}  # (target repository, digest) -> the job that copies it
        self._known = {}  # digest -> a target repository that has it (for mounts)
        self._needed = {}  # digest -> [(job, descriptor)] for blobs no target repository has yet
        self._present_manifests = {}  # (target repository, digest) -> Manifest read from the target
        self._manifest_locks = {}  # digest -> the lock its writes take turns on
        self._pushed = set()  # (target repository, digest) of manifests written by this run
        self._unread = {}  # (target repository, digest) -> job: present images counted from the record, manifests not read
        self.record_trusted = True  # False once the spot check found the target disagreeing with the record

    # -- phases ---------------------------------------------------------------------------------------
    def run(self, jobs):
        started = time.monotonic()
        jobs = list(jobs)
        workers = self.concurrency
        spot = self._spot_check(jobs)
        parallel(self._plan_guarded, jobs, workers)
        if spot is not None and not spot.result():
            trusted = [job for job in jobs if job.trusted]
            for job in trusted:  # the target lost what the record says it had: check everything
                job.reset()
            self.record_trusted = False
            parallel(self._plan_guarded, trusted, workers)
        if self._needed and self._unread:  # blobs to place: learn what present images hold, for mounts
            parallel(self._read_unread, list(self._unread.items()), workers)
        if self.check_mode:
            for digest, entries in self._needed.items():
                self._predict(digest, entries)
        elif self._needed or any(job.manifests for job in jobs):
            self._copy(jobs)
        return self._summary(jobs, time.monotonic() - started)

    def _copy(self, jobs):
        """Blobs, then manifests, with progress reports; ``pool.progress`` is imported only when there is something to copy."""
        from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress  # pylint: disable=import-outside-toplevel
        self.progress = Progress('registry sync', self.report)
        self.progress.set_total(sum(entries[0][1].get('size') or 0 for entries in self._needed.values()), len(self._needed))
        with self.progress:
            parallel(self._transfer_guarded, list(self._needed.items()), self.concurrency)
            parallel(self._push_guarded, jobs, self.concurrency)

    @staticmethod
    def _pick(candidates):
        return candidates[int.from_bytes(os.urandom(4), 'big') % len(candidates)]

    def _spot_check(self, jobs):
        """One recorded image (at random) checked at the target while the others are planned: ``result()`` says whether it is as recorded."""
        if self.record is None or self.verify:
            return None
        candidates = [(job, entry) for job in jobs for entry in [self.record.matching(job.key, job.source_name, self.platform_key)]
                      if entry is not None and entry.get('target_digest')]
        if not candidates:
            return None
        job, entry = self._pick(candidates)

        def check():
            try:
                current = self.target.manifest_head(job.target_repository, job.tag or entry['target_digest'])
            except RegistryError:
                current = None
            return current is not None and current[0] == entry['target_digest']
        return Background(check)

    def _plan_guarded(self, job):
        try:
            self._plan(job)
        except RegistryError as exc:
            job.error = exc

    def _transfer_guarded(self, item):
        digest, entries = item
        entries = [(job, descriptor) for job, descriptor in entries if job.error is None]
        if not entries:
            return
        try:
            self._transfer(digest, entries)
        except RegistryError as exc:
            for job, _descriptor in entries:
                job.error = job.error or exc

    def _push_guarded(self, job):
        if job.error is not None:
            return
        try:
            self._push(job)
        except RegistryError as exc:
            job.error = exc

    # -- plan -----------------------------------------------------------------------------------------
    def _plan(self, job):
        source, target = job.source, self.target
        where = job.result['source']
        head = source.manifest_head(job.repository, job.reference)
        if head is None:
            raise NotFoundError('source image %s does not exist (no such tag or digest at the %s): check the repository name and tag'
                                % (where, source.label))
        digest = head[0]
        job.result.update(digest=digest, media_type=head[1])
        if self.record is not None and not self.verify and self.record_trusted:
            entry = self.record.trusted(job.key, job.source_name, self.platform_key, digest)
            if entry is not None:
                self._from_record(job, entry)
                return
        push_ref = job.tag or digest
        job.result['target'] = '%s/%s%s' % (target.name, job.target_repository, (':' + job.tag if job.tag else '') + '@' + digest)
        current = None
        if not self.platforms:
            current = target.manifest_head(job.target_repository, push_ref)
            if current is not None and current[0] == digest:
                self._present(job, digest)
                return
        manifest = source.manifest_get(job.repository, digest)
        job.result['media_type'] = manifest.media_type
        if manifest.is_index:
            manifest = self._filtered(job, manifest)
            if manifest.digest != digest:
                job.result['target'] = job.result['target'].rsplit('@', 1)[0] + '@' + manifest.digest
                push_ref = job.tag or manifest.digest
                current = target.manifest_head(job.target_repository, push_ref)
                if current is not None and current[0] == manifest.digest:
                    self._present(job, manifest.digest)
                    return
        job.result['target_digest'] = manifest.digest
        if current is not None or job.tag:  # the tag is elsewhere: the manifest may be there already by digest
            if job.tag and target.manifest_head(job.target_repository, manifest.digest) is not None:
                job.manifests.append((manifest, push_ref))
                job.result['status'] = 'retag'
                self._count_present(job, manifest.digest)
                return
        self._collect(job, manifest, push_ref)
        self._check_blobs(job)

    def _filtered(self, job, index):
        """The index itself, or (with ``platforms``) a new index listing only the matching children."""
        children = index.children()
        job.result['platforms'] = [platform_name(c.get('platform')) for c in children]
        if not self.platforms:
            return index
        kept = [c for c in children if any(platform_matches(c.get('platform'), wanted) for wanted in self.platforms)]
        if not kept:
            raise RegistryError('image %s has none of the platforms %s; it has %s: change the platforms option'
                                % (job.result['source'], ', '.join(self.platforms), ', '.join(job.result['platforms']) or 'none'))
        job.result['platforms'] = [platform_name(c.get('platform')) for c in kept]
        if len(kept) == len(children):
            return index
        document = dict(index.document, manifests=kept)
        data = json.dumps(document, indent=3).encode('utf-8')
        return Manifest(data, index.media_type, digest_of(data))

    def _collect(self, job, manifest, push_ref, depth=0):
        """Add ``manifest`` (after what it needs) to the job's pushes; children the target has are counted, not copied."""
        if depth > 4:
            raise RegistryError('image %s nests indexes more than 4 deep' % job.result['source'])
        if manifest.is_index:
            for child in manifest.children():
                if self.target.manifest_head(job.target_repository, child['digest']) is not None:
                    self._count_present(job, child['digest'])
                    continue
                self._collect(job, job.source.manifest_get(job.repository, child['digest']), child['digest'], depth + 1)
        else:
            blobs = manifest.blobs()
            job.blobs.extend(blobs)
            job.count_image(len(blobs), sum(int(d.get('size') or 0) for d in blobs))
        job.manifests.append((manifest, push_ref))

    def _check_blobs(self, job):
        seen = set()
        for descriptor in job.blobs:
            digest, size = descriptor['digest'], int(descriptor.get('size') or 0)
            if digest in seen:
                continue
            seen.add(digest)
            if descriptor.get('mediaType') in FOREIGN_LAYER_TYPES or descriptor.get('urls'):
                job.count(blobs_foreign=1)  # pulled from its URLs, not from registries (Windows base layers)
                continue
            key = (job.target_repository, digest)
            with self._lock:
                claimed = key in self._claimed
                if not claimed:
                    self._claimed[key] = job
            if claimed:
                job.count(blobs_skipped=1, bytes_skipped=size)  # another image of this run brings it
                continue
            if self.target.blob_head(job.target_repository, digest) is not None:
                job.count(blobs_skipped=1, bytes_skipped=size)
                with self._lock:
                    self._known.setdefault(digest, job.target_repository)
                continue
            with self._lock:
                self._needed.setdefault(digest, []).append((job, descriptor))

    def _from_record(self, job, entry):
        """Present as the record says (no request to the target): digest, platforms and the blobs it counts."""
        job.trusted = True
        target_digest = entry['target_digest']
        job.result.update(status='present', target_digest=target_digest, from_record=True,
                          target='%s/%s%s@%s' % (self.target.name, job.target_repository, ':' + job.tag if job.tag else '', target_digest))
        if entry.get('media_type'):
            job.result['media_type'] = entry['media_type']
        if entry.get('image_platforms'):
            job.result['platforms'] = list(entry['image_platforms'])
        self._counted_from_record(job, target_digest, entry)

    def _counted_from_record(self, job, digest, entry):
        blobs, size = int(entry.get('blobs') or 0), int(entry.get('bytes') or 0)
        job.count(blobs_skipped=blobs, bytes_skipped=size)
        job.count_image(blobs, size)
        with self._lock:
            self._unread.setdefault((job.target_repository, digest), job)

    def _present(self, job, digest):
        job.result.update(status='present', target_digest=digest)
        entry = self.record.get(job.key) if self.record is not None else None
        if entry is not None and entry.get('target_digest') == digest and 'blobs' in entry:
            self._counted_from_record(job, digest, entry)  # the target has it: its blobs are counted as recorded, not read again
            return
        self._count_present(job, digest)

    def _read_unread(self, item):
        (_repository, digest), job = item
        try:
            self._count_present(job, digest, counting=False)
        except RegistryError:
            pass  # only a mount source is lost

    def _count_present(self, job, digest, depth=0, counting=True):
        """Count the blobs of a manifest the target already has as skipped (read from the target, once per repository and digest)."""
        key = (job.target_repository, digest)
        with self._lock:
            manifest = self._present_manifests.get(key)
        if manifest is None:
            try:
                manifest = self.target.manifest_get(job.target_repository, digest)
            except NotFoundError:
                return
            with self._lock:
                self._present_manifests[key] = manifest
        if manifest.is_index:
            if depth < 4:
                for child in manifest.children():
                    self._count_present(job, child['digest'], depth + 1, counting)
            return
        with self._lock:
            for descriptor in manifest.blobs():
                self._known.setdefault(descriptor['digest'], job.target_repository)  # a mount source for other repositories
        if counting:
            for descriptor in manifest.blobs():
                job.count(blobs_skipped=1, bytes_skipped=int(descriptor.get('size') or 0))
                job.count_image(1, int(descriptor.get('size') or 0))

    # -- blobs ----------------------------------------------------------------------------------------
    def _mount_source(self, digest, entries):
        with self._lock:
            known = self._known.get(digest)
        if known:
            return known
        job = entries[0][0]
        if job.source.base == self.target.base:
            return job.repository
        return None

    def _predict(self, digest, entries):
        mount_from = self._mount_source(digest, entries)
        for job, descriptor in entries:
            size = int(descriptor.get('size') or 0)
            if mount_from:
                job.count(blobs_mounted=1, bytes_mounted=size)
            else:
                job.count(blobs_copied=1, bytes_copied=size)
                mount_from = job.target_repository

    def _transfer(self, digest, entries):
        mount_from = self._mount_source(digest, entries)
        for job, descriptor in entries:
            size = int(descriptor.get('size') or 0)
            location = None
            if mount_from:
                location = self.target.mount(job.target_repository, digest, mount_from)
                if location is None:
                    job.count(blobs_mounted=1, bytes_mounted=size)
                    self.progress.add(files=1)
                    continue
            self._copy_blob(job, descriptor, location)
            job.count(blobs_copied=1, bytes_copied=size)
            self.progress.add(files=1)
            mount_from = job.target_repository
        with self._lock:
            self._known.setdefault(digest, mount_from)

    def _copy_blob(self, job, descriptor, location=None):
        """Stream one blob from the job's source to its target repository, verified; retried on transient failures."""
        digest, size = descriptor['digest'], descriptor.get('size')
        size = int(size) if size is not None else None
        where = '%s/%s' % (job.source.name, job.repository)
        attempt = 0
        while True:
            attempt += 1
            sent = [0]

            def counted(nbytes):
                sent[0] += nbytes
                self.progress.add(nbytes)

            try:
                if location is None:
                    location = self.target.upload_start(job.target_repository)
                response = job.source.blob_stream(job.repository, digest)
                try:
                    stream = VerifiedStream(job.source.blob_pieces(response), digest, size, where, counted)
                    self.target.upload(job.target_repository, location, stream, digest, size if size is not None else 0, self.chunk_size)
                finally:
                    response.close()
                return
            except RetryableError:
                self.progress.add(-sent[0])
                if attempt >= BLOB_ATTEMPTS:
                    raise
                location = None
                time.sleep(0.5 * attempt)

    # -- manifests ------------------------------------------------------------------------------------
    def _push(self, job):
        """The job's manifests, children first. A manifest is written by one request at a time, whatever its repository and tag
        (registries keep one copy per digest, and docker-registry's filesystem storage breaks on concurrent writes of one
        manifest: DIGEST_INVALID); a child another image of this run wrote to the repository is not written again."""
        for manifest, reference in job.manifests:
            with self._lock:
                lock = self._manifest_locks.setdefault(manifest.digest, threading.Lock())
            with lock:
                if reference == manifest.digest and (job.target_repository, manifest.digest) in self._pushed:
                    continue
                self.target.manifest_put(job.target_repository, reference, manifest)
                with self._lock:
                    self._pushed.add((job.target_repository, manifest.digest))
            job.count(manifests_copied=1)
        if job.manifests and job.result['status'] == 'planned':
            job.result['status'] = 'copied'
        elif job.result['status'] == 'retag':
            job.result['status'] = 'copied'

    # -- result ---------------------------------------------------------------------------------------
    def _summary(self, jobs, seconds):
        images, errors = [], []
        totals = {key: 0 for key in COUNTERS}
        for job in jobs:
            result = dict(job.result)
            if self.check_mode and result['status'] in ('planned', 'retag'):
                result['status'] = 'would copy'
                result['manifests_copied'] = len(job.manifests)
            if job.error is not None:
                result['status'] = 'failed'
                result['error'] = str(job.error)
                errors.append(job.error)
            for key in COUNTERS:
                totals[key] += result[key]
            images.append(result)
        if self.record is not None and not self.check_mode:
            self._note(jobs)
        return dict(totals, images=images, seconds=round(seconds, 3), errors=errors,
                    changed=any(r['status'] in ('copied', 'would copy') for r in images))

    def _note(self, jobs):
        """Write down what this run verified at the target or copied there; forget what failed."""
        for job in jobs:
            result = job.result
            if job.error is not None:
                self.record.forget(job.key)
            elif not job.trusted and result['status'] in ('present', 'copied') and result.get('target_digest'):
                self.record.put(job.key, {
                    'source': job.source_name, 'digest': result.get('digest'), 'platforms': self.platform_key,
                    'target_digest': result['target_digest'], 'media_type': result.get('media_type'),
                    'image_platforms': result.get('platforms'), 'blobs': job.image_blobs[0], 'bytes': job.image_blobs[1]})


def rewrites_of(images):
    """Rewrite rules (one per source repository, as ``reference.rewrite_image`` takes them) for replicated images."""
    rules, seen = [], set()
    for image in images:
        if image.get('status') == 'failed' or not image.get('target'):
            continue
        source = parse(image['source']).name
        target = parse(image['target']).name
        if (source, target) not in seen:
            seen.add((source, target))
            rules.append({'from': source, 'to': target})
    return rules


def digests_of(images):
    """``{source registry/repo:tag: digest at the target}`` and, where the target's differs, ``{source@digest: that digest}``."""
    pinned = {}
    for image in images:
        if image.get('status') == 'failed' or not image.get('target_digest'):
            continue
        ref = parse(image['source'])
        if ref.tag:
            pinned[ref.with_tag()] = image['target_digest']
        if image.get('digest') and image['digest'] != image['target_digest']:
            pinned['%s@%s' % (ref.name, image['digest'])] = image['target_digest']
    return pinned
