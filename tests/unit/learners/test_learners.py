"""Tests for :mod:`learners`: presets, metrics, prequential parity with River, fingerprints.

The parity tests are the acceptance anchor: replaying a River dataset in the order of
``river.stream.simulate_qa(dataset, moment=None, delay=N)`` through :class:`OnlineModel` gives
exactly ``river.evaluate.progressive_val_score(dataset, model, metric, delay=N)``.
"""

from __future__ import annotations

from tests.support import ROOT, TESTS

import ast
import functools
import json
import math
import numbers
import os
import random
import pickle
import subprocess
import sys
import textwrap

import pytest
from river import base, compose, datasets, evaluate, linear_model, preprocessing, proba, stream
from river.datasets import synth
from river.checks import check_estimator

from learners import (
    DEFAULT_METRICS,
    PRESETS,
    TASKS,
    LabelError,
    LabelParser,
    LabelTypeError,
    LearnerError,
    MixedFeatureScaler,
    OnlineModel,
    Prequential,
    build_metric,
    river_metric,
    build_model,
    default_metric_names,
    fingerprint,
    metric_names,
)
from learners.metrics import ALIASES, METRICS


# A short labelled stream per task.
SAMPLES = {
    "binary": lambda n: list(datasets.Phishing().take(n)),
    "multiclass": lambda n: list(datasets.ImageSegments().take(n)),
    "regression": lambda n: list(datasets.TrumpApproval().take(n)),
}


