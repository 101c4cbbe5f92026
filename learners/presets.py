"""Model presets, and building a model from a preset name or a ``module:factory`` spec.

A *spec* names a model in configuration. It is either the name of one of the :data:`PRESETS`
(``"logreg"``) or ``"package.module:factory"``, where ``factory`` is called with no arguments and
must return a River estimator of the right kind for the task: a classifier for ``"binary"``, a
classifier that handles more than two classes for ``"multiclass"``, a regressor for
``"regression"``.

Every preset with randomness has a fixed ``seed``, so that replaying the same labels always
builds the same model.

Every preset takes the message contract's features: numbers, strings and bools (bools are
numbers). The linear models and Gaussian naive Bayes get a
:class:`~learners.features.MixedFeatureScaler` in front (numbers standard-scaled, or passed
through for naive Bayes and the bare regression tree; strings one-hot encoded); the Hoeffding
tree classifiers and the forest split on string features natively.

>>> model = build_model("logreg", "binary")
>>> [type(step).__name__ for step in model.steps.values()]
['MixedFeatureScaler', 'LogisticRegression']
>>> model.learn_one({"amount": 12.5, "country": "NL", "new_customer": True}, True)
>>> model.predict_one({"amount": 3.0, "country": "FR", "new_customer": False})
True

>>> build_model("river.linear_model:LinearRegression", "regression").__class__.__name__
'LinearRegression'

>>> build_model("linreg", "binary")
Traceback (most recent call last):
...
learners.errors.LearnerError: preset 'linreg' does not support task 'binary'; presets for binary: logreg, hoeffding_tree, hoeffding_adaptive, naive_bayes, arf, softmax

"""

from __future__ import annotations

import dataclasses
import typing

from river import base, forest, linear_model, naive_bayes, tree

from learners.errors import LearnerError
from learners.features import MixedFeatureScaler
from learners.specs import first_line, import_spec

__all__ = ["PRESETS", "TASKS", "PresetSpec", "build_model", "check_model_fits_task", "check_task"]

#: The learning tasks riverbed knows. A binary task has two classes (usually ``True``/``False``).
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")


@dataclasses.dataclass(frozen=True)
class PresetSpec:
    """A named recipe for a fresh, untrained model.

    Parameters
    ----------
    name
        The name used in configuration.
    tasks
        The tasks the model supports, a subset of :data:`TASKS`.
    factory
        Called with no arguments; returns a new, untrained River estimator.
    description
        One line for ``--help`` texts and the README.

    """

    name: str
    tasks: tuple[str, ...]
    factory: typing.Callable[[], base.Estimator]
    description: str

    def build(self) -> base.Estimator:
        """A new, untrained model."""
        return self.factory()


# Factories are module-level functions (not lambdas) so that a PresetSpec stays picklable.


def _logreg():
    return MixedFeatureScaler() | linear_model.LogisticRegression()


def _hoeffding_tree():
    return tree.HoeffdingTreeClassifier()


def _hoeffding_adaptive():
    return tree.HoeffdingAdaptiveTreeClassifier(seed=42)


def _naive_bayes():
    # GaussianNB fits a Gaussian to every feature: strings must be one-hot encoded first.
    return MixedFeatureScaler(scale=False) | naive_bayes.GaussianNB()


def _arf():
    return forest.ARFClassifier(seed=42)


def _softmax():
    return MixedFeatureScaler() | linear_model.SoftmaxRegression()


def _linreg():
    return MixedFeatureScaler() | linear_model.LinearRegression()


def _hoeffding_regressor():
    # The tree splits on strings, but its leaves' linear models only take numbers.
    return MixedFeatureScaler(scale=False) | tree.HoeffdingTreeRegressor()


def _scaled_hoeffding_regressor():
    # The leaves' linear models (leaf_prediction="adaptive" or "model") diverge on unscaled
    # features: bare HoeffdingTreeRegressor() has a prequential MAE of 4.7e8 on TrumpApproval,
    # scaled 0.96 (linreg: 1.31). River's own examples scale it too.
    return MixedFeatureScaler() | tree.HoeffdingTreeRegressor()


_CLASSIFICATION = ("binary", "multiclass")

#: The built-in models, by name.
PRESETS: dict[str, PresetSpec] = {
    spec.name: spec
    for spec in (
        PresetSpec(
            "logreg",
            ("binary",),
            _logreg,
            "MixedFeatureScaler | LogisticRegression: fast linear baseline",
        ),
        PresetSpec(
            "hoeffding_tree",
            _CLASSIFICATION,
            _hoeffding_tree,
            "HoeffdingTreeClassifier: incremental decision tree",
        ),
        PresetSpec(
            "hoeffding_adaptive",
            _CLASSIFICATION,
            _hoeffding_adaptive,
            "HoeffdingAdaptiveTreeClassifier(seed=42): tree that replaces drifting branches",
        ),
        PresetSpec(
            "naive_bayes",
            _CLASSIFICATION,
            _naive_bayes,
            "MixedFeatureScaler(scale=False) | GaussianNB: Gaussian naive Bayes",
        ),
        PresetSpec(
            "arf",
            _CLASSIFICATION,
            _arf,
            "ARFClassifier(seed=42): adaptive random forest of 10 trees (slow, large)",
        ),
        PresetSpec(
            "softmax",
            _CLASSIFICATION,
            _softmax,
            "MixedFeatureScaler | SoftmaxRegression: linear model for any number of classes",
        ),
        PresetSpec(
            "linreg",
            ("regression",),
            _linreg,
            "MixedFeatureScaler | LinearRegression: fast linear baseline",
        ),
        PresetSpec(
            "hoeffding_regressor",
            ("regression",),
            _hoeffding_regressor,
            "MixedFeatureScaler(scale=False) | HoeffdingTreeRegressor: incremental regression tree (unscaled; prefer the scaled preset)",
        ),
        PresetSpec(
            "scaled_hoeffding_regressor",
            ("regression",),
            _scaled_hoeffding_regressor,
            "MixedFeatureScaler | HoeffdingTreeRegressor: the regression tree on standardized features",
        ),
    )
}


