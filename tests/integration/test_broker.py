"""The local Kafka launcher (stream.devtools.broker) and topic administration (stream.connect.topics).

Unit tests run without Java or Kafka. Tests marked ``broker`` use the session's real broker
(the ``broker_bootstrap`` fixture from conftest.py) and start a second one of their own.
"""

from __future__ import annotations

from tests.support import TEST_CONFIG as TESTS_CONFIG

import base64
import doctest
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import stream.devtools.broker
import stream.devtools.broker_log
import stream.devtools.kafka_install
import stream.connect.topics
from stream.devtools.broker import (
    LocalBroker,
    broker_command,
    install_kafka_jars,
    jar_cache_dir,
    last_error,
    new_cluster_id,
    parse_java_major,
    render_server_properties,
    require_java,
)
from stream.config import load_config
from stream.connect.bootstrap import ensure_kafka, resolve_bootstrap
from stream.errors import BrokerError, KafkaUnavailableError, RiverbedError
from stream.connect.topics import cluster_info, create_topics, delete_topics, topic_partitions



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_config(port: int, controller_port: int, directory: Path | str = "", **broker):
    env = {
        "RIVERBED_BROKER_PORT": str(port),
        "RIVERBED_BROKER_CONTROLLER_PORT": str(controller_port),
        "RIVERBED_BROKER_DIR": str(directory),
    }
    return load_config(None, env=env).replace(broker=broker) if broker else load_config(None, env=env)


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """Per-test XDG data and cache homes."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    return tmp_path


# -- pure parts ---------------------------------------------------------------------------------


def test_doctests():
    for module in (stream.devtools.broker, stream.devtools.kafka_install, stream.devtools.broker_log,
                   stream.connect.topics):
        failures, _ = doctest.testmod(module)
        assert failures == 0, module.__name__


def test_server_properties_sasl_ssl_listener(tmp_path):
    from stream.connect.security import Secret
    from stream.devtools.broker import BrokerLogin

    login = BrokerLogin(tmp_path / "tls", "riverbed", Secret("pw-1"))
    props = parse_properties(render_server_properties(19192, 19193, tmp_path / "data", login))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19192"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert (props["ssl.keystore.type"], props["ssl.keystore.location"]) == ("PEM", str(tmp_path / "tls" / "server.pem"))
    assert (props["ssl.truststore.type"], props["ssl.truststore.location"]) == ("PEM", str(tmp_path / "tls" / "ca.pem"))
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="riverbed" password="pw-1";')
    assert props["listener.name.sasl_ssl.plain.sasl.jaas.config"].endswith('user_riverbed="pw-1";')
    assert "pw-1" not in repr(login)


def test_server_properties_single_node_settings(tmp_path):
    data = tmp_path / "data"
    props = parse_properties(render_server_properties(19092, 19093, data))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert props["log.dirs"] == str(data)
    expected = {
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "log.cleaner.dedupe.buffer.size": "33554432",
        "auto.create.topics.enable": "false",
    }
    assert {key: props[key] for key in expected} == expected
    assert "log.message.timestamp.after.max.ms" not in props  # Kafka's default stays


def test_cluster_id_is_22_url_safe_base64_chars_of_a_uuid():
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_default_dir_is_per_user_and_keyed_by_port(xdg):
    first = LocalBroker(broker_config(19092, 19093))
    second = LocalBroker(broker_config(19094, 19095))
    assert first.dir == xdg / "data-home" / "riverbed" / "broker-19092"
    assert second.dir == xdg / "data-home" / "riverbed" / "broker-19094"
    assert first.bootstrap == "127.0.0.1:19092"


def test_default_dir_ignores_relative_xdg(monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")
    broker = LocalBroker(broker_config(19092, 19093))
    assert broker.dir == Path.home() / ".local" / "share" / "riverbed" / "broker-19092"


def test_explicit_dir_is_used_as_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broker = LocalBroker(broker_config(19092, 19093, "brokers/one"))
    assert broker.dir == tmp_path / "brokers" / "one"
    assert broker.properties_path == tmp_path / "brokers" / "one" / "server.properties"


def test_jar_cache_is_per_user_and_per_version(xdg):
    assert jar_cache_dir("4.1.1") == xdg / "cache-home" / "riverbed" / "kafka-4.1.1"


def test_broker_command(tmp_path):
    command = broker_command("/usr/bin/java", tmp_path / "libs", 768, tmp_path / "server.properties")
    assert command[:4] == ["/usr/bin/java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC"]
    assert command[-4:] == ["-cp", f"{tmp_path}/libs/*", "kafka.Kafka", f"{tmp_path}/server.properties"]
    assert "-Xms128m" in broker_command("java", tmp_path, 128, tmp_path / "p")


def test_parse_java_major():
    assert parse_java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert parse_java_major('openjdk version "21" 2023-09-19') == 21
    assert parse_java_major('java version "1.8.0_402"') == 8
    assert parse_java_major("no version here") is None


def test_last_error_names_the_root_cause():
    log = "\n".join([
        "2026-01-01 00:00:00,000 [main] INFO kafka.server.ControllerServer - Starting controller",
        "2026-01-01 00:00:01,000 [main] ERROR kafka.network.DataPlaneAcceptor - Unable to start acceptor",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9093: "
        "Address already in use.",
        "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:732)",
        "Caused by: java.net.BindException: Address already in use",
        "\t... 20 more",
        "2026-01-01 00:00:02,000 [main] INFO kafka.server.SharedServer - Stopping SharedServer",
    ])
    assert last_error(log) == (
        "2026-01-01 00:00:01,000 [main] ERROR kafka.network.DataPlaneAcceptor - Unable to start "
        "acceptor (org.apache.kafka.common.KafkaException: Socket server failed to bind to "
        "127.0.0.1:9093: Address already in use.)"
    )
    assert last_error("Invalid maximum heap size: -Xmx9m\nError: Could not create the Java VM.") == (
        "Invalid maximum heap size: -Xmx9m"
    )
    assert last_error("[main] INFO all good\n") is None


# -- tools and installation, without Java or the network ----------------------------------------


def which_without(*missing: str):
    real_which = stream.devtools.kafka_install.shutil.which

    def which(name, *args, **kwargs):
        return None if name in missing else real_which(name, *args, **kwargs)

    return which


def test_missing_java_is_one_clear_line(monkeypatch, xdg):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", which_without("java"))
    with pytest.raises(BrokerError) as caught:
        require_java()
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "java not found: install a Java 17+ runtime "
        "(Debian: apt-get install openjdk-17-jre-headless)"
    )
    broker = LocalBroker(broker_config(free_port(), free_port()))
    with pytest.raises(BrokerError, match="^java not found: install a Java 17"):
        broker.start()
    assert not broker.pid_path.exists()


def test_old_java_is_rejected(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: f"/opt/{name}")

    def fake_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 0, "", 'java version "1.8.0_402"\n')

    monkeypatch.setattr(stream.devtools.kafka_install.subprocess, "run", fake_run)
    with pytest.raises(BrokerError, match=r"is Java 8, but Kafka 4.x needs Java 17\+") as caught:
        require_java()
    assert "\n" not in str(caught.value)


def test_missing_maven_is_one_clear_line(monkeypatch, xdg):
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", which_without("mvn"))
    with pytest.raises(BrokerError) as caught:
        install_kafka_jars("4.1.1")
    assert str(caught.value).startswith("mvn not found: install Apache Maven")
    assert "\n" not in str(caught.value)


def test_unsupported_kafka_version_is_rejected(xdg):
    with pytest.raises(BrokerError, match=r"kafka_version = '3.9.0' is not supported"):
        install_kafka_jars("3.9.0")


def fake_maven(calls: list):
    def run_maven(mvn, staging, kafka_version):
        calls.append(staging)
        (staging / "libs").mkdir()
        (staging / "libs" / f"kafka_2.13-{kafka_version}.jar").write_bytes(b"jar")

    return run_maven


def test_install_publishes_atomically_and_only_once(monkeypatch, xdg, capsys):
    calls: list[Path] = []
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: f"/opt/{name}")
    monkeypatch.setattr(stream.devtools.kafka_install, "_run_maven", fake_maven(calls))
    libs = install_kafka_jars("4.1.1")
    target = xdg / "cache-home" / "riverbed" / "kafka-4.1.1"
    assert libs == target / "libs"
    assert (target / stream.devtools.broker.INSTALL_MARKER).is_file()
    assert [path.name for path in target.parent.iterdir()] == ["kafka-4.1.1"]  # no *.partial
    assert len(calls) == 1 and not calls[0].exists()
    progress = capsys.readouterr().err.strip().splitlines()
    assert len(progress) == 1 and "downloading the Apache Kafka 4.1.1 jars with Maven" in progress[0]

    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: None)  # no mvn needed now
    assert install_kafka_jars("4.1.1") == libs
    assert len(calls) == 1
    assert capsys.readouterr().err == ""


def test_failed_install_leaves_nothing_behind(monkeypatch, xdg):
    def failing_maven(mvn, staging, kafka_version):
        (staging / "libs").mkdir()
        (staging / "libs" / "half.jar").write_bytes(b"half")
        raise BrokerError("Maven could not fetch Kafka 4.1.1 (exit 1): [ERROR] offline")

    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: f"/opt/{name}")
    monkeypatch.setattr(stream.devtools.kafka_install, "_run_maven", failing_maven)
    with pytest.raises(BrokerError, match="Maven could not fetch"):
        install_kafka_jars("4.1.1")
    assert list((xdg / "cache-home" / "riverbed").iterdir()) == []


def test_incomplete_cache_is_never_used(monkeypatch, xdg):
    target = xdg / "cache-home" / "riverbed" / "kafka-4.1.1"
    (target / "libs").mkdir(parents=True)
    (target / "libs" / "stale.jar").write_bytes(b"stale")  # no completion marker
    calls: list[Path] = []
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: f"/opt/{name}")
    monkeypatch.setattr(stream.devtools.kafka_install, "_run_maven", fake_maven(calls))
    libs = install_kafka_jars("4.1.1")
    assert len(calls) == 1
    assert sorted(path.name for path in libs.iterdir()) == ["kafka_2.13-4.1.1.jar"]


# -- processes and probing, without Kafka -------------------------------------------------------


def test_nothing_answers_on_a_closed_port():
    port = free_port()
    started = time.monotonic()
    assert cluster_info(f"127.0.0.1:{port}", timeout_s=5) is None
    assert time.monotonic() - started < 2
    with pytest.raises(KafkaUnavailableError, match=f"127.0.0.1:{port} does not answer"):
        topic_partitions(f"127.0.0.1:{port}", "events")
    assert LocalBroker(broker_config(port, free_port())).status() is None


def test_port_taken_by_something_else_is_a_clear_error(xdg):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections (kernel backlog) but never speaks Kafka
        port = listener.getsockname()[1]
        broker = LocalBroker(broker_config(port, free_port()))
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is taken by a process "
                                              "that is not a Kafka broker"):
            broker.start()
    assert not broker.pid_path.exists() and not broker.properties_path.exists()


def test_stop_never_signals_a_process_that_is_not_our_broker(tmp_path):
    broker = LocalBroker(broker_config(free_port(), free_port(), tmp_path))
    broker.pid_path.write_text(f"{os.getpid()}\n")  # a live process, but not kafka.Kafka
    assert broker.running_pid() is None
    assert broker.stop() is False
    assert not broker.pid_path.exists()


def test_resolve_bootstrap():
    assert resolve_bootstrap(broker_config(19092, 19093)) == "127.0.0.1:19092"
    external = load_config(None, env={"RIVERBED_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"})
    assert resolve_bootstrap(external) == "kafka-1:9092"


def test_ensure_kafka_with_unreachable_servers_starts_nothing(monkeypatch):
    def must_not_start(self):
        raise AssertionError("ensure_kafka started a local broker although servers are set")

    monkeypatch.setattr(LocalBroker, "start", must_not_start)
    servers = f"127.0.0.1:{free_port()}"
    config = load_config(None, env={"RIVERBED_KAFKA_BOOTSTRAP_SERVERS": servers})
    with pytest.raises(KafkaUnavailableError) as caught:
        ensure_kafka(config)
    message = str(caught.value)
    assert servers in message and "riverbed broker start" in message
    assert "[kafka] bootstrap_servers" in message and "\n" not in message


# -- against the real broker --------------------------------------------------------------------


def session_broker(bootstrap: str) -> LocalBroker:
    """The LocalBroker behind the ``broker_bootstrap`` fixture (same config as conftest)."""
    config = load_config(TESTS_CONFIG if TESTS_CONFIG.exists() else None, env={})
    port = int(bootstrap.rpartition(":")[2])
    if config.broker.port != port:
        config = config.replace(broker={"port": port})
    return LocalBroker(config)


@pytest.mark.broker
def test_start_on_a_running_broker_returns_false_fast(broker_bootstrap):
    broker = session_broker(broker_bootstrap)
    started = time.monotonic()
    assert broker.start() is False
    assert time.monotonic() - started < 5


@pytest.mark.broker
def test_status_of_the_running_broker(broker_bootstrap):
    broker = session_broker(broker_bootstrap)
    status = broker.status()
    assert status is not None
    assert status["bootstrap"] == broker_bootstrap
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", status["cluster_id"])
    assert status["cluster_id"] == cluster_info(broker_bootstrap)["cluster_id"]
    assert status["dir"] == str(broker.dir)
    assert status["pid"] == broker.running_pid()
    if status["pid"] is not None:
        assert status["kafka_version"] == broker.kafka_version


@pytest.mark.broker
def test_cluster_info_of_the_running_broker(broker_bootstrap):
    info = cluster_info(broker_bootstrap)
    assert info is not None and info["brokers"] == 1 and info["controller"] >= 0


@pytest.mark.broker
def test_create_topics_is_idempotent(broker_bootstrap):
    suffix = uuid.uuid4().hex[:8]
    names = [f"test-events-{suffix}", f"test-labels-{suffix}"]
    try:
        assert create_topics(broker_bootstrap, names, partitions=3) == names
        assert create_topics(broker_bootstrap, names, partitions=3) == []
        for name in names:
            assert topic_partitions(broker_bootstrap, name) == [0, 1, 2]
        extra = f"test-extra-{suffix}"
        assert create_topics(broker_bootstrap, [names[0], extra], partitions=1) == [extra]
        names.append(extra)
        assert topic_partitions(broker_bootstrap, extra) == [0]
    finally:
        delete_topics(broker_bootstrap, names + [f"test-never-created-{suffix}"])
    with pytest.raises(RiverbedError, match="does not exist; create it with `riverbed topics create`"):
        topic_partitions(broker_bootstrap, names[0])


@pytest.mark.broker
def test_invalid_topic_name_is_reported(broker_bootstrap):
    with pytest.raises(RiverbedError, match="cannot create topic 'not valid!'"):
        create_topics(broker_bootstrap, ["not valid!"], partitions=1)


@pytest.mark.broker
def test_second_broker_on_another_port_has_its_own_files_and_stops(broker_bootstrap, tmp_path):
    first_info = cluster_info(broker_bootstrap)
    second = LocalBroker(broker_config(free_port(), free_port(), tmp_path / "second", heap_mb=512))
    topic = f"test-second-only-{uuid.uuid4().hex[:8]}"
    try:
        assert second.start() is True
        pid = second.running_pid()
        assert pid is not None
        status = second.status()
        assert status["pid"] == pid and status["cluster_id"] != first_info["cluster_id"]
        props = parse_properties(second.properties_path.read_text())
        assert props["listeners"].startswith(f"PLAINTEXT://{second.bootstrap},")
        assert props["log.dirs"] == str(tmp_path / "second" / "data")
        assert (tmp_path / "second" / "data" / "meta.properties").is_file()
        assert second.cluster_id_path.read_text().strip() == status["cluster_id"]
        assert create_topics(second.bootstrap, [topic], partitions=2) == [topic]
        with pytest.raises(RiverbedError, match="does not exist"):
            topic_partitions(broker_bootstrap, topic)  # data is not shared
        assert second.start() is False
    finally:
        stopped = second.stop()
    assert stopped is True
    assert not second.pid_path.exists()
    assert second.status() is None
    assert second.stop() is False
    assert cluster_info(broker_bootstrap) is not None  # the session broker is untouched


@pytest.mark.broker
def test_second_install_downloads_nothing(broker_bootstrap, monkeypatch):
    broker = session_broker(broker_bootstrap)
    libs = broker.install()  # the jars are there: the session broker runs from them

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"install() ran a process although the jars are cached: {args}")

    monkeypatch.setattr(stream.devtools.kafka_install.subprocess, "run", no_subprocess)
    monkeypatch.setattr(stream.devtools.kafka_install.subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(stream.devtools.kafka_install.shutil, "which", lambda name: None)
    assert broker.install() == libs
    assert (libs / f"kafka_2.13-{broker.kafka_version}.jar").is_file()
