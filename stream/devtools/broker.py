"""A local single-node Apache Kafka 4.x broker (KRaft, combined broker + controller).

No tarball and no Docker: Maven resolves ``org.apache.kafka:kafka_2.13:<version>`` plus an SLF4J
binding into a per-user jar cache once, and the broker runs as ``java -cp '<libs>/*'
kafka.Kafka server.properties`` on loopback only.

Files
-----
Jar cache (shared read-only by every broker of one Kafka version)::

    ${XDG_CACHE_HOME:-~/.cache}/riverbed/kafka-<version>/
        pom.xml, libs/*.jar, riverbed-install-complete   (marker written last)

Broker directory (``[broker] dir``, default keyed by port so that two brokers never share
files)::

    ${XDG_DATA_HOME:-~/.local/share}/riverbed/broker-<port>/
        server.properties   rendered from the config on every start
        cluster.id          22 url-safe base64 characters, created once
        data/               log.dirs: topic data and the KRaft metadata log
        format.log          output of the one-time ``kafka.tools.StorageTool format``
        tls/                ``[broker] security = "sasl_ssl"`` only: ca.pem (give it to clients as
                            [kafka] ssl_cafile), ca.key, server.pem (key + certificate for
                            127.0.0.1 and localhost), made once with ``openssl``
        broker.log          stdout + stderr of the broker (the previous run's in broker.log.1)
        broker.pid          pid of the running broker
        start.lock          flock taken while starting, so concurrent starts wait for each other

Logging in the jars
-------------------
The Kafka POM brings no SLF4J binding, so ``slf4j-simple`` is added (Kafka 4.x is on
slf4j-api 1.7.36, the 1.7 binding mechanism). ``log4j-api`` and ``log4j-core`` arrive through
``kafka-server`` and both stay: ``kafka.utils.Log4jControllerRegistration`` loads
``org.apache.kafka.server.logger.LoggingController``, which needs ``log4j-api`` at class-load
time (without it both ``kafka.Kafka`` and ``StorageTool`` die with ``NoClassDefFoundError``),
and without ``log4j-core`` as its provider every JVM start prints ``ERROR Log4j API could not
find a logging provider``. They do not compete with slf4j-simple: log4j-core is not an SLF4J
binding, so all broker logging goes through slf4j-simple to ``broker.log``.

Security
--------
``[broker] security = "plaintext"`` (the default) has one PLAINTEXT listener on ``[broker] port``.
``"sasl_ssl"`` replaces it with a SASL_SSL listener (SCRAM-SHA-512 and PLAIN; the broker's own
inter-broker traffic uses it too) with a PEM keystore from ``tls/``; the controller listener stays
PLAINTEXT on loopback. The one user is ``[kafka] sasl_username`` with the password of
``$RIVERBED_KAFKA_SASL_PASSWORD`` or ``[kafka] sasl_password_file``: its SCRAM credential is added
when the storage is formatted (through a ``java @argfile`` of mode 0600, deleted afterwards, so
the password is in no process's argument list), and the JAAS lines that hold it are in
``server.properties``, written with mode 0600. A directory formatted without SASL keeps no
credential: give a sasl_ssl broker its own ``[broker] dir``.

Record timestamps: Kafka 4.x keeps its default ``log.message.timestamp.after.max.ms`` (one
hour); replayed synthetic event times belong in the payload ``ts``, not the record timestamp.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from stream.config import Config
from stream.connect.security import SecuredBootstrap, Secret, read_sasl_password
from stream.errors import BrokerError
from stream.connect.topics import cluster_info, port_accepts

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MIN_JAVA_MAJOR = 17
MIN_KAFKA_MAJOR = 4
MIN_HEAP_MB = 128
INITIAL_HEAP_MB = 256
SCALA_SUFFIX = "2.13"
SLF4J_SIMPLE_VERSION = "1.7.36"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
INSTALL_MARKER = "riverbed-install-complete"
MAVEN_TIMEOUT_S = 1800.0
FORMAT_TIMEOUT_S = 120.0
READY_PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
KILL_WAIT_S = 10.0

JAVA_HINT = "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Apache Maven (Debian: apt-get install maven); it downloads the Kafka jars once"

# Settings for one combined broker+controller on a small (2-core) machine; see FACTS.md.
SINGLE_NODE_SETTINGS: dict[str, str] = {
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

# Popen objects of brokers this interpreter launched, kept so that they are reaped (no
# zombies, no "still running" ResourceWarning) and so that stop() can wait on them.
_LAUNCHED: dict[int, subprocess.Popen] = {}


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


# -- pure renderers -----------------------------------------------------------------------------


def new_cluster_id() -> str:
    """A KRaft cluster id: the 22 url-safe base64 characters of a random UUID.

    Like Kafka's own ``Uuid.randomUuid``, it never starts with ``-`` (it would read as an
    option on the ``StorageTool`` command line).

    >>> cid = new_cluster_id()
    >>> len(cid), cid.startswith("-")
    (22, False)
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii")[:22]
        if not cluster_id.startswith("-"):
            return cluster_id


