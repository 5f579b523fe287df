# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``registry_sync`` asks for, without Ansible: registries from their options, the images to copy, the result.

``sync(params, check_mode)`` takes the module's parameters (``source``, ``target``, ``images``,
``repositories``, ``target_prefix``, ``mapping``, ``platforms``, ``concurrency``, ``chunk_size``, ``timeout``,
``state_dir``, ``verify``) and returns the module's result; it raises RegistryError (with the partial result
as details) when an image could not be copied. Without ``state_dir`` no record is kept (the module's default
is ``~/.cache/ferry/registry``).
"""

from __future__ import annotations

import fnmatch

from ansible_collections.ferry.kube.plugins.module_utils.registry.auth import detect_kind, resolve_credentials
from ansible_collections.ferry.kube.plugins.module_utils.registry.client import DEFAULT_CHUNK_SIZE, RegistryClient
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryError
from ansible_collections.ferry.kube.plugins.module_utils.registry.jobs import Job, compile_mapping, target_repository
from ansible_collections.ferry.kube.plugins.module_utils.registry.record import Record, record_path
from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import is_domain, parse
from ansible_collections.ferry.kube.plugins.module_utils.workers import Background, parallel

GLOB_CHARS = '*?['


def open_registry(config, option, role=None, pool_size=10, timeout=60.0, secret_sink=None):
    """A ``RegistryClient`` for a registry option (``source``/``target`` dict); ``secret_sink`` gets derived secrets (tokens)."""
    config = dict(config or {})
    url, creds = config.get('url'), None
    if not url and detect_kind(config, '') == 'ecr':  # the registry ECR's authorization names
        creds = resolve_credentials(config, '', option)
        url = creds.endpoint
    client = RegistryClient(url, option=option, ca_file=config.get('ca_file'),
                            validate_certs=True if config.get('validate_certs') is None else config['validate_certs'],
                            timeout=timeout, pool_size=pool_size, role=role)
    if creds is None:
        creds = resolve_credentials(config, client.host, option, request=client.raw_request)
    client.set_credentials(creds)
    if secret_sink is not None:
        for secret in client.secrets():
            secret_sink(secret)
    return client


class Sources:
    """The source registry from the options, and anonymous clients for images on other registries."""

    def __init__(self, config, pool_size, timeout, secret_sink):
        self.pool_size, self.timeout = pool_size, timeout
        self.clients = {}
        self.configured = None
        if config and (config.get('url') or config.get('ecr')):
            self.configured = open_registry(config, 'source', pool_size=pool_size, timeout=timeout, secret_sink=secret_sink)
            self.clients[self.configured.name] = self.configured

    def default_name(self):
        return self.configured.name if self.configured is not None else None

    def client(self, registry):
        if registry not in self.clients:
            self.clients[registry] = open_registry({'url': registry}, 'source', role='source', pool_size=self.pool_size, timeout=self.timeout)
        return self.clients[registry]

    def close(self):
        for client in self.clients.values():
            client.close()


def image_jobs(images, sources, target_prefix, rules):
    jobs = []
    for text in images or []:
        try:
            ref = parse(text)
        except ValueError as exc:
            raise RegistryError('images: %s' % exc) from None
        tag = ref.tag or (None if ref.digest else 'latest')
        client = sources.client(ref.registry)
        jobs.append(Job(client, ref.repository, ref.digest or tag, tag, target_repository(ref, target_prefix, rules)))
    return jobs


def repository_jobs(repositories, sources, target_prefix, rules, workers=1):
    """Jobs for each tag of each repository entry; the tag lists that are needed are read ``workers`` at a time."""
    entries = []
    for entry in repositories or []:
        name = (entry.get('name') or '').strip('/')
        first = name.partition('/')[0]
        if '/' in name and is_domain(first):
            registry, path = first, name.partition('/')[2]
        elif sources.default_name():
            registry, path = sources.default_name(), name
        else:
            ref = parse(name)
            registry, path = ref.registry, ref.repository
        try:
            ref = parse('%s/%s' % (registry, path))
        except ValueError as exc:
            raise RegistryError('repositories: %s' % exc) from None
        if ref.tag or ref.digest:
            raise RegistryError('repositories: name "%s" must not have a tag or digest: list tags in "tags"' % name)
        wanted = list(entry.get('tags') or [])
        listed = bool(entry.get('all_tags') or any(c in t for t in wanted for c in GLOB_CHARS) or not wanted)
        entries.append((ref, sources.client(ref.registry), wanted, listed, bool(entry.get('all_tags') or not wanted)))
    available = parallel(lambda item: item[1].tags(item[0].repository) if item[3] else None, entries, workers)
    jobs = []
    for (ref, client, wanted, listed, everything), tags in zip(entries, available):
        if not listed:
            tags = wanted
        elif not everything:
            tags = [t for t in tags if any(fnmatch.fnmatchcase(t, pattern) for pattern in wanted)]
        destination = target_repository(ref, target_prefix, rules)
        for tag in tags:
            jobs.append(Job(client, ref.repository, tag, tag, destination))
    return jobs


class Listing:
    """``list_jobs()`` on a thread, and each registry pinged on one of its own (reachable, a registry, the credentials work):
    the caller goes on meanwhile. A failed check explains a failure best: ``jobs()`` raises its error instead of what
    listing raised, the target's before the source's."""

    def __init__(self, registries, list_jobs):
        self.checks = [Background(client.ping) for client in registries]
        self.listing = Background(list_jobs)

    def jobs(self):
        try:
            return self.listing.result()
        finally:
            for check in self.checks:
                check.result()


def recall_auth(record, registries):
    """Registries start from the auth scheme the record remembers of them (Basic credentials with the first request)."""
    if record is not None:
        for client in registries:
            client.auth.assume(record.auth_scheme(client.base))


def remember_auth(record, registries):
    """What this run learned of each registry's auth scheme, for the next run."""
    if record is not None:
        for client in registries:
            record.note_auth_scheme(client.base, client.auth.learned())


