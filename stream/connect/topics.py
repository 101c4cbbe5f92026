"""Topic administration with kafka-python's synchronous admin client.

Every function takes a bootstrap string (``"host:port[,host:port...]"``) and opens and closes
its own short-lived :class:`kafka.admin.KafkaAdminClient`. These are operator tools (``riverbed
topics create``, broker readiness checks, test set-up), not the hot path.

An unreachable cluster is reported as :class:`~stream.errors.KafkaUnavailableError` with a
message that says what to do; probing (:func:`cluster_info`) never raises for "not reachable"
and keeps kafka-python's connection-refused logging out of the operator's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Iterator

import kafka.errors as kafka_errors
from kafka.admin import KafkaAdminClient

from stream.connect.security import KafkaSecurityError, carried_security, sasl_refused
from stream.errors import KafkaUnavailableError, RiverbedError, TopicNotFoundError

logger = logging.getLogger(__name__)

CLIENT_ID = "riverbed-admin"
CONNECT_TIMEOUT_S = 1.0
MAX_REPLICATION_FACTOR = 3
_POLL_INTERVAL_S = 0.1


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs of a bootstrap string; the port defaults to 9092.

    >>> bootstrap_addresses("127.0.0.1:19092, kafka-2")
    [('127.0.0.1', 19092), ('kafka-2', 9092)]
    >>> bootstrap_addresses("[::1]:9093")
    [('::1', 9093)]
    """
    addresses = []
    for server in bootstrap.split(","):
        server = server.strip()
        if not server:
            continue
        host, sep, port = server.rpartition(":")
        if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
            host, port = server, "9092"
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def port_accepts(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (Kafka or not)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _any_server_accepts(bootstrap: str, timeout_s: float) -> bool:
    return any(
        port_accepts(host, port, min(timeout_s, CONNECT_TIMEOUT_S))
        for host, port in bootstrap_addresses(bootstrap)
    )


@contextlib.contextmanager
def quiet_kafka_logs(level: int = logging.CRITICAL, loggers: tuple[str, ...] = ("kafka",)) -> Iterator[None]:
    """Raise the level of the Kafka client ``loggers`` to ``level`` for a while, then restore it.

    kafka-python logs every refused connection at ERROR and every connection at INFO; while
    we are merely asking "is anything there?" or creating a topic, those lines are noise.
    The admin calls here use kafka-python only, so by default aiokafka's logger (which a
    running processor may be using at the same time) is left alone. A level the operator set
    on a logger explicitly is respected.
    """
    chosen = [logging.getLogger(name) for name in loggers]
    previous = [client_logger.level for client_logger in chosen]
    for client_logger, level_before in zip(chosen, previous):
        if level_before == logging.NOTSET:
            client_logger.setLevel(level)
    try:
        yield
    finally:
        for client_logger, level_before in zip(chosen, previous):
            client_logger.setLevel(level_before)


def _discard_half_built(admin: KafkaAdminClient) -> None:
    """Stop the IO thread of an admin client whose constructor failed.

    ``KafkaAdminClient.__init__`` starts a daemon IO thread before it bootstraps; when the
    bootstrap fails, the half-built object is never returned and ``close()`` refuses to run
    on it, so without this each failed probe would leak a thread and a selector.
    """
    client = getattr(admin, "_client", None)
    net = getattr(admin, "_net", None)
    with contextlib.suppress(Exception):
        if client is not None:
            client.close()
    with contextlib.suppress(Exception):
        if net is not None:
            net.stop(timeout_ms=1000)


def _connect(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    timeout_ms = max(1, int(timeout_s * 1000))
    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(
            bootstrap_servers=[f"{host}:{port}" for host, port in bootstrap_addresses(bootstrap)],
            client_id=CLIENT_ID,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **carried_security(bootstrap),
        )
    except BaseException:
        _discard_half_built(admin)
        raise
    return admin


def _unavailable(bootstrap: str, reason: str) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"Kafka at {bootstrap} does not answer ({reason}); start the local broker with "
        "`riverbed broker start` or fix [kafka] bootstrap_servers"
    )


@contextlib.contextmanager
def admin_client(bootstrap: str, timeout_s: float = 10.0) -> Iterator[KafkaAdminClient]:
    """An open admin client for ``bootstrap``, closed on exit.

    Raises
    ------
    KafkaUnavailableError
        When no server accepts a connection or none answers the bootstrap metadata request
        within ``timeout_s``.
    """
    if not _any_server_accepts(bootstrap, timeout_s):
        raise _unavailable(bootstrap, "connection refused")
    try:
        with quiet_kafka_logs():
            admin = _connect(bootstrap, timeout_s)
    except kafka_errors.SaslAuthenticationFailedError as exc:
        raise sasl_refused(bootstrap, carried_security(bootstrap)) from exc
    except kafka_errors.KafkaError as exc:
        raise _unavailable(bootstrap, f"no metadata within {timeout_s:g} s") from exc
    try:
        with quiet_kafka_logs(logging.WARNING):
            yield admin
    finally:
        with quiet_kafka_logs():
            admin.close()


def cluster_info(bootstrap: str, timeout_s: float = 5.0) -> dict | None:
    """Describe the cluster with a real metadata round trip, or ``None`` if nothing answers.

    An open port is not enough: a broker is ready when it answers ``DescribeCluster``.
    Never raises because the cluster is unreachable or is not Kafka at all; raises
    :class:`~stream.connect.security.KafkaSecurityError` when it answers but refuses the login.

    Returns
    -------
    dict or None
        ``{"cluster_id": str, "brokers": int, "controller": int}``.
    """
    try:
        with quiet_kafka_logs(), admin_client(bootstrap, timeout_s) as admin:
            described = admin.describe_cluster()
    except KafkaSecurityError:
        raise  # it answers, but refuses this client: not "nothing answers"
    except (KafkaUnavailableError, kafka_errors.KafkaError, OSError) as exc:
        logger.debug("no Kafka answers at %s: %s", bootstrap, exc)
        return None
    return {
        "cluster_id": described["cluster_id"],
        "brokers": len(described["brokers"]),
        "controller": described["controller_id"],
    }


def replication_factor(brokers: int) -> int:
    """1 on a single broker, else ``min(3, brokers)``.

    >>> [replication_factor(n) for n in (1, 2, 3, 5)]
    [1, 2, 3, 3]
    """
    return max(1, min(MAX_REPLICATION_FACTOR, brokers))


def _warn_about_partition_counts(admin: KafkaAdminClient, names: list[str], partitions: int) -> None:
    for topic in admin.describe_topics(names):
        found = len(topic["partitions"])
        if topic["error_code"] == 0 and found != partitions:
            logger.warning(
                "topic %s already exists with %d partition(s), not %d; it is used as it is",
                topic["name"], found, partitions,
            )


def create_topics(
    bootstrap: str, names: list[str], partitions: int, timeout_s: float = 30.0,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet and wait until all of them are usable.

    Idempotent: existing topics are left alone (a warning is logged if their partition count
    differs). The replication factor is :func:`replication_factor` of the cluster's broker
    count. Returns only after metadata shows every named topic with a leader for each of its
    partitions.

    Returns
    -------
    list of str
        The names this call created, in the order given.

    Raises
    ------
    KafkaUnavailableError
        When the cluster does not answer.
    RiverbedError
        When the broker rejects a topic (invalid name, bad partition count, ...) or the topics
        do not become ready within ``timeout_s``.

    ``configs`` are topic configs for the topics this call creates (``{"cleanup.policy":
    "compact"}`` for the scale-out ``models`` topic); existing topics keep theirs.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return []
    if partitions < 1:
        raise RiverbedError(f"cannot create topics with {partitions} partitions; use 1 or more")
    timeout_ms = int(timeout_s * 1000)
    with admin_client(bootstrap, timeout_s) as admin:
        brokers = len(admin.describe_cluster()["brokers"])
        request = {
            name: {"num_partitions": partitions, "replication_factor": replication_factor(brokers),
                   **({"configs": dict(configs)} if configs else {})}
            for name in names
        }
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        created = set(_done_names(response, "create", kafka_errors.TopicAlreadyExistsError, bootstrap))
        existing = [name for name in names if name not in created]
        if existing:
            _warn_about_partition_counts(admin, existing, partitions)
        try:
            admin.wait_for_topics(names, timeout_ms=timeout_ms)
        except kafka_errors.KafkaTimeoutError as exc:
            raise RiverbedError(
                f"topics {', '.join(names)} on {bootstrap} were not ready within {timeout_s:g} s "
                f"({exc}); check the broker log"
            ) from exc
    if created:
        logger.info("created topics %s with %d partition(s) on %s",
                    ", ".join(created), partitions, bootstrap)
    return [name for name in names if name in created]


def _done_names(response: dict, verb: str, harmless: type, bootstrap: str) -> list[str]:
    """The topics an admin create/delete ``response`` reports done; ``harmless`` errors are skipped,
    any other is one clear error."""
    done = []
    for topic in response["topics"]:
        error = kafka_errors.for_code(topic["error_code"])
        if error is kafka_errors.NoError:
            done.append(topic["name"])
        elif error is not harmless:
            raise RiverbedError(
                f"cannot {verb} topic {topic['name']!r} on {bootstrap}: {error.__name__}: "
                f"{topic.get('error_message') or error.description}"
            )
    return done


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The sorted partition ids of ``topic``.

    Raises
    ------
    KafkaUnavailableError
        When the cluster does not answer.
    TopicNotFoundError
        When the topic does not exist (create it with ``riverbed topics create``).
    """
    with admin_client(bootstrap, timeout_s) as admin:
        (described,) = admin.describe_topics([topic])
    error = kafka_errors.for_code(described["error_code"])
    if error is kafka_errors.UnknownTopicOrPartitionError:
        raise TopicNotFoundError(
            f"topic {topic} does not exist; create it with `riverbed topics create` or check "
            f"the topic name (cluster {bootstrap})"
        )
    if error is not kafka_errors.NoError:
        raise RiverbedError(f"cannot describe topic {topic} on {bootstrap}: {error.__name__}")
    return sorted(partition["partition_index"] for partition in described["partitions"])


def delete_topics(bootstrap: str, names: list[str], timeout_s: float = 30.0) -> None:
    """Delete topics (for tests and demo clean-up); unknown topics are ignored.

    Returns once metadata no longer lists any of them, so they can be re-created at once.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return
    with admin_client(bootstrap, timeout_s) as admin:
        response = admin.delete_topics(names, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        deleted = _done_names(response, "delete", kafka_errors.UnknownTopicOrPartitionError, bootstrap)
        _wait_until_gone(admin, deleted, timeout_s)
    if deleted:
        logger.info("deleted topics %s on %s", ", ".join(deleted), bootstrap)


def _wait_until_gone(admin: KafkaAdminClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        listed = set(admin.list_topics())
        remaining = [name for name in names if name in listed]
        if not remaining:
            return
        if time.monotonic() >= deadline:
            raise RiverbedError(
                f"topics {', '.join(remaining)} still listed {timeout_s:g} s after deletion"
            )
        time.sleep(_POLL_INTERVAL_S)
