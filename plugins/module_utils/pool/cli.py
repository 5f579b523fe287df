# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ferry pool``: back up, restore and check directories with a storage pool, without Ansible.

    ferry pool init LOCATION [--copy-ids-from OTHER]
    ferry pool backup LOCATION DIR | --volume NAME=DIR ... [--group G] [--tag K=V] [--metadata NAME=FILE]
    ferry pool restore LOCATION POINT TARGET [--volume NAME] [--path P ...]
    ferry pool points LOCATION [--group G]
    ferry pool check LOCATION [--read-data]
    ferry pool forget LOCATION --keep-daily 7 ... [--prune] [--dry-run]
    ferry pool prune LOCATION [--dry-run]
    ferry pool copy LOCATION TARGET_LOCATION [POINT ...]
    ferry pool key {list,add,remove} LOCATION ...
    ferry pool info LOCATION

LOCATION is a directory, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix;
backend settings (endpoints, credentials files) are given as ``-o key=value``. The passphrase
comes from --passphrase-file or the FERRY_POOL_PASSPHRASE environment variable (for the second
pool of copy: --to-passphrase-file or FERRY_POOL_PASSPHRASE2; for key add: --new-passphrase-file
or FERRY_POOL_NEW_PASSPHRASE). Exit codes: 0 done, 1 failed (check: damage found), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ansible_collections.ferry.kube.plugins.module_utils.pool import engine
from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import BackendError
from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import human_bytes
from ansible_collections.ferry.kube.plugins.module_utils.pool.repository import PoolError
from ansible_collections.ferry.kube.plugins.module_utils.pool.retention import RULES, PolicyError


class UsageError(Exception):
    pass


def _pairs(values, what):
    result = {}
    for value in values or ():
        name, sep, rest = value.partition('=')
        if not sep or not name:
            raise UsageError('%s %r: write NAME=VALUE' % (what, value))
        result[name] = rest
    return result


def _options(values):
    options = {}
    for name, value in _pairs(values, '-o').items():
        options[name] = {'true': True, 'false': False}.get(value.lower(), value)
    return options


def _passphrase(path, variable):
    if path:
        try:
            with open(path, 'r', encoding='utf-8') as handle:
                return handle.read().rstrip('\n')
        except OSError as exc:
            raise UsageError('cannot read the passphrase file %s: %s' % (path, exc.strerror)) from None
    value = os.environ.get(variable)
    if not value:
        raise UsageError('no passphrase: set %s or give a passphrase file' % variable)
    return value


def _progress_reporter(args):
    if args.quiet or not (args.progress or sys.stderr.isatty()):
        return None

    def report(_state, line):
        sys.stderr.write('\r\033[K' + line if sys.stderr.isatty() else line + '\n')
        if line.endswith('(done)') and sys.stderr.isatty():
            sys.stderr.write('\n')
        sys.stderr.flush()
    return report


