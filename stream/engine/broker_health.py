"""Broker outages in a few log lines, not thousands.

When Kafka goes away, riverbed keeps waiting and carries on when it is back (the clients retry,
the checkpoint is the truth). What it must not do is flood the log: during a 28 s outage the Kafka
client logged about 1,800 ERROR lines (~65 a second). Two pieces:

- :class:`RateLimitFilter` on the Kafka clients' loggers lets the first record of each kind
  through, then at most one record per ``interval_s`` per logger, and says how many it held back;
- :class:`BrokerHealth` probes the broker once a ``probe_s`` (a metadata round trip) and logs one
  warning when it becomes unreachable, a reminder at most every ``remind_s`` while it stays away,
  and one line when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

log = logging.getLogger("stream.engine.processor")

#: The loggers of the Kafka clients.
CLIENT_LOGGERS = ("aiokafka", "kafka")


class RateLimitFilter(logging.Filter):
    """At most one record per ``interval_s`` per logger name (WARNING and above are counted).

    >>> f = RateLimitFilter(interval_s=60, clock=lambda: 0.0)
    >>> rec = lambda: logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "no broker", None, None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        last = self._last.get(record.name)
        if last is not None and now - last < self.interval_s:
            self._held[record.name] = self._held.get(record.name, 0) + 1
            return False
        held = self._held.pop(record.name, 0)
        if held:
            record.msg = f"{record.msg} ({held} similar messages held back in the last {self.interval_s:.0f} s)"
        self._last[record.name] = now
        return True


def install_client_log_limits(interval_s: float = 30.0) -> None:
    """Rate-limit the Kafka clients' records on every handler of the root logger (idempotent).

    A filter on a logger does not see the records of its children (``aiokafka.conn``), and those
    records reach the root's handlers by propagation: so the limit sits on the handlers.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ClientRecordLimit) for f in handler.filters):
            handler.addFilter(ClientRecordLimit(RateLimitFilter(interval_s)))


class ClientRecordLimit(logging.Filter):
    """Apply a :class:`RateLimitFilter` to the Kafka clients' records only."""

    def __init__(self, limit: RateLimitFilter):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] in CLIENT_LOGGERS:
            return self.limit.filter(record)
        return True


class BrokerHealth:
    """Logs when the broker goes away, reminds while it is away, and says when it is back.

    Parameters
    ----------
    probe
        ``await probe(timeout_s)`` returns None when the broker answered, else why not.
    where
        The bootstrap servers, for the log lines.
    probe_s, remind_s
        How often to probe, and to remind while the broker is away.
    """

    def __init__(self, probe: Callable[[float], Awaitable[str | None]], where: str, *,
                 probe_s: float = 2.0, remind_s: float = 30.0):
        self.probe = probe
        self.where = where
        self.probe_s = probe_s
        self.remind_s = remind_s
        self.down_since: float | None = None
        self.outages = 0
        self._reminded = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> "BrokerHealth":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def check(self) -> None:
        """One probe and the log line it calls for, if any."""
        reason = await self.probe(self.probe_s)
        now = time.monotonic()
        if reason is None:
            if self.down_since is not None:
                log.warning("Kafka at %s is reachable again after %.0f s; carrying on", self.where, now - self.down_since)
                self.down_since = None
            return
        if self.down_since is None:
            self.down_since = self._reminded = now
            self.outages += 1
            log.warning("Kafka at %s is unreachable (%s): waiting for it, nothing is lost", self.where, reason)
        elif now - self._reminded >= self.remind_s:
            self._reminded = now
            log.warning("Kafka at %s still unreachable after %.0f s (%s)", self.where, now - self.down_since, reason)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.probe_s)
            await self.check()
