"""River metrics by snake_case name, checked against the task.

Metrics fall in three families, following River's own class hierarchy:

* binary-only (``river.metrics.base.BinaryMetric``): they compare against one positive class
  (``True``): ``f1``, ``precision``, ``recall``, ``jaccard``, ``mcc``, and the probability-based
  ``rocauc``, ``logloss``, ``rolling_rocauc``, ``rolling_prauc``;
* any classification (``MultiClassMetric``), valid for binary and multiclass tasks: ``accuracy``,
  ``balanced_accuracy``, ``cohen_kappa``, ``geometric_mean``, the ``macro_``/``micro_``/
  ``weighted_`` averages of ``f1``, ``precision``, ``recall`` and ``jaccard``, and the
  probability-based ``cross_entropy``;
* regression (``RegressionMetric``): ``mae``, ``mse``, ``rmse``, ``rmsle``, ``r2``, ``mape``,
  ``smape``.

A name that does not fit the task is rejected with the list of names that do, and a suggestion
when there is an obvious one (``f1`` on a multiclass task suggests ``macro_f1``).

>>> build_metric("rocauc", "binary").__class__.__name__
'ROCAUC'

>>> build_metric("f1", "multiclass")
Traceback (most recent call last):
...
learners.errors.LearnerError: metric 'f1' is for binary tasks only; for multiclass use 'macro_f1' (valid for multiclass: accuracy, balanced_accuracy, cohen_kappa, geometric_mean, macro_f1, micro_f1, weighted_f1, macro_precision, micro_precision, weighted_precision, macro_recall, micro_recall, weighted_recall, macro_jaccard, micro_jaccard, weighted_jaccard, cross_entropy)

"""

from __future__ import annotations

from river import metrics

from learners import exact_metrics
from learners.errors import LearnerError
from learners.presets import check_task

__all__ = ["METRICS", "ALIASES", "DEFAULT_METRICS", "build_metric", "default_metric_names", "river_metric", "metric_names"]

_BINARY = ("binary",)
_CLASSIFICATION = ("binary", "multiclass")
_REGRESSION = ("regression",)

#: name -> (River metric class, tasks it fits). Only metrics whose constructor needs no argument.
#: ``accuracy`` and ``rocauc`` are :mod:`learners.exact_metrics`' subclasses of River's: the same
#: values, several times cheaper per update (:func:`river_metric` gives River's own classes).
METRICS: dict[str, tuple[type[metrics.base.Metric], tuple[str, ...]]] = {
    # any classification task
    "accuracy": (exact_metrics.Accuracy, _CLASSIFICATION),
    "balanced_accuracy": (metrics.BalancedAccuracy, _CLASSIFICATION),
    "cohen_kappa": (metrics.CohenKappa, _CLASSIFICATION),
    "geometric_mean": (metrics.GeometricMean, _CLASSIFICATION),
    "macro_f1": (metrics.MacroF1, _CLASSIFICATION),
    "micro_f1": (metrics.MicroF1, _CLASSIFICATION),
    "weighted_f1": (metrics.WeightedF1, _CLASSIFICATION),
    "macro_precision": (metrics.MacroPrecision, _CLASSIFICATION),
    "micro_precision": (metrics.MicroPrecision, _CLASSIFICATION),
    "weighted_precision": (metrics.WeightedPrecision, _CLASSIFICATION),
    "macro_recall": (metrics.MacroRecall, _CLASSIFICATION),
    "micro_recall": (metrics.MicroRecall, _CLASSIFICATION),
    "weighted_recall": (metrics.WeightedRecall, _CLASSIFICATION),
    "macro_jaccard": (metrics.MacroJaccard, _CLASSIFICATION),
    "micro_jaccard": (metrics.MicroJaccard, _CLASSIFICATION),
    "weighted_jaccard": (metrics.WeightedJaccard, _CLASSIFICATION),
    "cross_entropy": (metrics.CrossEntropy, _CLASSIFICATION),
    # binary only
    "f1": (metrics.F1, _BINARY),
    "precision": (metrics.Precision, _BINARY),
    "recall": (metrics.Recall, _BINARY),
    "jaccard": (metrics.Jaccard, _BINARY),
    "mcc": (metrics.MCC, _BINARY),
    "rocauc": (exact_metrics.ROCAUC, _BINARY),
    "logloss": (metrics.LogLoss, _BINARY),
    "rolling_rocauc": (metrics.RollingROCAUC, _BINARY),
    "rolling_prauc": (metrics.RollingPRAUC, _BINARY),
    # regression
    "mae": (metrics.MAE, _REGRESSION),
    "mse": (metrics.MSE, _REGRESSION),
    "rmse": (metrics.RMSE, _REGRESSION),
    "rmsle": (metrics.RMSLE, _REGRESSION),
    "r2": (metrics.R2, _REGRESSION),
    "mape": (metrics.MAPE, _REGRESSION),
    "smape": (metrics.SMAPE, _REGRESSION),
}

