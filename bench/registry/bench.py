"""registry_sync vs ``skopeo sync``, in one run, between two docker-registry instances on loopback (TLS, htpasswd).

    .venv/bin/python bench/registry/bench.py [--reps 3] [--scale 1] [--tags-per-image 1] [--repos 1] [--work DIR]

Builds 10 images (two of them multi-arch indexes of amd64 and arm64) sharing base layers, about 390 MB of
distinct blobs at scale 1, as an OCI layout, and pushes them with skopeo to a source registry: as the tags of
one repository, or spread over ``--repos`` repositories, each image with ``--tags-per-image`` tags (release
tags of the same manifest: more tags, no more data). Each repetition starts two fresh, empty target
registries, one per tool, and times for each tool:

- first: replicate every tag of the repositories (all platforms) into the empty target;
- again: the same with nothing changed (and "again_warm", the same once more);
- for Ferry also "again_verify": the same with ``verify: true``, every image checked at the target.

Ferry runs its engine (plugins/module_utils/registry/sync.py) in a fresh Python process (ferry_sync.py, which
imports nothing else), so its startup is in the time as skopeo's is; the Ansible module adds Ansible's own
task overhead. Ferry keeps its record of verified images where the module's default ``state_dir`` would,
but in the work directory; ``PYTHONDONTWRITEBYTECODE=1`` makes Python compile Ferry's modules at every run,
as it does for a module Ansible ships in its zip. skopeo reads several repositories from a ``--src yaml`` file,
in one process. The tools take turns going first. Figures are medians over the repetitions; ratios are Ferry / skopeo.
Every tag's manifest digest at both targets is checked against the source after each first copy.
"""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import ROOT, drop_caches, timed  # noqa: E402 pylint: disable=wrong-import-position

sys.path[:0] = [os.path.join(ROOT, '.build', 'collections'), os.path.join(ROOT, 'tests', 'lib')]
from registry_server import DockerRegistry, OCILayout, cert_dir, inspect_raw, layer, push, random_bytes, skopeo, write_htpasswd  # noqa: E402
from tls import make_ca_and_server  # noqa: E402 pylint: disable=wrong-import-position

MB = 1000 * 1000
REPOSITORY = 'bench/apps'
USER = 'bench'


def blob(name, megabytes, scale):
    """A gzip layer (level 1) of random bytes: pushed as it is, where skopeo would compress an uncompressed one itself."""
    return layer({name + '/data': random_bytes(max(int(megabytes * scale * MB), 1024), name)})


def build(layout_dir, scale):
    """Ten images, tags svc1..svc10; svc7 and svc8 are indexes of amd64 and arm64. Returns {tag: descriptor}."""
    layout = OCILayout(layout_dir)
    b1, b2 = blob('base1', 40, scale), blob('base2', 30, scale)
    b1_arm, b2_arm = blob('base1-arm64', 40, scale), blob('base2-arm64', 30, scale)
    small = [blob('svc9-%d' % i, 1, scale) for i in range(8)]
    images = {
        'svc1': layout.image([b1, blob('svc1-a', 20, scale), blob('svc1-b', 5, scale)]),
        'svc2': layout.image([b1, blob('svc2', 25, scale)]),
        'svc3': layout.image([b1, b2, blob('svc3', 15, scale)]),
        'svc4': layout.image([b2, blob('svc4', 30, scale)]),
        'svc5': layout.image([b2, blob('svc5-a', 10, scale), blob('svc5-b', 10, scale)]),
        'svc6': layout.image([blob('svc6', 35, scale)]),
        'svc7': layout.index([layout.image([b1, blob('svc7-amd64', 15, scale)]),
                              layout.image([b1_arm, blob('svc7-arm64', 15, scale)], architecture='arm64', variant='v8')]),
        'svc8': layout.index([layout.image([b2, blob('svc8-amd64', 10, scale)]),
                              layout.image([b2_arm, blob('svc8-arm64', 10, scale)], architecture='arm64', variant='v8')]),
        'svc9': layout.image([b1] + small),
        'svc10': layout.image([b1, b2, blob('svc10', 20, scale)]),
    }
    for tag, descriptor in images.items():
        layout.tag(descriptor, tag)
    return layout, images


def layout_bytes(layout_dir):
    blobs = os.path.join(layout_dir, 'blobs', 'sha256')
    return sum(os.path.getsize(os.path.join(blobs, name)) for name in os.listdir(blobs))


