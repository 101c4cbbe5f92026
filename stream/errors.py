"""The errors riverbed reports to its operator.

Every error a user can cause (a bad config value, a missing Java, a broker that does not answer)
is a :class:`RiverbedError`. The CLI prints its message on one line and exits non-zero, so each
message says what is wrong *and* what to do about it.
"""

from __future__ import annotations


class RiverbedError(Exception):
    """Root of riverbed's operator-facing errors."""

    exit_code = 2


class ConfigError(RiverbedError):
    """A config file, environment override or CLI argument is invalid."""


class BrokerError(RiverbedError):
    """The local broker cannot be installed, started, stopped or reached."""

    exit_code = 1


class KafkaUnavailableError(RiverbedError):
    """The configured Kafka cluster does not answer."""

    exit_code = 1


class PortInUseError(RiverbedError):
    """A server riverbed starts (``/metrics``, the HTTP API) cannot bind its port."""

    exit_code = 1


class TopicNotFoundError(RiverbedError):
    """A topic the command reads from does not exist on the cluster."""

    exit_code = 1