#: Other spellings accepted for convenience.
ALIASES: dict[str, str] = {
    "roc_auc": "rocauc",
    "log_loss": "logloss",
    "kappa": "cohen_kappa",
    "rolling_roc_auc": "rolling_rocauc",
    "rolling_pr_auc": "rolling_prauc",
}

#: The metrics a task is evaluated with when none are configured (``[model] metrics = []``): label
#: accuracy, a probability-based score, and for regression the error in the target's unit and R².
#: Multiclass takes ``macro_f1`` (every class counts alike) and ``cross_entropy`` (River's
#: multiclass log loss) where binary has ``rocauc`` and ``logloss``.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "logloss", "rocauc"),
    "multiclass": ("accuracy", "macro_f1", "cross_entropy"),
    "regression": ("mae", "rmse", "r2"),
}

# What to use instead of a binary-only metric on a multiclass task.
_MULTICLASS_INSTEAD = {
    "f1": "macro_f1",
    "precision": "macro_precision",
    "recall": "macro_recall",
    "jaccard": "macro_jaccard",
    "logloss": "cross_entropy",
    "mcc": "cohen_kappa",
}


def metric_names(task: str) -> list[str]:
    """The metric names valid for ``task``, in a stable order.

    >>> metric_names("regression")
    ['mae', 'mse', 'rmse', 'rmsle', 'r2', 'mape', 'smape']

    """
    check_task(task)
    return [name for name, (_, tasks) in METRICS.items() if task in tasks]


def default_metric_names(task: str) -> list[str]:
    """The metrics ``task`` is evaluated with when none are configured (:data:`DEFAULT_METRICS`).

    >>> default_metric_names("multiclass")
    ['accuracy', 'macro_f1', 'cross_entropy']

    """
    check_task(task)
    return list(DEFAULT_METRICS[task])


def build_metric(name: str, task: str) -> metrics.base.Metric:
    """A new River metric by snake_case name, checked against ``task``.

    Parameters
    ----------
    name
        A key of :data:`METRICS` or :data:`ALIASES`; case and ``-`` versus ``_`` do not matter.
    task
        One of ``binary``, ``multiclass``, ``regression``.

    Raises
    ------
    LearnerError
        Unknown task, unknown metric, or a metric that does not fit the task.

    Examples
    --------

    >>> metric = build_metric("MAE", "regression")
    >>> metric.update(3.0, 2.5)
    >>> metric.get()
    0.5

    >>> build_metric("mae", "binary")
    Traceback (most recent call last):
    ...
    learners.errors.LearnerError: metric 'mae' is for regression tasks, not binary; valid for binary: accuracy, balanced_accuracy, cohen_kappa, geometric_mean, macro_f1, micro_f1, weighted_f1, macro_precision, micro_precision, weighted_precision, macro_recall, micro_recall, weighted_recall, macro_jaccard, micro_jaccard, weighted_jaccard, cross_entropy, f1, precision, recall, jaccard, mcc, rocauc, logloss, rolling_rocauc, rolling_prauc

    """
    check_task(task)
    if not isinstance(name, str):
        raise LearnerError(
            f"metric name must be a string, got {name!r}; valid for {task}: "
            f"{', '.join(metric_names(task))}"
        )
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    entry = METRICS.get(key)
    valid = ", ".join(metric_names(task))
    if entry is None:
        raise LearnerError(f"unknown metric {name!r}; valid for {task}: {valid}")
    cls, tasks = entry
    if task not in tasks:
        if task == "multiclass" and tasks == _BINARY:
            instead = _MULTICLASS_INSTEAD.get(key)
            hint = f"for multiclass use {instead!r}" if instead else "it has no multiclass form"
            raise LearnerError(
                f"metric {name!r} is for binary tasks only; {hint} (valid for multiclass: {valid})"
            )
        family = "regression" if tasks == _REGRESSION else "classification"
        raise LearnerError(
            f"metric {name!r} is for {family} tasks, not {task}; valid for {task}: {valid}"
        )
    return cls()


def river_metric(name: str, task: str) -> metrics.base.Metric:
    """Like :func:`build_metric`, but always River's own class (the reference riverbed is checked against).

    >>> type(build_metric("rocauc", "binary")).__module__, type(river_metric("rocauc", "binary")).__module__
    ('learners.exact_metrics', 'river.metrics.roc_auc')
    """
    metric = build_metric(name, task)
    for cls in type(metric).__mro__:
        if cls.__module__.startswith("river."):
            return metric if cls is type(metric) else cls()
    raise AssertionError(f"{type(metric).__name__} is not a River metric")  # every METRICS entry is