class Bench:
    def __init__(self, work, scale, tags_per_image=1, repos=1):
        self.tags_per_image = tags_per_image
        self.repositories = [REPOSITORY] if repos <= 1 else ['bench/app%d' % (number + 1) for number in range(repos)]
        self.work = work
        self.tls = make_ca_and_server(work, prefix='bench')
        self.certs = cert_dir(os.path.join(work, 'certs'), self.tls['ca'])
        self.password = secrets.token_hex(12)
        self.creds = '%s:%s' % (USER, self.password)
        self.htpasswd = os.path.join(work, 'htpasswd')
        write_htpasswd(self.htpasswd, {USER: self.password})
        self.scale = scale
        self.source = None
        self.images = {}

    def registry(self, name):
        directory = os.path.join(self.work, name)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        return DockerRegistry(directory, tls=self.tls, htpasswd=self.htpasswd, name=name).start()

    def fill_source(self):
        layout_dir = os.path.join(self.work, 'layout')
        shutil.rmtree(layout_dir, ignore_errors=True)
        layout, self.images = build(layout_dir, self.scale)
        self.source = self.registry('source')
        for index, tag in enumerate(self.images):
            repository = self.repositories[index % len(self.repositories)]
            for number in range(self.tags_per_image):  # release tags of the same image: more tags, no more data
                name = tag if number == 0 else '%s-r%d' % (tag, number)
                push(layout, tag, '%s/%s:%s' % (self.source.name, repository, name), self.certs, self.creds)
        return layout_bytes(layout_dir)

    def repository_of(self, tag):
        return self.repositories[list(self.images).index(tag) % len(self.repositories)]

    def option(self, registry):
        return {'url': registry.url, 'username': USER, 'password': self.password, 'ca_file': self.tls['ca']}

    def ferry(self, target, verify=False):
        config = os.path.join(self.work, 'ferry-%s%s.json' % (target.port, '-verify' if verify else ''))
        with open(config, 'w', encoding='utf-8') as handle:
            json.dump({'source': self.option(self.source), 'target': self.option(target), 'target_prefix': 'mirror',
                       'repositories': [{'name': name, 'all_tags': True} for name in self.repositories], 'concurrency': 4,
                       'state_dir': os.path.join(self.work, 'ferry-state'), 'verify': verify}, handle)
        return [sys.executable, os.path.join(HERE, 'ferry_sync.py'), config]

    def skopeo(self, target):
        common = ['skopeo', '--insecure-policy', 'sync', '--all', '--dest', 'docker', '--dest-cert-dir', self.certs, '--dest-creds', self.creds]
        if len(self.repositories) == 1:
            return common + ['--src', 'docker', '--src-cert-dir', self.certs, '--src-creds', self.creds,
                             '%s/%s' % (self.source.name, REPOSITORY), '%s/mirror' % target.name]
        source = os.path.join(self.work, 'skopeo-source.yaml')
        with open(source, 'w', encoding='utf-8') as handle:  # JSON is YAML
            json.dump({self.source.name: {'images': {name: [] for name in self.repositories}, 'tls-verify': True, 'cert-dir': self.certs,
                                          'credentials': {'username': USER, 'password': self.password}}}, handle)
        return common + ['--src', 'yaml', source, '%s/mirror' % target.name]

    def verify(self, target, tool):
        for tag, descriptor in self.images.items():
            repository = self.repository_of(tag)
            # skopeo sync (--src docker or yaml) puts the repository's last path component under the destination
            where = 'mirror/' + (repository.rsplit('/', 1)[1] if tool == 'skopeo' else repository)
            raw = inspect_raw('%s/%s:%s' % (target.name, where, tag), self.certs, self.creds)
            if 'sha256:' + hashlib.sha256(raw).hexdigest() != descriptor['digest']:
                raise SystemExit('%s:%s at %s has another digest than the source' % (where, tag, target.name))

    def repetition(self, ferry_first):
        result = {}
        order = ['ferry', 'skopeo'] if ferry_first else ['skopeo', 'ferry']
        targets = {tool: self.registry('target-' + tool) for tool in order}
        shutil.rmtree(os.path.join(self.work, 'ferry-state'), ignore_errors=True)  # a target of an earlier repetition may have had this port
        try:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
            for step in ('first', 'again', 'again_warm', 'again_verify'):
                for tool in order:
                    if step == 'again_verify' and tool != 'ferry':
                        continue
                    argv = self.ferry(targets[tool], verify=step == 'again_verify') if tool == 'ferry' else self.skopeo(targets[tool])
                    seconds, out, peak = timed(argv, env=env, cold=step != 'again_warm')
                    result[(tool, step)] = seconds
                    result[(tool, step + '_rss')] = peak
                    if tool == 'ferry':
                        summary = json.loads(out)
                        result[('ferry', step + '_bytes')] = summary['bytes_copied']
                        result[('ferry', step + '_from_record')] = summary['from_record']
                    if step == 'first':
                        self.verify(targets[tool], tool)
        finally:
            for target in targets.values():
                target.stop()
                shutil.rmtree(target.directory, ignore_errors=True)
        return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--scale', type=float, default=1.0, help='multiplies every layer size (1: about 390 MB of blobs)')
    parser.add_argument('--tags-per-image', type=int, default=1, help='tags per image (the same manifest), for a set with more tags')
    parser.add_argument('--repos', type=int, default=1, help='spread the images over this many repositories (bench/app1...)')
    parser.add_argument('--work', default=None)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='ferry-bench-registry-', dir=os.environ.get('FERRY_BENCH_DIR'))
    os.makedirs(work, exist_ok=True)
    bench = Bench(work, args.scale, args.tags_per_image, args.repos)
    try:
        size = bench.fill_source()
        runs = [bench.repetition(rep % 2 == 0) for rep in range(args.reps)]
    finally:
        if bench.source is not None:
            bench.source.stop()
    keys = sorted(runs[0])
    median = {key: statistics.median(run[key] for run in runs) for key in keys}
    spread = {key: (min(run[key] for run in runs), max(run[key] for run in runs)) for key in keys}
    version = skopeo('--version').decode().strip()
    cold = drop_caches()
    where = 'one repository' if args.repos <= 1 else '%d repositories' % args.repos
    print('images: 10 images (2 multi-arch indexes, amd64+arm64) as %d tags of %s, %d blobs and manifests, %.0f MB; %s; '
          '%d repetitions (median [min-max]); Ferry concurrency 4' % (10 * args.tags_per_image, where, len(os.listdir(os.path.join(
              work, 'layout', 'blobs', 'sha256'))), size / MB, version, args.reps))
    print('caches: %s' % ('dropped before each timed step but "warm" ones' if cold else 'not dropped (no permission here): all steps warm'))

    def cell(tool, step):
        low, high = spread[(tool, step)]
        return '%.2fs [%.2f-%.2f]' % (median[(tool, step)], low, high)

    print('| %-28s | %-22s | %-22s | %-7s | %-8s | %-4s |' % ('figure', 'ferry', 'skopeo sync', 'ratio', 'target', 'met'))
    print('|%s|%s|%s|%s|%s|%s|' % ('-' * 30, '-' * 24, '-' * 24, '-' * 9, '-' * 10, '-' * 6))
    first = median[('ferry', 'first')] / median[('skopeo', 'first')]
    again = median[('ferry', 'again')] / median[('skopeo', 'again')]
    print('| %-28s | %-22s | %-22s | %6.2fx | %-8s | %-4s |' % ('first replication', cell('ferry', 'first'), cell('skopeo', 'first'), first,
                                                                '<=1x', 'yes' if first <= 1 else 'NO'))
    print('| %-28s | %-22s | %-22s | %-7s | %-8s | %-4s |' % ('  throughput', '%.0f MB/s' % (size / median[('ferry', 'first')] / MB),
                                                              '%.0f MB/s' % (size / median[('skopeo', 'first')] / MB), '', '', ''))
    print('| %-28s | %-22s | %-22s | %6.2fx | %-8s | %-4s |' % ('second run, nothing changed', cell('ferry', 'again'), cell('skopeo', 'again'),
                                                                again, '<=0.2x', 'yes' if again <= 0.2 else 'NO'))
    warm = median[('ferry', 'again_warm')] / median[('skopeo', 'again_warm')]
    print('| %-28s | %-22s | %-22s | %6.2fx | %-8s | %-4s |' % ('  same, caches warm', cell('ferry', 'again_warm'), cell('skopeo', 'again_warm'),
                                                                warm, '<=0.2x', 'yes' if warm <= 0.2 else 'NO'))
    verify = median[('ferry', 'again_verify')] / median[('skopeo', 'again')]
    print('| %-28s | %-22s | %-22s | %6.2fx | %-8s | %-4s |' % ('  same, verify: true', cell('ferry', 'again_verify'), '(skopeo as above)',
                                                                verify, '', ''))
    for step in ('first', 'again'):
        print('| %-28s | %-22s | %-22s | %-7s | %-8s | %-4s |' % ('peak RSS ' + step, '%.0f MiB' % median[('ferry', step + '_rss')],
                                                                  '%.0f MiB' % median[('skopeo', step + '_rss')], '', '', ''))
    print('ferry bytes copied: first %d, again %d; images taken from the record: again %d, verify %d of %d'
          % (median[('ferry', 'first_bytes')], median[('ferry', 'again_bytes')], median[('ferry', 'again_from_record')],
             median[('ferry', 'again_verify_from_record')], 10 * args.tags_per_image))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
