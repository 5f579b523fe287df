"""Two real registries on loopback (Debian's docker-registry, TLS with a test CA, htpasswd auth), the source filled
with images built here as an OCI layout and pushed with skopeo. Both live for the session; each test copies
into its own target repositories, so tests do not see each other's copies.
"""

import os
import re
import secrets
import shutil

import pytest
from registry_server import DockerRegistry, OCILayout, cert_dir, layer, push, random_bytes, write_htpasswd
from tls import make_ca_and_server

USER = 'ferry'


def _require_tools():
    missing = [tool for tool in ('docker-registry', 'skopeo') if not shutil.which(tool)]
    if missing:
        pytest.fail('%s missing: run scripts/setup.d/registry.sh (make setup does)' % ', '.join(missing), pytrace=False)


class Registries:
    """The pair, their CA and credentials, and the images pushed to the source."""

    def __init__(self, directory):
        self.directory = directory
        self.tls = make_ca_and_server(directory, prefix='registry')
        self.certs = cert_dir(os.path.join(directory, 'certs'), self.tls['ca'])
        self.password = 'pw-' + secrets.token_hex(12)
        self.creds = '%s:%s' % (USER, self.password)
        htpasswd = os.path.join(directory, 'htpasswd')
        write_htpasswd(htpasswd, {USER: self.password})
        self.servers = {}
        for role in ('source', 'target'):
            path = os.path.join(directory, role)
            os.makedirs(path)
            self.servers[role] = DockerRegistry(path, tls=self.tls, htpasswd=htpasswd, name=role)
        self.source = self.servers['source']
        self.target = self.servers['target']
        self.images = {}

    def option(self, role, **overrides):
        """The module's ``source``/``target`` option for a registry."""
        config = {'url': self.servers[role].url, 'username': USER, 'password': self.password, 'ca_file': self.tls['ca']}
        config.update(overrides)
        return config

    def fill(self):
        """Build and push: app:1 (3 layers), app2:1 (shares app's base layer), multi:1 (index of amd64 and arm64), app:2/3 tags."""
        layout = OCILayout(os.path.join(self.directory, 'layout'))
        base = layer({'base/data': random_bytes(200 * 1024, 'base')})
        mid = layer({'app/mid': random_bytes(100 * 1024, 'mid')})
        top = layer({'app/top': random_bytes(50 * 1024, 'top')})
        app = layout.image([base, mid, top], label='app')
        app2 = layout.image([base, layer({'app2/own': random_bytes(80 * 1024, 'app2')})], label='app2')
        amd64 = layout.image([base, layer({'multi/amd64': random_bytes(60 * 1024, 'amd64')})], label='multi-amd64')
        arm64 = layout.image([base, layer({'multi/arm64': random_bytes(70 * 1024, 'arm64')})], architecture='arm64', variant='v8',
                             label='multi-arm64')
        multi = layout.index([amd64, arm64])
        for name, descriptor in (('app-1', app), ('app2-1', app2), ('multi-1', multi)):
            layout.tag(descriptor, name)
        pushes = [('app-1', 'app:1'), ('app-1', 'app:2'), ('app-1', 'app:3'), ('app2-1', 'app2:1'), ('multi-1', 'multi:1'),
                  ('app-1', 'team/app:1')]
        for tag, destination in pushes:
            push(layout, tag, '%s/%s' % (self.source.name, destination), self.certs, self.creds)
        self.images = {'app': app, 'app2': app2, 'multi': multi, 'amd64': amd64, 'arm64': arm64,
                       'layers': {'base': base, 'mid': mid, 'top': top}}
        self.layout = layout


@pytest.fixture(scope='session')
def registries(tmp_path_factory):
    _require_tools()
    pair = Registries(str(tmp_path_factory.mktemp('registries')))
    try:
        pair.source.start()
        pair.target.start()
        pair.fill()
        yield pair
    finally:
        for server in pair.servers.values():
            server.stop()


@pytest.fixture
def prefix(request):
    """A target repository prefix of this test's own."""
    return re.sub(r'[^a-z0-9]+', '-', request.node.name.lower()).strip('-')[:60]