class BrokerLogin:
    """The SASL_SSL side of a local broker: its TLS files and its one SCRAM/PLAIN user.

    ``repr`` never shows the password.
    """

    def __init__(self, tls_dir: Path, username: str, password: Secret):
        self.tls_dir = tls_dir
        self.username = username
        self.password = Secret(password)

    def __repr__(self) -> str:
        return f"BrokerLogin({str(self.tls_dir)!r}, user={self.username!r})"

    @property
    def ca_path(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def keystore_path(self) -> Path:
        return self.tls_dir / "server.pem"

    def client_settings(self) -> dict:
        """kafka-python settings that log in to this broker (SCRAM-SHA-512, trusting ``ca.pem``)."""
        return {"security_protocol": "SASL_SSL", "ssl_cafile": str(self.ca_path), "ssl_check_hostname": True,
                "sasl_mechanism": SCRAM_MECHANISM, "sasl_plain_username": self.username,
                "sasl_plain_password": self.password}


SCRAM_MECHANISM = "SCRAM-SHA-512"
#: Characters a local broker's user name and password may use: they go unquoted into JAAS lines,
#: the StorageTool's ``--add-scram`` value and a java argument file.
_LOGIN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+-]+")


def _jaas(module: str, login: BrokerLogin, *extra: str) -> str:
    return (f"org.apache.kafka.common.security.{module} required "
            f'username="{login.username}" password="{login.password}"{"".join(extra)};')


def sasl_ssl_settings(port: int, login: BrokerLogin) -> dict[str, str]:
    """The listener, TLS and SASL settings of a ``[broker] security = "sasl_ssl"`` broker."""
    return {
        "listeners": f"SASL_SSL://{HOST}:{port}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},PLAIN",
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(login.keystore_path),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(login.ca_path),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas("scram.ScramLoginModule", login),
        "listener.name.sasl_ssl.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", login, f' user_{login.username}="{login.password}"'),
    }


def render_server_properties(port: int, controller_port: int, data_dir: Path,
                             login: BrokerLogin | None = None) -> str:
    """``server.properties`` for a single combined broker+controller on loopback.

    With ``login``, the client listener is SASL_SSL (:func:`sasl_ssl_settings`), else PLAINTEXT.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        **SINGLE_NODE_SETTINGS,
    }
    if login is not None:
        settings.update(sasl_ssl_settings(port, login))
    settings["listeners"] += f",CONTROLLER://{HOST}:{controller_port}"
    lines = ["# Written by riverbed on every `riverbed broker start`: change the riverbed config,"]
    lines.append("# not this file.")
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_pom(kafka_version: str) -> str:
    """A ``pom``-packaged project whose runtime classpath is the broker."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by riverbed: the runtime classpath of a local Apache Kafka {kafka_version} broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>riverbed.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_SUFFIX}</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>{SLF4J_SIMPLE_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def broker_command(java: str, libs: Path, heap_mb: int, properties: Path) -> list[str]:
    """The ``java`` command line of the broker."""
    return [
        java,
        f"-Xms{min(INITIAL_HEAP_MB, heap_mb)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(properties),
    ]


