"""The record of verified replications: what a run with nothing changed may skip, and when it must look at the target anyway."""

import base64
import json
import os
import ssl
import urllib.request

import pytest
from registry_server import push

from ansible_collections.ferry.kube.plugins.module_utils.registry import record as record_module
from ansible_collections.ferry.kube.plugins.module_utils.registry.client import RegistryClient
from ansible_collections.ferry.kube.plugins.module_utils.registry.record import Record, entry_key, record_path
from ansible_collections.ferry.kube.plugins.module_utils.registry.replicate import Replicator
from ansible_collections.ferry.kube.plugins.module_utils.registry.sync import sync


def params(registries, prefix, state_dir, **extra):
    base = {'source': registries.option('source'), 'target': registries.option('target'), 'target_prefix': prefix,
            'state_dir': str(state_dir)}
    base.update(extra)
    return base


@pytest.fixture(name='target_requests')
def target_requests_fixture(monkeypatch):
    """(method, path) of every request made to a target registry."""
    sent = []
    original = RegistryClient.request

    def spy(self, method, path, *args, **kwargs):
        if self.option == 'target':
            sent.append((method, path))
        return original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, 'request', spy)
    return sent


def pick(monkeypatch, repository_suffix):
    """Make the spot check pick the recorded image whose target repository ends with ``repository_suffix``."""
    def chosen(candidates):
        return [c for c in candidates if c[0].target_repository.endswith(repository_suffix)][0]
    monkeypatch.setattr(Replicator, '_pick', staticmethod(chosen))


def delete_manifest(registries, repository, digest):
    request = urllib.request.Request('%s/v2/%s/manifests/%s' % (registries.target.url, repository, digest), method='DELETE')
    request.add_header('Authorization', 'Basic ' + base64.b64encode(registries.creds.encode()).decode())
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=registries.tls['ca']), timeout=10) as answer:
        assert answer.status == 202


# -- the record itself -----------------------------------------------------------------------------

def test_record_round_trip_age_and_merge(tmp_path):
    path = record_path(str(tmp_path / 'state'), 'https://dr.example.com:5000')
    assert os.path.basename(path).startswith('dr.example.com_5000-') and path.endswith('.json')
    key = entry_key('mirror/app', '1', 'sha256:' + 'a' * 64)
    assert key == 'mirror/app:1' and entry_key('mirror/app', None, 'sha256:' + 'a' * 64) == 'mirror/app@sha256:' + 'a' * 64
    entry = {'source': 'src/app', 'digest': 'sha256:1', 'platforms': [], 'target_digest': 'sha256:1', 'blobs': 3, 'bytes': 10}
    first = Record(path, now=1000.0)
    first.put(key, entry)
    first.save()
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == '0o700'
    later = Record(path, now=1000.0 + record_module.MAX_AGE - 1)
    assert later.trusted(key, 'src/app', [], 'sha256:1')['blobs'] == 3
    assert later.trusted(key, 'src/app', [], 'sha256:2') is None  # the source moved
    assert later.trusted(key, 'other/app', [], 'sha256:1') is None  # another source now maps there
    assert later.trusted(key, 'src/app', ['linux/amd64'], 'sha256:1') is None  # another platform filter
    assert Record(path, now=1000.0 + record_module.MAX_AGE).trusted(key, 'src/app', [], 'sha256:1') is None  # too old
    assert Record(path, now=999.0).trusted(key, 'src/app', [], 'sha256:1') is None  # from the future: clock moved back
    # two runs saving one after the other keep each other's entries; a forgotten entry goes
    one, two = Record(path, now=2000.0), Record(path, now=2000.0)
    one.put('mirror/a:1', entry)
    two.put('mirror/b:1', entry)
    two.forget(key)
    one.save()
    two.save()
    assert sorted(Record(path).entries) == ['mirror/a:1', 'mirror/b:1']
    # entries unverified for longer than KEEP are dropped when saving
    old = Record(path, now=2000.0 + record_module.KEEP + 1)
    old.put('mirror/c:1', entry)
    old.save()
    assert sorted(Record(path).entries) == ['mirror/c:1']


