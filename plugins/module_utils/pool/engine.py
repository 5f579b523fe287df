# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pool operations as plain functions with plain results: what the CLI, the modules and the agent call."""

from __future__ import annotations

import ctypes

from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import open_backend
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool, PoolError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Let glibc reuse freed MiB-sized buffers instead of unmapping them.

    Chunks and packs are allocated and freed thousands of times; by default each one is a fresh
    mmap whose pages the kernel must zero on first touch, which on virtual machines costs more than
    compressing the data. Reusing the heap keeps that cost out (measured in bench/pool).
    """
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 512 * 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: only slower


def release_freed_memory():
    """Give the heap's free memory back to the system (at checkpoints: peak memory stays flat
    however long a backup runs, and the next second's buffers come from the kept free-list)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def open_pool(location, passphrase, options=None):
    return Pool.open(open_backend(location, options), passphrase)


def create_pool(location, passphrase, options=None, settings=None, copy_ids_from=None):
    backend = open_backend(location, options)
    if backend.size('config') is not None:
        return Pool.open(backend, passphrase), False
    return Pool.create(backend, passphrase, settings, copy_ids_from=copy_ids_from), True


def describe_point(point):
    """A restore point as a result: no chunk lists, sizes and counts only."""
    return {'id': point['id'], 'time': point['time'], 'group': point.get('group'), 'host': point.get('host'),
            'tags': point.get('tags') or {}, 'parent': point.get('parent'),
            'volumes': {name: {k: v for k, v in record.items() if k != 'tree'} for name, record in point['volumes'].items()},
            'metadata': {name: record['size'] for name, record in (point.get('metadata') or {}).items()},
            'stats': point.get('stats') or {}}


def pool_summary(pool):
    from ansible_collections.ferry.kube.plugins.module_utils.pool.check import stored_packs
    packs = stored_packs(pool)
    return {'location': pool.backend.location, 'pool_id': pool.config['pool_id'], 'format': pool.config['format'],
            'cipher': pool.config['cipher'], 'compression': '%s-%s' % (pool.config['compression'], pool.config['compression_level']),
            'chunking': 'fastcdc %d/%d/%d' % (pool.config['chunk_min'], pool.config['chunk_avg'], pool.config['chunk_max']),
            'key_slots': len(pool.key_slots()), 'points': len(pool.point_ids()), 'packs': len(packs),
            'bytes_stored': sum(size for _key, size in packs.values())}


__all__ = ['PoolError', 'keep_freed_memory', 'open_pool', 'create_pool', 'describe_point', 'pool_summary']