def assert_one_line_error(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.fixture
def custom_models(monkeypatch):
    """Make ``tests/custom_model.py`` importable as ``custom_model``."""
    monkeypatch.syspath_prepend(str(TESTS))
    yield
    sys.modules.pop("custom_model", None)


# ---------------------------------------------------------------------------------------------
# Presets and build_model


PRESET_TASKS = [(name, task) for name, spec in PRESETS.items() for task in spec.tasks]


@pytest.mark.parametrize("preset,task", PRESET_TASKS)
def test_preset_builds_learns_and_pickles(preset, task):
    model = build_model(preset, task)
    assert build_model(preset, task) is not model  # a new model every time
    for x, y in SAMPLES[task](30):
        model.predict_one(x)
        model.learn_one(x, y)
    restored = pickle.loads(pickle.dumps(model))
    x, _ = SAMPLES[task](31)[-1]
    assert restored.predict_one(x) == model.predict_one(x)


def test_presets_cover_every_task():
    for task in TASKS:
        assert any(task in spec.tasks for spec in PRESETS.values()), task
    assert {"logreg", "hoeffding_adaptive", "naive_bayes", "arf", "linreg",
            "hoeffding_regressor"} <= set(PRESETS)


def test_custom_factory_spec(custom_models):
    model = build_model("custom_model:scaled_logreg", "binary")
    assert model["LogisticRegression"].l2 == 0.001
    for x, y in SAMPLES["binary"](20):
        model.learn_one(x, y)
    assert build_model("custom_model:linear_regressor", "regression").__class__.__name__ == (
        "LinearRegression"
    )
    # A class is a factory too.
    assert build_model("river.naive_bayes:GaussianNB", "multiclass").__class__.__name__ == (
        "GaussianNB"
    )


@pytest.mark.parametrize(
    "spec,task,fragments",
    [
        ("xgboost", "binary", ["unknown model preset 'xgboost'", "logreg", "module:factory"]),
        ("linreg", "binary", ["does not support task 'binary'", "logreg"]),
        ("logreg", "multiclass", ["does not support task 'multiclass'", "hoeffding_adaptive"]),
        ("logreg", "regression", ["presets for regression: linreg"]),
        ("logreg", "ranking", ["unknown task 'ranking'", "binary, multiclass, regression"]),
        ("", "binary", ["non-empty"]),
        (":scaled_logreg", "binary", ["malformed"]),
        ("custom_model:", "binary", ["malformed"]),
        ("no_such_module_xyz:build", "binary", ["cannot import module 'no_such_module_xyz'"]),
        ("custom_model:missing", "binary", ["has no attribute 'missing'"]),
        ("custom_model:NOT_CALLABLE", "binary", ["not callable"]),
        ("custom_model:broken", "binary", ["failed", "RuntimeError: factory exploded"]),
        ("custom_model:needs_arguments", "binary", ["failed", "TypeError"]),
        ("custom_model:not_a_model", "binary", ["returned str, not a River estimator"]),
        ("custom_model:linear_regressor", "binary", ["not a River classifier"]),
        ("custom_model:scaled_logreg", "regression", ["not a River regressor"]),
        ("custom_model:scaled_logreg", "multiclass", ["a binary classifier", "multiclass"]),
    ],
)
def test_build_model_errors_are_one_line(custom_models, spec, task, fragments):
    with pytest.raises(LearnerError) as excinfo:
        build_model(spec, task)
    assert_one_line_error(excinfo, *fragments)


# ---------------------------------------------------------------------------------------------
# Metrics by name


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_builds_for_its_tasks(name):
    cls, tasks = METRICS[name]
    for task in tasks:
        metric = build_metric(name, task)
        assert type(metric) is cls
        assert name in metric_names(task)
    for task in set(TASKS) - set(tasks):
        with pytest.raises(LearnerError) as excinfo:
            build_metric(name, task)
        assert_one_line_error(excinfo, f"valid for {task}:")


def test_metric_names_are_case_and_dash_insensitive_and_aliases_work():
    assert type(build_metric("ROC-AUC", "binary")).__name__ == "ROCAUC"
    assert type(build_metric("Macro-F1", "multiclass")).__name__ == "MacroF1"
    for alias, name in ALIASES.items():
        assert type(build_metric(alias, METRICS[name][1][0])) is METRICS[name][0]


def test_metric_names_per_task():
    assert {"accuracy", "rocauc", "logloss", "f1", "macro_f1", "micro_f1", "precision", "recall",
            "balanced_accuracy", "cohen_kappa"} <= set(metric_names("binary"))
    assert "f1" not in metric_names("multiclass")
    assert "macro_f1" in metric_names("multiclass")
    assert {"mae", "rmse", "mse", "r2"} <= set(metric_names("regression"))


@pytest.mark.parametrize(
    "name,task,fragments",
    [
        ("mae", "binary", ["'mae' is for regression tasks, not binary", "valid for binary:",
                           "accuracy"]),
        ("rocauc", "regression", ["for classification tasks, not regression", "mae"]),
        ("accuracy", "regression", ["valid for regression: mae"]),
        ("f1", "multiclass", ["binary tasks only", "use 'macro_f1'", "valid for multiclass:"]),
        ("logloss", "multiclass", ["use 'cross_entropy'"]),
        ("rocauc", "multiclass", ["no multiclass form"]),
        ("auc_of_dreams", "binary", ["unknown metric 'auc_of_dreams'", "valid for binary:"]),
        ("accuracy", "clustering", ["unknown task 'clustering'"]),
        (None, "binary", ["must be a string"]),
    ],
)
def test_metric_errors_are_one_line(name, task, fragments):
    with pytest.raises(LearnerError) as excinfo:
        build_metric(name, task)
    assert_one_line_error(excinfo, *fragments)


# ---------------------------------------------------------------------------------------------
# Prequential


def test_prequential_feeds_proba_or_label_per_metric_and_skips_empty_predictions():
    evaluation = Prequential.from_names(["accuracy", "rocauc", "logloss"], "binary")
    evaluation.update(True, None, {})  # knows no class yet: nothing scored
    evaluation.update(True, None, None)
    assert evaluation.values() == {"accuracy": None, "rocauc": None, "logloss": None}
    evaluation.update(True, True, {True: 0.9, False: 0.1})
    evaluation.update(False, True, {True: 0.6, False: 0.4})
    values = evaluation.values()
    assert values["accuracy"] == 0.5
    assert values["rocauc"] == 1.0  # ranks are right although the label was wrong
    assert all(type(v) is float for v in values.values())
    assert evaluation.n_updates == 4
    restored = pickle.loads(pickle.dumps(evaluation))
    assert restored.values() == values
    restored.update(True, False, {True: 0.2, False: 0.8})
    assert restored.values() != values


def test_prequential_rejects_duplicates_and_non_metrics():
    with pytest.raises(LearnerError) as excinfo:
        Prequential.from_names(["mae", "mae"], "regression")
    assert_one_line_error(excinfo, "listed twice")
    with pytest.raises(LearnerError) as excinfo:
        Prequential({"mae": "not a metric"})
    assert_one_line_error(excinfo, "not a River metric")


# ---------------------------------------------------------------------------------------------
# OnlineModel


def test_online_model_rejects_mismatches():
    with pytest.raises(LearnerError) as excinfo:
        OnlineModel("m", build_model("linreg", "regression"), "binary", ["accuracy"])
    assert_one_line_error(excinfo, "not a River classifier")
    with pytest.raises(LearnerError) as excinfo:
        OnlineModel("m", build_model("logreg", "binary"), "binary", ["mae"])
    assert_one_line_error(excinfo, "'mae' is for regression tasks")
    with pytest.raises(LearnerError) as excinfo:
        OnlineModel("m", build_model("logreg", "binary"), "multi", ["accuracy"])
    assert_one_line_error(excinfo, "unknown task 'multi'")


@pytest.mark.parametrize("preset,task", PRESET_TASKS)
def test_predict_label_equals_predict_one(preset, task):
    online = OnlineModel(preset, build_model(preset, task), task, [metric_names(task)[0]])
    for x, y in SAMPLES[task](60):
        y_pred, proba_ = online.predict(x)
        assert y_pred == online.model.predict_one(x)
        if task == "regression":
            assert proba_ is None
        else:
            assert isinstance(proba_, dict)
        online.learn(x, y, y_pred, proba_)
    assert online.n_learned == 60


def test_predict_respects_a_predict_one_override(custom_models):
    model = build_model("custom_model:cautious", "binary")
    online = OnlineModel("cautious", model, "binary", ["accuracy", "rocauc"])
    differs_from_argmax = 0
    for x, y in SAMPLES["binary"](200):
        y_pred, proba_ = online.predict(x)
        assert y_pred == model.predict_one(x)
        assert proba_ == model.predict_proba_one(x)
        differs_from_argmax += y_pred != max(proba_, key=proba_.get)
        online.learn(x, y, y_pred, proba_)
    assert differs_from_argmax > 0  # the override path is really exercised


def test_online_model_pickles_as_a_whole():
    online = OnlineModel("logreg", build_model("logreg", "binary"), "binary", ["accuracy"])
    data = SAMPLES["binary"](50)
    for x, y in data[:25]:
        online.learn(x, y, *online.predict(x))
    restored = pickle.loads(pickle.dumps(online))
    for x, y in data[25:]:
        online.learn(x, y, *online.predict(x))
        restored.learn(x, y, *restored.predict(x))
    assert restored.n_learned == online.n_learned == 50
    assert restored.evaluation.values() == online.evaluation.values()
    assert restored.fingerprint() == online.fingerprint()
    assert "n_learned=50" in repr(restored)


# ---------------------------------------------------------------------------------------------
# PARITY with river.evaluate.progressive_val_score


def replay(dataset, online: OnlineModel, delay: int, checkpoint_every: int | None = None):
    """Feed ``simulate_qa`` through ``online`` as the service does: predict each question at
    once, keep ``(x, y_pred, proba)`` by event, learn when the answer comes. Optionally pickle and
    unpickle the whole OnlineModel every ``checkpoint_every`` answers, as a restart would."""
    pending = {}
    n_answers = 0
    for i, x, y in stream.simulate_qa(dataset, moment=None, delay=delay):
        if y is None:
            pending[i] = (x, *online.predict(x))
            continue
        x_seen, y_pred, proba_ = pending.pop(i)
        online.learn(x_seen, y, y_pred, proba_)
        n_answers += 1
        if checkpoint_every and n_answers % checkpoint_every == 0:
            online = pickle.loads(pickle.dumps(online))
    assert not pending
    return online


PARITY_CASES = [
    ("logreg", "binary", "rocauc", datasets.Phishing, 0),
    ("logreg", "binary", "rocauc", datasets.Phishing, 1),
    ("logreg", "binary", "rocauc", datasets.Phishing, 100),
    ("hoeffding_adaptive", "binary", "accuracy", datasets.Phishing, 100),
    ("naive_bayes", "binary", "logloss", datasets.Phishing, 0),
    ("naive_bayes", "multiclass", "macro_f1", datasets.ImageSegments, 25),
    ("linreg", "regression", "mae", datasets.TrumpApproval, 10),
]


@pytest.mark.parametrize("preset,task,metric,dataset,delay", PARITY_CASES)
def test_prequential_parity_with_progressive_val_score(preset, task, metric, dataset, delay):
    online = replay(dataset(), OnlineModel(preset, build_model(preset, task), task, [metric]),
                    delay)
    expected = evaluate.progressive_val_score(
        dataset(), build_model(preset, task), river_metric(metric, task), delay=delay
    ).get()
    got = online.evaluation.values()[metric]
    assert abs(got - expected) <= 1e-12, (got, expected)
    assert online.n_learned == online.evaluation.n_updates


def test_parity_survives_pickle_restarts():
    online = OnlineModel("logreg", build_model("logreg", "binary"), "binary",
                         ["rocauc", "accuracy", "logloss"])
    online = replay(datasets.Phishing(), online, delay=100, checkpoint_every=97)
    for name, value in online.evaluation.values().items():
        expected = evaluate.progressive_val_score(
            datasets.Phishing(), build_model("logreg", "binary"), river_metric(name, "binary"),
            delay=100,
        ).get()
        assert abs(value - expected) <= 1e-12, (name, value, expected)


# ---------------------------------------------------------------------------------------------
# FINGERPRINT

FINGERPRINT_PRESETS = ["logreg", "hoeffding_adaptive", "naive_bayes", "arf"]
N_FINGERPRINT = 600

# Computes fingerprints the same way in a fresh interpreter (cross-process stability).
FINGERPRINT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from river import datasets
    from learners import OnlineModel, build_model
    out = {}
    for preset in sys.argv[1:]:
        online = OnlineModel(preset, build_model(preset, "binary"), "binary", ["accuracy"])
        for x, y in datasets.Phishing().take(%d):
            online.learn(x, y, *online.predict(x))
        out[preset] = online.fingerprint()
    print(json.dumps(out))
    """
    % N_FINGERPRINT
)


def run_for_fingerprint(preset: str, restore_at=(), extra_learn=False) -> OnlineModel:
    online = OnlineModel(preset, build_model(preset, "binary"), "binary", ["accuracy"])
    data = SAMPLES["binary"](N_FINGERPRINT)
    for i, (x, y) in enumerate(data):
        if i in restore_at:
            online = pickle.loads(pickle.dumps(online))
        online.learn(x, y, *online.predict(x))
    if extra_learn:
        online.model.learn_one(*data[0])
    return online


@functools.lru_cache(maxsize=None)
def uninterrupted_fingerprint(preset: str) -> str:
    return run_for_fingerprint(preset).fingerprint()


@pytest.mark.parametrize("preset", FINGERPRINT_PRESETS)
def test_fingerprint_is_equal_after_restores_and_differs_after_extra_learning(preset):
    reference = uninterrupted_fingerprint(preset)
    assert len(reference) == 64 and set(reference) <= set("0123456789abcdef")  # a sha256 hex digest
    restored = run_for_fingerprint(preset, restore_at=(200, 400))
    assert restored.fingerprint() == reference
    assert run_for_fingerprint(preset, extra_learn=True).fingerprint() != reference
    # Fingerprinting does not change the model.
    assert restored.fingerprint() == reference


def test_fingerprint_is_stable_across_processes_and_hash_seeds():
    outputs = []
    for hash_seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", FINGERPRINT_SCRIPT, *FINGERPRINT_PRESETS],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0] == {preset: uninterrupted_fingerprint(preset)
                          for preset in FINGERPRINT_PRESETS}


def test_fingerprint_canonical_forms():
    # (a) equal strings that are distinct objects
    a = "".join(["feat", "ure"])
    b = "".join(["fea", "ture"])
    assert a == b and a is not b
    assert fingerprint({"x": [a, a]}) == fingerprint({"x": [a, b]})
    # (b) sets: order of construction does not matter, content does
    words = [f"w{i}" for i in range(50)]
    assert fingerprint(set(words)) == fingerprint(set(reversed(words)))
    assert fingerprint(frozenset(words)) == fingerprint(frozenset(reversed(words)))
    assert fingerprint(set(words)) != fingerprint(set(words[1:]))
    assert fingerprint(set(words)) != fingerprint(frozenset(words))
    # (c) an unseeded distribution's generator is left out; a seeded one's is kept
    assert fingerprint(proba.Gaussian()) == fingerprint(proba.Gaussian())
    assert fingerprint(proba.Gaussian(seed=1)) != fingerprint(proba.Gaussian(seed=2))
    g = proba.Gaussian()
    g.update(1.0)
    assert fingerprint(g) != fingerprint(proba.Gaussian())
    # shared references and cycles still pickle
    shared = {"s": {1, 2}}
    shared["again"] = shared["s"]
    cycle: list = []
    cycle.append(cycle)
    assert fingerprint(shared) == fingerprint(pickle.loads(pickle.dumps(shared)))
    assert fingerprint(cycle) == fingerprint(pickle.loads(pickle.dumps(cycle))) != fingerprint([[]])


def test_fresh_presets_have_equal_fingerprints():
    for preset, task in PRESET_TASKS:
        assert fingerprint(build_model(preset, task)) == fingerprint(build_model(preset, task))


def _no_fingerprints(monkeypatch):
    """Make every route to the canonical fingerprint raise (ModelSet's and OnlineModel's)."""
    import learners.model_set
    import learners.online_model

    def forbidden(model):
        raise AssertionError("a fingerprint was computed")

    monkeypatch.setattr(learners.model_set, "_fingerprint", forbidden)
    monkeypatch.setattr(learners.online_model, "_fingerprint", forbidden)


def test_describe_without_fingerprints_computes_none(monkeypatch):
    from learners import ModelSet

    models = ModelSet.build(("logreg", build_model("logreg", "binary")), [("nb", build_model("naive_bayes", "binary"))],
                            "binary", ["accuracy"], window=50)
    for x, y in SAMPLES["binary"](100):
        models.learn(x, y, models.predict(x).record)
    with_fingerprints = models.describe()
    assert with_fingerprints["logreg"]["fingerprint"] == models.models["logreg"].fingerprint()

    _no_fingerprints(monkeypatch)
    without = models.describe(fingerprints=False)
    assert set(without) == {"logreg", "nb"}
    for name, entry in without.items():
        assert "fingerprint" not in entry
        assert entry == {k: v for k, v in with_fingerprints[name].items() if k != "fingerprint"}
    with pytest.raises(AssertionError, match="a fingerprint was computed"):  # the patch does catch them
        models.describe()


# ---------------------------------------------------------------------------------------------
# Mixed features (numbers, strings, bools), labels per task, metrics before any label


def mixed_stream(n: int, task: str, seed: int = 7) -> list[tuple[dict, object]]:
    """Events with a numeric, a string and a bool feature, and a label that depends on all three."""
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = {"amount": rng.gauss(50, 20), "country": rng.choice(["NL", "FR", "DE"]), "returning": rng.random() < 0.5}
        score = (x["amount"] - 50) / 20 + (x["country"] == "NL") - 0.5 * x["returning"] + rng.gauss(0, 0.3)
        if task == "binary":
            y = score > 0
        elif task == "multiclass":
            y = "low" if score < -0.5 else "mid" if score < 0.5 else "high"
        else:
            y = score
        data.append((x, y))
    return data


def river_mixed_composition(scale: bool):
    """What MixedFeatureScaler stands for, written with River's own transformers."""
    numbers_part = compose.SelectType(numbers.Number)
    if scale:
        numbers_part = numbers_part | preprocessing.StandardScaler()
    return compose.TransformerUnion(numbers_part, compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True))