def parse_java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8`` counts as 8).

    >>> parse_java_major('openjdk version "17.0.15" 2025-04-15')
    17
    >>> parse_java_major('java version "1.8.0_402"')
    8
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?([\w.$]+(?:Exception|Error|Throwable)\b.*)")
_LOG_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN)\b")


def last_error(log_text: str) -> str | None:
    """The last ERROR line of a broker log with the most telling cause from its stack trace.

    The cause is the deepest ``Caused by`` that is not a bare ``java.*`` exception (those
    repeat the message of a Kafka exception above them), else the deepest one. Without any
    ERROR line, the first JVM-level error line (``Invalid maximum heap size``, ``Error: Could
    not find or load main class``, ...); ``None`` when the log shows no error at all.

    >>> log = "\\n".join([
    ...     "[main] INFO ok",
    ...     "[main] ERROR ProcessTerminatingFaultHandler - Encountered fatal fault",
    ...     "java.lang.RuntimeException: Unable to start acceptor",
    ...     "\\tat kafka.network.SocketServer.enableRequestProcessing(SocketServer.scala:228)",
    ...     "Caused by: org.apache.kafka.common.KafkaException: failed to bind to 127.0.0.1:9093",
    ...     "Caused by: java.net.BindException: Address already in use",
    ... ])
    >>> last_error(log)
    '[main] ERROR ProcessTerminatingFaultHandler - Encountered fatal fault (org.apache.kafka.common.KafkaException: failed to bind to 127.0.0.1:9093)'
    >>> last_error("[main] INFO starting") is None
    True
    """
    lines = [line.rstrip() for line in log_text.splitlines()]
    for index in range(len(lines) - 1, -1, -1):
        if re.search(r"\bERROR\b", lines[index]):
            causes = _stack_trace_causes(lines[index + 1:])
            cause = next((c for c in reversed(causes) if not c.startswith("java.")), None)
            cause = cause or (causes[-1] if causes else None)
            return _shorten(f"{lines[index]} ({cause})" if cause else lines[index])
    for line in lines:  # JVM errors come first, their consequences after
        if _LOG_LEVEL.search(line):
            continue
        if re.match(r"^(Error\b|Exception in thread|Invalid )", line) or _EXCEPTION_LINE.match(line):
            return _shorten(line.strip())
    return None


def _stack_trace_causes(lines: list[str]) -> list[str]:
    """The exception and ``Caused by`` lines of the stack trace at the start of ``lines``."""
    causes = []
    for line in lines:
        match = _EXCEPTION_LINE.match(line)
        if match:
            causes.append(match.group(1))
        elif not line.startswith(("\t", " ", "Suppressed:")) and line.strip():
            break
    return causes


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_properties(path: Path) -> dict[str, str]:
    properties = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


# -- tools --------------------------------------------------------------------------------------


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on ``PATH``; a one-line error if absent."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"java not found: {JAVA_HINT}")
    return found


