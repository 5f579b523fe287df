"""moto's AWS emulator in server mode on loopback, as a real HTTP peer for boto3."""

import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class MotoServer:
    def __init__(self):
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.process = None

    def __enter__(self):
        binary = os.path.join(os.path.dirname(sys.executable), 'moto_server')
        self.process = subprocess.Popen([binary, '-H', '127.0.0.1', '-p', str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + '/moto-api/', timeout=1)
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError('moto_server exited with %s' % self.process.returncode)
                time.sleep(0.1)
        raise RuntimeError('moto_server did not start on %s' % self.url)

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)
