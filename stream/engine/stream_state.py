"""The processing state that a checkpoint captures, apart from the pending-label store.

:class:`StreamState` is what the record handlers change and what the checkpointer snapshots:
the models (with their metrics, drift monitors and challengers), the label-request sampler, the
counts, the next offset of every input partition, the event-time watermark and the metrics
history. Keeping it in one object is what lets the handlers run in unit tests without Kafka
and lets the checkpointer write exactly what was applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stream.engine.history import MetricsHistory

if TYPE_CHECKING:
    from learners import ModelSet
    from learners.active import LabelRequestSampler

COUNT_NAMES = (
    "events",
    "labels",
    "predictions",
    "joined",
    "unmatched_labels",
    "duplicate_labels",
    "expired",
    "invalid",
    "label_requests",
)
"""Every count riverbed keeps (checkpointed, in ``status`` and, as counters, in Prometheus)."""


@dataclass
class StreamState:
    """What the handlers change record by record (see the module docstring).

    ``applied`` counts the records applied since the last checkpoint snapshot; it is not
    checkpointed and tells the checkpointer whether there is anything new to write.
    """

    models: ModelSet
    sampler: LabelRequestSampler | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_NAMES, 0))
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    watermark: float | None = None
    events_since_sweep: int = 0
    history: MetricsHistory = field(default_factory=MetricsHistory)
    applied: int = 0
