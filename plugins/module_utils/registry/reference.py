# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references parsed the way Docker does, and their rewrite from a source registry to its replica.

``parse('nginx')`` is ``docker.io/library/nginx`` (tag ``latest`` implied); ``parse('localhost:5000/app:1')``
is registry ``localhost:5000``, repository ``app``, tag ``1``. The first path component is a registry
when it has a ``.`` or a ``:`` or is ``localhost`` (Docker's rule), else the image is on Docker Hub.

``rewrite_image(image, rewrites, digests)`` is what object restore uses to point workloads at the replica.
"""

from __future__ import annotations

import re
from collections import namedtuple

DOCKER_HUB = 'docker.io'
DOCKER_HUB_ALIASES = ('index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com')
DEFAULT_TAG = 'latest'

_COMPONENT = r'[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
_PATH_RE = re.compile(r'^%s(?:/%s)*$' % (_COMPONENT, _COMPONENT))
_DOMAIN_RE = re.compile(r'^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$'
                        r'|^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$')
_TAG_RE = re.compile(r'^[\w][\w.-]{0,127}$')
_DIGEST_RE = re.compile(r'^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$')


class Reference(namedtuple('Reference', 'registry repository tag digest')):
    """A normalised image reference: registry (``docker.io`` for Docker Hub), repository path, tag, digest."""

    __slots__ = ()

    @property
    def name(self):
        """``registry/repository``, without tag or digest."""
        return '%s/%s' % (self.registry, self.repository)

    @property
    def reference(self):
        """What the registry API calls the reference: the digest when there is one, else the tag (``latest`` when none)."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self):
        """``registry/repository:tag`` with the implied ``latest`` made explicit (the key of a digest map)."""
        return '%s:%s' % (self.name, self.tag or DEFAULT_TAG)

    def __str__(self):
        text = self.name
        if self.tag:
            text += ':' + self.tag
        if self.digest:
            text += '@' + self.digest
        return text


def is_repository_path(text):
    """Whether ``text`` is a valid repository path (lower-case components separated by ``/``)."""
    return isinstance(text, str) and bool(_PATH_RE.match(text))


def is_domain(component):
    """Whether the first path component of an image names a registry (Docker's rule)."""
    return '.' in component or ':' in component or component == 'localhost' or component != component.lower()


def normalise_registry(registry):
    """``docker.io`` for Docker Hub's other names; lower-case host names."""
    registry = registry.lower()
    return DOCKER_HUB if registry in DOCKER_HUB_ALIASES else registry


def parse(image):
    """A ``Reference`` for an image string; raises ValueError, naming the part that is wrong."""
    if not isinstance(image, str) or not image.strip():
        raise ValueError('an image reference must be a non-empty string, not %r' % (image,))
    text = image.strip()
    remainder, digest = text, None
    if '@' in text:
        remainder, digest = text.split('@', 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError('image "%s" has an invalid digest "%s" (expected algorithm:hex, for example sha256:...)' % (image, digest))
    tag = None
    slash, colon = remainder.rfind('/'), remainder.rfind(':')
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.match(tag):
            raise ValueError('image "%s" has an invalid tag "%s"' % (image, tag))
    registry, path = split_name(remainder)
    if not _PATH_RE.match(path):
        raise ValueError('image "%s" has an invalid repository name "%s" (lower-case letters, digits and separators . _ - /)' % (image, path))
    return Reference(registry, path, tag, digest)


def split_name(name):
    """(registry, repository path) of a name without tag or digest, with Docker Hub's defaults applied."""
    first, sep, rest = name.partition('/')
    if sep and is_domain(first):
        if not _DOMAIN_RE.match(first):
            raise ValueError('"%s" is not a valid registry host in "%s"' % (first, name))
        registry, path = normalise_registry(first), rest
    else:
        registry, path = DOCKER_HUB, name
    if registry == DOCKER_HUB and '/' not in path:
        path = 'library/' + path
    return registry, path


def parse_prefix(prefix):
    """The normalised ``registry[/path]`` of a rewrite's ``from`` or ``to``: a registry, or a registry and a repository prefix.

    ``docker.io/library``, ``nginx`` (Docker Hub's ``library/nginx``, as Docker reads it) and
    ``registry.example.com:5000`` (a whole registry) are all valid; tags and digests are not.
    """
    if not isinstance(prefix, str) or not prefix.strip().strip('/'):
        raise ValueError('a rewrite prefix must be a non-empty string, not %r' % (prefix,))
    text = prefix.strip().strip('/')
    if '@' in text or ':' in text.rpartition('/')[2] and '/' in text:
        raise ValueError('rewrite prefix "%s" must be a registry or repository prefix, without a tag or digest' % prefix)
    first, sep, rest = text.partition('/')
    if is_domain(first):
        if not _DOMAIN_RE.match(first):
            raise ValueError('"%s" is not a valid registry host in rewrite prefix "%s"' % (first, prefix))
        registry, path = normalise_registry(first), rest if sep else ''
    else:
        registry, path = split_name(text)
    if path and not _PATH_RE.match(path):
        raise ValueError('rewrite prefix "%s" has an invalid repository path "%s"' % (prefix, path))
    return '%s/%s' % (registry, path) if path else registry


def _target_prefix(prefix):
    """A rewrite's ``to``: like ``parse_prefix`` but a path without a registry stays on Docker Hub as written (no ``library/``)."""
    text = prefix.strip().strip('/') if isinstance(prefix, str) else prefix
    if isinstance(text, str) and text and not is_domain(text.partition('/')[0]):
        return parse_prefix(DOCKER_HUB + '/' + text)
    return parse_prefix(prefix)


def compile_rewrites(rewrites):
    """Validated, normalised rules [(from, to)], longest ``from`` first; raises ValueError naming the bad rule."""
    rules = []
    for index, rule in enumerate(rewrites or []):
        if not isinstance(rule, dict) or 'from' not in rule or 'to' not in rule:
            raise ValueError('rewrite %d must be a dict with "from" and "to", not %r' % (index + 1, rule))
        try:
            rules.append((parse_prefix(rule['from']), _target_prefix(rule['to'])))
        except ValueError as exc:
            raise ValueError('rewrite %d: %s' % (index + 1, exc)) from None
    rules.sort(key=lambda pair: len(pair[0]), reverse=True)
    return rules


def match_rewrite(name, rules):
    """The new ``registry/repository`` for a normalised name under compiled rules, or None when no rule matches."""
    for source, target in rules:
        if name == source:
            return target
        if name.startswith(source + '/'):
            return target + name[len(source):]
    return None


def _digest_index(digests):
    """Normalised keys: ``registry/repo:tag`` (tag refs) and ``registry/repo@digest`` (digest refs whose replica differs)."""
    index = {}
    for key, digest in (digests or {}).items():
        try:
            ref = parse(key)
        except ValueError:
            continue
        if digest:
            index[ref.name + '@' + ref.digest if ref.digest else ref.with_tag()] = digest
    return index


def rewrite_image(image, rewrites, digests=None):
    """``image`` pointed at its replica by the first matching (longest) rewrite, pinned by digest where known.

    ``rewrites``: ``[{'from': 'docker.io/library', 'to': 'dr.example.com:5000/mirror'}]``. A ``from`` matches
    a normalised image name on path-segment boundaries, so ``nginx``, ``library/nginx`` and
    ``docker.io/library/nginx`` all match ``from: docker.io/library`` and ``from: docker.io``, but
    ``from: docker.io/lib`` matches none of them. The longest matching ``from`` wins. A ``to`` that is a bare
    registry keeps the repository path.

    ``digests``: ``{'docker.io/library/nginx:1.25': 'sha256:...'}`` (keys normalised the same way, the
    implied tag being ``latest``). A rewritten tag reference whose source is in it comes back pinned,
    ``repo:tag@sha256:...``. A reference that already has a digest keeps it, unless the map has
    ``registry/repo@<that digest>`` (a replica whose manifest differs, as with a platform filter).

    Images that no rule matches, and strings that are not image references, come back unchanged.
    Invalid rules raise ValueError (check them once with ``compile_rewrites``).
    """
    return _rewrite_compiled(image, compile_rewrites(rewrites), _digest_index(digests))


def rewrite_images(images, rewrites, digests=None):
    """``rewrite_image`` over a list, compiling the rules and the digest map once."""
    rules, index = compile_rewrites(rewrites), _digest_index(digests)
    return [_rewrite_compiled(image, rules, index) for image in images]


def _rewrite_compiled(image, rules, index):
    try:
        ref = parse(image)
    except ValueError:
        return image
    target = match_rewrite(ref.name, rules)
    if target is None:
        return image
    registry, _sep, repository = target.partition('/')
    if ref.digest:
        digest = index.get(ref.name + '@' + ref.digest, ref.digest)
    else:
        digest = index.get(ref.with_tag())
    return str(Reference(registry, repository or ref.repository, ref.tag, digest))