def require_java() -> str:
    """A Java 17+ executable, or :class:`BrokerError` saying what to install."""
    java = find_java()
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"{java} -version failed ({exc}): {JAVA_HINT}") from exc
    major = parse_java_major(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA_MAJOR:
        found = f"Java {major}" if major else "an unrecognised Java"
        raise BrokerError(
            f"{java} is {found}, but Kafka 4.x needs Java {MIN_JAVA_MAJOR}+: {JAVA_HINT}, "
            "then put it first on PATH or set JAVA_HOME"
        )
    return java


def require_maven() -> str:
    """The ``mvn`` executable, or :class:`BrokerError` saying what to install."""
    found = shutil.which("mvn")
    if found is None:
        raise BrokerError(f"mvn not found: {MAVEN_HINT}")
    return found


def check_kafka_version(kafka_version: str) -> None:
    """Reject versions the launcher cannot run (it writes KRaft-only, 4.x settings)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", kafka_version)
    if match is None or int(match.group(1)) < MIN_KAFKA_MAJOR:
        raise BrokerError(
            f"[broker] kafka_version = {kafka_version!r} is not supported: set a Kafka "
            f"{MIN_KAFKA_MAJOR}.x release such as 4.1.1"
        )


# -- TLS material -------------------------------------------------------------------------------

OPENSSL_HINT = "install openssl (Debian: apt-get install openssl); the sasl_ssl broker makes its certificates with it"
CERT_DAYS = 3650


def _openssl(*arguments: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError(f"openssl not found: {OPENSSL_HINT}")
    result = subprocess.run([openssl, *arguments], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no error printed"])[-1]
        raise BrokerError(f"openssl {arguments[0]} failed in {cwd} (exit {result.returncode}): {last}")


def create_ca(directory: Path, name: str = "riverbed local CA") -> tuple[Path, Path]:
    """A self-signed CA in ``directory``: ``(ca.pem, ca.key)`` (RSA 2048, key mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", str(CERT_DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)
    os.chmod(directory / "ca.key", 0o600)
    return directory / "ca.pem", directory / "ca.key"


def create_server_keystore(directory: Path, ca_cert: Path, ca_key: Path) -> Path:
    """``server.pem`` in ``directory``: a PKCS#8 key and a certificate for 127.0.0.1 and localhost signed
    by the CA (Kafka's ``ssl.keystore.type=PEM`` reads both from the one file; mode 0600)."""
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:{HOST},DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n", encoding="utf-8")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", "server.crt", "-days", str(CERT_DAYS), "-extfile", "server.ext", cwd=directory)
    keystore = directory / "server.pem"
    keystore.touch(mode=0o600)
    keystore.write_text((directory / "server.key").read_text() + (directory / "server.crt").read_text())
    for leftover in ("server.key", "server.csr", "server.ext"):
        (directory / leftover).unlink()
    return keystore


def ensure_tls_material(tls_dir: Path) -> None:
    """Make the CA and the server keystore of a sasl_ssl broker once (kept across restarts)."""
    if (tls_dir / "ca.pem").is_file() and (tls_dir / "server.pem").is_file():
        return
    ca_cert, ca_key = create_ca(tls_dir)
    create_server_keystore(tls_dir, ca_cert, ca_key)
    logger.info("made a CA and a server certificate for %s in %s", HOST, tls_dir)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (mode 0600 from the first byte)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


# -- installation -------------------------------------------------------------------------------


def install_kafka_jars(kafka_version: str) -> Path:
    """Resolve the broker's jars into the per-user cache once; return the ``libs`` folder.

    Idempotent: when the completion marker exists nothing is run. Maven downloads into a
    temporary sibling folder that is renamed into place only after the marker is written,
    so an interrupted download is never used.
    """
    target = jar_cache_dir(kafka_version)
    if (target / INSTALL_MARKER).is_file():
        return target / "libs"
    check_kafka_version(kafka_version)
    mvn = require_maven()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=target.parent))
    started = time.monotonic()
    try:
        print(
            f"riverbed: downloading the Apache Kafka {kafka_version} jars with Maven into "
            f"{target} (first time only, about 45 MB) ...",
            file=sys.stderr,
            flush=True,
        )
        _run_maven(mvn, staging, kafka_version)
        (staging / INSTALL_MARKER).write_text(f"kafka {kafka_version}\n", encoding="utf-8")
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    jars = len(list((target / "libs").glob("*.jar")))
    logger.info("installed %d jars of Kafka %s into %s in %.1f s",
                jars, kafka_version, target, time.monotonic() - started)
    return target / "libs"


