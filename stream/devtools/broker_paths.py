"""Where a local broker is: the loopback address it listens on, its directory and the jar cache.

Both directories are under the XDG base directories (a relative ``$XDG_DATA_HOME`` or
``$XDG_CACHE_HOME`` is ignored): the broker directory is one per port, so that two brokers never
share files, and the jar cache one per Kafka version, shared read-only by every broker of that
version. What each holds is written in :mod:`stream.devtools.broker` and
:mod:`stream.devtools.kafka_install`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The loopback address every local broker listens on (and its server certificate is for).
HOST = "127.0.0.1"


# -- paths --------------------------------------------------------------------------------------


def _xdg_dir(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def default_broker_dir(port: int) -> Path:
    """The default broker directory, one per port: ``$XDG_DATA_HOME/riverbed/broker-<port>``."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "riverbed" / f"broker-{port}"


def jar_cache_dir(kafka_version: str) -> Path:
    """Where the jars of one Kafka version live: ``$XDG_CACHE_HOME/riverbed/kafka-<version>``."""
    return _xdg_dir("XDG_CACHE_HOME", ".cache") / "riverbed" / f"kafka-{kafka_version}"
