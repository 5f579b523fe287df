"""Image references parsed as Docker does, and rewrite_image, the restore engine's way to point workloads at the replica."""

import pytest

from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import (
    Reference,
    compile_rewrites,
    parse,
    parse_prefix,
    rewrite_image,
    rewrite_images,
)

D1 = 'sha256:' + '1' * 64
D2 = 'sha256:' + '2' * 64


@pytest.mark.parametrize('image, expected', [
    ('nginx', ('docker.io', 'library/nginx', None, None)),
    ('nginx:1.25', ('docker.io', 'library/nginx', '1.25', None)),
    ('library/nginx', ('docker.io', 'library/nginx', None, None)),
    ('docker.io/nginx', ('docker.io', 'library/nginx', None, None)),
    ('docker.io/library/nginx:1.25', ('docker.io', 'library/nginx', '1.25', None)),
    ('index.docker.io/bitnami/redis:7', ('docker.io', 'bitnami/redis', '7', None)),
    ('registry-1.docker.io/bitnami/redis', ('docker.io', 'bitnami/redis', None, None)),
    ('bitnami/redis:7.2-debian', ('docker.io', 'bitnami/redis', '7.2-debian', None)),
    ('localhost/app', ('localhost', 'app', None, None)),
    ('localhost:5000/app:v1', ('localhost:5000', 'app', 'v1', None)),
    ('127.0.0.1:5000/a/b/c:t', ('127.0.0.1:5000', 'a/b/c', 't', None)),
    ('quay.io/prometheus/prometheus:v2.53.0', ('quay.io', 'prometheus/prometheus', 'v2.53.0', None)),
    ('Registry.Example.com/team/app', ('registry.example.com', 'team/app', None, None)),
    ('gcr.io/proj/app@' + D1, ('gcr.io', 'proj/app', None, D1)),
    ('gcr.io/proj/app:1.0@' + D1, ('gcr.io', 'proj/app', '1.0', D1)),
    ('[::1]:5000/app:1', ('[::1]:5000', 'app', '1', None)),
    ('europe-docker.pkg.dev/p/r/img_x-y.z__w:tag', ('europe-docker.pkg.dev', 'p/r/img_x-y.z__w', 'tag', None)),
])
def test_parse_like_docker(image, expected):
    assert tuple(parse(image)) == expected


@pytest.mark.parametrize('image, message', [
    ('', 'non-empty string'),
    ('Nginx', 'invalid repository name'),
    ('nginx:', 'invalid tag'),
    ('nginx:-bad', 'invalid tag'),
    ('nginx@sha256:short', 'invalid digest'),
    ('team//app', 'invalid repository name'),
    ('-bad.host:5000/app', 'not a valid registry host'),
])
def test_parse_rejects_invalid_references(image, message):
    with pytest.raises(ValueError, match=message):
        parse(image)


def test_reference_forms():
    ref = parse('nginx')
    assert ref.name == 'docker.io/library/nginx'
    assert ref.reference == 'latest'
    assert ref.with_tag() == 'docker.io/library/nginx:latest'
    assert str(ref) == 'docker.io/library/nginx'
    pinned = parse('quay.io/a/b:1@' + D1)
    assert pinned.reference == D1
    assert str(pinned) == 'quay.io/a/b:1@' + D1
    assert str(Reference('r:5000', 'x', None, D1)) == 'r:5000/x@' + D1


@pytest.mark.parametrize('prefix, normalised', [
    ('docker.io/library', 'docker.io/library'),
    ('docker.io', 'docker.io'),
    ('index.docker.io/library/', 'docker.io/library'),
    ('nginx', 'docker.io/library/nginx'),
    ('library/nginx', 'docker.io/library/nginx'),
    ('bitnami', 'docker.io/library/bitnami'),
    ('docker.io/bitnami', 'docker.io/bitnami'),
    ('registry.example.com:5000', 'registry.example.com:5000'),
    ('localhost', 'localhost'),
    ('Quay.IO/Team'.lower(), 'quay.io/team'),
])
def test_parse_prefix(prefix, normalised):
    assert parse_prefix(prefix) == normalised


@pytest.mark.parametrize('prefix', ['', 'nginx:1.25', 'docker.io/library/nginx:1.25', 'quay.io/a@' + D1, 'quay.io/Bad', None, 5])
def test_parse_prefix_rejects(prefix):
    with pytest.raises(ValueError):
        parse_prefix(prefix)


HUB = [{'from': 'docker.io/library', 'to': 'dr.example.com:5000/mirror/team'}]


@pytest.mark.parametrize('image', ['nginx', 'library/nginx', 'docker.io/library/nginx', 'docker.io/nginx', 'index.docker.io/library/nginx'])
def test_every_spelling_of_a_hub_image_matches(image):
    assert rewrite_image(image, HUB) == 'dr.example.com:5000/mirror/team/nginx'


def test_tag_and_digest_are_kept():
    assert rewrite_image('nginx:1.25', HUB) == 'dr.example.com:5000/mirror/team/nginx:1.25'
    assert rewrite_image('nginx@' + D1, HUB) == 'dr.example.com:5000/mirror/team/nginx@' + D1
    assert rewrite_image('nginx:1.25@' + D1, HUB) == 'dr.example.com:5000/mirror/team/nginx:1.25@' + D1


def test_match_is_on_path_segment_boundaries():
    rules = [{'from': 'registry.example.com/team', 'to': 'dr.example.com/mirror/team'}]
    assert rewrite_image('registry.example.com/team/app:1', rules) == 'dr.example.com/mirror/team/app:1'
    assert rewrite_image('registry.example.com/team/sub/app', rules) == 'dr.example.com/mirror/team/sub/app'
    assert rewrite_image('registry.example.com/teams/app:1', rules) == 'registry.example.com/teams/app:1'
    assert rewrite_image('registry.example.com/team', rules) == 'dr.example.com/mirror/team'
    assert rewrite_image('registry.example.com:5000/team/app', rules) == 'registry.example.com:5000/team/app'
    assert rewrite_image('docker.io/library/nginx', [{'from': 'docker.io/lib', 'to': 'x.io'}]) == 'docker.io/library/nginx'