@pytest.mark.parametrize("scale", [True, False])
def test_mixed_feature_scaler_equals_rivers_composition_key_for_key(scale):
    ours, theirs = MixedFeatureScaler(scale=scale), river_mixed_composition(scale)
    for x, _ in mixed_stream(500, "binary"):
        expected = theirs.transform_one(x)
        got = ours.transform_one(x)
        assert list(got.items()) == list(expected.items())  # same values, same order
        ours.learn_one(x)
        theirs.learn_one(x)
    assert list(ours.transform_one({"amount": 1.0, "country": "BE", "returning": True}).items()) == list(
        theirs.transform_one({"amount": 1.0, "country": "BE", "returning": True}).items()
    )


@pytest.mark.parametrize("last", [linear_model.LogisticRegression, linear_model.SoftmaxRegression])
def test_a_linear_model_behind_it_predicts_exactly_as_behind_rivers_composition(last):
    ours = MixedFeatureScaler() | last()
    theirs = river_mixed_composition(scale=True) | last()
    for x, y in mixed_stream(1000, "binary"):
        assert ours.predict_proba_one(x) == theirs.predict_proba_one(x)
        ours.learn_one(x, y)
        theirs.learn_one(x, y)


def test_on_numbers_alone_it_is_rivers_standard_scaler_to_the_bit():
    ours = MixedFeatureScaler() | linear_model.LogisticRegression()
    theirs = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in synth.SEA(seed=42).take(3000):
        assert ours.predict_proba_one(x) == theirs.predict_proba_one(x)
        ours.learn_one(x, y)
        theirs.learn_one(x, y)
    assert dict(ours["MixedFeatureScaler"].means) == dict(theirs["StandardScaler"].means)
    assert dict(ours["MixedFeatureScaler"].vars) == dict(theirs["StandardScaler"].vars)


