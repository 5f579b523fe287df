"""ansible-builder accepts the collection's dependency metadata and the AWX EE definition."""

import glob
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)


def run(*argv, cwd=None):
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def build_and_install(tmp_path):
    run(os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', ROOT, '--output-path', str(tmp_path), '--force')
    tarball = glob.glob(str(tmp_path / 'ferry-kube-*.tar.gz'))[0]
    run(os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', tarball, '-p', str(tmp_path / 'collections'), '--force')
    return tarball


def test_introspect_finds_python_and_system_dependencies(tmp_path):
    build_and_install(tmp_path)
    out = yaml.safe_load(run(os.path.join(BIN, 'ansible-builder'), 'introspect', '--sanitize', str(tmp_path / 'collections')))
    python = ' '.join(out['python']) if isinstance(out['python'], list) else str(out['python'])
    for package in ('kubernetes', 'boto3', 'cryptography', 'zstandard'):
        assert package in python
    system = out['system']
    assert any(line.startswith('openssl ') for line in system)
    # Test-only tools carry bindep's "test" profile, which EE builds do not install.
    assert all('[test ' in line for line in system if line.split()[0] in ('restic', 'skopeo', 'docker-registry', 'rsync'))


def test_awx_definition_creates_a_build_context(tmp_path):
    tarball = build_and_install(tmp_path)
    context = tmp_path / 'context'
    awx = tmp_path / 'awx'
    shutil.copytree(os.path.join(ROOT, 'awx'), awx)
    shutil.copy(tarball, awx)
    run(os.path.join(BIN, 'ansible-builder'), 'create', '-f', str(awx / 'execution-environment.yml'), '-c', str(context))
    containerfile = next((context / name).read_text() for name in ('Containerfile', 'Dockerfile') if (context / name).exists())
    assert 'ansible-galaxy' in containerfile and 'quay.io/ansible/awx-ee' in containerfile
    assert glob.glob(str(context / '_build' / 'collections' / 'ferry-kube-*.tar.gz'))
