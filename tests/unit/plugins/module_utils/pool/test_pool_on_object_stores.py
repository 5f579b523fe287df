"""The whole pool engine on each object store (moto's S3 server, the GCS emulator, Azurite): what works on a directory works there."""

import os

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import LocalBackend, open_backend
from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup
from ansible_collections.ferry.kube.plugins.module_utils.pool.check import check
from ansible_collections.ferry.kube.plugins.module_utils.pool.copy import copy_points
from ansible_collections.ferry.kube.plugins.module_utils.pool.prune import forget, prune
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import Pool, PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.restore import Restore

BUCKET = 'ferry-pool'  # the bucket or container the server fixtures in conftest.py create


def backend_for(kind, request, prefix):
    if kind == 's3':
        return open_backend('s3://%s/%s' % (BUCKET, prefix), request.getfixturevalue('s3_server')['writer'])
    if kind == 'gcs':
        return open_backend('gs://%s/%s' % (BUCKET, prefix), {'endpoint': request.getfixturevalue('gcs_server'), 'anonymous': True})
    return open_backend('azure://%s/%s' % (BUCKET, prefix), {'connection_string': request.getfixturevalue('azure_server')['connection_string']})


def tree(root):
    os.makedirs(os.path.join(root, 'a/b'))
    with open(os.path.join(root, 'a/big'), 'wb') as handle:
        handle.write(os.urandom(3 * 1024 * 1024) + b'tail' * 100000)
    for number in range(30):
        with open(os.path.join(root, 'a/b/small-%02d.txt' % number), 'w', encoding='ascii') as handle:
            handle.write('line %d\n' % number * (number + 1))
    os.symlink('a/big', os.path.join(root, 'link'))


def contents(root):
    found = {}
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(top, name)
            if os.path.islink(path):
                found[os.path.relpath(path, root)] = os.readlink(path)
                continue
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.mark.parametrize('kind', ['s3', 'gcs', 'azure'])
def test_backup_restore_check_retention_prune_and_copy_home(kind, request, tmp_path):
    source = str(tmp_path / 'src')
    tree(source)
    pool = Pool.create(backend_for(kind, request, 'engine-%s' % tmp_path.name), 'object store passphrase', {'pack_size': 1024 * 1024})
    first = Backup(pool, {'data': source}, group='it/app').run()
    with open(os.path.join(source, 'a/b/small-00.txt'), 'a', encoding='ascii') as handle:
        handle.write('changed\n')
    second = Backup(pool, {'data': source}, group='it/app').run()
    assert second['parent'] == first['id'] and second['stats']['files_changed'] == 1

    reopened = Pool.open(backend_for(kind, request, 'engine-%s' % tmp_path.name), 'object store passphrase')
    Restore(reopened, reopened.resolve_point('latest'), {'data': str(tmp_path / 'out')}).run()
    assert contents(str(tmp_path / 'out')) == contents(source)
    assert check(reopened, read_data=True)['ok']

    forget(reopened, {'last': 1})
    assert prune(reopened)['points'] == 1 and check(reopened, read_data=True)['ok']

    local = Pool.create(LocalBackend(str(tmp_path / 'local')), 'local passphrase', copy_ids_from=reopened)
    assert copy_points(reopened, local)['copied'] == [second['id']]
    Restore(local, local.resolve_point('latest'), {'data': str(tmp_path / 'from-local')}).run()
    assert contents(str(tmp_path / 'from-local')) == contents(source)
    with pytest.raises(PoolError, match='wrong passphrase'):
        Pool.open(backend_for(kind, request, 'engine-%s' % tmp_path.name), 'not it')
