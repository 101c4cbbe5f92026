"""Bring your own model: ``model import``, ``model export`` and ``train``, through the real CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import msgpack
import numpy as np
import pytest
from river import datasets, evaluate, linear_model, preprocessing, utils
from sklearn.linear_model import LogisticRegression, SGDClassifier

from learners import build_model, fingerprint, river_metric
from learners.sklearn_models import FeatureOrderedClassifier, MissingFeatureError
from state import StateStore
from stream.engine.messages import wire_proba
from stream.engine.model_bytes import load_model_state
from tests.support import fresh_config, riverbed, write_config

# The offline model of these tests has feature names but is asked with plain arrays, as by hand.
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")

PHISHING = [(dict(x), y) for x, y in datasets.Phishing()]
NAMES = list(PHISHING[0][0])


def write_jsonl(path: Path, rows, *, drop: str | None = None) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for x, y in rows:
            x = {k: v for k, v in x.items() if k != drop}
            file.write(json.dumps({**x, "y": y}) + "\n")
    return path


def offline_sgd(rows) -> SGDClassifier:
    """An SGDClassifier trained offline, with feature names as a DataFrame would give them."""
    X = np.array([[x[n] for n in NAMES] for x, _ in rows])
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(X, np.array([int(y) for _, y in rows]))
    sgd.feature_names_in_ = np.array(NAMES, dtype=object)
    return sgd


def offline_river(rows):
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in rows:
        model.learn_one(x, y)
    return model


def newest_models(cfg):
    with StateStore(cfg.state.dir, read_only=True) as store:
        ckpt = store.load()
        return ckpt, load_model_state(ckpt.model_blob)["models"]


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riverbed: error: "), result.stderr
    return lines[0]


# -- the wrapper ------------------------------------------------------------------------------


def test_sklearn_wrapper_uses_the_fitted_column_order_and_names_a_missing_feature():
    sgd = offline_sgd(PHISHING[:200])
    model = FeatureOrderedClassifier(pickle.loads(pickle.dumps(sgd)), NAMES, labels=[False, True])
    x = PHISHING[200][0]
    shuffled = dict(reversed(list(x.items())))  # River's own wrapper would take this key order
    expected = sgd.predict_proba(np.array([[x[n] for n in NAMES]]))[0]
    assert model.predict_proba_one(shuffled) == {False: float(expected[0]), True: float(expected[1])}
    assert model.predict_one(shuffled) is bool(sgd.predict(np.array([[x[n] for n in NAMES]]))[0])
    with pytest.raises(MissingFeatureError, match="lacks feature 'https'"):
        model.predict_one({k: v for k, v in x.items() if k != "https"})
    with pytest.raises(ValueError, match="not one of the classes"):
        model.learn_one(x, "maybe")
    fresh = model.clone()
    assert not hasattr(fresh.estimator, "coef_") and fresh.features == NAMES and fresh.labels == [False, True]


# -- refusals: one line, nothing written ------------------------------------------------------


def _refused_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["not a model"] = tmp_path / "dict.pkl"
    files["not a model"].write_bytes(pickle.dumps({"weights": [1, 2]}))
    files["text"] = tmp_path / "notes.pkl"
    files["text"].write_text("this is no pickle\n")
    files["wrong task"] = tmp_path / "regressor.pkl"
    files["wrong task"].write_bytes(pickle.dumps(linear_model.LinearRegression()))
    X = np.array([[x[n] for n in NAMES] for x, _ in PHISHING[:100]])
    y = [int(y) for _, y in PHISHING[:100]]
    files["no partial_fit"] = tmp_path / "logistic.joblib"
    joblib.dump(LogisticRegression().fit(X, y), files["no partial_fit"])
    files["corrupted"] = tmp_path / "sgd.joblib"
    joblib.dump(offline_sgd(PHISHING[:100]), files["corrupted"])
    data = files["corrupted"].read_bytes()
    files["corrupted"].write_bytes(data[: len(data) // 2])
    files["no column names"] = tmp_path / "sgd-array.pkl"
    files["no column names"].write_bytes(pickle.dumps(SGDClassifier(random_state=0).fit(X, y)))
    return files


EXPECTED = {
    "not a model": "holds a builtins.dict, not a model",
    "text": "is not a readable pickle or joblib file",
    "wrong task": "not a River classifier, but task 'binary' needs one",
    "no partial_fit": "LogisticRegression, which has no partial_fit",
    "corrupted": "is not a readable pickle or joblib file",
    "no column names": "pass --features a,b,c",
}


def test_refused_model_files_print_one_line_and_write_nothing(test_config, tmp_path):
    cfg = test_config.replace(state={"dir": str(tmp_path / "state")})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    for case, path in _refused_files(tmp_path).items():
        line = one_error_line(riverbed("model", "import", str(path), config=config_file, check=False))
        assert EXPECTED[case] in line, (case, line)
        assert not (tmp_path / "state").exists(), case


def test_a_state_dir_with_a_checkpoint_is_refused_unless_replace(test_config, tmp_path):
    cfg = test_config.replace(state={"dir": str(tmp_path / "state")})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    riverbed("train", "--dataset", "phishing", "--limit", "100", "--no-progress", config=config_file)
    model_file = tmp_path / "river.pkl"
    model_file.write_bytes(pickle.dumps(offline_river(PHISHING[:50])))
    line = one_error_line(riverbed("model", "import", str(model_file), config=config_file, check=False))
    assert "already holds checkpoint 1 (model logreg v100)" in line and "--replace" in line
    line = one_error_line(riverbed("train", "--dataset", "phishing", "--no-progress", config=config_file, check=False))
    assert "already holds checkpoint 1" in line
    ckpt, models = newest_models(cfg)
    assert ckpt.seq == 1 and models.serving_model.n_learned == 100  # untouched

    out = riverbed("model", "import", str(model_file), "--version", "50", "--replace", config=config_file).stdout
    assert "discarded checkpoint 1 (model logreg v100)" in out and "sha256 " in out
    ckpt, models = newest_models(cfg)
    assert ckpt.seq == 1 and models.serving_model.n_learned == 50
    assert ckpt.meta["origin"]["kind"] == "import" and ckpt.meta["offsets"] == []


def test_export_writes_the_verified_model_and_import_continues_from_its_version(test_config, tmp_path):
    cfg = test_config.replace(state={"dir": str(tmp_path / "state")})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    riverbed("train", "--dataset", "phishing", "--limit", "400", "--no-progress", config=config_file)
    out = tmp_path / "export" / "model.pkl"
    riverbed("model", "export", "--out", str(out), config=config_file)
    described = json.loads(out.with_name("model.pkl.json").read_text())
    exported = pickle.loads(out.read_bytes())
    _, models = newest_models(cfg)
    live = models.serving_model
    for x, _ in PHISHING[400:450]:
        assert exported.predict_proba_one(x) == live.predict(x)[1]
    assert described["version"] == described["n_learned"] == 400 and described["role"] == "champion"
    assert described["fingerprint"] == fingerprint(exported) == live.fingerprint()
    assert described["metrics"] == live.evaluation.values() and described["spec"]["preset"] == "logreg"

    other = test_config.replace(state={"dir": str(tmp_path / "state2")})
    printed = riverbed("model", "import", str(out), config=write_config(other, tmp_path / "other.toml")).stdout
    assert "v400 [version: from model.pkl.json" in printed
    _, imported = newest_models(other)
    assert imported.serving_model.n_learned == 400 and imported.serving_model.fingerprint() == live.fingerprint()


# -- on the real broker -----------------------------------------------------------------------


def read_values(bootstrap: str, topic: str, idle_ms: int = 3000) -> list:
    from tests.support import read_topic

    return read_topic(bootstrap, topic, idle_ms=idle_ms)


@pytest.mark.broker
@pytest.mark.parametrize("kind", ["sklearn", "river"])
def test_import_run_export_round_trip(test_config, broker_bootstrap, tmp_path, kind):
    history, stream, later = PHISHING[:300], PHISHING[300:500], PHISHING[500:550]
    offline = offline_sgd(history) if kind == "sklearn" else offline_river(history)
    model_file = tmp_path / ("model.joblib" if kind == "sklearn" else "model.pkl")
    if kind == "sklearn":
        joblib.dump(offline, model_file)
    else:
        model_file.write_bytes(pickle.dumps(offline))
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state", model={"name": "imported"})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")

    printed = riverbed("model", "import", str(model_file), "--version", "300", config=config_file).stdout
    assert "sha256" in printed and ("SGDClassifier" in printed if kind == "sklearn" else "Pipeline" in printed)
    riverbed("produce", "--file", str(write_jsonl(tmp_path / "stream.jsonl", stream)), "--target", "y",
             "--label-delay", "0", "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)

    published = [msgpack.unpackb(r.value, strict_map_key=False) for r in read_values(broker_bootstrap, cfg.topics.predictions)]
    assert [p["version"] for p in published] == list(range(300, 500))  # delay 0: label i learned before event i+1
    x0 = stream[0][0]
    if kind == "sklearn":
        p = offline.predict_proba(np.array([[x0[n] for n in NAMES]]))[0]
        first_offline = {False: float(p[0]), True: float(p[1])}
    else:
        first_offline = offline.predict_proba_one(x0)
    assert published[0]["proba"] == pytest.approx(wire_proba(first_offline), abs=1e-12)
    assert published[0]["model"] == "imported"

    export = tmp_path / "exported.pkl"
    riverbed("model", "export", "--out", str(export), config=config_file)
    exported = pickle.loads(export.read_bytes())
    _, models = newest_models(cfg)
    assert models.serving_model.n_learned == 500 == json.loads(export.with_name("exported.pkl.json").read_text())["version"]

    # More events without labels: the model does not change, so the exported model must predict
    # exactly what the service publishes for them; an event that lacks a feature is dead-lettered.
    later_file = write_jsonl(tmp_path / "later.jsonl", later)
    with later_file.open("a", encoding="utf-8") as file:
        file.write(json.dumps({k: v for k, v in {**later[0][0], "y": True}.items() if k != "https"}) + "\n")
    riverbed("produce", "--file", str(later_file), "--target", "y", "--label-fraction", "0", "--no-progress",
             config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    published = [msgpack.unpackb(r.value, strict_map_key=False) for r in read_values(broker_bootstrap, cfg.topics.predictions)]
    assert len(published) == (250 if kind == "sklearn" else 251)
    for (x, _), message in zip(later, published[200:]):
        live_y, live_proba = models.serving_model.predict(x)  # what POST /predict answers
        assert exported.predict_proba_one(x) == live_proba
        assert wire_proba(live_proba) == message["proba"]  # the same floats, bit for bit
        assert message["y_pred"] == live_y and message["version"] == 500
    dead = read_values(broker_bootstrap, cfg.topics.deadletter)
    if kind == "sklearn":
        assert len(dead) == 1
        headers = {k: v.decode() for k, v in dead[0].headers}
        assert headers["reason"] == "model_predict_failed" and "'https'" in headers["detail"]
    else:  # River's logistic regression reads missing features as absent, as River does
        assert dead == []


@pytest.mark.broker
def test_train_then_run_equals_river_learning_history_then_progressive_val_score(test_config, broker_bootstrap, tmp_path):
    history, stream = PHISHING[:600], PHISHING[600:]
    metrics = ["accuracy", "logloss", "rocauc"]
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state",
                       model={"preset": "logreg", "task": "binary", "metrics": metrics, "window": 200})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    printed = riverbed("train", "--file", str(write_jsonl(tmp_path / "history.jsonl", history)), "--target", "y",
                       "--no-progress", config=config_file).stdout
    assert "learned 600 of 600 rows" in printed
    riverbed("produce", "--file", str(write_jsonl(tmp_path / "stream.jsonl", stream)), "--target", "y",
             "--label-delay", "0", "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    status = json.loads(riverbed("status", "--json", config=config_file).stdout)
    served = status["models"][status["serving"]]
    assert served["n_learned"] == 1250 and status["counts"]["predictions"] == 650

    river_model = build_model("logreg", "binary")
    evaluate.progressive_val_score(history, river_model, river_metric("accuracy", "binary"))  # the history pass
    rolling = {name: utils.Rolling(type(river_metric(name, "binary")), window_size=200) for name in metrics}
    for name in metrics:  # the stream only, fresh metrics, on copies of the model after the history
        copy = pickle.loads(pickle.dumps(river_model))
        evaluate.progressive_val_score(stream, copy, rolling[name])
    evaluate.progressive_val_score(stream, river_model, river_metric("accuracy", "binary"))
    assert served["fingerprint"] == fingerprint(river_model)
    for name in metrics:
        # The rolling window (200 < 650 stream labels) holds the stream only: River's fresh metric.
        assert served["rolling_metrics"][name] == pytest.approx(rolling[name].get(), abs=1e-12), name
        # The cumulative metric covers history + stream: River's over the whole sequence.
        whole = evaluate.progressive_val_score(PHISHING, build_model("logreg", "binary"), river_metric(name, "binary"))
        assert served["metrics"][name] == pytest.approx(whole.get(), abs=1e-12), name