def test_mixed_feature_scaler_pickles_and_passes_rivers_estimator_checks():
    check_estimator(MixedFeatureScaler())
    scaler = MixedFeatureScaler()
    for x, _ in mixed_stream(50, "binary"):
        scaler.learn_one(x)
    restored = pickle.loads(pickle.dumps(scaler))
    x = {"amount": 70.0, "country": "FR", "returning": False}
    assert restored.transform_one(x) == scaler.transform_one(x)
    assert fingerprint(restored) == fingerprint(scaler)


@pytest.mark.parametrize("preset,task", PRESET_TASKS)
def test_every_preset_learns_strings_bools_and_numbers_with_its_tasks_default_metrics(preset, task):
    online = OnlineModel(preset, build_model(preset, task), task, default_metric_names(task), window=50)
    assert online.evaluation.values() == dict.fromkeys(DEFAULT_METRICS[task])  # all None before a label
    for x, y in mixed_stream(300, task):
        online.learn(x, y, *online.predict(x))
    values = online.evaluation.values()
    assert list(values) == list(DEFAULT_METRICS[task])
    assert all(type(v) is float and math.isfinite(v) for v in values.values()), values
    assert all(type(v) is float for v in online.evaluation.rolling_values().values())
    if task == "binary":
        assert values["accuracy"] > 0.6 and values["rocauc"] > 0.6, values
    elif task == "multiclass":
        assert values["accuracy"] > 0.45, values


