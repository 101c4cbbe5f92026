"""Java, Maven and the Apache Kafka jars a local broker runs from.

No tarball and no Docker: Maven resolves ``org.apache.kafka:kafka_2.13:<version>`` plus an SLF4J
binding into a per-user jar cache once (:func:`install_kafka_jars`), and the broker runs from it on
a Java 17+ found by :func:`require_java`.

Files
-----
Jar cache (shared read-only by every broker of one Kafka version)::

    ${XDG_CACHE_HOME:-~/.cache}/riverbed/kafka-<version>/
        pom.xml, libs/*.jar, riverbed-install-complete   (marker written last)

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
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream.errors import BrokerError
from stream.devtools.broker_log import _shorten, last_error
from stream.devtools.broker_paths import jar_cache_dir

logger = logging.getLogger(__name__)

MIN_JAVA_MAJOR = 17
MIN_KAFKA_MAJOR = 4
SCALA_SUFFIX = "2.13"
SLF4J_SIMPLE_VERSION = "1.7.36"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
INSTALL_MARKER = "riverbed-install-complete"
MAVEN_TIMEOUT_S = 1800.0

JAVA_HINT = "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Apache Maven (Debian: apt-get install maven); it downloads the Kafka jars once"


# -- tools --------------------------------------------------------------------------------------


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


# -- installation -------------------------------------------------------------------------------


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
