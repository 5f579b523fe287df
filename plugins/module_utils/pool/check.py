# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a pool: its structure always, every byte on request, and name what a damage hurts.

Structure: every point's manifest and trees authenticate, and every chunk they name is in the
index and in a pack that exists. With ``read_data`` every pack is read whole: its name must be
the hash of its bytes, its header must authenticate and every blob must decrypt to its id. A
damaged blob is traced back to the points, volumes and files that use it.

Packs no index names are left by an interrupted backup; they are garbage for prune, not damage.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError, NotFound
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree

MAX_LISTED = 50


def stored_packs(pool):
    """{pack id: (key, size)} of every pack object in the pool."""
    packs = {}
    for prefix in ('data/', 'tree/'):
        for key, size in pool.backend.list(prefix):
            packs[key.rsplit('/', 1)[1]] = (key, size)
    return packs


def check(pool, read_data=False, progress=None):
    progress = progress or Progress('check')
    errors, damaged_blobs = [], {}
    points = [pool.read_point(point_id) for point_id in pool.point_ids()]  # points before the index
    pool.load_index(refresh=True)
    stored = stored_packs(pool)
    missing_packs = {pack_id for pack_id, _kind in pool.packs if pack_id not in stored}
    for pack_id in sorted(missing_packs):
        errors.append('pack %s is in the index but missing from the pool' % pack_id)
    indexed = set(pool.pack_numbers)
    unindexed = sorted(set(stored) - indexed)

    if read_data:
        progress.set_total(sum(size for key, size in stored.values()), len(stored))
        with progress:
            for pack_id in sorted(indexed - missing_packs):
                key, size = stored[pack_id]
                problem = _check_pack(pool, pack_id, key, damaged_blobs)
                if problem:
                    errors.append(problem)
                progress.add(size, 1)

    hurt, users = [], {}
    for point in points:
        for volume, record in sorted(point['volumes'].items()):
            try:
                _check_tree(pool, point, volume, record, missing_packs, damaged_blobs, hurt, errors)
            except (PoolError, fmt.FormatError) as exc:
                errors.append('point %s volume %s: its tree cannot be read: %s' % (point['id'], volume, exc))
        for name, record in sorted((point.get('metadata') or {}).items()):
            for blob_id in record['blobs']:
                problem = _blob_problem(pool, blob_id, missing_packs, damaged_blobs)
                if problem:
                    hurt.append({'point': point['id'], 'metadata': name, 'problem': problem})
    for item in hurt:
        users.setdefault(item['point'], []).append(item)
    for item in hurt[:MAX_LISTED]:
        where = item.get('path') and 'volume %s file %s' % (item['volume'], item['path']) or 'metadata %s' % item.get('metadata')
        errors.append('point %s: %s: %s' % (item['point'], where, item['problem']))
    if len(hurt) > MAX_LISTED:
        errors.append('... and %d more damaged files' % (len(hurt) - MAX_LISTED))
    return {'ok': not errors, 'errors': errors, 'points': len(points), 'packs': len(stored), 'indexed_blobs': len(pool.blobs),
            'unindexed_packs': len(unindexed), 'read_data': read_data, 'damaged': hurt, 'points_damaged': sorted(users)}


def _check_pack(pool, pack_id, key, damaged_blobs):
    def expected():
        """The blobs the index puts in this pack (a walk of the whole index: only when the pack is damaged)."""
        number = pool.pack_numbers[pack_id]
        return [blob_id for blob_id, location in pool.blobs.items() if location[0] == number]

    try:
        data = pool.backend.read(key)
    except (NotFound, BackendError) as exc:
        for blob_id in expected():
            damaged_blobs[blob_id] = 'its pack %s cannot be read: %s' % (pack_id, exc)
        return 'pack %s cannot be read: %s' % (pack_id, exc)
    if fmt.pack_id_of(data) != pack_id:
        problem = None
        try:
            session_id, entries = fmt.read_pack_header(pool.keys, data)
        except fmt.FormatError as exc:
            session_id, entries, problem = None, [], str(exc)
        bad = 0
        for blob_type, blob_id, offset, length, _raw, flags in entries:
            try:
                pool.open_blob(blob_id, blob_type, flags, data[offset:offset + length], session_id)
            except fmt.FormatError as exc:
                damaged_blobs[blob_id] = str(exc)
                bad += 1
        if problem or not entries:
            for blob_id in expected():
                damaged_blobs.setdefault(blob_id, 'pack %s is damaged (%s)' % (pack_id, problem or 'no readable header'))
            return 'pack %s is damaged: %s' % (pack_id, problem or 'no readable header')
        return 'pack %s is damaged: its bytes do not match its name; %d of its %d blobs fail to authenticate' % (pack_id, bad, len(entries))
    return None


def _blob_problem(pool, blob_id, missing_packs, damaged_blobs):
    location = pool.blobs.get(blob_id)
    if location is None:
        return 'chunk %s is not in the index' % blob_id.hex()
    if pool.packs[location[0]][0] in missing_packs:
        return 'chunk %s is in pack %s, which is missing' % (blob_id.hex(), pool.packs[location[0]][0])
    return damaged_blobs.get(blob_id)


def _check_tree(pool, point, volume, record, missing_packs, damaged_blobs, hurt, errors):
    for blob_id in record['tree']:
        problem = _blob_problem(pool, blob_id, missing_packs, damaged_blobs)
        if problem:
            errors.append('point %s volume %s: tree %s' % (point['id'], volume, problem))
            return
    damaged_files = {}
    for entry in read_tree(pool, record['tree']):
        if entry['type'] == 'link' and entry['target'] in damaged_files:  # another name of a damaged file
            hurt.append({'point': point['id'], 'volume': volume, 'path': entry['path'], 'problem': damaged_files[entry['target']]})
        for blob_id in entry.get('chunks') or ():
            problem = _blob_problem(pool, blob_id, missing_packs, damaged_blobs)
            if problem:
                damaged_files[entry['path']] = problem
                hurt.append({'point': point['id'], 'volume': volume, 'path': entry['path'], 'problem': problem})
                break
