"""TLS contexts of a sync's own certificates (agents and the control node), written to a test's directory."""

import os
import socket
import threading

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


def connected(server_context, client_context, server_wrap=None, allowed=('source',)):
    """(client TlsStream, server side) over loopback; the server side as ``server_wrap(conn, context)`` makes it
    (default: Ferry's own accept, of a peer with one of the ``allowed`` roles)."""
    listener = socket.create_server(('127.0.0.1', 0))
    accepted = {}

    def serve():
        conn, _peer = listener.accept()
        conn.settimeout(30)
        accepted['raw'] = conn
        accepted['tls'] = server_wrap(conn, server_context) if server_wrap else wire.accept(conn, server_context, set(allowed))
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client = wire.connect(listener.getsockname(), client_context, timeout=30)
    finally:
        thread.join(30)
        listener.close()
    if 'tls' not in accepted:
        client.close()
        accepted.get('raw', client).close()
        raise ConnectionError('the server side of the test connection failed')
    return client, accepted['tls']
