"""Prequential (test-then-train) evaluation with several named metrics.

Every prediction is scored against its label when the label arrives, *before* the model learns
from that label, with the prediction that was made when the event arrived. This is exactly what
:func:`river.evaluate.progressive_val_score` does, and :class:`Prequential` applies River's rule
for which prediction each metric sees (``river/evaluate/progressive_validation.py``):

* for a classifier, a metric with ``requires_labels == False`` (``ROCAUC``, ``LogLoss``,
  ``CrossEntropy``, ...) is given the dict of class probabilities, every other metric the
  predicted label;
* a regressor's metrics are given the predicted value;
* a metric is not updated at all when its prediction is ``None`` or ``{}`` (a classifier that has
  not seen any class yet). The label still counts as learned; it just is not scored.

A metric that has scored nothing yet has no value: :meth:`Prequential.values` and
:meth:`Prequential.rolling_values` report ``None`` for it (``null`` in JSON), not River's
placeholder ``0.0``, which reads like a real, terrible score.

So, fed with the same predictions in the same order, the values here equal River's, to the bit.

"""

from __future__ import annotations

import typing

from river import metrics as river_metrics
from river import utils

from learners.errors import LearnerError
from learners.metrics import build_metric

__all__ = ["Prequential"]


class Prequential:
    """Cumulative prequential metrics, updated once per labelled prediction.

    Parameters
    ----------
    metrics
        The metrics, by the name under which they are reported. Each must fit the model whose
        predictions are scored (see :func:`learners.metrics.build_metric`).

    Attributes
    ----------
    metrics
        The River metric objects, by name.
    n_updates
        How many labelled predictions were passed to :meth:`update` (scored or not).

    Examples
    --------

    >>> from river import metrics
    >>> evaluation = Prequential({"accuracy": metrics.Accuracy(), "rocauc": metrics.ROCAUC()})
    >>> evaluation.update(True, True, {True: 0.8, False: 0.2})
    >>> evaluation.update(False, True, {True: 0.6, False: 0.4})
    >>> evaluation.update(True, None, {})   # the model knew no class yet: not scored
    >>> evaluation.values()
    {'accuracy': 0.5, 'rocauc': 1.0}
    >>> evaluation.n_updates
    3

    Build it from names with :meth:`from_names`; before any scored label, metrics have no value:

    >>> Prequential.from_names(["mae", "rmse"], "regression").values()
    {'mae': None, 'rmse': None}

    """

    def __init__(self, metrics: typing.Mapping[str, river_metrics.base.Metric], window: int | None = None):
        self.metrics: dict[str, river_metrics.base.Metric] = dict(metrics)
        for name, metric in self.metrics.items():
            if not isinstance(metric, river_metrics.base.Metric):
                raise LearnerError(
                    f"metric {name!r} is a {type(metric).__name__}, not a River metric; "
                    "pass river.metrics objects or use Prequential.from_names"
                )
        # River's rule, decided once per metric: a classification metric that does not require
        # labels is fed probabilities. Regression metrics have no `requires_labels` at all.
        self._uses_proba: dict[str, bool] = {
            name: isinstance(metric, river_metrics.base.ClassificationMetric)
            and not metric.requires_labels
            for name, metric in self.metrics.items()
        }
        self.n_updates = 0
        #: Names of the metrics that have not scored any prediction yet (their value is ``None``).
        self.unscored: set[str] = set(self.metrics)
        if window is not None and (type(window) is not int or window < 1):
            raise LearnerError(f"rolling window must be a positive integer, got {window!r}")
        self.window = window
        # The same metrics over the last `window` scored predictions (River's utils.Rolling
        # reverts the oldest update), or none when no window is asked for.
        self.rolling: dict[str, utils.Rolling] = (
            {}
            if window is None
            else {name: utils.Rolling(type(metric), window_size=window) for name, metric in self.metrics.items()}
        )

    @classmethod
    def from_names(cls, names: typing.Iterable[str], task: str, window: int | None = None) -> Prequential:
        """Build the metrics by name (see :func:`learners.metrics.build_metric`) for ``task``.

        >>> Prequential.from_names(["accuracy", "accuracy"], "binary")
        Traceback (most recent call last):
        ...
        learners.errors.LearnerError: metric 'accuracy' is listed twice; name each metric once

        """
        if isinstance(names, str):
            names = [names]
        built: dict[str, river_metrics.base.Metric] = {}
        for name in names:
            if name in built:
                raise LearnerError(f"metric {name!r} is listed twice; name each metric once")
            built[name] = build_metric(name, task)
        return cls(built, window)

    def update(self, y_true, y_pred, proba: dict | None) -> None:
        """Score one prediction against its label.

        Parameters
        ----------
        y_true
            The label.
        y_pred
            The predicted label (classifiers) or value (regressors), made before the model
            learnt ``y_true``; ``None`` if the model could not predict.
        proba
            The class probabilities behind ``y_pred`` (classifiers); ``{}`` or ``None`` when the
            model knew no class yet, ``None`` for regressors.

        """
        self.n_updates += 1
        uses_proba = self._uses_proba
        rolling = self.rolling
        unscored = self.unscored
        for name, metric in self.metrics.items():
            prediction = proba if uses_proba[name] else y_pred
            if prediction is not None and prediction != {}:
                metric.update(y_true, prediction)
                if rolling:
                    rolling[name].update(y_true, prediction)
                if unscored:
                    unscored.discard(name)

    def values(self) -> dict[str, float | None]:
        """The current value of each metric, by name, as plain ``float``; ``None`` before it scored anything.

        (Some River metrics, e.g. ``ROCAUC``, return ``numpy.float64``; the conversion is exact.)
        """
        unscored = self.unscored
        return {
            name: None if name in unscored else float(metric.get()) for name, metric in self.metrics.items()
        }

    def rolling_values(self) -> dict[str, float | None]:
        """The value of each metric over the last ``window`` scored predictions (``{}`` without a window).

        ``None`` while the window holds no scored prediction (before the first one, or after
        :meth:`set_window` started a new window).

        >>> evaluation = Prequential.from_names(["accuracy"], "binary", window=2)
        >>> for y, p in [(True, False), (True, True), (False, False)]:
        ...     evaluation.update(y, p, None)
        >>> evaluation.values(), evaluation.rolling_values()
        ({'accuracy': 0.6666666666666666}, {'accuracy': 1.0})
        """
        return {
            name: _real(metric.obj.get()) if metric.window else None for name, metric in self.rolling.items()
        }

    def set_window(self, window: int | None) -> None:
        """Keep the rolling metrics over ``window`` labels from now on (a new, empty window if it changes)."""
        if window == self.window:
            return
        if window is not None and (type(window) is not int or window < 1):
            raise LearnerError(f"rolling window must be a positive integer, got {window!r}")
        self.window = window
        self.rolling = (
            {}
            if window is None
            else {name: utils.Rolling(type(metric), window_size=window) for name, metric in self.metrics.items()}
        )

    def rolling_value(self, name: str) -> float:
        """One metric's rolling value."""
        return _real(self.rolling[name].obj.get())

    def rolling_count(self) -> int:
        """How many scored predictions the rolling window currently holds."""
        for metric in self.rolling.values():
            return len(metric.window)
        return 0

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{name}={'n/a' if value is None else format(value, '.6g')}" for name, value in self.values().items()
        )
        return f"Prequential({inner})"


def _real(value) -> float:
    """A metric value as ``float``. Reverting updates can leave a tiny negative sum of squares under a
    square root (rolling ``rmse``, ``rmsle``), which Python turns into a complex number: report its
    real part, which is the value up to rounding."""
    if isinstance(value, complex):
        return float(value.real)
    return float(value)