def test_record_remembers_the_auth_scheme_of_registries(tmp_path):
    path = str(tmp_path / 'record.json')
    first = Record(path)
    assert first.auth_scheme('https://src:5000') is None
    first.note_auth_scheme('https://src:5000', 'basic')
    first.note_auth_scheme('https://dst:5000', 'basic')
    first.save()
    assert json.loads(open(path, encoding='utf-8').read())['registries'] == {'https://src:5000': {'auth': 'basic'}, 'https://dst:5000': {'auth': 'basic'}}
    unchanged = Record(path)
    unchanged.note_auth_scheme('https://src:5000', 'basic')
    assert not unchanged.registry_updates  # nothing new: a run with nothing changed writes nothing
    # a registry that asks otherwise now is forgotten; another run's entry for a third registry is kept
    one, two = Record(path), Record(path)
    one.note_auth_scheme('https://src:5000', None)
    two.note_auth_scheme('https://third:5000', 'basic')
    two.save()
    one.save()
    again = Record(path)
    assert [again.auth_scheme(url) for url in ('https://src:5000', 'https://dst:5000', 'https://third:5000')] == [None, 'basic', 'basic']


@pytest.mark.parametrize('content', ['not json', '[]', '{"version": 99, "entries": {}}', '{"version": 1, "entries": []}',
                                     '{"version": 1, "entries": {}, "registries": []}'])
def test_unreadable_record_is_empty(tmp_path, content):
    path = tmp_path / 'record.json'
    path.write_text(content)
    record = Record(str(path))
    assert record.entries == {}
    record.put('mirror/a:1', {'source': 's'})
    record.save()
    assert json.loads(path.read_text())['version'] == record_module.RECORD_VERSION


# -- against the registries ----------------------------------------------------------------------------

def test_second_run_trusts_the_record_and_verify_checks_the_target(registries, prefix, tmp_path, target_requests):
    images = [registries.source.name + '/app:1', registries.source.name + '/multi:1']
    first = sync(params(registries, prefix, tmp_path, images=images))
    assert [image['status'] for image in first['images']] == ['copied', 'copied']
    assert not any(image['from_record'] for image in first['images'])
    verified = sync(params(registries, prefix, tmp_path, images=images, verify=True))
    assert [image['status'] for image in verified['images']] == ['present', 'present']
    del target_requests[:]
    again = sync(params(registries, prefix, tmp_path, images=images))
    assert again['changed'] is False and [image['from_record'] for image in again['images']] == [True, True]
    # the target was asked for its /v2/ (the ping) and one spot-checked manifest, nothing else
    assert [path for method, path in target_requests if path != '/v2/'] in (
        ['/v2/%s/app/manifests/1' % prefix], ['/v2/%s/multi/manifests/1' % prefix])
    # the same figures as when the target was asked
    for key in ('blobs_skipped', 'bytes_skipped', 'digests', 'rewrites'):
        assert again[key] == verified[key]
    for fresh, recorded in zip(verified['images'], again['images']):
        assert {k: v for k, v in fresh.items() if k != 'from_record'} == {k: v for k, v in recorded.items() if k != 'from_record'}
    assert again['blobs_skipped'] == 4 + 6  # app: config and 3 layers; multi: counted per child
    del target_requests[:]
    checked = sync(params(registries, prefix, tmp_path, images=images, verify=True))
    assert not any(image['from_record'] for image in checked['images'])
    assert ('HEAD', '/v2/%s/app/manifests/1' % prefix) in target_requests and ('HEAD', '/v2/%s/multi/manifests/1' % prefix) in target_requests


def test_second_run_sends_credentials_without_waiting_for_a_challenge(registries, prefix, tmp_path, monkeypatch):
    images = [registries.source.name + '/app:1']
    sync(params(registries, prefix, tmp_path, images=images))
    record = Record(record_path(str(tmp_path), registries.target.url))
    assert record.auth_scheme(registries.source.url) == record.auth_scheme(registries.target.url) == 'basic'
    statuses = []
    original = RegistryClient.raw_request

    def spy(self, method, url, **kwargs):
        response = original(self, method, url, **kwargs)
        statuses.append(response.status_code)
        return response

    monkeypatch.setattr(RegistryClient, 'raw_request', spy)
    again = sync(params(registries, prefix, tmp_path, images=images))
    assert again['images'][0]['from_record'] is True
    assert statuses and 401 not in statuses  # the pings, the source HEAD and the spot check, each answered at once
    # without a record, the registries are asked first
    del statuses[:]
    sync(params(registries, prefix, tmp_path / 'other', images=images))
    assert statuses.count(401) == 2


