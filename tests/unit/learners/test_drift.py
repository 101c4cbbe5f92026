"""Drift detection, rolling metrics and champion/challenger, at the learner level (no Kafka).

Datasets are fed through :class:`learners.ModelSet` in the order riverbed replays them with label
delay 0 (predict event i, then learn its label), with fixed seeds, so every number is exact and
repeatable; the same operations run inside the processor.
"""

from __future__ import annotations

import pickle

import pytest
from river import base, metrics

from learners import DriftSettings, LearnerError, ModelSet, PromotionPolicy, build_model
from learners.drift import (
    ChallengerStarted,
    DriftDetected,
    DriftMonitor,
    InputMonitor,
    ModelRetrained,
    ModelSwitched,
    positive_score,
)
from learners.evaluation import Prequential
from stream.devtools.datasets import message_features, open_dataset

DRIFT_AT = 10_000


def rows_of(name: str, **kwargs) -> list:
    """A dataset as riverbed's processor sees it (string feature names, as in the messages)."""
    return [(message_features(x), y) for x, y in open_dataset(name, **kwargs).rows]


def replay(models: ModelSet, rows, *, learn_every=1, stop: int | None = None, start: int = 0):
    """Predict then learn each row (label delay 0); returns the notices and the served (model, y_pred)."""
    notices, served = [], []
    for i, (x, y) in enumerate(rows[start:stop], start=start):
        s = models.predict(x, float(i))
        notices += s.notices
        served.append((s.model, s.y_pred, y))
        if learn_every and i % learn_every == 0:
            notices += models.learn(x, y, s.record, float(i))
    return notices, served


def sea_drift_set(action: str, **drift) -> ModelSet:
    return ModelSet.build(
        ("hoeffding_adaptive", build_model("hoeffding_adaptive", "binary")), [], "binary", ["accuracy"],
        window=1000, drift=DriftSettings(error_action=action, **drift),
    )


@pytest.fixture(scope="module")
def sea_drift_rows():
    return rows_of("sea_drift", limit=20_000, drift_at=DRIFT_AT, seed=42)


@pytest.fixture(scope="module")
def sea_drift_runs(sea_drift_rows):
    """The hoeffding_adaptive champion on sea_drift with action alert and with action retrain."""
    runs = {}
    for action in ("alert", "retrain"):
        models = sea_drift_set(action)
        notices, served = replay(models, sea_drift_rows)
        runs[action] = (models, notices, served)
    return runs


def error_detections(notices, model="hoeffding_adaptive"):
    return [n.position for n in notices if isinstance(n, DriftDetected) and n.signal == "error" and n.model == model]


def test_label_based_detector_fires_soon_after_the_change_and_at_most_once_before(sea_drift_runs):
    models, notices, _ = sea_drift_runs["alert"]
    fired = error_detections(notices)
    print("ADWIN on hoeffding_adaptive's errors fired at events", fired)
    before = [p for p in fired if p <= DRIFT_AT]
    after = [p for p in fired if p > DRIFT_AT]
    assert len(before) <= 1
    assert after and after[0] - DRIFT_AT <= 1_000
    assert [d["position"] for d in models.drift_log if d["signal"] == "error"] == fired
    entry = next(d for d in models.drift_log if d["signal"] == "error" and d["position"] == after[0])
    assert entry == {"model": "hoeffding_adaptive", "detector": "adwin", "signal": "error",
                     "position": after[0], "ts": float(after[0] - 1), "action": "alert"}


def test_retrain_beats_alert_over_the_2000_labels_after_the_change(sea_drift_runs):
    accuracy = {}
    for action, (models, notices, served) in sea_drift_runs.items():
        metric = metrics.Accuracy()
        for _, y_pred, y in served[DRIFT_AT:DRIFT_AT + 2_000]:
            metric.update(y, y_pred)
        accuracy[action] = metric.get()
    print("accuracy over the 2,000 labels after the change:", accuracy)
    assert accuracy["retrain"] > accuracy["alert"] + 0.01
    models, notices, _ = sea_drift_runs["retrain"]
    retrained = [n for n in notices if isinstance(n, ModelRetrained)]
    assert retrained and models.serving_model.retrains == len(retrained)
    assert len(retrained) == len(error_detections(notices))


