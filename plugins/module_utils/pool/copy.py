# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy restore points between pools (local short-term to object long-term) without re-chunking.

The target pool must share the source's chunk naming (create it with ``copy_ids_from``): then a
chunk has the same id in both, only the chunks the target lacks are sent (re-sealed under the
target's keys), and the copied point's manifest is byte-for-byte the same document.
"""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.pool import format as fmt
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.trees import read_tree
from ansible_collections.ferry.kube.plugins.module_utils.pool.writer import BlobWriter


def copy_points(source, target, point_ids=None, progress=None):
    if source.config['id_family'] != target.config['id_family'] or any(
            source.config[k] != target.config[k] for k in ('chunk_min', 'chunk_avg', 'chunk_max')):
        raise PoolError('pool %s does not share chunk naming with pool %s: create the target with copy_ids_from (ferry pool init --copy-ids-from)'
                        % (target.backend.location, source.backend.location))
    progress = progress or Progress('copy')
    wanted = source.point_ids() if not point_ids else [source.resolve_point(ref)['id'] for ref in point_ids]
    present = set(target.point_ids())
    todo = [point_id for point_id in wanted if point_id not in present]
    source.load_index()
    copied, sent = [], 0
    with target.lock('copy'):
        target.load_index()
        writer = BlobWriter(target)
        try:
            with progress:
                for point_id in todo:
                    point = source.read_point(point_id)
                    for blob_type, blob_id in _blobs_of(source, point):
                        if writer.known(blob_id):
                            continue
                        plain = source.read_blob(blob_id)
                        writer.add(blob_type, blob_id, plain)
                        sent += len(plain)
                        progress.add(len(plain))
                    writer.checkpoint()  # the chunks are indexed before the point that needs them
                    target.write_point(point)
                    copied.append(point_id)
                    progress.add(0, 1)
        finally:
            writer.close()
    return {'copied': copied, 'already_present': sorted(set(wanted) & present), 'bytes_sent': sent}


def _blobs_of(pool, point):
    for record in point['volumes'].values():
        for blob_id in record['tree']:
            yield fmt.TREE, blob_id
        for entry in read_tree(pool, record['tree']):
            for blob_id in entry.get('chunks') or ():
                yield fmt.DATA, blob_id
    for record in (point.get('metadata') or {}).values():
        for blob_id in record['blobs']:
            yield fmt.META, blob_id
