"""A scorer's view of the ``models`` topic: the newest verified snapshot, swapped in by reference.

Contract
--------
- :class:`SnapshotFollower` reads ``[scale] models_topic`` partition 0 with its own consumer,
  *assigned* (no consumer group: every scorer reads every snapshot) from the beginning.
- Records go through a :class:`~stream.scale.snapshots.Reassembler`; each completed snapshot is
  verified off the event loop (``asyncio.to_thread(verify_snapshot, ...)``), which checks the total
  SHA-256, then the seal (SHA-256, HMAC with ``RIVERBED_MODEL_KEY``, format) before anything is
  unpickled: bytes that fail are never unpickled.
- A snapshot whose version is not above the one served is ignored. A rejected one
  (:class:`~stream.scale.snapshots.SnapshotRejected`, :class:`state.errors.StateError`) is logged
  in one line, once per snapshot, counted in ``riverbed_snapshots_rejected_total{reason}``, and the
  current model stays. A rejected snapshot does not raise the reassembler's version floor, so a
  forged high version cannot hide the good snapshots after it.
- A good one replaces :attr:`SnapshotFollower.current` -- one reference,
  ``Current(models, version, created)`` -- and is counted (``riverbed_snapshot_swaps_total``,
  ``riverbed_scorer_model_version``, ``riverbed_snapshot_age_seconds``). The scorer reads
  ``current`` once per fetched batch, so a swap happens between records and never pauses serving:
  loading and verifying ran in a thread meanwhile.
- The scorer's copy of a model set never acts on drift: its label-free input monitors are switched
  off (``ModelSet.inputs = None``). The trainer runs them on the served stream
  (:meth:`learners.ModelSet.observe`); a scorer acting on its own (``reset``, ``retrain``,
  ``challenger``) would serve a model the trainer does not have.

Before the first snapshot
-------------------------
:meth:`SnapshotFollower.start` reads the topic up to the end offset it had at start (a bounded
wait), verifying the newest complete snapshot first (an older one only if the newer ones are
rejected), so a scorer starts with the newest good snapshot. When there is none, the scorer does
**not** wait: it serves a *fresh* model of the configured spec (:func:`build_model_set`, version
0) and says so in the log. Waiting would stall every prediction until a trainer has learned and
published; a fresh model answers at once with exactly what a single process predicts before its
first label (its predictions carry version 0), and the first snapshot replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from learners import ModelSet
from state.errors import StateError
from stream.config import Config
from stream.connect.security import aiokafka_security
from stream.engine.model_config import build_model_set
from stream.engine.transforms import first_line
from stream.scale.snapshots import H_ID, Reassembler, Snapshot, SnapshotRejected, verify_snapshot
from stream.scale.topics import models_topic_configs

log = logging.getLogger(__name__)

#: How many rejected snapshot ids are remembered so that each is logged once.
REJECTED_MEMORY = 64
#: Chunks whose headers carry no snapshot id are logged at most once per this many seconds.
UNNAMED_LOG_INTERVAL_S = 60.0


class Current(NamedTuple):
    """What a scorer serves: the model set, the snapshot version (0: fresh) and its creation time."""

    models: ModelSet
    version: int
    created: float | None


class SnapshotMetrics:
    """The snapshot metrics of a scorer, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.registry = registry
        self.swaps = Counter("riverbed_snapshot_swaps", "Verified model snapshots swapped in.", registry=r)
        self.rejected = Counter(
            "riverbed_snapshots_rejected",
            "Model snapshots refused (never unpickled), by reason: sha256, seal, incompatible, malformed, unloadable.",
            ["reason"], registry=r,
        )
        self.version = Gauge(
            "riverbed_scorer_model_version", "Version (labels learned) of the snapshot served; 0: a fresh model.",
            registry=r,
        )
        self.age = Gauge(
            "riverbed_snapshot_age_seconds",
            "Seconds since the served snapshot was created by the trainer (NaN while serving a fresh model).",
            registry=r,
        )
        self.age.set(math.nan)


