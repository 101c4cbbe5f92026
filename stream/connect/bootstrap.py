"""Where riverbed's Kafka is: the configured cluster, or the embedded local broker when none is set."""

from __future__ import annotations

from stream.config import Config
from stream.connect.topics import cluster_info
from stream.errors import KafkaUnavailableError


def resolve_bootstrap(config: Config) -> str:
    """``[kafka] bootstrap_servers`` when set, else the local broker's address."""
    if config.kafka.bootstrap_servers:
        return config.kafka.bootstrap_servers
    from stream.devtools.broker import LocalBroker  # the embedded default only

    return LocalBroker(config).bootstrap


def ensure_kafka(config: Config) -> str:
    """Make sure Kafka answers and return its bootstrap string.

    With ``[kafka] bootstrap_servers`` set, only check that it answers (never start
    anything); otherwise start the local broker if none answers.

    Raises
    ------
    KafkaUnavailableError
        When the configured servers do not answer.
    BrokerError
        When the local broker cannot be started.
    """
    servers = config.kafka.bootstrap_servers
    if not servers:
        from stream.devtools.broker import LocalBroker  # the embedded default only

        broker = LocalBroker(config)
        broker.start()
        return broker.bootstrap
    if cluster_info(servers, timeout_s=config.kafka.request_timeout_s) is None:
        raise KafkaUnavailableError(
            f"Kafka at {servers} ([kafka] bootstrap_servers) does not answer; start it (the "
            "local broker: `riverbed broker start`) or fix [kafka] bootstrap_servers"
        )
    return servers
