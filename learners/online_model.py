"""One named River model with its prequential evaluation: predict now, learn when the label comes.

The service calls :meth:`OnlineModel.predict` when an event arrives, keeps ``(x, y_pred, proba)``
until the event's label arrives (seconds or days later), then calls :meth:`OnlineModel.learn`
with what it kept. The evaluation is updated with the prediction made at event time, then the
model learns: test-then-train, exactly as :func:`river.evaluate.progressive_val_score` with a
delay. Fed in the order of ``river.stream.simulate_qa(dataset, moment=None, delay=N)``, the
metrics equal ``progressive_val_score(dataset, model, metric, delay=N)`` to the bit.

Prediction
----------
For a classifier, :meth:`~OnlineModel.predict` calls ``predict_proba_one`` once and takes the most
probable class, which is exactly what ``river.base.Classifier.predict_one`` does
(``max(proba, key=proba.get)``, ``None`` for an empty dict), so one call yields both the label and
the probabilities. None of the presets override ``predict_one`` (a ``Pipeline``'s ``predict_one``
transforms ``x`` then calls its last step's ``predict_one``, which for ``LogisticRegression`` and
``SoftmaxRegression`` is the inherited ``Classifier.predict_one``). A custom classifier that does
override ``predict_one`` (River's bagging and voting ensembles, ``OneVsOneClassifier``,
``imblearn`` wrappers, ...) is detected when the :class:`OnlineModel` is built; then both
``predict_one`` and ``predict_proba_one`` are called, so ``y_pred`` always equals
``model.predict_one(x)``. (With ``compose.learn_during_predict()`` on, that second call would make
unsupervised pipeline steps learn twice from ``x``; the presets do not use it.)

A regressor's prediction is ``(model.predict_one(x), None)``.

Persistence
-----------
An :class:`OnlineModel` pickles as a whole (model, metrics, counters); restoring it and
continuing is bit-identical to never having stopped. :meth:`~OnlineModel.fingerprint` identifies
the learned state independently of pickling accidents (see :mod:`learners.fingerprints`).

"""

from __future__ import annotations

import typing

from river import base, compose

from learners.errors import LearnerError
from learners.evaluation import Prequential
from learners.fingerprints import fingerprint as _fingerprint
from learners.presets import check_model_fits_task, check_task

__all__ = ["OnlineModel"]


def _predict_one_is_argmax(model) -> bool:
    """Whether ``model.predict_one(x)`` is River's default argmax over ``predict_proba_one(x)``."""
    if isinstance(model, compose.Pipeline):
        # Pipeline.predict_one and predict_proba_one both apply the same transformers, then
        # delegate to the last step.
        return _predict_one_is_argmax(model._last_step)
    for cls in type(model).__mro__:
        if "predict_one" in vars(cls):
            return cls is base.Classifier
    return False


class OnlineModel:
    """A River model that predicts events now and learns their labels later.

    Parameters
    ----------
    name
        The name reported with predictions and metrics (e.g. ``"logreg"``).
    model
        A River estimator fit for ``task`` (see :func:`learners.presets.build_model`).
    task
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    metric_names
        The prequential metrics to keep (see :func:`learners.metrics.build_metric`).
    window
        Also keep each metric over the last ``window`` scored predictions (``None``: cumulative only).

    Attributes
    ----------
    evaluation
        The :class:`~learners.evaluation.Prequential` metrics.
    n_learned
        How many labels the model has learnt.

    Examples
    --------

    >>> from river import datasets
    >>> from learners.presets import build_model
    >>> online = OnlineModel("logreg", build_model("logreg", "binary"), "binary",
    ...                      ["accuracy", "rocauc"])
    >>> for x, y in datasets.Phishing().take(100):
    ...     y_pred, proba = online.predict(x)
    ...     online.learn(x, y, y_pred, proba)
    >>> online.n_learned
    100
    >>> {name: round(value, 4) for name, value in online.evaluation.values().items()}
    {'accuracy': 0.84, 'rocauc': 0.8669}

    """

    def __init__(
        self, name: str, model, task: str, metric_names: typing.Sequence[str], window: int | None = None
    ):
        check_task(task)
        check_model_fits_task(model, task, origin=f"model {name!r}")
        self.name = name
        self.model = model
        self.task = task
        self.evaluation = Prequential.from_names(metric_names, task, window)
        for metric_name, metric in self.evaluation.metrics.items():
            if not metric.works_with(model):
                raise LearnerError(
                    f"metric {metric_name!r} cannot evaluate model {name!r} "
                    f"({type(model).__name__}); choose metrics for task {task!r}"
                )
        self.n_learned = 0
        #: How many times the learner was replaced by a retrain action (see :meth:`replace_model`).
        self.retrains = 0
        self._is_classifier = task != "regression"
        self._argmax = self._is_classifier and _predict_one_is_argmax(model)

    def predict(self, x: dict) -> tuple[typing.Any, dict | None]:
        """Predict ``x``: ``(y_pred, proba)``.

        For a classifier, ``proba`` is the dict of class probabilities (``{}`` while the model
        knows no class, then ``y_pred`` is ``None``) and ``y_pred`` equals
        ``model.predict_one(x)``. For a regressor, ``y_pred`` is ``model.predict_one(x)`` and
        ``proba`` is ``None``.
        """
        model = self.model
        if not self._is_classifier:
            return model.predict_one(x), None
        if self._argmax:
            proba = model.predict_proba_one(x)
            # Exactly river.base.Classifier.predict_one.
            return (max(proba, key=proba.get) if proba else None), proba
        y_pred = model.predict_one(x)
        try:
            proba = model.predict_proba_one(x)
        except NotImplementedError:  # a classifier that only predicts labels
            proba = None
        return y_pred, proba

    def learn(self, x: dict, y, y_pred, proba: dict | None) -> None:
        """Score the prediction made for ``x`` at event time against ``y``, then learn ``(x, y)``.

        Parameters
        ----------
        x
            The features, as they were when the event was predicted.
        y
            The label.
        y_pred, proba
            What :meth:`predict` returned for ``x`` when the event arrived.

        """
        self.evaluation.update(y, y_pred, proba)
        self.model.learn_one(x, y)
        self.n_learned += 1

    def learn_unscored(self, x: dict, y) -> None:
        """Learn ``(x, y)`` without scoring: the model made no prediction for this event."""
        self.model.learn_one(x, y)
        self.n_learned += 1

    def replace_model(self, model) -> None:
        """Serve and train ``model`` (same kind, e.g. a retrained copy) from now on; metrics continue."""
        check_model_fits_task(model, self.task, origin=f"model {self.name!r}")
        self.model = model
        self._argmax = self._is_classifier and _predict_one_is_argmax(model)
        self.retrains += 1

    def fingerprint(self) -> str:
        """The canonical sha256 of the model's learned state (see :mod:`learners.fingerprints`)."""
        return _fingerprint(self.model)

    def __repr__(self) -> str:
        return (
            f"OnlineModel(name={self.name!r}, model={type(self.model).__name__}, "
            f"task={self.task!r}, n_learned={self.n_learned}, {self.evaluation!r})"
        )