def test_retrain_with_a_warning_detector_trains_the_background_model(sea_drift_rows):
    models = sea_drift_set("retrain", detector="ddm")
    notices, _ = replay(models, sea_drift_rows, stop=14_000)
    retrained = [n for n in notices if isinstance(n, ModelRetrained)]
    assert retrained and all(n.background for n in retrained)  # DDM warns before it detects


def test_label_free_feature_detector_fires_on_a_covariate_shift_without_labels():
    rows = rows_of("sea_shift", limit=16_000, drift_at=DRIFT_AT, seed=42)
    models = ModelSet.build(("logreg", build_model("logreg", "binary")), [], "binary", ["accuracy"],
                            window=1000, drift=DriftSettings())
    notices, _ = replay(models, rows, learn_every=0)  # labels withheld: predict only
    fired = [(n.signal, n.position) for n in notices]
    print("label-free detections:", fired)
    assert fired and fired[0][0] == "feature:2"
    assert DRIFT_AT < fired[0][1] <= DRIFT_AT + 500
    assert all(signal == "feature:2" for signal, _ in fired)
    assert models.serving_model.n_learned == 0
    assert sorted(models.inputs.features) == ["0", "1", "2"]


def test_label_free_monitors_watch_at_most_max_features():
    monitor = InputMonitor("adwin", max_features=2)
    monitor.update({"a": 1.0, "s": "text", "b": True, "c": 2, "d": 3.0}, 0.5)
    assert list(monitor.features) == ["a", "c"]  # numbers only (not str, not bool), first seen first
    assert InputMonitor("none", max_features=5).update({"a": 1.0}, 0.5) == []


def test_positive_score():
    assert positive_score({False: 0.25, True: 0.75}, True) == 0.75
    assert positive_score({"a": 0.2, "b": 0.5, "c": 0.3}, "b") == 0.5
    assert positive_score(None, 2.5) == 2.5
    assert positive_score({}, None) is None


def test_reset_action_restarts_the_detector():
    monitor = DriftMonitor("error", "kswin")
    for i in range(150):
        monitor.update(float(i % 3))
    assert len(monitor.detector.window) == 100
    monitor.reset()
    assert len(monitor.detector.window) == 0 and monitor.n_updates == 150


def test_rolling_metrics_are_the_metric_over_the_last_window_labels():
    rows = rows_of("phishing")
    models = ModelSet.build(("logreg", build_model("logreg", "binary")), [], "binary", ["accuracy", "logloss"],
                            window=200)
    _, served = replay(models, rows)
    last = served[-200:]
    expected = sum(y_pred == y for _, y_pred, y in last) / 200
    values = models.describe()["logreg"]
    assert values["rolling_metrics"]["accuracy"] == pytest.approx(expected, abs=1e-12)
    cumulative = sum(y_pred == y for _, y_pred, y in served) / len(served)
    assert values["metrics"]["accuracy"] == pytest.approx(cumulative, abs=1e-12)
    assert values["role"] == "champion"


def test_every_configurable_metric_rolls():
    from learners.metrics import METRICS

    for name, (cls, tasks) in METRICS.items():
        task = tasks[0]
        evaluation = Prequential.from_names([name], task, window=3)
        for i in range(6):
            if task == "regression":
                evaluation.update(float(i), float(i) + 0.5, None)
            else:
                truth = i % 2 == 0
                evaluation.update(truth, truth, {True: 0.7 if truth else 0.3, False: 0.3 if truth else 0.7})
        assert set(evaluation.rolling_values()) == {name}


# -- champion / challenger ----------------------------------------------------------------------


def bananas_set(**drift) -> ModelSet:
    return ModelSet.build(
        ("logreg", build_model("logreg", "binary")),
        [("hoeffding_adaptive", build_model("hoeffding_adaptive", "binary"))],
        "binary", ["accuracy", "logloss"], window=1000,
        drift=DriftSettings(**drift) if drift else DriftSettings(),
        promotion=PromotionPolicy("accuracy", margin=0.02, min_labels=500),
    )


