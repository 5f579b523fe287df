"""registry_sync's engine against two real registries (docker-registry, TLS, htpasswd), checked with skopeo."""

import hashlib
import json

import pytest
import requests
from registry_server import inspect_raw

from ansible_collections.ferry.kube.plugins.module_utils.registry import client as client_module
from ansible_collections.ferry.kube.plugins.module_utils.registry.client import RegistryClient
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import NotFoundError, RegistryAuthError, RegistryError
from ansible_collections.ferry.kube.plugins.module_utils.registry.reference import rewrite_image
from ansible_collections.ferry.kube.plugins.module_utils.registry.sync import open_registry, sync


def params(registries, prefix, **extra):
    base = {'source': registries.option('source'), 'target': registries.option('target'), 'target_prefix': prefix}
    base.update(extra)
    return base


def sha256(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def target_digest(registries, repository, reference):
    return sha256(inspect_raw('%s/%s%s' % (registries.target.name, repository, reference), registries.certs, registries.creds))


def source_digest(registries, repository, reference):
    return sha256(inspect_raw('%s/%s%s' % (registries.source.name, repository, reference), registries.certs, registries.creds))


def blob_sizes(descriptor, layout):
    with open('%s/blobs/sha256/%s' % (layout.path, descriptor['digest'].split(':')[1]), 'rb') as handle:
        manifest = json.load(handle)
    return [manifest['config']['size']] + [layer['size'] for layer in manifest['layers']]


def test_copy_a_tag_then_nothing_on_the_second_run(registries, prefix):
    image = registries.source.name + '/app:1'
    first = sync(params(registries, prefix, images=[image]))
    assert first['changed'] is True
    [result] = first['images']
    sizes = blob_sizes(registries.images['app'], registries.layout)
    assert result['status'] == 'copied'
    assert result['blobs_copied'] == len(sizes) and result['bytes_copied'] == sum(sizes)
    assert result['manifests_copied'] == 1
    assert result['digest'] == registries.images['app']['digest'] == result['target_digest']
    assert result['target'] == '%s/%s/app:1@%s' % (registries.target.name, prefix, result['digest'])
    # skopeo reads the same manifest bytes at the target as at the source
    assert target_digest(registries, prefix + '/app', ':1') == source_digest(registries, 'app', ':1') == result['digest']

    second = sync(params(registries, prefix, images=[image]))
    assert second['changed'] is False
    assert second['bytes_copied'] == 0 and second['blobs_copied'] == 0 and second['manifests_copied'] == 0
    assert second['bytes_skipped'] == sum(sizes) and second['blobs_skipped'] == len(sizes)
    assert second['images'][0]['status'] == 'present'

    assert first['rewrites'] == [{'from': image.rsplit(':', 1)[0], 'to': '%s/%s/app' % (registries.target.name, prefix)}]
    assert first['digests'] == {image: result['digest']}
    assert rewrite_image(image, first['rewrites'], first['digests']) == result['target']


def test_index_with_its_children_keeps_its_digest(registries, prefix):
    result = sync(params(registries, prefix, images=[registries.source.name + '/multi:1']))
    [image] = result['images']
    multi = registries.images['multi']
    assert image['digest'] == image['target_digest'] == multi['digest']
    assert image['media_type'] == 'application/vnd.oci.image.index.v1+json'
    assert image['platforms'] == ['linux/amd64', 'linux/arm64/v8']
    assert image['manifests_copied'] == 3
    # base is shared by both children: copied once
    assert image['blobs_copied'] == 5
    assert target_digest(registries, prefix + '/multi', ':1') == multi['digest']
    for child in ('amd64', 'arm64'):
        digest = registries.images[child]['digest']
        assert target_digest(registries, prefix + '/multi', '@' + digest) == digest
    again = sync(params(registries, prefix, images=[registries.source.name + '/multi:1']))
    assert again['changed'] is False and again['bytes_copied'] == 0
    assert again['blobs_skipped'] == 6  # counted per child: two configs, base twice, two own layers


def test_platform_filter_makes_an_index_of_its_own(registries, prefix):
    source = registries.source.name + '/multi:1'
    result = sync(params(registries, prefix, images=[source], platforms=['linux/arm64']))
    [image] = result['images']
    assert image['platforms'] == ['linux/arm64/v8']
    assert image['target_digest'] != image['digest']
    raw = inspect_raw('%s/%s/multi:1' % (registries.target.name, prefix), registries.certs, registries.creds)
    assert sha256(raw) == image['target_digest']
    assert [m['digest'] for m in json.loads(raw)['manifests']] == [registries.images['arm64']['digest']]
    assert result['digests'][source] == image['target_digest']
    assert result['digests']['%s/multi@%s' % (registries.source.name, image['digest'])] == image['target_digest']
    pinned = rewrite_image('%s/multi@%s' % (registries.source.name, image['digest']), result['rewrites'], result['digests'])
    assert pinned.endswith('@' + image['target_digest'])
    again = sync(params(registries, prefix, images=[source], platforms=['linux/arm64']))
    assert again['changed'] is False and again['images'][0]['status'] == 'present'
    with pytest.raises(RegistryError, match='has none of the platforms windows/amd64; it has linux/amd64, linux/arm64/v8'):
        sync(params(registries, prefix + '-none', images=[source], platforms=['windows/amd64']))


def test_copy_by_digest(registries, prefix):
    digest = registries.images['app2']['digest']
    result = sync(params(registries, prefix, images=['%s/app2@%s' % (registries.source.name, digest)]))
    [image] = result['images']
    assert image['status'] == 'copied' and image['target_digest'] == digest
    assert image['target'] == '%s/%s/app2@%s' % (registries.target.name, prefix, digest)
    assert target_digest(registries, prefix + '/app2', '@' + digest) == digest
    target = open_registry(registries.option('target'), 'target')
    with pytest.raises(NotFoundError, match='NAME_UNKNOWN'):  # no tag: the registry lists no repository
        target.tags(prefix + '/app2')
    assert result['digests'] == {}


def test_shared_layers_are_mounted_across_target_repositories(registries, prefix):
    source = registries.source.name
    result = sync(params(registries, prefix, images=[source + '/app:1', source + '/team/app:1', source + '/app2:1'], concurrency=2))
    by_source = {image['source']: image for image in result['images']}
    assert [image['status'] for image in result['images']] == ['copied'] * 3
    # team/app:1 is app:1: every blob mounted from the first copy; app2 mounts the shared base layer
    assert result['blobs_mounted'] == 4 + 1
    assert by_source[source + '/team/app:1']['blobs_copied'] + by_source[source + '/app:1']['blobs_copied'] == 4
    assert result['bytes_copied'] + result['bytes_mounted'] == sum(
        blob_sizes(registries.images['app'], registries.layout) * 2 + blob_sizes(registries.images['app2'], registries.layout))
    assert target_digest(registries, prefix + '/team/app', ':1') == registries.images['app']['digest']
    assert target_digest(registries, prefix + '/app2', ':1') == registries.images['app2']['digest']


def test_blob_already_elsewhere_in_the_target_is_mounted_on_a_later_run(registries, prefix):
    source = registries.source.name
    sync(params(registries, prefix, images=[source + '/app:1']))
    # base is in the target's app repository: a run that also looks at app (present) mounts it into app2
    result = sync(params(registries, prefix, images=[source + '/app:1', source + '/app2:1']))
    app2 = [image for image in result['images'] if image['source'].endswith('/app2:1')][0]
    assert app2['blobs_mounted'] == 1 and app2['blobs_copied'] == 2


def test_chunked_upload(registries, prefix, monkeypatch):
    sent = []
    original = RegistryClient.request

    def spy(self, method, path, *args, **kwargs):
        if self.option == 'target' and method in ('PATCH', 'PUT'):
            sent.append((method, (kwargs.get('headers') or {}).get('Content-Range')))
        return original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, 'request', spy)
    result = sync(params(registries, prefix, images=[registries.source.name + '/app:1'], chunk_size=64 * 1024, concurrency=1))
    assert result['images'][0]['status'] == 'copied'
    ranges = [content_range for method, content_range in sent if method == 'PATCH']
    base_size = len(registries.images['layers']['base'][0])
    assert base_size > 3 * 64 * 1024
    assert '0-65535' in ranges and '65536-131071' in ranges
    assert '%d-%d' % (base_size // 65536 * 65536, base_size - 1) in ranges
    assert target_digest(registries, prefix + '/app', ':1') == registries.images['app']['digest']
    blob = requests.get('%s/v2/%s/app/blobs/%s' % (registries.target.url, prefix, registries.images['app']['digest']),
                        auth=('ferry', registries.password), verify=registries.tls['ca'], timeout=10)
    assert blob.status_code == 404  # a manifest is not a blob; the layers are checked below
    layer_digest = sha256(registries.images['layers']['base'][0])
    blob = requests.get('%s/v2/%s/app/blobs/%s' % (registries.target.url, prefix, layer_digest),
                        auth=('ferry', registries.password), verify=registries.tls['ca'], timeout=10)
    assert sha256(blob.content) == layer_digest


def test_check_mode_plans_without_writing(registries, prefix):
    image = registries.source.name + '/multi:1'
    result = sync(params(registries, prefix, images=[image]), check_mode=True)
    assert result['changed'] is True
    [planned] = result['images']
    assert planned['status'] == 'would copy'
    assert planned['manifests_copied'] == 3 and planned['blobs_copied'] == 5
    target = open_registry(registries.option('target'), 'target')
    assert target.manifest_head(prefix + '/multi', '1') is None
    assert target.blob_head(prefix + '/multi', registries.images['multi']['digest']) is None
    sync(params(registries, prefix, images=[image]))
    after = sync(params(registries, prefix, images=[image]), check_mode=True)
    assert after['changed'] is False and after['images'][0]['status'] == 'present'


def test_tag_moved_at_source_is_moved_at_target(registries, prefix):
    source = registries.source.name
    sync(params(registries, prefix, images=[source + '/app:1'], mapping=[{'from': source + '/app', 'to': prefix + '/moving'}]))
    result = sync(params(registries, prefix, images=[source + '/app2:1'], mapping=[{'from': source + '/app2', 'to': prefix + '/moving'}]))
    assert result['images'][0]['status'] == 'copied'
    assert result['images'][0]['target'].startswith('%s/%s/moving:1@' % (registries.target.name, prefix))
    assert target_digest(registries, prefix + '/moving', ':1') == registries.images['app2']['digest']
    # back to app:1, whose manifest the repository still has: only the tag moves
    back = sync(params(registries, prefix, images=[source + '/app:1'], mapping=[{'from': source + '/app', 'to': prefix + '/moving'}]))
    assert back['images'][0]['status'] == 'copied'
    assert back['bytes_copied'] == 0 and back['manifests_copied'] == 1
    assert target_digest(registries, prefix + '/moving', ':1') == registries.images['app']['digest']


def test_repositories_with_tag_patterns_and_pages(registries, prefix):
    source = open_registry(registries.option('source'), 'source')
    assert sorted(source.tags('app', page_size=1)) == ['1', '2', '3']
    result = sync(params(registries, prefix, repositories=[{'name': 'app', 'tags': ['[23]']}, {'name': 'multi', 'all_tags': True}]))
    assert sorted(image['source'].rsplit('/', 1)[1] for image in result['images']) == ['app:2', 'app:3', 'multi:1']
    exact = sync(params(registries, prefix, repositories=[{'name': 'app', 'tags': ['1']}]))
    assert [image['source'].rsplit('/', 1)[1] for image in exact['images']] == ['app:1']
    assert exact['images'][0]['status'] == 'copied'  # app:1's manifest is there from app:2; only the tag is new
    assert exact['bytes_copied'] == 0


def test_unknown_image_names_the_reference(registries, prefix):
    with pytest.raises(RegistryError, match=r'1 of 2 images were not copied: source image 127.0.0.1:\d+/app:nope does not exist') as caught:
        sync(params(registries, prefix, images=[registries.source.name + '/app:nope', registries.source.name + '/app:1']))
    statuses = {image['source'].rsplit('/', 1)[1]: image['status'] for image in caught.value.details['images']}
    assert statuses == {'app:nope': 'failed', 'app:1': 'copied'}


def test_wrong_password_names_the_option_not_the_password(registries, prefix):
    wrong = 'not-the-password-' + prefix
    with pytest.raises(RegistryAuthError) as caught:
        sync(params(registries, prefix, images=[registries.source.name + '/app:1'], target=registries.option('target', password=wrong)))
    message = str(caught.value)
    assert 'target registry %s refused the credentials' % registries.target.name in message
    assert 'check target.username and target.password (user "ferry")' in message
    assert wrong not in message and registries.password not in message
    with pytest.raises(RegistryAuthError, match='set source.username and source.password'):
        anonymous = {'url': registries.source.url, 'ca_file': registries.tls['ca']}
        sync(params(registries, prefix, images=[registries.source.name + '/app:1'], source=anonymous))


def test_failed_check_explains_a_failed_listing(registries, prefix):
    """The pings run while the tags are listed: a target refusing the credentials is what the run reports, not the listing."""
    wrong = registries.option('target', password='not-the-password-' + prefix)
    with pytest.raises(RegistryAuthError, match='target registry %s refused the credentials' % registries.target.name):
        sync(params(registries, prefix, repositories=[{'name': 'no-such-repository', 'all_tags': True}], target=wrong))
    with pytest.raises(NotFoundError, match='no-such-repository'):  # when the registries are fine, the listing's own error
        sync(params(registries, prefix, repositories=[{'name': 'no-such-repository', 'all_tags': True}]))


def test_tls_failure_points_at_ca_file(registries, prefix):
    option = registries.option('target')
    del option['ca_file']
    with pytest.raises(RegistryError, match=r'TLS verification of the target registry .* set target.ca_file to the CA bundle'):
        sync(params(registries, prefix, images=[registries.source.name + '/app:1'], target=option))
    plain = registries.option('target', url='http://' + registries.target.name)
    with pytest.raises(RegistryError):
        sync(params(registries, prefix, images=[registries.source.name + '/app:1'], target=plain))
    insecure = registries.option('target', validate_certs=False)
    del insecure['ca_file']
    assert sync(params(registries, prefix, images=[registries.source.name + '/app:1'], target=insecure))['changed'] is True


def test_unreachable_registry(registries, prefix):
    from moto_server import free_port
    with pytest.raises(RegistryError, match=r'cannot reach the target registry 127.0.0.1:\d+ at https://127.0.0.1:\d+: .*Check target.url'):
        sync(params(registries, prefix, images=['x/y:1'], target={'url': '127.0.0.1:%d' % free_port()}, timeout=2))


def test_nothing_to_copy():
    with pytest.raises(RegistryError, match='nothing to copy'):
        sync({'target': {'url': 'localhost:5000'}})


def test_missing_manifest_at_target_is_not_found(registries):
    target = open_registry(registries.option('target'), 'target')
    with pytest.raises(NotFoundError, match='has no image .*/nothing-here:1'):
        target.manifest_get('nothing-here', '1')
    assert client_module.STREAM_CHUNK >= 64 * 1024


def test_tags_of_one_index_in_one_run(registries, prefix):
    """Several tags of an index copied at once: each manifest is written once at a time (docker-registry's storage breaks
    on concurrent writes of one manifest), children once per repository, every tag before the run ends."""
    from registry_server import push  # pylint: disable=import-outside-toplevel
    tags = ['r%d' % number for number in range(6)]
    for tag in tags:
        push(registries.layout, 'multi-1', '%s/%s-src/multi:%s' % (registries.source.name, prefix, tag), registries.certs, registries.creds)
    result = sync(params(registries, prefix, repositories=[{'name': prefix + '-src/multi', 'all_tags': True}], concurrency=4))
    assert sorted(image['status'] for image in result['images']) == ['copied'] * len(tags)
    assert result['manifests_copied'] == 2 + len(tags)
    for tag in tags:
        assert target_digest(registries, '%s/%s-src/multi' % (prefix, prefix), ':' + tag) == registries.images['multi']['digest']


def test_engine_import_leaves_out_what_a_run_with_nothing_to_copy_does_not_need():
    """Ansible compiles a module's code at every run: the engine's import leaves out the copy engine (compiled while the registries
    answer the first requests), cloud credentials, progress reports, and the standard library's heavier HTTP and logging packages."""
    import os  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    code = 'import sys; import ansible_collections.ferry.kube.plugins.module_utils.registry.sync; print("\\n".join(sys.modules))'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    loaded = set(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True).stdout.split())
    engine = 'ansible_collections.ferry.kube.plugins.module_utils.'
    unwanted = [engine + 'registry.replicate', engine + 'registry.cloud', engine + 'pool.progress', 'concurrent.futures', 'logging',
                'http.client', 'email', 'urllib.request', 'encodings.idna', 'requests']
    assert [name for name in unwanted if name in loaded] == []
