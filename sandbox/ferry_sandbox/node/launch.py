"""Runs inside a private mount namespace (``unshare --mount``): builds the pod's root view, mounts
its volumes at their mountPaths, then becomes the container's process.

The root view is an overlay of the host root: the pod reads the host's files (its interpreter, the
checkout, /tmp) and its writes stay private to it. /proc, /dev and /sys are mounted, the host's
other filesystems are bound in, and each volume is bind-mounted (read-only where the pod says so).
"""

import json
import os
import subprocess
import sys


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def host_mounts(pod_dir):
    """The host's other filesystems (an overlay of / does not show what is mounted below it)."""
    points = []
    with open('/proc/self/mountinfo', 'r', encoding='utf-8') as handle:
        for line in handle:
            point = line.split()[4].replace('\\040', ' ')
            if point == '/' or point.split('/')[1] in ('proc', 'sys', 'dev') or point.startswith(pod_dir):
                continue
            points.append(point)
    return sorted(set(points), key=lambda p: p.count('/'))


def main(spec_path):
    with open(spec_path, 'r', encoding='utf-8') as handle:
        spec = json.load(handle)
    base = spec['pod_dir']
    root, upper, work = (os.path.join(base, d) for d in ('root', 'upper', 'work'))
    for directory in (root, upper, work):
        os.makedirs(directory, exist_ok=True)
    run('mount', '--make-rprivate', '/')
    run('mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=/,upperdir=%s,workdir=%s' % (upper, work), root)
    run('mount', '-t', 'proc', 'proc', os.path.join(root, 'proc'))
    for special in ('dev', 'sys'):
        run('mount', '--rbind', '/' + special, os.path.join(root, special))
    for mount_point in host_mounts(base):
        target = os.path.join(root, mount_point.lstrip('/'))
        if os.path.isdir(mount_point) and os.path.isdir(target):
            run('mount', '--bind', mount_point, target)
    for mount in spec['mounts']:
        target = os.path.join(root, mount['path'].lstrip('/'))
        if os.path.isdir(mount['source']):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, 'a').close()  # pylint: disable=consider-using-with
        run('mount', '--bind', mount['source'], target)
        if mount.get('read_only'):
            run('mount', '-o', 'remount,bind,ro', target)
    for path in spec.get('image_paths') or []:  # what belongs to the image stays visible under the volumes
        if any(path.startswith(m['path'].rstrip('/') + '/') for m in spec['mounts']) and os.path.isdir(path):
            target = os.path.join(root, path.lstrip('/'))
            os.makedirs(target, exist_ok=True)
            run('mount', '--bind', path, target)
    os.chroot(root)
    os.chdir(spec.get('workdir') or '/')
    os.execvpe(spec['argv'][0], spec['argv'], spec['env'])


if __name__ == '__main__':
    try:
        main(sys.argv[1])
    except subprocess.CalledProcessError as exc:
        sys.stderr.write('sandbox node: cannot set up the pod: %s: %s\n' % (' '.join(exc.cmd), exc.stderr.decode(errors='replace').strip()))
        sys.exit(126)
    except OSError as exc:
        sys.stderr.write('sandbox node: cannot start the container: %s\n' % exc)
        sys.exit(127)
