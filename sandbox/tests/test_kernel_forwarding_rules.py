"""The DNAT rules the sandbox asks iptables-restore for, without a kernel: their text, the shares they give
each pod, and that a failed restore leaves the rules recorded as the kernel still has them."""

import pytest

from ferry_sandbox.controllers import kernel_forwarding


@pytest.fixture
def restores(monkeypatch):
    """The rule sets handed to iptables-restore (nothing reaches a kernel); ``fail`` makes the next ones fail."""
    calls = {'sent': [], 'fail': False}

    def restore(chain, rules):
        if calls['fail']:
            raise OSError('iptables-restore failed (exit 4): Permission denied')
        calls['sent'].append((chain, list(rules)))
    monkeypatch.setattr(kernel_forwarding, '_restore', restore)
    return calls


def test_each_of_three_pods_gets_a_third_of_the_connections(restores):
    forwarding = kernel_forwarding.KernelForwarding('FERRY-SBX-1-2-3')
    forwarding.forward('127.2.3.1', 30000, [('127.2.3.4', 8443), ('127.2.3.2', 8443), ('127.2.3.3', 8443)])
    chain, rules = restores['sent'][-1]
    assert chain == 'FERRY-SBX-1-2-3' and len(rules) == 3
    assert all(rule.startswith('-A FERRY-SBX-1-2-3 -d 127.2.3.1/32 -p tcp -m tcp --dport 30000 ') for rule in rules)
    assert [rule.rsplit(' ', 1)[1] for rule in rules] == ['127.2.3.2:8443', '127.2.3.3:8443', '127.2.3.4:8443']
    # the first takes 1/3, the second half of the rest, the last whatever is left: a third each
    assert '--probability 0.3333333333 ' in rules[0] and '--probability 0.5000000000 ' in rules[1] and 'statistic' not in rules[2]


def test_a_failed_restore_is_raised_and_not_recorded_so_a_retry_tries_again(restores):
    forwarding = kernel_forwarding.KernelForwarding('FERRY-SBX-1-2-3')
    forwarding.forward('127.2.3.1', 30000, [('127.2.3.4', 8443)])
    restores['fail'] = True
    with pytest.raises(OSError, match='Permission denied'):
        forwarding.forward('127.2.3.1', 30001, [('127.2.3.5', 8443)])
    assert forwarding.rules == {('127.2.3.1', 30000): [('127.2.3.4', 8443)]}  # what the kernel still has
    with pytest.raises(OSError):
        forwarding.forward('127.2.3.1', 30001, [('127.2.3.5', 8443)])  # not taken for done
    restores['fail'] = False
    forwarding.forward('127.2.3.1', 30001, [('127.2.3.5', 8443)])
    assert len(restores['sent'][-1][1]) == 2
    sent = len(restores['sent'])
    forwarding.forward('127.2.3.1', 30001, [('127.2.3.5', 8443)])
    assert len(restores['sent']) == sent  # unchanged: nothing to send


def test_a_closed_chain_is_not_made_again_by_a_late_update(restores, monkeypatch):
    monkeypatch.setattr(kernel_forwarding, '_remove_chain', lambda chain: None)
    forwarding = kernel_forwarding.KernelForwarding('FERRY-SBX-1-2-3')
    forwarding.close()
    forwarding.forward('127.2.3.1', 30000, [('127.2.3.4', 8443)])
    assert not restores['sent']
