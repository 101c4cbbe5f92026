"""The trainer's snapshot publisher: the sealed model set, as chunks, to the compacted ``models`` topic.

Contract
--------
- A snapshot is :func:`stream.engine.model_bytes.seal_model_state` of the trainer's model set and
  label-request sampler (the bytes a checkpoint carries), split by
  :func:`stream.scale.snapshots.make_chunks` into ``[scale] snapshot_chunk_bytes`` chunks, keyed
  ``<model-set name>/<i>``, with the version and the state's input offsets
  (``{"topic:partition": next offset}``) in the headers.
- **Version** = ``counts["joined"]``, the labels learned so far: monotone (also across champion
  promotions), and, because learning is deterministic, a replay after a restart reaches the
  same version with the same model.
- **When**: once at start (the restored model, before anything is applied), then whenever
  ``[scale] snapshot_every_labels`` labels were learned since the last snapshot, or
  ``[scale] snapshot_interval_s`` seconds passed since it and at least one label was learned.
  :meth:`SnapshotPublisher.maybe_publish` checks this; the trainer calls it once per loop slice,
  so versions of successive snapshots strictly increase but are not exact multiples of the
  label interval. The trainer also publishes a last snapshot when it stops.
- Chunks go through the run's output (:class:`~stream.engine.output.Output`): at-least-once they
  are acknowledged before a checkpoint covering them lands; exactly-once they are part of the
  transaction of their cut (and suppressed while replaying below the committed cut, like every
  other output).
- Sealing runs on the processing loop (it must see a consistent model set); its time is the
  ``riverbed_snapshot_seal_seconds`` histogram.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from stream.engine.handlers import Sink
from stream.engine.model_bytes import seal_model_state
from stream.engine.stream_state import StreamState
from stream.scale.metrics import TrainerMetrics
from stream.scale.snapshots import make_chunks

log = logging.getLogger(__name__)


def snapshot_offsets(state: StreamState) -> dict[str, int]:
    """The state's input offsets as a snapshot header wants them: ``{"topic:partition": next offset}``."""
    return {f"{topic}:{partition}": offset for (topic, partition), offset in sorted(state.offsets.items())}


class SnapshotPublisher:
    """Publishes model snapshots of ``state`` to ``topic`` through ``output`` (see the module docstring).

    Parameters
    ----------
    state
        The trainer's stream state (models, sampler, counts, offsets).
    output
        Where the chunk records go (the run's output, or a list in tests).
    topic
        The models topic (``[scale] models_topic``).
    name
        The model-set name, the prefix of every chunk key.
    every_labels
        Publish after this many labels learned since the last snapshot (``[scale] snapshot_every_labels``).
    interval_s
        Or after this many seconds, when at least one label was learned (``[scale] snapshot_interval_s``).
    chunk_bytes
        Largest chunk value (``[scale] snapshot_chunk_bytes``).
    metrics
        The trainer's metrics (None: none recorded).
    on_published
        Called after a snapshot's chunks were added (the trainer wakes the output's senders).
    clock
        Monotonic seconds (a fake one in tests).
    """

    def __init__(
        self,
        state: StreamState,
        output: Sink,
        *,
        topic: str,
        name: str,
        every_labels: int,
        interval_s: float,
        chunk_bytes: int,
        metrics: TrainerMetrics | None = None,
        on_published: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.state = state
        self.output = output
        self.topic = topic
        self.name = name
        self.every_labels = max(1, every_labels)
        self.interval_s = interval_s
        self.chunk_bytes = chunk_bytes
        self.metrics = metrics
        self.on_published = on_published
        self.clock = clock
        self.last_version: int | None = None
        """Version of the last snapshot published (None: none yet)."""
        self.last_at = 0.0
        self.published = 0
        """Snapshots published by this instance."""

    def due(self) -> bool:
        """True when a snapshot should be published now (see the module docstring)."""
        if self.last_version is None:
            return True
        learned = self.state.counts["joined"] - self.last_version
        if learned <= 0:
            return False
        return learned >= self.every_labels or self.clock() - self.last_at >= self.interval_s

    def maybe_publish(self) -> bool:
        """Publish when :meth:`due`; True when it did."""
        if not self.due():
            return False
        self.publish()
        return True

    def publish(self) -> int:
        """Seal the model set and add its chunks to the output now; returns the version published."""
        state = self.state
        version = state.counts["joined"]
        t0 = time.perf_counter()
        blob = seal_model_state(state.models, state.sampler)
        sealed_s = time.perf_counter() - t0
        chunks = make_chunks(
            blob, name=self.name, version=version, offsets=snapshot_offsets(state), chunk_bytes=self.chunk_bytes
        )
        for chunk in chunks:
            self.output.add(self.topic, chunk.key, chunk.value, chunk.headers)
        self.last_version = version
        self.last_at = self.clock()
        self.published += 1
        metrics = self.metrics
        if metrics is not None:
            metrics.seal_seconds.observe(sealed_s)
            metrics.published.inc()
            metrics.published_version.set(version)
            metrics.snapshot_bytes.set(len(blob))
            metrics.snapshot_chunks.set(len(chunks))
        log.debug(
            "published snapshot v%d of %r: %d bytes in %d chunks (sealed in %.1f ms)",
            version, self.name, len(blob), len(chunks), sealed_s * 1000,
        )
        if self.on_published is not None:
            self.on_published()
        return version