def test_default_metrics_fit_their_task():
    for task in TASKS:
        assert set(default_metric_names(task)) <= set(metric_names(task))
    with pytest.raises(LearnerError):
        default_metric_names("ranking")


def test_metrics_are_none_until_a_label_is_scored_then_numbers():
    from learners import ModelSet

    models = ModelSet.build(("logreg", build_model("logreg", "binary")), [], "binary",
                            ["accuracy", "logloss", "rocauc"], window=10)
    entry = models.describe(fingerprints=False)["logreg"]
    assert entry["metrics"] == entry["rolling_metrics"] == {"accuracy": None, "logloss": None, "rocauc": None}
    assert json.dumps(entry["metrics"]) == '{"accuracy": null, "logloss": null, "rocauc": null}'
    assert "accuracy=n/a" in repr(models.serving_model.evaluation)
    x, y = mixed_stream(1, "binary")[0]
    models.learn(x, y, models.predict(x).record)
    entry = models.describe(fingerprints=False)["logreg"]
    assert all(type(v) is float for v in [*entry["metrics"].values(), *entry["rolling_metrics"].values()])
    evaluation = models.serving_model.evaluation
    evaluation.set_window(20)  # a new, empty window has no value yet; the cumulative ones keep theirs
    assert evaluation.rolling_values() == {"accuracy": None, "logloss": None, "rocauc": None}
    assert all(type(v) is float for v in evaluation.values().values())


