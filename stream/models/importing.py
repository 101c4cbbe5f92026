"""``riverbed model import``: a model trained elsewhere becomes checkpoint 1 of an empty state dir.

What is accepted
----------------
* A **River estimator** (pickle or joblib file) fit for ``[model] task``
  (:func:`learners.presets.check_model_fits_task`): a classifier for ``binary``, one that handles
  more than two classes for ``multiclass``, a regressor for ``regression``. It is used as it is.
* A **scikit-learn estimator with** ``partial_fit`` (``SGDClassifier``, ``SGDRegressor``,
  ``MultinomialNB``, ``Perceptron``, ``MLPClassifier``, ``PassiveAggressive*``, ...), fitted. It
  is wrapped like :func:`river.compat.convert_sklearn_to_river` does, with its ``classes_``, by
  :class:`learners.sklearn_models.FeatureOrderedClassifier` (or ``...Regressor``), whose column
  order is fixed from ``feature_names_in_`` or ``--features a,b,c`` (River's own wrapper would
  take it from the first event's key order). A binary classifier's two classes are mapped to
  riverbed's labels ``False``/``True`` with the task's :class:`learners.labels.LabelParser`
  (``0``/``1``, ``"no"``/``"yes"``, or ``[model] positive_label``/``negative_label``).

The model set
-------------
The imported model is the champion of a set built like
:func:`stream.engine.model_config.build_model_set` -- same name (``[model] name``, else the
preset's), metrics, rolling window, drift monitors; challengers from ``[[challengers.models]]``
start untrained -- with ``n_learned`` set to the *version*, so that predictions' ``version``
continues from the offline training. The version is ``--version N``, else what the file reliably
says: the ``n_learned`` of the ``PATH.json`` that ``riverbed model export`` wrote for this very
file (same SHA-256), or the row count of a scikit-learn naive Bayes model (``class_count_``);
else 0. (scikit-learn's ``t_`` and ``n_iter_`` count updates and epochs, not rows.)

``[model] preset``: the spec recorded in the checkpoint is the configuration's
(:func:`~stream.engine.model_config.model_spec`), so ``riverbed run`` with the same config
accepts the state dir; the preset only says what a state dir *without* a checkpoint would start
from (it must still name a preset for the task). What was imported -- file, SHA-256, class,
classes, features, version -- is in checkpoint 1's meta under ``"origin"``. Give the model a
telling ``[model] name`` (e.g. ``"imported"``): it is the name on every prediction.

Pickle is code execution: only the file named on the command line is unpickled (its SHA-256 is
printed with what was found), nothing is written when anything is refused, and from then on the
model is sealed like any checkpoint (:mod:`stream.engine.model_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from river import base as river_base

from learners import ModelSet
from learners.labels import LabelError, LabelParser
from learners.presets import check_model_fits_task
from stream.config import Config
from stream.engine.model_config import build_sampler, learner_settings
from stream.engine.stream_state import StreamState
from stream.models.first_checkpoint import check_state_dir, write_first_checkpoint
from stream.models.model_files import ModelFile, ModelFileError, exported_n_learned, read_model_file

__all__ = ["ImportReport", "import_model", "model_set_with_champion"]

PARTIAL_FIT_EXAMPLES = "SGDClassifier, SGDRegressor, MultinomialNB, Perceptron, MLPClassifier, …"


@dataclass
class Found:
    """What a model file holds, ready to serve: the River model and how it was described."""

    model: Any
    library: str
    class_name: str
    classes: list | None = None
    features: list[str] | None = None
    features_from: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """What ``riverbed model import`` read, found and wrote (:meth:`lines` prints it)."""

    file: ModelFile
    found: Found
    task: str
    version: int
    version_from: str
    champion: str
    challengers: list[str]
    seq: int
    state_dir: str
    discarded: str | None

    def lines(self) -> list[str]:
        f, found = self.file, self.found
        what = f"{found.library} {found.class_name} ({self.task})"
        if found.classes is not None:
            what += f", classes {', '.join(map(repr, found.classes))}"
        if found.features is not None:
            what += f", {len(found.features)} features from {found.features_from}: {_shown(found.features)}"
        lines = [f"read {f.path}: {f.size_bytes} bytes, sha256 {f.sha256}", f"found {what}"]
        lines += found.notes
        if self.discarded:
            lines.append(f"discarded {self.discarded} (--replace)")
        extra = f" and challengers {', '.join(self.challengers)} (untrained)" if self.challengers else ""
        lines.append(
            f"wrote checkpoint {self.seq} to {self.state_dir}: champion {self.champion!r} v{self.version} "
            f"[version: {self.version_from}]{extra}; `riverbed run` starts from it"
        )
        return lines


def _shown(names: Sequence, limit: int = 8) -> str:
    text = ", ".join(map(str, names[:limit]))
    return text + (", …" if len(names) > limit else "")


def parse_feature_list(text: str | None) -> list[str] | None:
    """``--features a,b,c`` as a list of names (``None`` when not given)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ModelFileError(f"--features {text!r} has an empty name; write the names separated by commas")
    if len(set(names)) != len(names):
        raise ModelFileError(f"--features {text!r} names a feature twice; each column needs its own name")
    return names