def _run_maven(mvn: str, staging: Path, kafka_version: str) -> None:
    pom = staging / "pom.xml"
    pom.write_text(render_pom(kafka_version), encoding="utf-8")
    command = [
        mvn, "-B", "-q", "-f", str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={staging / 'libs'}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(
            f"Maven did not finish fetching Kafka {kafka_version} within {MAVEN_TIMEOUT_S:g} s; "
            "check access to Maven Central (proxies go in ~/.m2/settings.xml)"
        ) from exc
    broker_jar = staging / "libs" / f"kafka_{SCALA_SUFFIX}-{kafka_version}.jar"
    if result.returncode != 0 or not broker_jar.is_file():
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
        detail = _shorten(errors[0] if errors else last_error(output) or "no output")
        raise BrokerError(
            f"Maven could not fetch Kafka {kafka_version} (exit {result.returncode}): {detail}; "
            "check access to Maven Central (proxies go in ~/.m2/settings.xml) and "
            "[broker] kafka_version"
        )


def _publish(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; tolerate a concurrent installer that won the race."""
    if target.exists() and not (target / INSTALL_MARKER).is_file():
        shutil.rmtree(target)  # an incomplete layout left by something else: never used
    try:
        staging.rename(target)
    except OSError:
        if not (target / INSTALL_MARKER).is_file():
            raise


# -- processes ----------------------------------------------------------------------------------


def _process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc``, or ``None`` if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _pid_alive(pid: int) -> bool:
    launched = _LAUNCHED.get(pid)
    if launched is not None:
        return launched.poll() is None
    return _process_state(pid) not in (None, "Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    launched = _LAUNCHED.get(pid)
    if launched is not None:
        try:
            launched.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        _LAUNCHED.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# -- the broker ---------------------------------------------------------------------------------


class LocalBroker:
    """A single-node Kafka 4.x (KRaft) on ``127.0.0.1:[broker] port``, run from Maven jars.

    Parameters
    ----------
    config
        Uses ``config.broker.{port, controller_port, dir, kafka_version, heap_mb,
        start_timeout_s}``.

    Examples
    --------
    >>> from stream.config import load_config
    >>> broker = LocalBroker(load_config(None, env={"RIVERBED_BROKER_PORT": "19092"}))
    >>> broker.bootstrap
    '127.0.0.1:19092'
    >>> broker.dir.name
    'broker-19092'
    """

    def __init__(self, config: Config):
        settings = config.broker
        self.port: int = settings.port
        self.controller_port: int = settings.controller_port
        self.kafka_version: str = settings.kafka_version
        self.heap_mb: int = settings.heap_mb
        self.start_timeout_s: float = settings.start_timeout_s
        self.bootstrap: str = f"{HOST}:{self.port}"
        self.dir: Path = (
            Path(settings.dir).expanduser().resolve() if settings.dir
            else default_broker_dir(self.port)
        )
        self.login: BrokerLogin | None = None
        if settings.security == "sasl_ssl":
            self.login = BrokerLogin(self.dir / "tls", config.kafka.sasl_username, read_sasl_password(config))
        # What the broker's own probes connect with: its SASL_SSL login, or nothing.
        self.probe_bootstrap: str = SecuredBootstrap(
            self.bootstrap, self.login.client_settings() if self.login else {})

    def __repr__(self) -> str:
        return f"LocalBroker({self.bootstrap}, dir={str(self.dir)!r})"

    @property
    def properties_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def cluster_id_path(self) -> Path:
        return self.dir / "cluster.id"

    # -- public API -----------------------------------------------------------------------------

    def install(self) -> Path:
        """Fetch this version's jars into the per-user cache once; see :func:`install_kafka_jars`."""
        return install_kafka_jars(self.kafka_version)

    def start(self) -> bool:
        """Start the broker unless one already answers; ``True`` when this call started it.

        Raises
        ------
        BrokerError
            When Java 17+ or Maven is missing, a port is taken by something that is not this
            Kafka broker, or the broker dies or does not answer within ``start_timeout_s``
            (the message names the log file and quotes its last error).
        """
        if self._already_answers():
            return False
        self._check_settings()
        java = require_java()
        with self._start_lock() as waited:
            # Another process may have started it while this one waited for the lock.
            if (waited and self._already_answers()) or self._adopt_starting_broker():
                return False
            self._check_ports_free()
            libs = self.install()
            self._prepare_dir(java, libs)
            started = time.monotonic()
            pid = self._launch(java, libs)
            self._wait_until_ready(pid, started)
        logger.info("started Kafka %s on %s (pid %d) in %.1f s; log: %s",
                    self.kafka_version, self.bootstrap, pid, time.monotonic() - started,
                    self.log_path)
        return True

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop the broker started from this directory; ``False`` when none was running.

        Sends SIGTERM (Kafka shuts down cleanly), then SIGKILL after ``timeout_s``. Only a
        process whose command line is ``kafka.Kafka`` with this directory's
        ``server.properties`` is ever signalled.
        """
        pid = self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            if port_accepts(HOST, self.port):
                logger.warning("something listens on %s, but it was not started from %s; "
                               "not stopping it", self.bootstrap, self.dir)
            return False
        started = time.monotonic()
        _signal(pid, signal.SIGTERM)
        if not _wait_for_exit(pid, timeout_s):
            logger.warning("Kafka (pid %d) did not stop within %g s; killing it", pid, timeout_s)
            _signal(pid, signal.SIGKILL)
            _wait_for_exit(pid, KILL_WAIT_S)
        self.pid_path.unlink(missing_ok=True)
        logger.info("stopped Kafka on %s (pid %d) in %.1f s",
                    self.bootstrap, pid, time.monotonic() - started)
        return True

    def status(self) -> dict | None:
        """What answers on the port, or ``None`` if nothing does.

        Returns
        -------
        dict or None
            ``{"bootstrap", "cluster_id", "pid", "dir", "kafka_version"}``; ``pid`` is
            ``None`` when the broker answering was not started from this directory, and then
            ``kafka_version`` is ``None`` too (it is unknown).
        """
        info = cluster_info(self.probe_bootstrap)
        if info is None:
            return None
        pid = self.running_pid()
        return {
            "bootstrap": self.bootstrap,
            "cluster_id": info["cluster_id"],
            "pid": pid,
            "dir": str(self.dir),
            "kafka_version": self._running_version(pid) if pid is not None else None,
        }

    def running_pid(self) -> int | None:
        """The pid in ``broker.pid`` if it is a live ``kafka.Kafka`` started from this directory."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        command = _cmdline(pid)
        if "kafka.Kafka" not in command or str(self.properties_path) not in command:
            return None
        return pid

    # -- start, step by step --------------------------------------------------------------------

    def _already_answers(self) -> bool:
        if cluster_info(self.probe_bootstrap, timeout_s=READY_PROBE_TIMEOUT_S) is None:
            return False
        logger.info("Kafka broker already running on %s", self.bootstrap)
        return True

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[bool]:
        """Serialise concurrent starts from one directory (two test sessions, CLI + service).

        Yields whether another start held the lock, i.e. whether the broker may have been
        started meanwhile.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "start.lock", "a") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                waited = False
            except BlockingIOError:
                logger.info("another process is starting the broker in %s; waiting", self.dir)
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                waited = True
            try:
                yield waited
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _adopt_starting_broker(self) -> bool:
        """Wait for a broker of this directory that is still starting; refuse a foreign port."""
        pid = self.running_pid()
        if pid is None:
            return False
        running_port = self._configured_port()
        if running_port != self.port:
            raise BrokerError(
                f"{self.dir} belongs to the broker on port {running_port} (pid {pid}); "
                "give each broker its own [broker] dir"
            )
        logger.info("Kafka (pid %d) from %s is starting; waiting for it", pid, self.dir)
        self._wait_until_ready(pid, time.monotonic())
        return True

    def _configured_port(self) -> int | None:
        listeners = _read_properties(self.properties_path).get("listeners", "")
        match = re.search(r"(?:^|,)(?:PLAINTEXT|SASL_SSL)://[^,]*:(\d+)", listeners)
        return int(match.group(1)) if match else None

    def _check_ports_free(self) -> None:
        if port_accepts(HOST, self.port):
            raise BrokerError(
                f"port {self.port} on {HOST} is taken by a process that is not a Kafka broker "
                "(it accepts connections but does not answer Kafka metadata requests); stop it "
                "or set [broker] port to a free port"
            )
        if port_accepts(HOST, self.controller_port):
            raise BrokerError(
                f"controller port {self.controller_port} on {HOST} is already in use; stop that "
                "process or set [broker] controller_port to a free port"
            )

    def _check_settings(self) -> None:
        if self.port == self.controller_port:
            raise BrokerError(
                f"[broker] port and controller_port are both {self.port}; give them different ports"
            )
        if self.heap_mb < MIN_HEAP_MB:
            raise BrokerError(
                f"[broker] heap_mb = {self.heap_mb} is too small; use at least {MIN_HEAP_MB} "
                "(768 is comfortable)"
            )
        check_kafka_version(self.kafka_version)
        if self.login is not None:
            for what, value in (("[kafka] sasl_username", self.login.username),
                                ("the SASL password", self.login.password)):
                if not _LOGIN_CHARACTERS.fullmatch(value):
                    raise BrokerError(f"{what} of the local sasl_ssl broker may use only letters, digits and "
                                      "._~+- (it goes unquoted into the broker's JAAS settings); choose another")

    def _prepare_dir(self, java: str, libs: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.login is not None:
            ensure_tls_material(self.login.tls_dir)
        _write_private(  # mode 0600: with sasl_ssl it holds the JAAS lines with the password
            self.properties_path,
            render_server_properties(self.port, self.controller_port, self.data_dir, self.login),
        )
        if not (self.data_dir / "meta.properties").is_file():
            self._format_storage(java, libs)

    def _cluster_id(self) -> str:
        try:
            return self.cluster_id_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            cluster_id = new_cluster_id()
            self.cluster_id_path.write_text(cluster_id + "\n", encoding="utf-8")
            return cluster_id

    def _format_storage(self, java: str, libs: Path) -> None:
        cluster_id = self._cluster_id()
        arguments = ["kafka.tools.StorageTool", "format",
                     "-t", cluster_id, "-c", str(self.properties_path), "--ignore-formatted"]
        if self.login is not None:
            arguments += ["--add-scram",
                          f"{SCRAM_MECHANISM}=[name={self.login.username},password={self.login.password}]"]
        # The arguments go through a java @argfile (mode 0600) so the password is in no argument list.
        argfile = self.dir / "format.args"
        _write_private(argfile, "\n".join(arguments) + "\n")
        try:
            result = subprocess.run([java, "-cp", f"{libs}/*", f"@{argfile}"],
                                    capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S)
        finally:
            argfile.unlink(missing_ok=True)
        format_log = self.dir / "format.log"
        format_log.write_text(result.stdout + result.stderr, encoding="utf-8")
        if result.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {result.returncode}): "
                f"{last_error(result.stdout + result.stderr) or 'no error printed'}; see {format_log}"
            )
        logger.info("formatted Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)

    def _launch(self, java: str, libs: Path) -> int:
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        command = broker_command(java, libs, self.heap_mb, self.properties_path)
        with open(self.log_path, "ab") as log_file:
            process = subprocess.Popen(
                command,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LAUNCHED[process.pid] = process
        self.pid_path.write_text(f"{process.pid}\n", encoding="utf-8")
        return process.pid

    def _wait_until_ready(self, pid: int, started: float) -> None:
        deadline = started + self.start_timeout_s
        while True:
            if not _pid_alive(pid):
                _wait_for_exit(pid, 0)
                self._forget_pid(pid)
                raise BrokerError(
                    f"Kafka (pid {pid}) exited during start-up; {self._log_excerpt()}"
                )
            if cluster_info(self.probe_bootstrap, timeout_s=READY_PROBE_TIMEOUT_S) is not None:
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise BrokerError(
                    f"Kafka did not answer on {self.bootstrap} within {self.start_timeout_s:g} s "
                    f"and was stopped; {self._log_excerpt()}; on a slow machine raise "
                    "[broker] start_timeout_s"
                )
            time.sleep(POLL_INTERVAL_S)

    def _forget_pid(self, pid: int) -> None:
        try:
            if int(self.pid_path.read_text().strip()) == pid:
                self.pid_path.unlink()
        except (FileNotFoundError, ValueError):
            pass

    def _log_excerpt(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"no log at {self.log_path}"
        line = last_error(text)
        return f"see {self.log_path}" + (f"; last error: {line}" if line else " (no error in it)")

    def _running_version(self, pid: int) -> str:
        for part in _cmdline(pid):
            match = re.search(r"kafka-([^/]+)/libs/\*$", part)
            if match:
                return match.group(1)
        return self.kafka_version

