"""The last error in a broker's log (or in the output of Maven or the ``StorageTool``), in one line.

:func:`last_error` is what :class:`~stream.devtools.broker.LocalBroker` quotes when the broker
dies or does not answer, and what :func:`~stream.devtools.kafka_install.install_kafka_jars` quotes
when Maven fails without an ``[ERROR]`` line.
"""

from __future__ import annotations

import re

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