def test_challenger_overtakes_the_logreg_champion_on_bananas_and_is_promoted():
    rows = rows_of("bananas")
    models = bananas_set()
    notices, served = replay(models, rows)
    switches = [n for n in notices if isinstance(n, ModelSwitched)]
    print("switches:", [n.as_dict() for n in switches])
    assert [(n.kind, n.from_model, n.to_model) for n in switches] == [("promotion", "logreg", "hoeffding_adaptive")]
    at = switches[0].position
    assert switches[0].to_value - switches[0].from_value > 0.02
    # the prediction stream shows the switch from the next event on
    assert {m for m, _, _ in served[:at]} == {"logreg"}
    assert {m for m, _, _ in served[at:]} == {"hoeffding_adaptive"}
    described = models.describe()
    assert models.serving == "hoeffding_adaptive"
    assert described["hoeffding_adaptive"]["role"] == "champion"
    assert described["logreg"]["role"] == "challenger"
    assert list(models.switch_log) == [switches[0].as_dict()]
    assert set(models.switch_log[0]) >= {"kind", "from", "to", "position", "ts"}
    assert (described["hoeffding_adaptive"]["rolling_metrics"]["accuracy"]
            > described["logreg"]["rolling_metrics"]["accuracy"])


class Constant(base.Classifier):
    """Predicts one class, whatever it learns (a model that is right only while the labels suit it)."""

    def __init__(self, value: bool):
        self.value = value

    def learn_one(self, x, y):
        pass

    def predict_proba_one(self, x):
        return {self.value: 0.9, not self.value: 0.1}


def test_a_promoted_champion_that_falls_behind_is_rolled_back_with_hysteresis():
    models = ModelSet.build(("says_no", Constant(False)), [("says_yes", Constant(True))], "binary", ["accuracy"],
                            window=50, promotion=PromotionPolicy("accuracy", margin=0.1, min_labels=30))
    rows = [({"a": 1.0}, i >= 200 and i < 600) for i in range(1_000)]
    notices, served = replay(models, rows)
    switches = [(n.kind, n.from_model, n.to_model, n.position) for n in notices if isinstance(n, ModelSwitched)]
    # from label 200 on the truth is True: over the last 50 labels says_yes leads by (2k - 50) / 50 after k
    # True labels, more than the margin 0.1 from k = 28 (label 227) on; the 30th such label in a row is
    # label 256, learned after event 256 was predicted (position 257). The same story back from label 600.
    assert switches == [("promotion", "says_no", "says_yes", 257), ("rollback", "says_yes", "says_no", 657)]
    assert [m for m, _, _ in served[256:258]] == ["says_no", "says_yes"]
    assert [p["kind"] for p in models.switch_log] == ["promotion", "rollback"]


