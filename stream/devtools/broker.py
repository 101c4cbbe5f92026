"""A local single-node Apache Kafka 4.x broker (KRaft, combined broker + controller).

No tarball and no Docker: Maven resolves ``org.apache.kafka:kafka_2.13:<version>`` plus an SLF4J
binding into a per-user jar cache once, and the broker runs as ``java -cp '<libs>/*'
kafka.Kafka server.properties`` on loopback only.

:class:`LocalBroker` (start, stop, status) is here with what only it needs: ``server.properties``
(:func:`render_server_properties`) and the ``java`` command line (:func:`broker_command`). Its
parts are modules of their own, and their public names are importable from here too:

- :mod:`stream.devtools.broker_paths` -- the loopback address, the broker directory, the jar cache;
- :mod:`stream.devtools.kafka_install` -- Java, Maven and the Kafka jars (the jar cache, its logging jars);
- :mod:`stream.devtools.broker_tls` -- the TLS material and the SASL login of a sasl_ssl broker;
- :mod:`stream.devtools.broker_process` -- whether a pid is alive, its command line, waiting, signals;
- :mod:`stream.devtools.broker_log` -- the last error in a broker's log.

Files
-----
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

The jar cache is described in :mod:`stream.devtools.kafka_install`.

Security
--------
``[broker] security = "plaintext"`` (the default) has one PLAINTEXT listener on ``[broker] port``;
``"sasl_ssl"`` is described in :mod:`stream.devtools.broker_tls`.

Record timestamps: Kafka 4.x keeps its default ``log.message.timestamp.after.max.ms`` (one
hour); replayed synthetic event times belong in the payload ``ts``, not the record timestamp.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

from stream.config import Config
from stream.connect.security import SecuredBootstrap, read_sasl_password
from stream.errors import BrokerError
from stream.connect.topics import cluster_info, port_accepts
from stream.devtools.broker_log import last_error
from stream.devtools.broker_paths import HOST, default_broker_dir, jar_cache_dir
from stream.devtools.broker_process import _LAUNCHED, _cmdline, _pid_alive, _signal, _wait_for_exit
from stream.devtools.broker_tls import (
    CERT_DAYS,
    OPENSSL_HINT,
    SCRAM_MECHANISM,
    _LOGIN_CHARACTERS,
    BrokerLogin,
    _write_private,
    create_ca,
    create_server_keystore,
    ensure_tls_material,
    sasl_ssl_settings,
)
from stream.devtools.kafka_install import (
    DEPENDENCY_PLUGIN,
    INSTALL_MARKER,
    JAVA_HINT,
    MAVEN_HINT,
    MAVEN_TIMEOUT_S,
    MIN_JAVA_MAJOR,
    MIN_KAFKA_MAJOR,
    SCALA_SUFFIX,
    SLF4J_SIMPLE_VERSION,
    check_kafka_version,
    find_java,
    install_kafka_jars,
    parse_java_major,
    render_pom,
    require_java,
    require_maven,
)

# Every public name this module had before its parts moved out; the moved ones are re-exported.
__all__ = [
    "CERT_DAYS", "DEPENDENCY_PLUGIN", "FORMAT_TIMEOUT_S", "HOST", "INITIAL_HEAP_MB", "INSTALL_MARKER", "JAVA_HINT",
    "KILL_WAIT_S", "MAVEN_HINT", "MAVEN_TIMEOUT_S", "MIN_HEAP_MB", "MIN_JAVA_MAJOR", "MIN_KAFKA_MAJOR", "OPENSSL_HINT",
    "POLL_INTERVAL_S", "READY_PROBE_TIMEOUT_S", "SCALA_SUFFIX", "SCRAM_MECHANISM", "SINGLE_NODE_SETTINGS",
    "SLF4J_SIMPLE_VERSION", "BrokerLogin", "LocalBroker", "broker_command", "check_kafka_version", "create_ca",
    "create_server_keystore", "default_broker_dir", "ensure_tls_material", "find_java", "install_kafka_jars",
    "jar_cache_dir", "last_error", "new_cluster_id", "parse_java_major", "render_pom", "render_server_properties",
    "require_java", "require_maven", "sasl_ssl_settings",
]

logger = logging.getLogger(__name__)

MIN_HEAP_MB = 128
INITIAL_HEAP_MB = 256
FORMAT_TIMEOUT_S = 120.0
READY_PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
KILL_WAIT_S = 10.0

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


def _read_properties(path: Path) -> dict[str, str]:
    properties = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            properties[key.strip()] = value.strip()
    return properties


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