def test_string_labels_with_configured_names_score_exactly_like_river_on_bool_labels():
    """Phishing's bool labels sent as "phish"/"legit": the same accuracy and ROC AUC as River offline."""
    parser = LabelParser("binary", positive_label="phish", negative_label="legit")
    names = ["accuracy", "rocauc", "logloss"]
    online = OnlineModel("logreg", build_model("logreg", "binary"), "binary", names)
    for x, y in datasets.Phishing():
        label = parser.parse("phish" if y else "legit")
        online.learn(x, label, *online.predict(x))
    for name in names:
        expected = evaluate.progressive_val_score(
            datasets.Phishing(), build_model("logreg", "binary"), river_metric(name, "binary")
        ).get()
        assert online.evaluation.values()[name] == pytest.approx(expected, abs=1e-12), name
    assert online.evaluation.values()["rocauc"] > 0.9


def test_string_labels_without_normalisation_would_give_a_silently_wrong_rocauc():
    """Why LabelParser exists: River scores "yes"/"no" labels against the class True."""
    metric = river_metric("rocauc", "binary")
    model = build_model("hoeffding_tree", "binary")
    for x, y in datasets.Phishing().take(500):
        y = "yes" if y else "no"
        metric.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    assert metric.get() <= 0.0  # no error, a meaningless number


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"task": "binary", "positive_label": "yes"}, "go together"),
        ({"task": "binary", "positive_label": "a", "negative_label": "a"}, "both 'a'"),
        ({"task": "multiclass", "positive_label": "a", "negative_label": "b"}, "binary task"),
        ({"task": "ranking"}, "unknown task"),
    ],
)
def test_label_parser_configuration_errors_are_one_line(kwargs, fragment):
    with pytest.raises(LearnerError) as excinfo:
        LabelParser(**kwargs)
    assert_one_line_error(excinfo, fragment)


