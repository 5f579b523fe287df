"""Fixtures of the provisioning tests: moto's server (one per session) and a scripted clock."""

import pytest

from moto_server import MotoServer
from provisioning_helpers import FakeTime


@pytest.fixture(name='moto', scope='session')
def moto_fixture():
    with MotoServer() as server:
        yield server


@pytest.fixture(name='fake_time')
def fake_time_fixture():
    return FakeTime()