def scorer_copy(models: ModelSet) -> ModelSet:
    """``models`` made fit for serving on a scorer: its label-free drift monitors off (see the module docstring)."""
    models.inputs = None
    return models


class SnapshotFollower:
    """Follows the ``models`` topic and keeps :attr:`current` at the newest verified snapshot.

    Parameters
    ----------
    config
        The scorer's configuration (``[scale] models_topic``, ``[kafka]`` settings, the model spec).
    metrics
        Where swaps, rejections, the served version and the snapshot age are counted.
    bootstrap
        The Kafka bootstrap servers; ``None`` to use the follower without Kafka (unit tests feed
        records with :meth:`feed`).
    """

    def __init__(self, config: Config, metrics: SnapshotMetrics, bootstrap: str | None = None):
        self.config = config
        self.metrics = metrics
        self.bootstrap = bootstrap
        self.reassembler = Reassembler()
        self.current: Current | None = None
        self.swapped_at: float | None = None
        """Wall-clock time (``time.time()``) of the last swap."""
        self.swaps = 0
        self.rejected: dict[str, int] = {}
        """Rejected snapshots by reason."""
        self._logged: OrderedDict[str, None] = OrderedDict()
        self._unnamed_logged_at = -math.inf
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._tp = TopicPartition(config.scale.models_topic, 0)

    # -- record handling (no Kafka) --------------------------------------------------------

    @property
    def version(self) -> int:
        """The version served (-1 before :meth:`start` or :meth:`serve_fresh`)."""
        return -1 if self.current is None else self.current.version

    def reassemble(self, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> Snapshot | None:
        """Add one ``models`` record; the snapshot it completes (None: incomplete or rejected chunk)."""
        headers = list(headers or ())
        try:
            return self.reassembler.feed(value, headers)
        except SnapshotRejected as exc:
            sid = dict(headers).get(H_ID)
            self._reject(exc.reason, str(exc), None if sid is None else sid.decode("utf-8", "replace"))
            return None

    async def accept(self, snapshot: Snapshot) -> bool:
        """Verify ``snapshot`` off the event loop and swap it in; False when ignored or rejected."""
        if snapshot.version <= self.version:
            log.debug("snapshot %s version %d ignored: serving version %d", snapshot.snapshot_id,
                      snapshot.version, self.version)
            return False
        try:
            state = await asyncio.to_thread(verify_snapshot, snapshot)
        except SnapshotRejected as exc:
            self._rejected_snapshot(snapshot, exc.reason, str(exc))
            return False
        except StateError as exc:
            self._rejected_snapshot(snapshot, "seal", f"snapshot {snapshot.snapshot_id}: {exc}")
            return False
        except Exception as exc:  # authentic bytes that do not load here (e.g. a custom model's module is missing)
            self._rejected_snapshot(snapshot, "unloadable", f"snapshot {snapshot.snapshot_id}: {first_line(exc)}")
            return False
        models = state["models"]
        if not isinstance(models, ModelSet):
            self._rejected_snapshot(snapshot, "malformed", f"snapshot {snapshot.snapshot_id}: not a model set")
            return False
        if snapshot.version <= self.version:  # a newer one was swapped in while this one was verified
            return False
        self._swap(Current(scorer_copy(models), snapshot.version, snapshot.created))
        log.info("serving snapshot %s version %d (created %.1f s ago)", snapshot.snapshot_id, snapshot.version,
                 max(0.0, time.time() - snapshot.created))
        return True

    async def feed(self, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> bool:
        """:meth:`reassemble` then, for a completed snapshot, :meth:`accept`; True on a swap."""
        snapshot = self.reassemble(value, headers)
        return False if snapshot is None else await self.accept(snapshot)

    def serve_fresh(self) -> None:
        """Serve a fresh model of the configured spec, version 0 (no snapshot published yet)."""
        self._swap(Current(scorer_copy(build_model_set(self.config)), 0, None), count=False)

    def publish_age(self) -> None:
        """Set the snapshot age gauge (the scorer calls it periodically)."""
        current = self.current
        if current is not None and current.created is not None:
            self.metrics.age.set(max(0.0, time.time() - current.created))

    def _swap(self, current: Current, count: bool = True) -> None:
        self.current = current  # the one reference the scorer reads between records
        self.swapped_at = time.time()
        self.metrics.version.set(current.version)
        if current.created is None:
            self.metrics.age.set(math.nan)
        else:
            self.publish_age()
        if count:
            self.swaps += 1
            self.metrics.swaps.inc()

    def _rejected_snapshot(self, snapshot: Snapshot, reason: str, message: str) -> None:
        # A rejected snapshot must not raise the floor below which the reassembler drops chunks.
        self.reassembler.newest_version = max(self.version, -1)
        self._reject(reason, message, snapshot.snapshot_id)

    def _reject(self, reason: str, message: str, snapshot_id: str | None) -> None:
        """Count and log a rejection: once per snapshot id (chunks of one snapshot count once)."""
        if snapshot_id is not None:
            key = f"{snapshot_id}:{reason}"
            if key in self._logged:
                return
            self._logged[key] = None
            while len(self._logged) > REJECTED_MEMORY:
                self._logged.popitem(last=False)
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.metrics.rejected.labels(reason).inc()
        now = time.monotonic()
        if snapshot_id is None:
            if now - self._unnamed_logged_at < UNNAMED_LOG_INTERVAL_S:
                return
            self._unnamed_logged_at = now
        log.warning("model snapshot rejected (%s), still serving version %d: %s", reason, self.version, message)

    # -- Kafka -----------------------------------------------------------------------------

    def _build_consumer(self) -> AIOKafkaConsumer:
        cfg = self.config
        # the broker's limit on a record batch of the models topic: one fetch always fits one batch
        fetch_bytes = max(1_048_576, int(models_topic_configs(cfg)["max.message.bytes"]))
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{cfg.kafka.client_id}-snapshots",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=int(cfg.kafka.request_timeout_s * 1000),
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(52_428_800, fetch_bytes),
            **aiokafka_security(cfg),
        )

    async def start(self, initial_timeout_s: float) -> None:
        """Read the models topic up to its end offset at start (at most ``initial_timeout_s``), serve
        the newest good snapshot (else a fresh model), then follow the topic in a background task."""
        if self.bootstrap is None:
            raise RuntimeError("a follower without bootstrap servers is fed with feed()")
        self._consumer = consumer = self._build_consumer()
        await consumer.start()
        try:
            consumer.assign([self._tp])
            await consumer.seek_to_beginning(self._tp)
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            completed = await self._read_until(end, time.monotonic() + initial_timeout_s)
            for snapshot in sorted(completed, key=lambda s: s.version, reverse=True):
                if await self.accept(snapshot):
                    break
            if self.current is None:
                self.serve_fresh()
                log.info("no verified model snapshot on %s yet: serving a fresh %s model (version 0) until one "
                         "arrives", self._tp.topic, self.config.model_name)
        except BaseException:
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._follow(), name="riverbed-snapshot-follower")

    async def _read_until(self, end: int, deadline: float) -> list[Snapshot]:
        """Completed snapshots of the records before offset ``end`` (not yet verified)."""
        assert self._consumer is not None
        completed: list[Snapshot] = []
        while await self._consumer.position(self._tp) < end:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("the models topic was not read to its end within the start timeout; serving what "
                            "was read, following the rest")
                break
            batch = await self._consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batch.values():
                for record in records:
                    snapshot = self.reassemble(record.value, record.headers)
                    if snapshot is not None:
                        completed.append(snapshot)
        return completed

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    await self.feed(record.value, record.headers)

    def raise_if_failed(self) -> None:
        """Raise what stopped the background task, if it failed."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # already surfaced by raise_if_failed, or irrelevant at stop
                log.debug("the snapshot follower had failed: %r", exc)
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

