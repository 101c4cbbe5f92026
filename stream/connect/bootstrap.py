"""Where riverbed's Kafka is: the configured cluster, or the embedded local broker when none is set.

Both functions return a :class:`~stream.connect.security.SecuredBootstrap`: the bootstrap string
plus the kafka-python security settings of ``[kafka]``, which the topic tools and replay use.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from stream.config import Config
from stream.connect.security import SecuredBootstrap, diagnose_refusal, sasl_login_problem, secured_bootstrap
from stream.connect.topics import bootstrap_addresses, cluster_info, port_accepts
from stream.errors import KafkaUnavailableError

#: The first metadata round trip gets at most this long before a TLS mismatch is looked for, so that
#: a plaintext client on a TLS port (kafka-python retries such a handshake until its timeout) is
#: named within seconds; without a TLS explanation the rest of ``request_timeout_s`` is waited.
FIRST_PROBE_S = 5.0


def resolve_bootstrap(config: Config) -> SecuredBootstrap:
    """``[kafka] bootstrap_servers`` when set, else the local broker's address (secured as configured)."""
    if config.kafka.bootstrap_servers:
        return secured_bootstrap(config.kafka.bootstrap_servers, config)
    from stream.devtools.broker import LocalBroker  # the embedded default only

    return secured_bootstrap(LocalBroker(config).bootstrap, config)


def ensure_kafka(config: Config) -> SecuredBootstrap:
    """Make sure Kafka answers (and accepts this client's login) and return its bootstrap.

    With ``[kafka] bootstrap_servers`` set, only check that it answers (never start
    anything); otherwise start the local broker if none answers.

    Raises
    ------
    KafkaSecurityError
        When Kafka answers but refuses the SASL login, presents an untrusted certificate, or
        speaks TLS to a plaintext client (or the reverse).
    KafkaUnavailableError
        When the configured servers do not answer.
    BrokerError
        When the local broker cannot be started.
    ConfigError
        When the SASL password cannot be read.
    """
    servers = config.kafka.bootstrap_servers
    if not servers:
        from stream.devtools.broker import LocalBroker  # the embedded default only

        broker = LocalBroker(config)
        broker.start()
        return secured_bootstrap(broker.bootstrap, config)
    bootstrap = secured_bootstrap(servers, config)
    timeout_s = config.kafka.request_timeout_s
    with _clients_silenced():  # what goes wrong is said once, below, not in the clients' retry logs
        if cluster_info(bootstrap, timeout_s=min(FIRST_PROBE_S, timeout_s)) is not None:
            return bootstrap
        _raise_security_problem(bootstrap, config)
        if timeout_s > FIRST_PROBE_S and cluster_info(bootstrap, timeout_s=timeout_s - FIRST_PROBE_S) is not None:
            return bootstrap
    raise KafkaUnavailableError(
        f"Kafka at {servers} ([kafka] bootstrap_servers) does not answer; start it (the "
        "local broker: `riverbed broker start`) or fix [kafka] bootstrap_servers"
        + ("" if config.kafka.security_protocol != "PLAINTEXT" else
           "; if the cluster needs TLS or SASL, set [kafka] security_protocol")
    )


def _raise_security_problem(bootstrap: SecuredBootstrap, config: Config) -> None:
    """Raise the first listening server's TLS mismatch or refused SASL login, if it has one."""
    for host, port in bootstrap_addresses(bootstrap):
        if not port_accepts(host, port):
            continue
        problem = diagnose_refusal(host, port, bootstrap.kafka_python) or sasl_login_problem(host, port, config)
        if problem is not None:
            raise problem


@contextlib.contextmanager
def _clients_silenced() -> Iterator[None]:
    """The Kafka clients' loggers at CRITICAL while probing, unless they were opened up for debugging (INFO or lower)."""
    loggers = [logging.getLogger(name) for name in ("kafka", "aiokafka")]
    before = [client_logger.level for client_logger in loggers]
    for client_logger in loggers:
        if client_logger.getEffectiveLevel() > logging.INFO:
            client_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for client_logger, level in zip(loggers, before):
            client_logger.setLevel(level)
