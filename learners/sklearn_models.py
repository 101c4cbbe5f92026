"""scikit-learn estimators as River models, with a fixed feature order and riverbed's labels.

River's :func:`river.compat.convert_sklearn_to_river` wraps any estimator that has
``partial_fit``, but it takes the column order from the first ``x`` it sees and raises a bare
``KeyError`` for a missing feature. An estimator trained offline already has a column order (its
``feature_names_in_``, or the order the user names), and an event in another key order must not
silently feed the columns in the wrong order. The two wrappers here are River's
(:class:`~river.compat.SKL2RiverClassifier`, :class:`~river.compat.SKL2RiverRegressor`) with:

* ``features``: the column order, fixed when the wrapper is built. An event that lacks one of
  them raises :class:`MissingFeatureError` (a ``KeyError`` whose message names the features
  missing), which the processor dead-letters as ``model_predict_failed``; extra features are
  ignored, as River's wrapper does;
* for a classifier, ``labels``: riverbed's label for each of the estimator's ``classes_`` (a
  binary task's labels are ``True``/``False`` whatever the estimator was trained on, see
  :mod:`learners.labels`), so predictions and probabilities are keyed by riverbed's labels and a
  label is translated back to the estimator's class before ``partial_fit``;
* plain Python values out (no numpy scalars), so that predictions encode as msgpack/JSON;
* :meth:`clone` gives an *untrained* copy (``sklearn.base.clone``), as River's ``clone`` does
  for its own models (drift actions ``retrain`` and ``challenger`` use it).

A classifier without ``predict_proba`` (``Perceptron``, ``SGDClassifier(loss="hinge")``,
``PassiveAggressiveClassifier``) raises ``NotImplementedError`` from :meth:`predict_proba_one`:
riverbed then publishes ``proba = null`` and leaves the probability-based metrics (``logloss``,
``rocauc``) unscored.

This module imports scikit-learn (the ``examples`` extra); :mod:`learners` does not import it.

>>> import numpy as np
>>> from sklearn.linear_model import SGDClassifier
>>> sgd = SGDClassifier(loss="log_loss", random_state=0).fit(np.array([[0.0, 1.0], [1.0, 0.0]]), [0, 1])
>>> model = FeatureOrderedClassifier(sgd, features=["a", "b"], labels=[False, True])
>>> model.predict_one({"b": 0.0, "a": 1.0}) == bool(sgd.predict([[1.0, 0.0]])[0])
True
>>> model.predict_one({"a": 1.0})
Traceback (most recent call last):
...
learners.sklearn_models.MissingFeatureError: the event lacks feature 'b' that the imported model needs (it takes a, b)
"""

from __future__ import annotations

import typing

from river.compat import SKL2RiverClassifier, SKL2RiverRegressor
from sklearn import base as sklearn_base
from sklearn.exceptions import NotFittedError

__all__ = ["FeatureOrderedClassifier", "FeatureOrderedRegressor", "MissingFeatureError", "plain"]


class MissingFeatureError(KeyError):
    """An event lacks a feature the wrapped estimator needs (its message names them)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def plain(value: typing.Any) -> typing.Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", None) == 0 else value


def _shown(names: typing.Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


class _FeatureOrder:
    """The row of an event in the fixed column order (mixed into River's wrappers)."""

    features: list[str]
    # provided by the River wrapper this is mixed into (annotations only: no run-time override)
    estimator: typing.Any
    _get_params: typing.Callable[[], dict[str, typing.Any]]

    def _align_dict(self, x: dict) -> list:
        try:
            return [x[name] for name in self.features]
        except KeyError:
            missing = [name for name in self.features if name not in x]
            noun = "feature" if len(missing) == 1 else "features"
            raise MissingFeatureError(
                f"the event lacks {noun} {', '.join(map(repr, missing[:5]))}"
                f"{' …' if len(missing) > 5 else ''} that the imported model needs (it takes {_shown(self.features)})"
            ) from None

    def _fresh_params(self, new_params: dict | None) -> dict:
        params = self._get_params()
        params["estimator"] = sklearn_base.clone(self.estimator)
        params.update(new_params or {})
        return params


class FeatureOrderedClassifier(_FeatureOrder, SKL2RiverClassifier):
    """A fitted scikit-learn classifier with ``partial_fit`` as a River classifier.

    Parameters
    ----------
    estimator
        The scikit-learn classifier (fitted: its ``classes_`` are the classes).
    features
        The column order of the estimator's input.
    labels
        riverbed's label for each class, in the same order (default: the classes themselves).
    classes
        The estimator's classes (default: its ``classes_`` as plain Python values); given for an
        untrained copy (:meth:`clone`).
    """

    def __init__(self, estimator, features: typing.Sequence[str], labels: typing.Sequence | None = None,
                 classes: typing.Sequence | None = None):
        classes = [plain(c) for c in (estimator.classes_ if classes is None else classes)]
        super().__init__(estimator, classes=classes)
        self.features = list(features)
        self.labels = list(classes if labels is None else labels)
        if len(self.labels) != len(classes) or len(set(map(repr, self.labels))) != len(classes):
            raise ValueError(f"labels {self.labels!r} must name each of the classes {classes!r} once")
        self._class_of = dict(zip(self.labels, classes))
        self._label_of = dict(zip(classes, self.labels))

    @property
    def _multiclass(self) -> bool:
        return len(self.classes) > 2

    def _estimator_class(self, y):
        try:
            return self._class_of[y]
        except (KeyError, TypeError):
            raise ValueError(
                f"label {y!r} is not one of the classes the imported model knows ({_shown(self.labels)})"
            ) from None

    def learn_one(self, x: dict, y) -> None:
        self.estimator.partial_fit(X=[self._align_dict(x)], y=[self._estimator_class(y)], classes=self.classes)

    def predict_proba_one(self, x: dict, **kwargs) -> dict:
        if not hasattr(self.estimator, "predict_proba"):
            raise NotImplementedError(f"{type(self.estimator).__name__} has no predict_proba")
        row = self._align_dict(x)
        try:
            proba = self.estimator.predict_proba([row])[0]
        except NotFittedError:  # an untrained clone
            return {label: 1 / len(self.labels) for label in self.labels}
        label_of = self._label_of
        return {label_of[c]: float(p) for c, p in zip(self.classes, proba)}

    def predict_one(self, x: dict, **kwargs):
        row = self._align_dict(x)
        try:
            return self._label_of[plain(self.estimator.predict([row])[0])]
        except NotFittedError:  # an untrained clone
            return self.labels[0]

    def clone(self, new_params: dict | None = None, include_attributes: bool = False):
        """An untrained copy: same estimator parameters, features and labels."""
        return type(self)(**self._fresh_params(new_params))


class FeatureOrderedRegressor(_FeatureOrder, SKL2RiverRegressor):
    """A fitted scikit-learn regressor with ``partial_fit`` as a River regressor.

    Parameters
    ----------
    estimator
        The scikit-learn regressor.
    features
        The column order of the estimator's input.
    """

    def __init__(self, estimator, features: typing.Sequence[str]):
        super().__init__(estimator)
        self.features = list(features)

    def predict_one(self, x: dict) -> float:
        row = self._align_dict(x)
        try:
            return float(self.estimator.predict([row])[0])
        except NotFittedError:  # an untrained clone, as River's wrapper
            return 0.0

    def clone(self, new_params: dict | None = None, include_attributes: bool = False):
        """An untrained copy: same estimator parameters and features."""
        return type(self)(**self._fresh_params(new_params))
