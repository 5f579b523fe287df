"""NodePort and LoadBalancer addresses forwarded in the kernel, as kube-proxy's iptables mode does.

A cluster's kube-proxy rewrites a connection to a Service's node port (DNAT) before any socket sees
it, so the bytes of a sync never pass through a process of the node. The sandbox's userspace proxy
(pump.py) cannot do that: even with splice(2), every byte crossed a second loopback TCP connection,
which on the sync benchmark cost about 2 CPU-seconds and 0.6-0.9 s of a 1.5 GB staged restore that
a real cluster does not pay. So, where the sandbox may change the nat table (root, with iptables),
each exposed address gets DNAT rules in a chain of its cluster's own, one rule per ready endpoint,
chosen at random per connection as kube-proxy's rules do. The userspace listener stays:
it holds the port and refuses what reaches it, as kube-proxy's REJECT rule refuses a Service without
endpoints; a client retries, as it must on a cluster, where kube-proxy's rules follow a pod's
readiness by a moment too. It must not carry such a connection: on our kernel (6.18) a DNAT rule set
for an address while a connection to it is open resets that connection (seen in a benchmark run,
where the sink accepted a pumped connection and the source's end went dead; reproduced with two
sockets and one rule, also with the nat chain hooked before the connection opened). An address whose
rules could not be set is left to the userspace proxy for good; without the kernel it carries them all.

``FERRY_SANDBOX_PROXY=userspace`` turns this off. A chain whose sandbox process is gone (killed) is
removed by the next sandbox that starts (liveness is the process id: sandboxes in separate PID
namespaces that share one network namespace are not supported).
"""

import os
import re
import shutil
import subprocess
import threading

CHAIN_PREFIX = 'FERRY-SBX-'
_CHAIN = re.compile(r'^-N (%s(\d+)-[\d-]+)$' % re.escape(CHAIN_PREFIX))


def _iptables(*args, check=True):
    return subprocess.run(['iptables', '-w', '-t', 'nat'] + list(args), check=check, capture_output=True, text=True, timeout=30)


def _restore(chain, rules):
    """Replace ``chain``'s rules with ``rules`` in one transaction (--noflush keeps every other chain)."""
    text = '*nat\n:%s - [0:0]\n%s\nCOMMIT\n' % (chain, '\n'.join(rules))
    done = subprocess.run(['iptables-restore', '-w', '--noflush'], input=text, check=False, capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise OSError('iptables-restore failed (exit %d): %s' % (done.returncode, done.stderr.strip() or 'no message'))


def _remove_chain(chain):
    """Best effort: unhook, flush and delete ``chain``."""
    for args in (('-D', 'OUTPUT', '-j', chain), ('-F', chain), ('-X', chain)):
        try:
            _iptables(*args, check=False)
        except (OSError, subprocess.SubprocessError):
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale():
    """Remove the chains of sandbox processes that are gone (hooked into OUTPUT or not)."""
    for line in _iptables('-S', check=False).stdout.splitlines():
        match = _CHAIN.match(line.strip())
        if match and not _alive(int(match.group(2))):
            _remove_chain(match.group(1))


def available():
    """Whether the sandbox should try the kernel (``KernelForwarding.create`` tells whether it may)."""
    return (os.environ.get('FERRY_SANDBOX_PROXY', 'kernel') != 'userspace' and os.geteuid() == 0
            and shutil.which('iptables') is not None and shutil.which('iptables-restore') is not None)


def chains_of(pid):
    """The chains a sandbox process holds now (what a benchmark reports, whatever ``available`` says)."""
    listing = _iptables('-S', check=False).stdout if available() else ''
    return [match.group(1) for match in map(_CHAIN.match, listing.splitlines()) if match and int(match.group(2)) == pid]


class KernelForwarding:
    """The DNAT rules of one sandbox cluster: exposed (address, port) -> the ready endpoints' (ip, port)."""

    def __init__(self, chain):
        self.chain = chain
        self.rules = {}  # what the kernel holds: changed only after a restore succeeded
        self.lock = threading.Lock()
        self.closed = False

    @classmethod
    def create(cls, tag):
        """A chain hooked into the nat table's OUTPUT, or None where the sandbox may not (or should not) use one."""
        if not available():
            return None
        chain = '%s%d-%s' % (CHAIN_PREFIX, os.getpid(), tag)
        try:
            sweep_stale()
            _restore(chain, [])
            _iptables('-I', 'OUTPUT', '-j', chain)
        except (OSError, subprocess.SubprocessError):
            _remove_chain(chain)
            return None
        return cls(chain)

    def forward(self, address, port, endpoints):
        """Send new connections to (address, port) to one of ``endpoints``; none: leave them to the listener.
        Raises OSError (the kernel's rules unchanged) when iptables-restore fails."""
        key = (address, int(port))
        wanted = sorted(endpoints)
        with self.lock:
            if self.closed or self.rules.get(key, []) == wanted:
                return  # (closed: a late reconcile must not make the chain again)
            rules = dict(self.rules)
            if wanted:
                rules[key] = wanted
            else:
                rules.pop(key, None)
            _restore(self.chain, self._lines(rules))
            self.rules = rules

    def _lines(self, rules):
        lines = []
        for (address, port), endpoints in sorted(rules.items()):
            for index, (ip, target) in enumerate(endpoints):
                rule = '-A %s -d %s/32 -p tcp -m tcp --dport %d' % (self.chain, address, port)
                left = len(endpoints) - index
                if left > 1:  # one of ``left`` equally: the rules after this one share the rest
                    rule += ' -m statistic --mode random --probability %.10f' % (1.0 / left)
                lines.append('%s -j DNAT --to-destination %s:%d' % (rule, ip, target))
        return lines

    def close(self):
        with self.lock:
            self.closed = True
            self.rules = {}
            _remove_chain(self.chain)
