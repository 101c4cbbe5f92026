"""A bounded, deterministic history of model metrics over the stream, for plots.

Every ``every`` labels learned the processor appends one point::

    {"position": events seen, "labels": labels learned, "ts": event time (watermark),
     "models": {name: {"metrics": {...cumulative...}, "rolling_metrics": {...}}}}

When the history holds ``max_points`` points it doubles ``every`` and keeps only the points whose
label count is a multiple of the new ``every`` (every other point), so it never grows past
``max_points`` and always spans the whole stream at an even spacing. Both the points and ``every`` live in the checkpoint meta; since
appends depend only on the number of labels learned (a stream position, not wall time), a replay
from a checkpoint appends exactly the points an uninterrupted run would have.

>>> h = MetricsHistory(every=1, max_points=4)
>>> for n in range(1, 10):
...     _ = h.maybe_append(n, position=10 * n, ts=float(n), models={})
>>> [p["labels"] for p in h.points], h.every
([4, 8], 4)
"""

from __future__ import annotations

from typing import Any, Mapping

#: Append a point every this many labels learned, at first (doubled at each thinning).
DEFAULT_EVERY = 10
#: Never keep more points than this.
DEFAULT_MAX_POINTS = 1000


class MetricsHistory:
    """Points appended every ``every`` labels learned, thinned to at most ``max_points``."""

    def __init__(self, every: int = DEFAULT_EVERY, max_points: int = DEFAULT_MAX_POINTS,
                 points: list[dict] | None = None):
        if every < 1 or max_points < 2:
            raise ValueError("every must be >= 1 and max_points >= 2")
        self.every = every
        self.max_points = max_points
        self.points: list[dict] = list(points or [])

    def due(self, labels_learned: int) -> bool:
        """Whether a point is due after ``labels_learned`` labels (cheap: called per label)."""
        return labels_learned % self.every == 0

    def maybe_append(self, labels_learned: int, *, position: int, ts: float | None,
                     models: Mapping[str, Any]) -> bool:
        if not self.due(labels_learned):
            return False
        self.append(labels_learned, position=position, ts=ts, models=models)
        return True

    def append(self, labels_learned: int, *, position: int, ts: float | None, models: Mapping[str, Any]) -> None:
        self.points.append({"position": position, "labels": labels_learned, "ts": ts, "models": dict(models)})
        if len(self.points) >= self.max_points:
            self.every *= 2
            kept = [p for p in self.points if p["labels"] % self.every == 0]
            self.points = kept if len(kept) < self.max_points else kept[1::2]

    def to_meta(self) -> dict:
        return {"every": self.every, "max_points": self.max_points, "points": self.points}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, every: int = DEFAULT_EVERY,
                  max_points: int = DEFAULT_MAX_POINTS) -> "MetricsHistory":
        if not meta:
            return cls(every, max_points)
        return cls(int(meta.get("every", every)), int(meta.get("max_points", max_points)), list(meta.get("points", [])))


def model_snapshot(model: Any) -> dict:
    """``{"metrics": cumulative, "rolling_metrics": rolling}`` of an :class:`~learners.online_model.OnlineModel`.

    Both come from its prequential evaluation; ``rolling_metrics`` is ``{}`` when the model has no
    rolling window.
    """
    return {"metrics": model.evaluation.values(), "rolling_metrics": model.evaluation.rolling_values()}