def check_task(task: str) -> str:
    """Return ``task`` if riverbed knows it, else raise :class:`LearnerError`.

    >>> check_task("binary")
    'binary'
    >>> check_task("ranking")
    Traceback (most recent call last):
    ...
    learners.errors.LearnerError: unknown task 'ranking'; use one of: binary, multiclass, regression

    """
    if task not in TASKS:
        raise LearnerError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    return task


def check_model_fits_task(model: object, task: str, origin: str = "model") -> None:
    """Raise :class:`LearnerError` unless ``model`` is a River estimator fit for ``task``.

    ``origin`` names where the model came from, for the message.

    >>> check_model_fits_task(linear_model.LogisticRegression(), "binary")
    >>> check_model_fits_task(linear_model.LogisticRegression(), "multiclass")
    Traceback (most recent call last):
    ...
    learners.errors.LearnerError: model is LogisticRegression, a binary classifier, but task 'multiclass' needs a classifier that handles more than two classes (e.g. preset hoeffding_adaptive, naive_bayes, arf or softmax)

    """
    check_task(task)
    what = type(model).__name__
    if not isinstance(model, base.Estimator):
        raise LearnerError(
            f"{origin} returned {what}, not a River estimator; "
            "return e.g. river.linear_model.LogisticRegression() or a river.compose.Pipeline"
        )
    if task == "regression":
        if not isinstance(model, base.Regressor):
            raise LearnerError(
                f"{origin} is {what}, not a River regressor, but task 'regression' needs one "
                "(e.g. preset linreg or hoeffding_regressor)"
            )
        return
    if not isinstance(model, base.Classifier):
        raise LearnerError(
            f"{origin} is {what}, not a River classifier, but task {task!r} needs one "
            f"(e.g. preset {'logreg' if task == 'binary' else 'hoeffding_adaptive'})"
        )
    if task == "multiclass" and not model._multiclass:
        raise LearnerError(
            f"{origin} is {what}, a binary classifier, but task 'multiclass' needs a classifier "
            "that handles more than two classes (e.g. preset hoeffding_adaptive, naive_bayes, "
            "arf or softmax)"
        )


def _from_factory(spec: str) -> base.Estimator:
    factory = import_spec(
        spec, f"model spec {spec!r}", expected=f"'package.module:factory' or a preset name ({', '.join(PRESETS)})"
    )
    if not callable(factory):
        raise LearnerError(
            f"{spec!r} is a {type(factory).__name__}, not callable; "
            "point the spec at a function or class that returns a new River model"
        )
    try:
        model = factory()
    except Exception as exc:
        raise LearnerError(
            f"factory {spec!r} failed when called with no arguments ({first_line(exc)}); "
            "it must build a new model without arguments"
        ) from exc
    return model


def build_model(spec: str, task: str) -> base.Estimator:
    """Build a new, untrained model from a preset name or a ``module:factory`` spec.

    Parameters
    ----------
    spec
        A key of :data:`PRESETS`, or ``"package.module:factory"`` (``factory`` may be a dotted
        attribute path, e.g. ``"mymodels:Factories.fast"``).
    task
        One of :data:`TASKS`; the model must fit it.

    Raises
    ------
    LearnerError
        Unknown task or preset, a preset that does not support the task, a module that cannot be
        imported, a missing or non-callable factory, a factory that fails, or a model of the wrong
        kind for the task.

    Examples
    --------

    >>> build_model("naive_bayes", "multiclass")["GaussianNB"]
    GaussianNB ()

    >>> build_model("xgboost", "binary")
    Traceback (most recent call last):
    ...
    learners.errors.LearnerError: unknown model preset 'xgboost'; use one of: logreg, hoeffding_tree, hoeffding_adaptive, naive_bayes, arf, softmax, linreg, hoeffding_regressor, scaled_hoeffding_regressor, or 'package.module:factory'

    """
    check_task(task)
    if not isinstance(spec, str) or not spec:
        raise LearnerError(
            f"model spec must be a non-empty string, got {spec!r}; "
            f"use a preset ({', '.join(PRESETS)}) or 'package.module:factory'"
        )
    if ":" in spec:
        model = _from_factory(spec)
        check_model_fits_task(model, task, origin=f"factory {spec!r}")
        return model
    preset = PRESETS.get(spec)
    if preset is None:
        raise LearnerError(
            f"unknown model preset {spec!r}; use one of: {', '.join(PRESETS)}, "
            "or 'package.module:factory'"
        )
    if task not in preset.tasks:
        fitting = [name for name, p in PRESETS.items() if task in p.tasks]
        raise LearnerError(
            f"preset {spec!r} does not support task {task!r}; "
            f"presets for {task}: {', '.join(fitting)}"
        )
    model = preset.build()
    check_model_fits_task(model, task, origin=f"preset {spec!r}")
    return model
