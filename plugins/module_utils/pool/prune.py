# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reclaim space: forget points by retention policy, then delete and repack what no point uses.

Prune holds the pool's exclusive lock, so no backup is writing while it decides what is garbage.
Its steps keep every point readable whenever it stops:

1. repack: live blobs of packs that are mostly garbage are copied into new packs, which a new
   index fragment names (the old packs still hold them too);
2. a new index naming every pack still in use is written in fragments, the last of which
   supersedes all the old fragments;
3. then the old fragments, and only then the packs no fragment names any more, are deleted.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.pool import retention
from ansible_collections.ferry.kube.plugins.module_utils.pool.check import stored_packs
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
from ansible_collections.ferry.kube.plugins.module_utils.pool.writer import BlobWriter

REPACK_DEAD_FRACTION = 0.2
FRAGMENT_ENTRIES = 100000


def forget(pool, policy, dry_run=False, groups=None):
    """Apply a retention policy: delete the manifests of points no rule keeps (only in ``groups`` when given)."""
    with pool.lock('forget'):
        points = [p for p in pool.points() if groups is None or (p.get('group') or 'default') in groups]
        decisions = retention.apply(points, policy)
        removed = [point['id'] for point, keep, _reasons in decisions if not keep]
        if not dry_run:
            for point_id in removed:
                pool.delete_point(point_id)
    return {'kept': [{'id': p['id'], 'group': p.get('group'), 'time': p['time'], 'reasons': r} for p, keep, r in decisions if keep],
            'removed': removed}


def used_blobs(pool, points):
    used = set()
    for point in points:
        for record in point['volumes'].values():
            used.update(record['tree'])
            for entry in read_tree(pool, record['tree']):
                used.update(entry.get('chunks') or ())
        for record in (point.get('metadata') or {}).values():
            used.update(record['blobs'])
    return used


def plan(pool, used, dead_fraction=REPACK_DEAD_FRACTION):
    """Packs to delete outright and packs to repack, with the bytes they hold."""
    live, total = {}, {}
    for blob_id, (number, _offset, length, _raw, _flags, _type) in pool.blobs.items():
        total[number] = total.get(number, 0) + length
        if blob_id in used:
            live[number] = live.get(number, 0) + length
    delete, repack = [], []
    for number, size in total.items():
        alive = live.get(number, 0)
        if alive == 0:
            delete.append(number)
        elif (size - alive) / size >= dead_fraction:
            repack.append(number)
    return delete, repack


def prune(pool, dry_run=False, dead_fraction=REPACK_DEAD_FRACTION, progress=None):
    progress = progress or Progress('prune')
    with pool.lock('prune', exclusive=True):
        points = pool.points()
        pool.load_index(refresh=True)
        used = used_blobs(pool, points)
        delete, repack = plan(pool, used, dead_fraction)
        stored = stored_packs(pool)
        unindexed = [pack_id for pack_id in stored if pack_id not in pool.pack_numbers]
        before = sum(size for _key, size in stored.values())
        report = {'points': len(points), 'packs_before': len(stored), 'bytes_before': before,
                  'packs_deleted': len(delete) + len(unindexed), 'packs_repacked': len(repack),
                  'unindexed_packs': len(unindexed), 'dry_run': dry_run}
        if dry_run:
            report['bytes_freed_at_least'] = sum(stored[pool.packs[n][0]][1] for n in delete if pool.packs[n][0] in stored) + \
                sum(stored[p][1] for p in unindexed)
            return report
        old_fragments = list(pool.fragments)
        gone = {pool.packs[number][0] for number in delete + repack}
        if repack:
            _repack(pool, repack, used, progress)
        # the index of what stays: every pack still named, minus those deleted or repacked away
        keep = {}
        for blob_id, (number, offset, length, raw, flags, blob_type) in pool.blobs.items():
            pack_id, kind = pool.packs[number]
            if pack_id in gone or blob_id not in used:
                continue
            keep.setdefault((pack_id, kind), []).append([blob_type, blob_id, offset, length, raw, flags])
        superseded = old_fragments + [name for name in pool.fragments if name not in old_fragments]
        _write_index(pool, keep, superseded)
        for name in superseded:
            pool.backend.delete(name)
        for pack_id in sorted(gone) + unindexed:
            key = stored.get(pack_id, (None,))[0]
            if key:
                pool.backend.delete(key)
        pool.load_index(refresh=True)
        after = sum(size for _key, size in stored_packs(pool).values())
        report.update(bytes_after=after, bytes_freed=before - after)
        return report


def _repack(pool, numbers, used, progress):
    writer = BlobWriter(pool)
    wanted = set(numbers)
    moving = [(blob_id, location) for blob_id, location in pool.blobs.items() if location[0] in wanted and blob_id in used]
    progress.set_total(sum(location[2] for _blob_id, location in moving), len(numbers))
    try:
        with progress:
            for blob_id, location in sorted(moving, key=lambda item: (item[1][0], item[1][1])):
                plain = pool.read_blob(blob_id)
                del pool.blobs[blob_id]  # so the writer stores it again instead of taking it as known
                writer.add(location[5], blob_id, plain)
                progress.add(location[2])
            writer.checkpoint()
    finally:
        writer.close()


def _write_index(pool, packs, supersedes):
    """Fragments of at most FRAGMENT_ENTRIES blobs; only the last supersedes the old ones."""
    batches, batch, count = [], [], 0
    for (pack_id, kind), entries in sorted(packs.items()):
        batch.append([pack_id, kind, entries])
        count += len(entries)
        if count >= FRAGMENT_ENTRIES:
            batches.append(batch)
            batch, count = [], 0
    batches.append(batch)
    for position, batch in enumerate(batches):
        pool.write_index(batch, supersedes if position == len(batches) - 1 else ())
