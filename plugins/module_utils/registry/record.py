# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record of verified replications to one target registry, a JSON file of the host that runs Ferry.

A run that found an image complete at the target (or copied it) writes down, for the target repository and
tag: the source it came from, the source digest, the platforms asked for, the digest at the target, the
blobs it counts and when that was verified. A later run whose source digest is unchanged may then take
the image as present without asking the target (``Replicator`` decides when: not with ``verify``, not
after ``MAX_AGE``, not when a spot check of the target disagrees with the record).

State that must outlive a run lives with the host that runs Ferry (``state_dir``, by default
``~/.cache/ferry/registry``), never in the target registry itself. Losing the file costs one run with
full checks; nothing else depends on it. Concurrent runs merge their entries when saving (the last
writer wins for an entry both wrote).

The file also remembers, per registry of these runs (its API base URL), the auth scheme it asked for: a
registry that wants Basic credentials gets them with the first request of the next run, without the
401 round trip that would teach it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

RECORD_VERSION = 1
MAX_AGE = 24 * 3600  # an entry older than this is checked at the target again
KEEP = 30 * 24 * 3600  # entries not verified for this long are dropped when saving
DEFAULT_STATE_DIR = '~/.cache/ferry/registry'


def record_path(state_dir, target_base):
    """``<state_dir>/<host_port>-<hash of the target URL>.json``: one file per target registry."""
    host = re.sub(r'[^A-Za-z0-9.-]+', '_', target_base.split('://', 1)[-1]).strip('_') or 'registry'
    return os.path.join(os.path.expanduser(state_dir), '%s-%s.json' % (host, hashlib.sha256(target_base.encode('utf-8')).hexdigest()[:12]))


def entry_key(target_repository, tag, digest):
    """What an entry is about: a target repository's tag, or (images copied by digest only) its digest."""
    return '%s:%s' % (target_repository, tag) if tag else '%s@%s' % (target_repository, digest)


class Record:
    """Entries ``{key: {source, digest, platforms, target_digest, media_type, image_platforms, blobs, bytes, verified}}``,
    and ``registries`` ``{API base URL: {'auth': scheme}}``."""

    def __init__(self, path, now=None):
        self.path = path
        self.now = time.time() if now is None else now
        self.entries, self.registries = self._load()
        self.updates = {}
        self.removed = set()
        self.registry_updates = {}  # API base URL -> {'auth': scheme}, or None to forget it

    def _load(self):
        """(entries, registries) of the file; both empty when it is missing or unreadable."""
        try:
            with open(self.path, encoding='utf-8') as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}, {}
        if not isinstance(data, dict) or data.get('version') != RECORD_VERSION or not isinstance(data.get('entries'), dict):
            return {}, {}
        registries = data.get('registries')
        return data['entries'], registries if isinstance(registries, dict) else {}

    def auth_scheme(self, registry):
        """The auth scheme an earlier run learned of ``registry`` (its API base URL), or None."""
        known = self.registries.get(registry)
        return known.get('auth') if isinstance(known, dict) else None

    def note_auth_scheme(self, registry, scheme):
        """Remember (or, with None, forget) the scheme ``registry`` asked for in this run."""
        if scheme != self.auth_scheme(registry):
            self.registry_updates[registry] = {'auth': scheme} if scheme else None
            self.registries[registry] = {'auth': scheme} if scheme else {}

    def get(self, key):
        entry = self.entries.get(key)
        return entry if isinstance(entry, dict) else None

    def matching(self, key, source, platforms, digest=None):
        """The entry for ``key`` when it is about the same source (and source digest, when given) and platform filter."""
        entry = self.get(key)
        if entry is None or entry.get('source') != source or entry.get('platforms') != list(platforms):
            return None
        if digest is not None and entry.get('digest') != digest:
            return None
        return entry

    def trusted(self, key, source, platforms, digest):
        """The entry a run may take as it is, without asking the target: matching and verified less than MAX_AGE ago."""
        entry = self.matching(key, source, platforms, digest)
        if entry is None or not entry.get('target_digest') or not isinstance(entry.get('verified'), (int, float)):
            return None
        if not 0 <= self.now - entry['verified'] < MAX_AGE:
            return None
        return entry

    def put(self, key, entry):
        entry = dict(entry, verified=self.now)
        self.entries[key] = self.updates[key] = entry
        self.removed.discard(key)

    def forget(self, key):
        if key in self.entries or key in self.updates:
            self.entries.pop(key, None)
            self.updates.pop(key, None)
            self.removed.add(key)

    def save(self):
        """Merge this run's entries into the file (re-read, so concurrent runs keep theirs) and replace it atomically."""
        if not self.updates and not self.removed and not self.registry_updates:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        entries, registries = self._load()
        for key in self.removed:
            entries.pop(key, None)
        entries.update(self.updates)
        entries = {key: entry for key, entry in entries.items()
                   if isinstance(entry, dict) and isinstance(entry.get('verified'), (int, float)) and self.now - entry['verified'] < KEEP}
        for registry, known in self.registry_updates.items():
            if known:
                registries[registry] = known
            else:
                registries.pop(registry, None)
        temporary = '%s.%d.tmp' % (self.path, os.getpid())
        try:
            with open(temporary, 'w', encoding='utf-8') as handle:
                json.dump({'version': RECORD_VERSION, 'entries': entries, 'registries': registries}, handle, sort_keys=True, separators=(',', ':'))
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self.updates, self.removed, self.registry_updates = {}, set(), {}
