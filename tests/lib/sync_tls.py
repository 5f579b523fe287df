"""TLS contexts of a sync's own certificates (agents and the control node), written to a test's directory."""

import os

from ansible_collections.ferry.kube.plugins.module_utils.agent import wire


def write_bundle(directory, bundle, prefix):
    paths = {}
    for name, text in bundle.items():
        path = os.path.join(directory, '%s-%s' % (prefix, name))
        with open(path, 'w', encoding='ascii') as handle:
            handle.write(text)
        paths[name] = path
    return paths


def contexts(tmp_path, pki, role, server=False, hosts=('127.0.0.1',)):
    """The server or client context of ``role``'s certificate in ``pki`` (a SyncPKI)."""
    paths = write_bundle(str(tmp_path), pki.bundle(role, '%s-agent' % role, hosts), '%s-%s' % (pki.sync_id, role))
    make = wire.server_context if server else wire.client_context
    return make(paths['ca.crt'], paths['tls.crt'], paths['tls.key'])
