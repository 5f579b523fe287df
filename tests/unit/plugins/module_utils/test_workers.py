"""How many CPUs the engines size their worker pools for, inside pods with CPU limits."""

import os

from ansible_collections.ferry.kube.plugins.module_utils import workers


def quota_files(tmp_path, monkeypatch, files):
    """Make the cgroup files at their real paths read from ``files`` ({real path: text}) under tmp_path."""
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path in files:
            if files[path] is None:
                raise FileNotFoundError(path)
            target = tmp_path / path.strip('/').replace('/', '_')
            target.write_text(files[path])
            return real_open(str(target), *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(workers, 'open', fake_open, raising=False)


def test_a_cgroup_v2_quota_caps_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(64)))
    quota_files(tmp_path, monkeypatch, {'/sys/fs/cgroup/cpu.max': '150000 100000\n'})
    assert workers.usable_cpus() == 2  # 1.5 CPUs: two workers, each throttled a little


def test_a_cgroup_v1_quota_and_no_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)))
    quota_files(tmp_path, monkeypatch, {'/sys/fs/cgroup/cpu.max': None, '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000\n',
                                        '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n'})
    assert workers.usable_cpus() == 3
    quota_files(tmp_path, monkeypatch, {'/sys/fs/cgroup/cpu.max': 'max 100000\n'})
    assert workers.usable_cpus() == 8  # no limit: the affinity mask decides


def test_the_affinity_mask_narrows_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {3})
    quota_files(tmp_path, monkeypatch, {'/sys/fs/cgroup/cpu.max': '400000 100000\n'})
    assert workers.usable_cpus() == 1
