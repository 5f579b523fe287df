"""Debian's docker-registry on loopback (TLS, htpasswd), OCI image layouts built here, and skopeo to push and inspect.

Shared by the registry_sync tests and bench/registry. scripts/setup.d/registry.sh installs
docker-registry and skopeo.
"""

import gzip
import hashlib
import io
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import tarfile
import time

from moto_server import free_port

REGISTRY_BINARY = shutil.which('docker-registry') or '/usr/bin/docker-registry'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'


def write_htpasswd(path, users):
    """An htpasswd file with bcrypt hashes (the only kind docker-registry accepts)."""
    import bcrypt  # pylint: disable=import-outside-toplevel
    with open(path, 'w', encoding='ascii') as handle:
        for user, password in users.items():
            handle.write('%s:%s\n' % (user, bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()))


class DockerRegistry:
    """One docker-registry process on 127.0.0.1:<free port>, with its own storage, TLS and auth; a context manager."""

    def __init__(self, directory, tls=None, htpasswd=None, auth=None, name='registry'):
        self.directory = directory
        self.port = free_port()
        self.name = '127.0.0.1:%d' % self.port
        self.url = ('https://' if tls else 'http://') + self.name
        self.process = None
        self.log_path = os.path.join(directory, name + '.log')
        storage = os.path.join(directory, 'storage')
        os.makedirs(storage, exist_ok=True)
        config = {
            'version': 0.1,
            'log': {'level': 'error', 'accesslog': {'disabled': True}},
            'storage': {'filesystem': {'rootdirectory': storage}, 'delete': {'enabled': True}, 'cache': {'blobdescriptor': 'inmemory'}},
            'http': {'addr': self.name, 'secret': secrets.token_hex(16)},
        }
        if tls:
            config['http']['tls'] = {'certificate': tls['cert'], 'key': tls['key']}
        if htpasswd:
            config['auth'] = {'htpasswd': {'realm': 'ferry-test', 'path': htpasswd}}
        if auth:
            config['auth'] = auth
        self.config_path = os.path.join(directory, name + '.json')
        with open(self.config_path, 'w', encoding='utf-8') as handle:
            json.dump(config, handle)

    def start(self):
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen([REGISTRY_BINARY, 'serve', self.config_path], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('docker-registry exited with %s: %s' % (self.process.returncode, self.output()))
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError('docker-registry did not listen on %s: %s' % (self.name, self.output()))

    def output(self):
        with open(self.log_path, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')[-3000:]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def cert_dir(directory, ca_path):
    """A directory skopeo takes as --src-cert-dir/--dest-cert-dir (CA roots are its *.crt files)."""
    os.makedirs(directory, exist_ok=True)
    shutil.copy(ca_path, os.path.join(directory, 'ca.crt'))
    return directory


def random_bytes(size, seed):
    return random.Random(seed).randbytes(size)


def layer(files, compress=True):
    """A layer tarball of ``{path: bytes}``; (blob bytes, media type)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    if not compress:
        return raw.getvalue(), LAYER_TAR
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0), LAYER_GZIP


class OCILayout:
    """An OCI image layout directory, written blob by blob; tags go in index.json as ref.name annotations."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, 'blobs', 'sha256'), exist_ok=True)
        with open(os.path.join(path, 'oci-layout'), 'w', encoding='ascii') as handle:
            json.dump({'imageLayoutVersion': '1.0.0'}, handle)
        self.refs = []
        self._save()

    def blob(self, data, media_type):
        digest = 'sha256:' + hashlib.sha256(data).hexdigest()
        path = os.path.join(self.path, 'blobs', 'sha256', digest.split(':', 1)[1])
        if not os.path.exists(path):
            with open(path, 'wb') as handle:
                handle.write(data)
        return {'mediaType': media_type, 'digest': digest, 'size': len(data)}

    def image(self, layers, os_name='linux', architecture='amd64', variant=None, label='ferry'):
        """An image manifest of ``layers`` [(bytes, media type)]; returns its descriptor (with platform)."""
        descriptors = [self.blob(data, media_type) for data, media_type in layers]
        diff_ids = ['sha256:' + hashlib.sha256(gzip.decompress(data) if media_type == LAYER_GZIP else data).hexdigest()
                    for data, media_type in layers]
        config = {'architecture': architecture, 'os': os_name, 'config': {'Labels': {'ferry.test': label}},
                  'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}
        if variant:
            config['variant'] = variant
        config_descriptor = self.blob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
        manifest = {'schemaVersion': 2, 'mediaType': OCI_MANIFEST, 'config': config_descriptor, 'layers': descriptors}
        descriptor = self.blob(json.dumps(manifest, indent=2).encode(), OCI_MANIFEST)
        descriptor['platform'] = {'architecture': architecture, 'os': os_name}
        if variant:
            descriptor['platform']['variant'] = variant
        return descriptor

    def index(self, manifests):
        document = {'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': manifests}
        return self.blob(json.dumps(document, indent=2).encode(), OCI_INDEX)

    def tag(self, descriptor, name):
        entry = {k: v for k, v in descriptor.items() if k != 'platform'}
        entry['annotations'] = {'org.opencontainers.image.ref.name': name}
        self.refs = [r for r in self.refs if r['annotations']['org.opencontainers.image.ref.name'] != name] + [entry]
        self._save()
        return descriptor['digest']

    def _save(self):
        with open(os.path.join(self.path, 'index.json'), 'w', encoding='utf-8') as handle:
            json.dump({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': self.refs}, handle)


def skopeo(*args, timeout=300):
    proc = subprocess.run(['skopeo', '--insecure-policy'] + list(args), capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError('skopeo %s failed: %s' % (' '.join(args[:2]), proc.stderr.decode('utf-8', 'replace')[-2000:]))
    return proc.stdout


def push(layout, tag, destination, certs, creds):
    """Copy ``layout:tag`` (every platform of an index) to ``docker://destination``."""
    skopeo('copy', '--all', '--dest-cert-dir', certs, '--dest-creds', creds, 'oci:%s:%s' % (layout.path, tag), 'docker://' + destination)


def inspect_raw(reference, certs, creds):
    """The manifest bytes skopeo reads for ``docker://reference``."""
    return skopeo('inspect', '--raw', '--cert-dir', certs, '--creds', creds, 'docker://' + reference)
