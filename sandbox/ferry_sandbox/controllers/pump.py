"""One proxied TCP connection of a Service, pumped both ways by a process of its own.

    python pump.py CLIENT_FD UPSTREAM_FD

Used where the sandbox cannot forward in the kernel (kernel_forwarding.py: not root, no iptables, or
FERRY_SANDBOX_PROXY=userspace).
A cluster's kube-proxy forwards in the kernel. The sandbox's proxy runs in user space, and in the
API server's process its threads waited for the interpreter lock at every hop (measured: a staged
restore of 1.4 GB took 13 s through it, 8.7 s straight to the pod). Here two threads do nothing
but move bytes, with splice(2) where there is one, so the data never enters this process.
"""

import os
import socket
import sys
import threading

PIPE_BYTES = 1 << 20


def pump(source, sink):
    try:
        if hasattr(os, 'splice'):
            _splice(source.fileno(), sink.fileno())
        else:
            _copy(source, sink)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _splice(source, sink):
    read_end, write_end = os.pipe()
    try:
        try:
            import fcntl  # pylint: disable=import-outside-toplevel
            fcntl.fcntl(write_end, getattr(fcntl, 'F_SETPIPE_SZ', 1031), PIPE_BYTES)
        except OSError:
            pass  # the default pipe size (64 KiB) still works
        while True:
            count = os.splice(source, write_end, PIPE_BYTES)
            if not count:
                return
            while count:
                count -= os.splice(read_end, sink, count)
    finally:
        os.close(read_end)
        os.close(write_end)


def _copy(source, sink):
    buffer = bytearray(PIPE_BYTES)
    view = memoryview(buffer)
    while True:
        count = source.recv_into(buffer)
        if not count:
            return
        sink.sendall(view[:count])


def main(argv):
    client, upstream = (socket.socket(fileno=int(fd)) for fd in argv[:2])
    other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    other.start()
    pump(client, upstream)
    other.join()
    client.close()
    upstream.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