def _is_sklearn_estimator(obj: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # without scikit-learn no such object could have been unpickled
        return False
    return isinstance(obj, BaseEstimator)


def _river_model(obj: Any, where: str, task: str, features: list[str] | None) -> Found:
    if features is not None:
        raise ModelFileError(
            f"{where} holds a River model, which reads features by name: --features applies only to "
            "scikit-learn estimators; leave it out"
        )
    check_model_fits_task(obj, task, origin=f"the model in {where}")
    return Found(obj, "River", type(obj).__name__)


def _sklearn_features(est: Any, where: str, given: list[str] | None) -> tuple[list[str], str]:
    names_in = getattr(est, "feature_names_in_", None)
    names_in = None if names_in is None else [str(n) for n in names_in]
    n_in = getattr(est, "n_features_in_", None)
    if given is not None and names_in is not None and given != names_in:
        raise ModelFileError(
            f"--features ({_shown(given)}) differ from the feature_names_in_ the estimator in {where} was "
            f"fitted with ({_shown(names_in)}); leave --features out or list those names in that order"
        )
    features, source = (names_in, "feature_names_in_") if names_in is not None else (given, "--features")
    if features is None:
        raise ModelFileError(
            f"the estimator in {where} was fitted on an array without column names, so riverbed cannot tell "
            f"which event feature is which of its {n_in} columns: pass --features a,b,c in the column order"
        )
    if n_in is not None and len(features) != n_in:
        raise ModelFileError(
            f"--features names {len(features)} features but the estimator in {where} takes {n_in} columns; "
            "list exactly its columns, in order"
        )
    return features, source


def _sklearn_labels(classes: list, task: str, parser: LabelParser, where: str) -> list:
    """riverbed's label for each of the estimator's classes (``False``/``True`` for a binary task)."""
    try:
        labels = [parser.parse(c) for c in classes]
    except LabelError as exc:
        raise ModelFileError(
            f"the classes of the estimator in {where} ({_shown(classes)}) are not labels of task {task!r}: {exc}"
        ) from None
    if task == "binary" and sorted(labels) != [False, True]:
        raise ModelFileError(
            f"the estimator in {where} has classes {_shown(classes)}, but a binary task needs two classes that "
            "map to false and true (0/1, no/yes, or [model] positive_label and negative_label)"
        )
    if len(set(map(repr, labels))) != len(labels):
        raise ModelFileError(f"two classes of the estimator in {where} ({_shown(classes)}) are the same label")
    return labels


def _sklearn_model(est: Any, where: str, config: Config, given: list[str] | None) -> Found:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from learners.sklearn_models import FeatureOrderedClassifier, FeatureOrderedRegressor, plain

    name = type(est).__name__
    task = config.model.task
    if not hasattr(est, "partial_fit"):
        raise ModelFileError(
            f"{where} holds scikit-learn {name}, which has no partial_fit, so it cannot go on learning from "
            f"labels; use an estimator that has one ({PARTIAL_FIT_EXAMPLES}) or a River model"
        )
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise ModelFileError(
            f"the scikit-learn {name} in {where} is not fitted; fit it on your data first, or let riverbed learn "
            "the configured model from labelled history with `riverbed train`"
        ) from None
    wanted = "regressor" if task == "regression" else "classifier"
    if not (is_regressor(est) if task == "regression" else is_classifier(est)):
        raise ModelFileError(
            f"{where} holds scikit-learn {name}, not a {wanted}, but [model] task is {task!r}; "
            f"import a {wanted} or change [model] task"
        )
    features, source = _sklearn_features(est, where, given)
    if hasattr(est, "feature_names_in_"):
        del est.feature_names_in_  # rows are lists in `features` order; sklearn would warn on every one
    if task == "regression":
        return Found(FeatureOrderedRegressor(est, features), "scikit-learn", name, None, features, source)
    classes = [plain(c) for c in est.classes_]
    parser = LabelParser(task, config.model.positive_label, config.model.negative_label)
    labels = _sklearn_labels(classes, task, parser, where)
    model = FeatureOrderedClassifier(est, features, labels=labels)
    check_model_fits_task(model, task, origin=f"the estimator in {where} ({name} of {len(classes)} classes)")
    found = Found(model, "scikit-learn", name, labels, features, source)
    if list(map(repr, labels)) != list(map(repr, classes)):
        found.notes.append(f"its classes {_shown(classes)} are served as {_shown(labels)}")
    if not hasattr(est, "predict_proba"):
        found.notes.append(f"{name} has no predict_proba: predictions carry no proba, logloss/rocauc stay unscored")
    return found


def find_model(model_file: ModelFile, config: Config, features: list[str] | None) -> Found:
    """The River model of a model file (a River estimator, or a wrapped scikit-learn one)."""
    obj, where = model_file.obj, str(model_file.path)
    if isinstance(obj, river_base.Estimator):
        return _river_model(obj, where, config.model.task, features)
    if _is_sklearn_estimator(obj):
        return _sklearn_model(obj, where, config, features)
    raise ModelFileError(
        f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, not a model: import a River estimator "
        f"or a scikit-learn estimator with partial_fit ({PARTIAL_FIT_EXAMPLES})"
    )


def resolve_version(model_file: ModelFile, found: Found, version: int | None) -> tuple[int, str]:
    """The version to continue from and where it came from (see the module docstring)."""
    if version is not None:
        return version, "--version"
    exported = exported_n_learned(model_file)
    if exported is not None:
        return exported, f"from {model_file.path.name}.json, written by riverbed model export"
    counts = getattr(getattr(found.model, "estimator", None), "class_count_", None)
    if counts is not None:
        rows = float(sum(counts))
        if rows.is_integer():
            return int(rows), "from class_count_, the rows the naive Bayes model counted"
    return 0, "the file does not say how many rows it learned; pass --version N to continue from that count"


def model_set_with_champion(config: Config, champion: Any) -> ModelSet:
    """:func:`~stream.engine.model_config.build_model_set` of ``config``, with ``champion`` as its champion."""
    m = config.model
    settings = learner_settings(config)
    challengers = [(name, factory()) for name, factory in settings["challengers"].items()]
    return ModelSet.build(
        (config.model_name, champion), challengers, m.task, list(config.metric_names),
        window=settings["window"], drift=settings["drift"], promotion=settings["promotion"],
    )


def import_model(config: Config, path: str | Path, *, version: int | None = None,
                 features: Sequence[str] | None = None, replace: bool = False) -> ImportReport:
    """Import the model in ``path`` as checkpoint 1 of ``[state] dir`` (see the module docstring).

    Parameters
    ----------
    config
        The configuration ``riverbed run`` will use.
    path
        A pickle or joblib file of a River estimator or a scikit-learn estimator with ``partial_fit``.
        **It is unpickled: only pass a file you trust.**
    version
        The version (labels learned) to continue from; default: what the file says, else 0.
    features
        scikit-learn only: the column order, when the estimator has no ``feature_names_in_``.
    replace
        Discard a state dir that already has a checkpoint (else it is refused).

    Raises
    ------
    RiverbedError, LearnerError, StateError
        One line: the state dir has a checkpoint, the file is no readable pickle, holds no usable
        model or one of the wrong task, ... Nothing is written then.
    """
    if version is not None and (type(version) is not int or version < 0):
        raise ModelFileError(f"--version must be a non-negative integer, got {version!r}")
    existing = check_state_dir(config, replace=replace, command="model import")
    model_file = read_model_file(path)
    found = find_model(model_file, config, list(features) if features is not None else None)
    n_learned, version_from = resolve_version(model_file, found, version)
    models = model_set_with_champion(config, found.model)
    models.serving_model.n_learned = n_learned
    origin = {
        "kind": "import",
        "path": str(model_file.path.resolve()),
        "sha256": model_file.sha256,
        "size_bytes": model_file.size_bytes,
        "library": found.library,
        "class": found.class_name,
        "classes": found.classes,
        "features": found.features,
        "version": n_learned,
        "version_from": version_from,
    }
    state = StreamState(models=models, sampler=build_sampler(config))
    ckpt = write_first_checkpoint(config, state, origin, existing)
    return ImportReport(
        model_file, found, config.model.task, n_learned, version_from, config.model_name,
        [name for name in models.models if name != models.serving], ckpt.seq, str(config.state.dir),
        existing.summary() if existing else None,
    )
