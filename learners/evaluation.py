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

How one label is scored (the hot path)
--------------------------------------
River scores a label three times per metric: the cumulative metric, the rolling copy
(``utils.Rolling``), and the revert of the label leaving the window, each recomputing the
per-label quantity (the log loss, the threshold a score falls under, whether the label was
right). :meth:`Prequential.update` computes it once per label and per metric and keeps the
quantities of the labels in the window, so the revert reuses it. The accumulators receive the
same floating-point operations, in the same order, as River's ``update``/``revert`` would apply:
values are unchanged to the bit (``tests/unit/learners/test_exact_metrics.py`` checks every metric
against River's own classes). This covers :mod:`learners.exact_metrics`' ``Accuracy`` and
``ROCAUC`` and River's mean metrics (``LogLoss``, ``CrossEntropy``, ``MAE``, ``MSE``, ``RMSE``,
``MAPE``, ``SMAPE``); any other metric is updated by its own ``update`` and ``utils.Rolling``.
The kept quantities are derived data: they are not pickled (a checkpoint holds what it held
before) and are recomputed from the window after a restore or a :meth:`Prequential.set_window`.

"""

from __future__ import annotations

import collections
import typing
from bisect import bisect_left

from river import metrics as river_metrics
from river import stats, utils

from learners import exact_metrics
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
        self._plan: list | None = None  # (name, uses_proba, scorer) per metric; see _build_plan

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_plan", None)  # derived from the rest; rebuilt on first use
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._plan = None

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
        plan = self._plan
        if plan is None:
            plan = self._plan = self._build_plan()
        unscored = self.unscored
        for name, uses_proba, score in plan:
            prediction = proba if uses_proba else y_pred
            if prediction is not None and prediction != {}:
                score(y_true, prediction)
                if unscored:
                    unscored.discard(name)

    def _build_plan(self) -> list:
        """One scorer per metric: cumulative and rolling update in one call (module docstring)."""
        return [
            (name, self._uses_proba[name], _scorer(metric, self.rolling.get(name)))
            for name, metric in self.metrics.items()
        ]

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
        self._plan = None

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


# -- scorers: one label, one metric, cumulative and rolling ------------------------------------


def _scorer(metric, rolling: utils.Rolling | None) -> typing.Callable[[typing.Any, typing.Any], None]:
    """``score(y_true, prediction)``: what ``metric.update`` then ``rolling.update`` do, computed once."""
    kind = _kind(metric)
    if rolling is not None:
        same = (
            type(rolling.obj) is type(metric)
            and rolling.obj._get_params() == metric._get_params()
            and rolling.window.maxlen == rolling.window_size
            and all(not kwargs and len(args) == 2 for args, kwargs in rolling.window)
        )
        if not same:  # not a window this module built: River's own calls
            kind = None
    if kind is None:
        if rolling is None:
            return metric.update
        update, rolled = metric.update, rolling.update

        def score(y_true, y_pred) -> None:
            update(y_true, y_pred)
            rolled(y_true, y_pred)

        return score
    return kind(metric, rolling)


def _kind(metric):
    cls = type(metric)
    if cls is exact_metrics.Accuracy:
        return _accuracy_scorer
    if cls is exact_metrics.ROCAUC:
        return _rocauc_scorer
    if (
        isinstance(metric, river_metrics.base.MeanMetric)
        and cls.update is river_metrics.base.MeanMetric.update
        and cls.revert is river_metrics.base.MeanMetric.revert
        and type(metric._mean) is stats.Mean
    ):
        return _mean_scorer
    return None


def _accuracy_scorer(metric: exact_metrics.Accuracy, rolling: utils.Rolling | None):
    """Accuracy: the per-label quantity is ``y_true == y_pred``."""
    if rolling is None:

        def score(y_true, y_pred) -> None:
            metric._weight += 1.0
            if y_true == y_pred:
                metric._correct += 1.0

        return score
    obj, window = rolling.obj, rolling.window
    size = window.maxlen
    hits = collections.deque((y == p for (y, p), _ in window), maxlen=size)
    append_window, append_hit = window.append, hits.append

    def score_rolling(y_true, y_pred) -> None:
        hit = y_true == y_pred
        metric._weight += 1.0
        if hit:
            metric._correct += 1.0
        if len(window) == size:  # River's Rolling.update: revert the oldest, then update
            obj._weight -= 1.0
            if hits[0]:
                obj._correct -= 1.0
        obj._weight += 1.0
        if hit:
            obj._correct += 1.0
        append_window(((y_true, y_pred), {}))
        append_hit(hit)

    return score_rolling


def _rocauc_scorer(metric: exact_metrics.ROCAUC, rolling: utils.Rolling | None):
    """ROCAUC: the per-label quantity is how many thresholds the score exceeds, and the class."""
    thresholds, pos_val, add = metric.thresholds, metric.pos_val, metric.count

    def split(y_true, y_pred) -> tuple[int, bool]:
        p_true = y_pred.get(True, 0.0) if isinstance(y_pred, dict) else y_pred
        return bisect_left(thresholds, p_true), y_true == pos_val

    if rolling is None:

        def score(y_true, y_pred) -> None:
            above, positive = split(y_true, y_pred)
            add(above, positive, 1.0)

        return score
    obj, window = rolling.obj, rolling.window
    size = window.maxlen
    kept = collections.deque((split(y, p) for (y, p), _ in window), maxlen=size)
    rolled, append_window, append_kept = obj.count, window.append, kept.append

    def score_rolling(y_true, y_pred) -> None:
        above, positive = split(y_true, y_pred)
        add(above, positive, 1.0)
        if len(window) == size:
            old_above, old_positive = kept[0]
            rolled(old_above, old_positive, -1.0)  # River's revert: update with -w
        rolled(above, positive, 1.0)
        append_window(((y_true, y_pred), {}))
        append_kept((above, positive))

    return score_rolling


def _mean_scorer(metric, rolling: utils.Rolling | None):
    """A River ``MeanMetric`` (log loss, MAE, ...): the per-label quantity is ``metric._eval``.

    ``stats.Mean.update`` and ``revert`` with ``w=1`` are written out inline (the same operations
    in the same order, so the same floats; :func:`_kind` picks this scorer only for a plain
    ``stats.Mean``): three method calls fewer per label.
    """
    evaluate, mean = metric._eval, metric._mean
    if rolling is None:

        def score(y_true, y_pred) -> None:
            x = evaluate(y_true, y_pred)
            mean.n += 1.0  # Mean.update(x, 1.0)
            mean._mean += (1.0 / mean.n) * (x - mean._mean)

        return score
    window = rolling.window
    size = window.maxlen
    kept = collections.deque((evaluate(y, p) for (y, p), _ in window), maxlen=size)
    rolled = rolling.obj._mean
    append_window, append_kept = window.append, kept.append

    def score_rolling(y_true, y_pred) -> None:
        x = evaluate(y_true, y_pred)
        mean.n += 1.0  # Mean.update(x, 1.0)
        mean._mean += (1.0 / mean.n) * (x - mean._mean)
        if len(window) == size:  # Mean.revert(kept[0], 1.0)
            rolled.n -= 1.0
            if rolled.n < 0:
                raise ValueError("Cannot go below 0")
            elif rolled.n == 0:
                rolled._mean = 0.0
            else:
                rolled._mean -= (1.0 / rolled.n) * (kept[0] - rolled._mean)
        rolled.n += 1.0  # Mean.update(x, 1.0)
        rolled._mean += (1.0 / rolled.n) * (x - rolled._mean)
        append_window(((y_true, y_pred), {}))
        append_kept(x)

    return score_rolling


def _real(value) -> float:
    """A metric value as ``float``. Reverting updates can leave a tiny negative sum of squares under a
    square root (rolling ``rmse``, ``rmsle``), which Python turns into a complex number: report its
    real part, which is the value up to rounding."""
    if isinstance(value, complex):
        return float(value.real)
    return float(value)