def test_longest_match_wins_whatever_the_order():
    rules = [{'from': 'docker.io', 'to': 'dr:5000/hub'},
             {'from': 'docker.io/library/nginx', 'to': 'dr:5000/pinned/nginx'},
             {'from': 'docker.io/library', 'to': 'dr:5000/official'}]
    assert rewrite_image('nginx:1', rules) == 'dr:5000/pinned/nginx:1'
    assert rewrite_image('redis:7', rules) == 'dr:5000/official/redis:7'
    assert rewrite_image('bitnami/redis:7', rules) == 'dr:5000/hub/bitnami/redis:7'
    assert rewrite_image('quay.io/x/y', rules) == 'quay.io/x/y'


def test_whole_registry_to_whole_registry_keeps_paths():
    rules = [{'from': 'quay.io', 'to': 'dr.example.com:5000'}]
    assert rewrite_image('quay.io/prometheus/node-exporter:v1', rules) == 'dr.example.com:5000/prometheus/node-exporter:v1'
    assert rewrite_image('docker.io/library/nginx:1', [{'from': 'docker.io/library/nginx', 'to': 'dr:5000'}]) == 'dr:5000/library/nginx:1'


def test_to_without_registry_is_on_docker_hub_as_written():
    assert rewrite_image('quay.io/a/b:1', [{'from': 'quay.io/a', 'to': 'myorg'}]) == 'docker.io/myorg/b:1'


def test_digests_pin_rewritten_tags():
    digests = {'docker.io/library/nginx:1.25': D1, 'nginx:latest': D2}
    assert rewrite_image('nginx:1.25', HUB, digests) == 'dr.example.com:5000/mirror/team/nginx:1.25@' + D1
    assert rewrite_image('docker.io/library/nginx:1.25', HUB, digests) == 'dr.example.com:5000/mirror/team/nginx:1.25@' + D1
    # no tag means latest, whose key may be written either way; the output keeps the reference's own form
    assert rewrite_image('nginx', HUB, digests) == 'dr.example.com:5000/mirror/team/nginx@' + D2
    assert rewrite_image('nginx:1.26', HUB, digests) == 'dr.example.com:5000/mirror/team/nginx:1.26'


def test_digest_references_keep_their_digest_unless_the_replica_differs():
    assert rewrite_image('nginx@' + D1, HUB, {'nginx:latest': D2}) == 'dr.example.com:5000/mirror/team/nginx@' + D1
    replaced = {'docker.io/library/nginx@' + D1: D2}
    assert rewrite_image('nginx@' + D1, HUB, replaced) == 'dr.example.com:5000/mirror/team/nginx@' + D2
    assert rewrite_image('nginx:1@' + D1, HUB, replaced) == 'dr.example.com:5000/mirror/team/nginx:1@' + D2


def test_digests_do_not_apply_to_unmatched_images():
    assert rewrite_image('quay.io/a/b:1', HUB, {'quay.io/a/b:1': D1}) == 'quay.io/a/b:1'


def test_bad_digest_keys_are_ignored():
    assert rewrite_image('nginx:1', HUB, {'Not A Ref': D1, 'nginx:1': D2}).endswith('nginx:1@' + D2)


@pytest.mark.parametrize('image', ['', '   ', '${IMAGE}', 'UPPER/case', None, 42])
def test_what_is_not_a_reference_comes_back_unchanged(image):
    assert rewrite_image(image, HUB) == image


def test_no_rules_changes_nothing():
    assert rewrite_image('nginx:1', []) == 'nginx:1'
    assert rewrite_image('nginx:1', None, {'nginx:1': D1}) == 'nginx:1'


@pytest.mark.parametrize('rules, message', [
    ([{'from': 'docker.io'}], 'rewrite 1 must be a dict with "from" and "to"'),
    (['docker.io'], 'rewrite 1 must be a dict'),
    ([{'from': 'a.io', 'to': 'b.io'}, {'from': 'nginx:1.25', 'to': 'x.io'}], 'rewrite 2'),
    ([{'from': 'docker.io', 'to': 'x.io/Bad'}], 'rewrite 1: .*invalid repository path'),
])
def test_invalid_rules_raise_naming_the_rule(rules, message):
    with pytest.raises(ValueError, match=message):
        rewrite_image('nginx', rules)
    with pytest.raises(ValueError, match=message):
        compile_rewrites(rules)


def test_rewrite_images_compiles_once_and_keeps_order():
    images = ['nginx:1', 'quay.io/a/b', 'library/redis:7']
    assert rewrite_images(images, HUB, {'redis:7': D1}) == [
        'dr.example.com:5000/mirror/team/nginx:1', 'quay.io/a/b', 'dr.example.com:5000/mirror/team/redis:7@' + D1]


def test_rules_from_a_registry_sync_result_round_trip():
    """What registry_sync returns (rewrites, digests) rewrites the source references it copied."""
    result_rewrites = [{'from': 'docker.io/library/nginx', 'to': 'dr:5000/mirror/library/nginx'}]
    result_digests = {'docker.io/library/nginx:1.25': D1}
    assert rewrite_image('nginx:1.25', result_rewrites, result_digests) == 'dr:5000/mirror/library/nginx:1.25@' + D1
    assert rewrite_image('nginx-unprivileged:1', result_rewrites, result_digests) == 'nginx-unprivileged:1'
