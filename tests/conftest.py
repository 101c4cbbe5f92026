"""Shared fixtures: one real Kafka broker per test session, fresh topics and state per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream.config import Config, load_config
from tests.support import TEST_CONFIG, fresh_config



@pytest.fixture(scope="session")
def test_config() -> Config:
    """The suite's config (its own broker ports), ignoring RIVERBED_* variables of the caller."""
    return load_config(TEST_CONFIG, env={})


@pytest.fixture(scope="session")
def broker_bootstrap(test_config: Config) -> str:
    """A running real Apache Kafka broker: started if none answers, stopped if this session started it.

    Set ``RIVERBED_TEST_KEEP_BROKER=1`` to leave it running (several sessions sharing one broker).
    """
    from stream.devtools.broker import LocalBroker

    broker = LocalBroker(test_config)
    started = broker.start()
    yield broker.bootstrap
    if started and not os.environ.get("RIVERBED_TEST_KEEP_BROKER"):
        broker.stop()




@pytest.fixture
def service_config(test_config: Config, broker_bootstrap: str, tmp_path: Path) -> Config:
    return fresh_config(test_config, broker_bootstrap, tmp_path / "state")