def unique(jobs):
    seen, kept = set(), []
    for job in jobs:
        key = (job.source.name, job.repository, job.reference, job.tag, job.target_repository)
        if key not in seen:
            seen.add(key)
            kept.append(job)
    return kept


def sync(params, check_mode=False, report=None, secret_sink=None):
    """Replicate what ``params`` asks for; the module's result dict."""
    if params.get('images') is None and params.get('repositories') is None:
        raise RegistryError('nothing to copy: give images (references, as ferry.kube.discover lists them) or repositories')
    concurrency = max(1, int(params.get('concurrency') or 4))
    timeout = float(params.get('timeout') or 60.0)
    pool_size = concurrency + 2
    rules = compile_mapping(params.get('mapping'))
    target = open_registry(params.get('target'), 'target', pool_size=pool_size, timeout=timeout, secret_sink=secret_sink)
    sources = Sources(params.get('source'), pool_size, timeout, secret_sink)
    record = Record(record_path(params['state_dir'], target.base)) if params.get('state_dir') else None
    registries = [target] + ([sources.configured] if sources.configured else [])
    recall_auth(record, registries)
    try:
        # fail early on unreachable registries and refused credentials
        listing = Listing(registries, lambda: image_jobs(params.get('images'), sources, params.get('target_prefix'), rules)
                          + repository_jobs(params.get('repositories'), sources, params.get('target_prefix'), rules, concurrency))
        # the engine is compiled (as Ansible's modules are, at every run) while the registries answer
        from ansible_collections.ferry.kube.plugins.module_utils.registry.replicate import (  # pylint: disable=import-outside-toplevel
            Replicator,
            digests_of,
            rewrites_of,
        )
        jobs = listing.jobs()
        replicator = Replicator(target, concurrency=concurrency, chunk_size=params.get('chunk_size') or DEFAULT_CHUNK_SIZE,
                                platforms=params.get('platforms'), check_mode=check_mode, report=report, record=record,
                                verify=bool(params.get('verify')))
        summary = replicator.run(unique(jobs))
    finally:
        target.close()
        sources.close()
    remember_auth(record, registries)
    if record is not None and not check_mode:
        try:
            record.save()
        except OSError as exc:
            summary['warnings'] = ['the record of verified images could not be saved in %s (%s): the next run checks every image at '
                                   'the target' % (params['state_dir'], exc)]
    errors = summary.pop('errors')
    summary['rewrites'] = rewrites_of(summary['images'])
    summary['digests'] = digests_of(summary['images'])
    if errors:
        failed = [image for image in summary['images'] if image['status'] == 'failed']
        messages = []
        for error in errors:
            if str(error) not in messages:
                messages.append(str(error))
        raise RegistryError('%d of %d images were not copied: %s' % (len(failed), len(summary['images']), '; '.join(messages[:5])), **summary)
    return summary
