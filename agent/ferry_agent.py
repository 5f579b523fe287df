"""Ferry's agent: runs in transient pods next to the data.

    ferry_agent.py sink --listen 127.1.2.3:8443 --root /data --state /state --tls /etc/ferry/tls [--once]
    ferry_agent.py push --root /snapshot --to host:port --tls /etc/ferry/tls --sync-id ID
    ferry_agent.py stage --listen 127.1.2.3:8443 --tls /etc/ferry/tls [--once]
    ferry_agent.py pool backup|restore|check|... LOCATION ...      (the storage-pool engine, docs/pool.md)

``stage`` serves staged syncs: the control node connects, sends a backup or restore job and
serves the pool's storage over the same connection (plugins/module_utils/agent/relay.py).

It speaks Ferry's transfer protocol over TLS 1.3 with the per-sync certificates the control node
put in its Secret (ca.crt, tls.crt, tls.key); a sink accepts only source agents and the control
node of the same sync. Progress and the result are JSON lines on stdout, which the control node
reads from the pod's log.
"""

import argparse
import json
import os
import socket
import sys
import time
import traceback

from ansible_collections.ferry.kube.plugins.module_utils.agent import mover, wire

HANDSHAKE_TIMEOUT = 30.0


def emit(record):
    sys.stdout.write(json.dumps(record, sort_keys=True) + '\n')
    sys.stdout.flush()


def tls_files(directory):
    files = [os.path.join(directory, name) for name in ('ca.crt', 'tls.crt', 'tls.key')]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise SystemExit('TLS material missing: %s (the control node mounts it from the sync Secret)' % ', '.join(missing))
    return files


def address(text):
    host, _sep, port = text.rpartition(':')
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError('%r is not HOST:PORT' % text)
    return host, int(port)


class Listener:
    """TLS connections of peers with one of ``roles``; others are refused and logged."""

    def __init__(self, args, roles):
        self.roles = roles
        self.context = wire.server_context(*tls_files(args.tls))
        self.socket = socket.create_server(args.listen, reuse_port=False)
        emit({'event': 'listening', 'address': '%s:%d' % self.socket.getsockname()[:2]})

    def __iter__(self):
        while True:
            yield self.accept()

    def accept(self, timeout=None):
        """The next accepted connection; socket.timeout after ``timeout`` seconds without one."""
        self.socket.settimeout(timeout)
        while True:
            conn, peer = self.socket.accept()
            conn.settimeout(HANDSHAKE_TIMEOUT)  # a peer that connects and says nothing does not hold the listener
            try:
                tls = wire.accept(conn, self.context, self.roles)
                tls.settimeout(None)
            except (OSError, wire.ProtocolError) as exc:
                emit({'event': 'refused', 'peer': peer[0], 'reason': str(exc)})
                conn.close()
                continue
            return tls


def cmd_sink(args):
    for tls in Listener(args, {'source', 'control'}):
        channel = wire.Channel(tls)
        try:
            stats = mover.Sink(args.root, args.state, channel).run()
            emit(dict(stats, event='done'))
            if args.once:
                return 0
        except (EOFError, ConnectionError, wire.ProtocolError) as exc:
            emit({'event': 'interrupted', 'reason': str(exc)})  # the source reconnects and resumes
        except Exception as exc:  # pylint: disable=broad-except
            emit({'event': 'error', 'reason': '%s: %s' % (exc.__class__.__name__, exc), 'trace': traceback.format_exc()[-2000:]})
            try:
                channel.send(mover.ERROR, {'message': str(exc)})
            except OSError:
                pass
        finally:
            tls.close()
    return 0  # not reached: the listener serves until the pod is deleted


def cmd_stage(args):
    # the pool engine is imported only here: a passthrough agent starts without it
    from ansible_collections.ferry.kube.plugins.module_utils.agent import relay  # pylint: disable=import-outside-toplevel
    listener = Listener(args, {'control'})

    def lane(timeout):  # the connections a job asks for as lanes of its worker processes
        try:
            return wire.Channel(listener.accept(timeout))
        except socket.timeout:
            raise relay.RelayError('the control node opened no lane in %.0f s' % timeout) from None

    for tls in listener:
        try:
            result = relay.run_job(wire.Channel(tls), progress_interval=args.progress_interval, accept=lane)
            emit({'event': 'done' if result is not None else 'failed'})
            if args.once and result is not None:
                return 0
        except (EOFError, ConnectionError, OSError, wire.ProtocolError) as exc:
            emit({'event': 'interrupted', 'reason': str(exc)})  # a rerun of the sync reuses what the pool's checkpoints kept
        finally:
            tls.close()
    return 0  # not reached: the listener serves until the pod is deleted


def cmd_push(args):
    context = wire.client_context(*tls_files(args.tls))
    deadline = time.monotonic() + args.connect_timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            tls = wire.connect(args.to, context)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                emit({'event': 'error', 'reason': 'cannot reach the sink at %s:%d: %s' % (args.to[0], args.to[1], exc)})
                return 2
            time.sleep(min(2.0, 0.2 * attempt))
    progress = mover.Progress(callback=emit, interval=args.progress_interval)  # the total comes from the source's walk
    try:
        result = mover.Source(args.root, wire.Channel(tls, level=args.level, batch=True), args.sync_id, progress).run()
    except (mover.SyncError, wire.ProtocolError, EOFError, OSError) as exc:
        emit({'event': 'error', 'reason': str(exc)})
        return 1
    finally:
        tls.close()
    emit(dict(result, event='result'))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['pool']:  # the same engine and command line as the control node's bin/ferry pool
        from ansible_collections.ferry.kube.plugins.module_utils.pool import cli  # pylint: disable=import-outside-toplevel
        return cli.main(argv[1:])
    parser = argparse.ArgumentParser(prog='ferry_agent.py', description="Ferry's data-mover agent")
    sub = parser.add_subparsers(dest='command', required=True)
    sink = sub.add_parser('sink', help='receive a volume')
    sink.add_argument('--listen', type=address, required=True)
    sink.add_argument('--root', required=True)
    sink.add_argument('--state', required=True)
    sink.add_argument('--tls', required=True)
    sink.add_argument('--once', action='store_true', help='exit after one complete sync')
    push = sub.add_parser('push', help='send a volume to a sink')
    push.add_argument('--root', required=True)
    push.add_argument('--to', type=address, required=True)
    push.add_argument('--tls', required=True)
    push.add_argument('--sync-id', required=True)
    push.add_argument('--level', type=int, default=1, help='zstd level on the wire')
    push.add_argument('--connect-timeout', type=float, default=120)
    push.add_argument('--progress-interval', type=float, default=2.0)
    stage = sub.add_parser('stage', help='run staged-sync jobs for the control node')
    stage.add_argument('--listen', type=address, required=True)
    stage.add_argument('--tls', required=True)
    stage.add_argument('--once', action='store_true', help='exit after one job that completed')
    stage.add_argument('--progress-interval', type=float, default=2.0)
    args = parser.parse_args(argv)
    return {'sink': cmd_sink, 'push': cmd_push, 'stage': cmd_stage}[args.command](args)


if __name__ == '__main__':
    sys.exit(main())