def build_parser():
    parser = argparse.ArgumentParser(prog='ferry pool', description='Ferry storage pools: encrypted, deduplicated restore points.')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('location', help='directory, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix')
    common.add_argument('-o', '--option', action='append', default=[], metavar='KEY=VALUE', help='backend setting (endpoint_url, region, ...)')
    common.add_argument('--passphrase-file', help='file holding the passphrase (else $FERRY_POOL_PASSPHRASE)')
    common.add_argument('--json', action='store_true', help='print the result as JSON')
    common.add_argument('--progress', action='store_true', help='report progress on stderr even when it is not a terminal')
    common.add_argument('-q', '--quiet', action='store_true', help='no progress')
    sub = parser.add_subparsers(dest='command', required=True)

    init = sub.add_parser('init', parents=[common], help='create a pool')
    init.add_argument('--copy-ids-from', metavar='LOCATION', help='share chunk naming with this pool, so points can be copied between them')
    init.add_argument('--from-passphrase-file', help='passphrase of the --copy-ids-from pool (else $FERRY_POOL_PASSPHRASE2)')
    init.add_argument('--compression-level', type=int)
    init.add_argument('--pack-size', type=int, help='bytes per pack (default 16 MiB)')
    init.add_argument('--cipher', choices=('aes-256-gcm', 'chacha20-poly1305'))

    backup = sub.add_parser('backup', parents=[common], help='back up directories into a new restore point')
    backup.add_argument('directory', nargs='?', help='the directory to back up (volume "data"); or use --volume')
    backup.add_argument('--volume', action='append', default=[], metavar='NAME=DIR')
    backup.add_argument('--group', default='default', help='retention group (e.g. cluster/namespace/app)')
    backup.add_argument('--tag', action='append', default=[], metavar='KEY=VALUE')
    backup.add_argument('--metadata', action='append', default=[], metavar='NAME=FILE', help='store a file as an opaque metadata blob')
    backup.add_argument('--parent', default='latest', help="point to compare with (default: the group's latest; 'none' reads everything)")
    backup.add_argument('--ignore-inode', action='store_true', help='unchanged files are those with the same size and mtime only')
    backup.add_argument('--workers', type=int)
    backup.add_argument('--checkpoint-seconds', type=float, help='how often uploaded chunks are indexed, so a killed run loses at most this much (default 60)')

    restore = sub.add_parser('restore', parents=[common], help='restore a point into a directory')
    restore.add_argument('point', help="point id, unique prefix, or 'latest'")
    restore.add_argument('target')
    restore.add_argument('--volume', action='append', default=[], help='volumes to restore (default all; several go to TARGET/NAME)')
    restore.add_argument('--path', action='append', default=[], help='restore only these paths (relative to the volume)')
    restore.add_argument('--group', help="with 'latest': the group's latest")
    restore.add_argument('--no-verify', action='store_true', help='skip the hash check of each chunk (the AEAD tag is always checked)')
    restore.add_argument('--no-owner', action='store_true', help='do not restore file ownership')
    restore.add_argument('--workers', type=int)

    points = sub.add_parser('points', parents=[common], help='list restore points')
    points.add_argument('--group')

    check = sub.add_parser('check', parents=[common], help='check structure (and with --read-data every byte)')
    check.add_argument('--read-data', action='store_true')

    forget = sub.add_parser('forget', parents=[common], help='apply a retention policy')
    for rule in RULES:
        forget.add_argument('--keep-%s' % rule, type=int, dest='keep_%s' % rule)
    forget.add_argument('--keep-within', help='keep every point within this duration of the newest (36h, 7d, 1y6m)')
    forget.add_argument('--prune', action='store_true', help='prune afterwards')
    forget.add_argument('--dry-run', action='store_true')

    prune = sub.add_parser('prune', parents=[common], help='delete and repack what no point uses')
    prune.add_argument('--dry-run', action='store_true')

    copy = sub.add_parser('copy', parents=[common], help='copy points to another pool')
    copy.add_argument('target_location')
    copy.add_argument('points', nargs='*', help='points to copy (default: all the target lacks)')
    copy.add_argument('--to-option', action='append', default=[], metavar='KEY=VALUE')
    copy.add_argument('--to-passphrase-file')

    key = sub.add_parser('key', parents=[common], help='manage key slots')
    key.add_argument('action', choices=('list', 'add', 'remove'))
    key.add_argument('slot', nargs='?', help='slot to remove')
    key.add_argument('--new-passphrase-file')
    key.add_argument('--label', default='')

    sub.add_parser('info', parents=[common], help='what the pool holds')
    return parser


def run(args):
    options = _options(args.option)
    reporter = _progress_reporter(args)
    passphrase = _passphrase(args.passphrase_file, 'FERRY_POOL_PASSPHRASE')
    if args.command == 'init':
        source = None
        if args.copy_ids_from:
            source = engine.open_pool(args.copy_ids_from, _passphrase(args.from_passphrase_file, 'FERRY_POOL_PASSPHRASE2'))
        settings = {'compression_level': args.compression_level, 'pack_size': args.pack_size, 'cipher': args.cipher}
        pool, created = engine.create_pool(args.location, passphrase, options, settings, copy_ids_from=source)
        return dict(engine.pool_summary(pool), changed=created), 0
    walks = _start_walks(args) if args.command == 'backup' else {}
    try:
        pool = engine.open_pool(args.location, passphrase, options)
        try:
            return _dispatch(args, pool, reporter, walks)
        finally:
            pool.close()
    finally:
        for started in walks.values():
            started.close()


def _start_walks(args):
    """The backup's walks, started before the pool is opened: they run while the passphrase's key is derived."""
    from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import start_walks
    return start_walks(_backup_volumes(args), compare_identity=not args.ignore_inode)


def _backup_volumes(args):
    volumes = _pairs(args.volume, '--volume')
    if args.directory:
        volumes.setdefault('data', args.directory)
    if not volumes:
        raise UsageError('nothing to back up: give a directory or --volume NAME=DIR')
    return volumes