def test_one_bad_label_restarts_the_hysteresis_count():
    models = ModelSet.build(("says_no", Constant(False)), [("says_yes", Constant(True))], "binary", ["accuracy"],
                            window=10, promotion=PromotionPolicy("accuracy", margin=0.0, min_labels=30))
    # the truth alternates in blocks of 20: the challenger never leads for 30 labels in a row
    rows = [({"a": 1.0}, (i // 20) % 2 == 1) for i in range(2_000)]
    notices, _ = replay(models, rows)
    assert not [n for n in notices if isinstance(n, ModelSwitched)]
    assert models.serving == "says_no"


def test_challenger_action_starts_a_fresh_challenger_that_takes_over_after_the_change(sea_drift_rows, sea_drift_runs):
    models = ModelSet.build(
        ("hoeffding_adaptive", build_model("hoeffding_adaptive", "binary")), [], "binary", ["accuracy"],
        window=500, drift=DriftSettings(error_action="challenger"),
        promotion=PromotionPolicy("accuracy", margin=0.01, min_labels=200),
    )
    notices, served = replay(models, sea_drift_rows)
    started = [n for n in notices if isinstance(n, ChallengerStarted)]
    print("challengers started:", started)
    print("switches:", [n.as_dict() for n in notices if isinstance(n, ModelSwitched)])
    assert started and started[0].model == "hoeffding_adaptive~1" and started[0].source == "hoeffding_adaptive"
    # a later detection replaces the running one only once it had its chance (window + min_labels labels)
    for previous, following in zip(started, started[1:]):
        assert following.position - previous.position >= 500 + 200
    assert len(models.models) <= 3  # the configured champion, a predecessor, a running spawned challenger
    switches = [n for n in notices if isinstance(n, ModelSwitched)]
    first = switches[0]
    assert (first.kind, first.from_model) == ("promotion", "hoeffding_adaptive") and "~" in first.to_model
    assert DRIFT_AT < first.position <= DRIFT_AT + 1_000
    accuracy = {}
    for action, run in (("challenger", served), ("alert", sea_drift_runs["alert"][2])):
        metric = metrics.Accuracy()
        for _, y_pred, y in run[DRIFT_AT:DRIFT_AT + 2_000]:
            metric.update(y, y_pred)
        accuracy[action] = metric.get()
    print("served accuracy over the 2,000 labels after the change:", accuracy)
    assert accuracy["challenger"] > accuracy["alert"]
    assert all(name == "hoeffding_adaptive" or name.startswith("hoeffding_adaptive~") for name in models.models)


def test_configuration_errors_are_one_line():
    hat = ("m", build_model("hoeffding_adaptive", "binary"))
    with pytest.raises(LearnerError, match="only watches 0/1 errors"):
        ModelSet.build(("r", build_model("linreg", "regression")), [], "regression", ["mae"], window=10,
                       drift=DriftSettings(detector="ddm"))
    with pytest.raises(LearnerError, match="is not one of"):
        ModelSet.build(hat, [], "binary", ["accuracy"], window=10, drift=DriftSettings(error_action="panic"))
    with pytest.raises(LearnerError, match="not one of \\[model\\] metrics"):
        ModelSet.build(hat, [], "binary", ["accuracy"], window=10, promotion=PromotionPolicy("logloss"))
    with pytest.raises(LearnerError, match="set \\[model\\] window"):
        ModelSet.build(hat, [], "binary", ["accuracy"], promotion=PromotionPolicy("accuracy"))
    with pytest.raises(LearnerError, match="two models are named"):
        ModelSet.build(hat, [hat], "binary", ["accuracy"], window=10)


def test_regression_watches_absolute_errors_and_predicted_values():
    rows = rows_of("trump_approval")
    models = ModelSet.build(("linreg", build_model("linreg", "regression")), [], "regression", ["mae"],
                            window=100, drift=DriftSettings(error_action="retrain"))
    notices, _ = replay(models, rows)
    assert models.inputs.score.n_updates == len(rows)
    assert models.error_monitors["linreg"].n_updates == len(rows)  # an untrained linreg predicts 0.0
    assert {n.signal for n in notices if isinstance(n, DriftDetected)} <= {"error", "score"} | {
        f"feature:{name}" for name in models.inputs.features
    }


# -- determinism: restore from a pickle anywhere, end with the same fingerprints ------------------


@pytest.mark.parametrize("action, detector, input_detector", [
    ("retrain", "ddm", "kswin"),  # a warning detector (background model) and the seeded KSWIN
    ("challenger", "adwin", "page_hinkley"),
])
def test_restores_anywhere_end_with_the_same_fingerprints(action, detector, input_detector):
    rows = rows_of("bananas")[: 3_000 if input_detector == "kswin" else None]  # KSWIN runs a KS test per update
    cut_points = [c for c in (700, 1_900, 2_600, 4_100) if c < len(rows)]
    settings = dict(error_action=action, score_action="reset", feature_action=action, detector=detector,
                    input_detector=input_detector, max_features=1)

    uninterrupted = bananas_set(**settings)
    replay(uninterrupted, rows)

    restored = bananas_set(**settings)
    start = 0
    for cut in cut_points + [len(rows)]:
        replay(restored, rows, start=start, stop=cut)
        restored = pickle.loads(pickle.dumps(restored, protocol=5))
        start = cut
    assert restored.fingerprint() == uninterrupted.fingerprint()
    assert restored.describe() == uninterrupted.describe()
    assert list(restored.drift_log) == list(uninterrupted.drift_log)
    assert list(restored.switch_log) == list(uninterrupted.switch_log)
    assert uninterrupted.drift_log, "the run should exercise drift actions"
    assert uninterrupted.switch_log, "the run should exercise a promotion"
    print({n: (m["role"], m["retrains"]) for n, m in uninterrupted.describe().items()},
          [(d["signal"], d["action"]) for d in uninterrupted.drift_log])


def test_reconfigure_adds_and_removes_challengers_and_is_a_no_op_when_nothing_changed():
    rows = rows_of("bananas")[:600]
    models = bananas_set()
    replay(models, rows[:300])
    settings = dict(window=1000, drift=DriftSettings(), promotion=PromotionPolicy("accuracy", 0.02, 500))
    before = models.fingerprint()
    factory = lambda: build_model("hoeffding_adaptive", "binary")  # noqa: E731
    assert models.reconfigure({"hoeffding_adaptive": factory}, **settings) == []
    assert models.fingerprint() == before

    changes = models.reconfigure({"hoeffding_adaptive": factory, "nb": lambda: build_model("naive_bayes", "binary")},
                                 **settings)
    assert changes == ["challenger nb added"]
    replay(models, rows[300:])  # nb made no prediction for events before it existed: learned unscored
    assert models.models["nb"].n_learned == 300 and models.models["nb"].evaluation.n_updates == 300
    changes = models.reconfigure({}, window=500, drift=DriftSettings(detector="none"), promotion=None)
    assert "challenger hoeffding_adaptive removed" in changes and "challenger nb removed" in changes
    assert list(models.models) == ["logreg"] and models.error_monitors == {}
    assert models.serving_model.evaluation.window == 500


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[[challengers.models]]\nname = 'x'\n", "entry 1 needs a 'preset' key"),
        ("[[challengers.models]]\npreset = 'logreg'\n", "is named 'logreg' like another model"),
        ("[[challengers.models]]\npreset = 'naive_bayes'\ncolour = 'red'\n", "unknown key 'colour'"),
        ("[challengers]\nmodels = ['naive_bayes']\n", "must be a table with keys name, preset"),
        ("[drift]\ndetector = 'adwinn'\n", "[drift] detector = 'adwinn' is not one of adwin"),
        ("[drift]\ninput_detector = 'ddm'\n", "[drift] input_detector = 'ddm' is not one of adwin, page_hinkley"),
        ("[drift]\nerror_action = 'panic'\n", "is not one of alert, reset, retrain, challenger"),
        ("[model]\ntask = 'regression'\npreset = 'linreg'\nmetrics = ['mae']\n[drift]\ndetector = 'ddm'\n",
         "watches 0/1 errors of a classifier"),
        ("[challengers]\nmetric = 'f1'\n", "[challengers] metric = 'f1' is not one of [model] metrics"),
        ("[model]\nwindow = 0\n", "[model] window must be at least 1"),
        ("[challengers]\nmin_labels = 0\n", "min_labels must be at least 1"),
    ],
)
def test_drift_and_challenger_config_errors_are_one_line(tmp_path, text, fragment):
    from stream.config import load_config
    from stream.errors import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_challengers_config_from_file_and_environment(tmp_path):
    from stream.config import load_config
    from stream.engine.processor import build_model_set

    path = tmp_path / "c.toml"
    path.write_text('[challengers]\npublish = true\n[[challengers.models]]\npreset = "hoeffding_adaptive"\n'
                    '[[challengers.models]]\nname = "nb"\npreset = "naive_bayes"\n')
    cfg = load_config(path, env={})
    assert cfg.challenger_specs == [("hoeffding_adaptive", "hoeffding_adaptive"), ("nb", "naive_bayes")]
    models = build_model_set(cfg)
    assert list(models.models) == ["logreg", "hoeffding_adaptive", "nb"] and models.serving == "logreg"
    assert models.promotion == PromotionPolicy("accuracy", 0.02, 500)
    env = load_config(None, env={"RIVERBED_CHALLENGERS_MODELS": '[{preset = "naive_bayes"}]'})
    assert env.challenger_specs == [("naive_bayes", "naive_bayes")]