@pytest.mark.parametrize(
    "task, y, error",
    [
        ("binary", "maybe", LabelError),
        ("binary", 2, LabelError),
        ("binary", None, LabelTypeError),
        ("multiclass", [1], LabelTypeError),
        ("regression", "fast", LabelError),
        ("regression", False, LabelError),
        ("regression", "nan", LabelError),
    ],
)
def test_label_parser_refuses_what_is_no_label_of_the_task(task, y, error):
    with pytest.raises(error) as excinfo:
        LabelParser(task).parse(y)
    assert_one_line_error(excinfo)
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, TypeError) == (error is LabelTypeError)


# ---------------------------------------------------------------------------------------------
# Import boundary: learners/ is pure River

FORBIDDEN = {"kafka", "aiokafka", "faust", "rocksdict", "stream", "state"}


def imported_roots(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: only within learners/ is allowed
                if node.level > 1:
                    yield node.lineno, "." * node.level + (node.module or "")
                continue
            yield node.lineno, (node.module or "").split(".")[0]


def test_learners_imports_no_kafka_storage_or_service_code():
    files = sorted((ROOT / "learners").glob("*.py"))
    assert files
    offending = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for lineno, root in imported_roots(tree):
            if root in FORBIDDEN or root.startswith(".."):
                offending.append(f"{path.name}:{lineno} imports {root}")
    assert not offending, offending


def test_importing_learners_loads_no_forbidden_module():
    code = (
        "import sys, learners, learners.presets, learners.metrics, learners.evaluation, "
        "learners.online_model, learners.fingerprints\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_every_learner_error_has_an_exit_code():
    assert issubclass(LearnerError, Exception)
    assert LearnerError.exit_code == 2
    assert isinstance(build_model("naive_bayes", "binary"), base.Classifier)