def _dispatch(args, pool, reporter, walks=None):  # pylint: disable=too-many-return-statements
    from ansible_collections.ferry.kube.plugins.module_utils.pool.progress import Progress
    command = args.command
    if command == 'backup':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.backup import Backup
        volumes = _backup_volumes(args)
        metadata = {}
        for name, path in _pairs(args.metadata, '--metadata').items():
            with open(path, 'rb') as handle:
                metadata[name] = handle.read()
        parent = None if args.parent in ('none', '') else args.parent
        manifest = Backup(pool, volumes, group=args.group, tags=_pairs(args.tag, '--tag'), parent=parent, metadata=metadata,
                          workers=args.workers, progress=Progress('backup', reporter), compare_identity=not args.ignore_inode,
                          checkpoint_seconds=args.checkpoint_seconds, walks=walks).run()
        return engine.describe_point(manifest), 0
    if command == 'restore':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.restore import Restore
        point = pool.resolve_point(args.point, args.group)
        names = args.volume or sorted(point['volumes'])
        targets = {names[0]: args.target} if len(names) == 1 else {name: os.path.join(args.target, name) for name in names}
        volumes = Restore(pool, point, targets, paths=args.path, verify=not args.no_verify, workers=args.workers,
                          progress=Progress('restore', reporter), owner=not args.no_owner).run()
        return {'point': point['id'], 'volumes': volumes}, 0
    if command == 'points':
        points = [engine.describe_point(p) for p in pool.points() if not args.group or p.get('group') == args.group]
        return {'points': points}, 0
    if command == 'check':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.check import check
        result = check(pool, read_data=args.read_data, progress=Progress('check', reporter))
        return result, 0 if result['ok'] else 1
    if command == 'forget':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.prune import forget, prune
        policy = {rule: getattr(args, 'keep_%s' % rule) for rule in RULES}
        policy['within'] = args.keep_within
        result = forget(pool, policy, dry_run=args.dry_run)
        if args.prune and not args.dry_run:
            result['prune'] = prune(pool, progress=Progress('prune', reporter))
        return result, 0
    if command == 'prune':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.prune import prune
        return prune(pool, dry_run=args.dry_run, progress=Progress('prune', reporter)), 0
    if command == 'copy':
        from ansible_collections.ferry.kube.plugins.module_utils.pool.copy import copy_points
        target = engine.open_pool(args.target_location, _passphrase(args.to_passphrase_file, 'FERRY_POOL_PASSPHRASE2'), _options(args.to_option))
        try:
            return copy_points(pool, target, args.points, progress=Progress('copy', reporter)), 0
        finally:
            target.close()
    if command == 'key':
        if args.action == 'list':
            return {'slots': pool.key_slots()}, 0
        if args.action == 'add':
            return {'slot': pool.add_key(_passphrase(args.new_passphrase_file, 'FERRY_POOL_NEW_PASSPHRASE'), args.label)}, 0
        if not args.slot:
            raise UsageError('key remove needs the slot to remove (see ferry pool key list)')
        pool.remove_key(args.slot)
        return {'removed': args.slot}, 0
    return engine.pool_summary(pool), 0


def _print_human(command, result):
    out = sys.stdout
    if command == 'points':
        for point in result['points']:
            stats = point['stats']
            tags = ' '.join('%s=%s' % kv for kv in sorted(point['tags'].items()))
            row = (point['id'], point['time'], point['group'], stats.get('files', 0), human_bytes(stats.get('bytes', 0)), tags)
            out.write('%s  %s  %-20s %8d files %10s  %s\n' % row)
        return
    if command == 'check':
        state = 'healthy' if result['ok'] else 'DAMAGED'
        extra = ', every byte read' if result['read_data'] else ''
        out.write('pool is %s: %d points, %d packs, %d blobs%s\n' % (state, result['points'], result['packs'], result['indexed_blobs'], extra))
        for error in result['errors']:
            out.write('  %s\n' % error)
        return
    out.write(json.dumps(result, indent=2, sort_keys=True, default=str) + '\n')


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    engine.keep_freed_memory()
    try:
        result, code = run(args)
    except UsageError as exc:
        sys.stderr.write('ferry pool: %s\n' % exc)
        return 2
    except (PoolError, BackendError, PolicyError) as exc:
        sys.stderr.write('ferry pool %s: %s\n' % (args.command, exc))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('ferry pool %s: interrupted; the pool is consistent (run the command again to resume)\n' % args.command)
        return 130
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + '\n')
    else:
        _print_human(args.command, result)
    return code
