"""The source agent's read-ahead window over the files it is about to read."""

from ansible_collections.ferry.kube.plugins.module_utils.agent import tree

MIB = 1024 * 1024


def asked_while_reading(monkeypatch, sizes, window):
    """{file being read: files asked for by then} as a reader goes through files of ``sizes``."""
    asked = []
    monkeypatch.setattr(tree, 'read_ahead', asked.append)
    reader = tree.ReadAhead(['f%d' % number for number in range(len(sizes))], sizes, window=window)
    seen = {}
    for index in range(len(sizes)):
        reader.reached(index)
        seen[index] = list(asked)
    return seen


def test_the_files_ahead_are_asked_for_until_the_window_is_full_and_each_once(monkeypatch):
    seen = asked_while_reading(monkeypatch, [4 * MIB] * 6, window=10 * MIB)
    assert seen[0] == ['f0', 'f1', 'f2']  # f0 is being read, f1 and f2 start within 10 MiB of it
    assert seen[1] == ['f0', 'f1', 'f2', 'f3']
    assert seen[5] == ['f%d' % number for number in range(6)]  # never asked twice


def test_a_big_file_counts_for_its_head_only(monkeypatch):
    seen = asked_while_reading(monkeypatch, [1 * MIB, 64 * MIB, 1 * MIB, 1 * MIB], window=12 * MIB)
    assert seen[0] == ['f0', 'f1', 'f2', 'f3']  # one request reads 8 MiB of the big file at most: the files after it fit


def test_a_file_beyond_the_window_is_asked_for_when_it_is_reached(monkeypatch):
    seen = asked_while_reading(monkeypatch, [4 * MIB] * 3, window=0)
    assert seen == {0: ['f0'], 1: ['f0', 'f1'], 2: ['f0', 'f1', 'f2']}


def test_many_small_files_fill_the_window(monkeypatch):
    seen = asked_while_reading(monkeypatch, [64 * 1024] * 1000, window=1 * MIB)
    assert len(seen[0]) == 16  # 16 files of 64 KiB start within 1 MiB of the first
    assert len(seen[500]) == 516