def test_manifest_deleted_at_the_target_is_copied_again_with_verify(registries, prefix, tmp_path, monkeypatch):
    images = [registries.source.name + '/app:1', registries.source.name + '/app2:1']
    sync(params(registries, prefix, tmp_path, images=images))
    delete_manifest(registries, prefix + '/app2', registries.images['app2']['digest'])
    pick(monkeypatch, '/app')  # the spot check looks at the image still there
    blind = sync(params(registries, prefix, tmp_path, images=images))
    assert [image['status'] for image in blind['images']] == ['present', 'present']  # the trade-off: the record is trusted
    repaired = sync(params(registries, prefix, tmp_path, images=images, verify=True))
    by_name = {image['source'].rsplit('/', 1)[1]: image for image in repaired['images']}
    assert by_name['app:1']['status'] == 'present'
    assert by_name['app2:1']['status'] == 'copied' and by_name['app2:1']['manifests_copied'] == 1
    assert by_name['app2:1']['bytes_copied'] == 0  # its blobs were still there
    client = RegistryClient(registries.target.url, option='target', ca_file=registries.tls['ca'])
    client.set_credentials(client.credentials.__class__('ferry', registries.password))
    assert client.manifest_head(prefix + '/app2', '1')[0] == registries.images['app2']['digest']


def test_spot_check_that_fails_makes_every_image_checked(registries, prefix, tmp_path, monkeypatch):
    images = [registries.source.name + '/app:1', registries.source.name + '/app2:1']
    sync(params(registries, prefix, tmp_path, images=images))
    delete_manifest(registries, prefix + '/app2', registries.images['app2']['digest'])
    pick(monkeypatch, '/app2')  # as a wiped or rebuilt target registry would show
    result = sync(params(registries, prefix, tmp_path, images=images))
    by_name = {image['source'].rsplit('/', 1)[1]: image for image in result['images']}
    assert not any(image['from_record'] for image in result['images'])
    assert by_name['app:1']['status'] == 'present' and by_name['app2:1']['status'] == 'copied'


def test_tag_moved_at_the_source_is_copied_despite_the_record(registries, prefix, tmp_path):
    source = '%s/%s-src/moving:1' % (registries.source.name, prefix)
    push(registries.layout, 'app-1', source, registries.certs, registries.creds)
    first = sync(params(registries, prefix, tmp_path, images=[source]))
    assert first['images'][0]['target_digest'] == registries.images['app']['digest']
    push(registries.layout, 'app2-1', source, registries.certs, registries.creds)
    moved = sync(params(registries, prefix, tmp_path, images=[source]))
    [image] = moved['images']
    assert image['status'] == 'copied' and not image['from_record']
    assert image['target_digest'] == registries.images['app2']['digest']
    again = sync(params(registries, prefix, tmp_path, images=[source]))
    assert again['images'][0]['from_record'] and again['images'][0]['target_digest'] == registries.images['app2']['digest']


def test_stale_record_is_checked_at_the_target(registries, prefix, tmp_path):
    image = registries.source.name + '/app:1'
    sync(params(registries, prefix, tmp_path, images=[image]))
    [path] = [os.path.join(tmp_path, name) for name in os.listdir(tmp_path)]
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle)
    for entry in data['entries'].values():
        entry['verified'] -= record_module.MAX_AGE + 1
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
    result = sync(params(registries, prefix, tmp_path, images=[image]))
    assert result['images'][0]['status'] == 'present' and not result['images'][0]['from_record']
    refreshed = Record(path)
    assert all(record_module.time.time() - entry['verified'] < 60 for entry in refreshed.entries.values())


def test_check_mode_reads_the_record_and_does_not_write_it(registries, prefix, tmp_path):
    image = registries.source.name + '/app:1'
    planned = sync(params(registries, prefix, tmp_path, images=[image]), check_mode=True)
    assert planned['images'][0]['status'] == 'would copy' and os.listdir(tmp_path) == []
    sync(params(registries, prefix, tmp_path, images=[image]))
    checked = sync(params(registries, prefix, tmp_path, images=[image]), check_mode=True)
    assert checked['images'][0]['from_record'] and checked['changed'] is False


def test_record_that_cannot_be_saved_is_a_warning(registries, prefix, tmp_path):
    blocked = tmp_path / 'a-file'
    blocked.write_text('')
    result = sync(params(registries, prefix, blocked, images=[registries.source.name + '/app:1']))
    assert result['images'][0]['status'] == 'copied'
    assert 'could not be saved' in result['warnings'][0]
