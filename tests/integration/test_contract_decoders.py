"""The message contract as a client sees it, end to end on the real broker.

- Predictions and label requests decode with every client's *default* settings: msgpack's
  ``unpackb(value)`` (``strict_map_key=True``), ``json.loads(value)``, and ``kcat``, a client that
  is not Python. ``proba`` keys are ``"true"``/``"false"`` for a binary bool task and
  ``str(label)`` for a multiclass one; ``y_pred`` keeps the label's type
  (``stream/engine/messages.py``).
- A mixed-type CSV (numbers, strings, ``true``/``false`` labels as text) runs end to end with the
  default preset, and ``yes``/``no`` labels with ``[model] positive_label``/``negative_label``;
  both report exactly River's ``progressive_val_score`` on the same rows with bool labels.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import shutil
import subprocess
from pathlib import Path

import msgpack
import pytest
from river import evaluate

from learners import build_model, river_metric
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import produce, schedule
from stream.engine.processor import Processor
from tests.support import fresh_config, riverbed, write_config
from tests.support import create_all, read_topic

pytestmark = pytest.mark.broker

N_EVENTS = 300
REQUEST_WINDOW_S = 100.0  # schedule() spaces events 1 s apart: 100 events per window
REQUEST_BUDGET = 4
CITIES = ("Amsterdam", "Berlin", "Lisbon", "Oslo", "Porto")


def three_class_rows(n: int, seed: int = 3) -> list[tuple[dict, int]]:
    """Seeded samples with integer classes 0, 1, 2 (so ``str(label)`` differs from the label)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        rows.append(({"a": a, "b": b}, 0 if a + b < -0.4 else 1 if a + b < 0.4 else 2))
    return rows


TASKS = {
    # task: (preset, samples, the classes as the wire spells them, the type of y_pred)
    "binary": ("logreg", lambda: list(open_dataset("phishing", limit=N_EVENTS).rows), {"true", "false"}, bool),
    "multiclass": ("softmax", lambda: three_class_rows(N_EVENTS), {"0", "1", "2"}, int),
}


def contract_config(test_config, broker_bootstrap, path: Path, task: str, codec: str):
    cfg = fresh_config(test_config, broker_bootstrap, path, model={"preset": TASKS[task][0], "task": task},
                       codec={"output": codec})
    return cfg.replace(labels={"request_budget": REQUEST_BUDGET, "request_window_s": REQUEST_WINDOW_S,
                               "request_topic": cfg.topics.events.replace("-events", "-label-requests")})


def run_contract_stream(cfg, task: str) -> None:
    """Publish the task's samples (labels 10 events late) and process them once."""
    create_all(cfg)
    records = schedule(TASKS[task][1](), label_delay=10, id_prefix=task)
    produce(cfg.kafka.bootstrap_servers, cfg.topics, records, progress=False)
    asyncio.run(Processor(cfg, exit_when_idle=1.0, serve_metrics=False).run())


def check_predictions(messages: list[dict], task: str) -> None:
    _, _, classes, label_type = TASKS[task]
    assert len(messages) == N_EVENTS
    assert all(set(m) == {"id", "y_pred", "proba", "model", "version", "ts"} for m in messages)
    assert all(set(m["proba"]) <= classes for m in messages)
    assert all(m["y_pred"] is None or type(m["y_pred"]) is label_type for m in messages)
    assert set(messages[-1]["proba"]) == classes and type(messages[-1]["y_pred"]) is label_type
    assert {m["y_pred"] for m in messages} >= {label_type(0), label_type(1)}  # really predicted, both ways


def check_label_requests(messages: list[dict], task: str) -> None:
    _, _, classes, label_type = TASKS[task]
    assert REQUEST_BUDGET <= len(messages) <= REQUEST_BUDGET * (N_EVENTS / REQUEST_WINDOW_S + 1)
    assert all(set(m) == {"id", "y_pred", "proba", "score", "model", "version", "ts"} for m in messages)
    assert all(set(m["proba"]) <= classes for m in messages)
    assert all(m["y_pred"] is None or type(m["y_pred"]) is label_type for m in messages)


DEFAULT_DECODERS = {"msgpack": msgpack.unpackb, "json": json.loads}  # no arguments: every default


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_predictions_and_label_requests_decode_with_default_settings(test_config, broker_bootstrap, tmp_path,
                                                                     codec, task):
    cfg = contract_config(test_config, broker_bootstrap, tmp_path / "state", task, codec)
    run_contract_stream(cfg, task)
    decode = DEFAULT_DECODERS[codec]
    predictions = [decode(r.value) for r in read_topic(broker_bootstrap, cfg.topics.predictions, N_EVENTS)]
    check_predictions(predictions, task)
    requests = [decode(r.value) for r in read_topic(broker_bootstrap, cfg.labels.request_topic, idle_ms=1500)]
    check_label_requests(requests, task)


def kcat_json_values(bootstrap: str, topic: str) -> list[dict]:
    """The values of ``topic``, read by kcat (librdkafka) in its JSON envelope mode."""
    result = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-J", "-q"],
                            capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(json.loads(line)["payload"]) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make system-deps installs it)")
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_client_that_is_not_python_reads_the_json_output(test_config, broker_bootstrap, tmp_path, task):
    cfg = contract_config(test_config, broker_bootstrap, tmp_path / "state", task, "json")
    run_contract_stream(cfg, task)
    check_predictions(kcat_json_values(broker_bootstrap, cfg.topics.predictions), task)
    check_label_requests(kcat_json_values(broker_bootstrap, cfg.labels.request_topic), task)


# -- mixed-type CSV and string labels through the CLI ------------------------------------------

N_ROWS = 2000
LABEL_DELAY = 20


def write_clicks_csv(path: Path, positive: str, negative: str, seed: int = 5) -> list[tuple[dict, bool]]:
    """``age,city,clicked`` rows (seeded); returns them as River samples with bool labels."""
    rng = random.Random(seed)
    samples = []
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["age", "city", "clicked"])
        for _ in range(N_ROWS):
            age, city = rng.randint(18, 80), rng.choice(CITIES)
            clicked = (CITIES.index(city) - 2) * 0.6 - (age - 45) * 0.05 + rng.gauss(0, 1) > 0
            writer.writerow([age, city, positive if clicked else negative])
            samples.append(({"age": age, "city": city}, clicked))
    return samples


@pytest.mark.parametrize(
    "positive, negative, model",
    [
        ("true", "false", {}),  # the default preset, no class names: CSV true/false are bools
        ("yes", "no", {"positive_label": "yes", "negative_label": "no", "metrics": ["accuracy", "rocauc"]}),
    ],
    ids=["true-false", "yes-no-named"],
)
def test_a_mixed_type_csv_scores_exactly_like_river(test_config, broker_bootstrap, tmp_path, positive, negative, model):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state")
    if model:
        cfg = cfg.replace(model=model)
    assert cfg.model.preset == "logreg" and cfg.model.task == "binary"
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    samples = write_clicks_csv(tmp_path / "d.csv", positive, negative)

    riverbed("produce", "--file", str(tmp_path / "d.csv"), "--target", "clicked", "--label-delay", str(LABEL_DELAY),
             "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    status = json.loads(riverbed("status", "--json", config=config_file).stdout)

    assert status["counts"]["events"] == status["counts"]["predictions"] == N_ROWS
    assert status["counts"]["joined"] == N_ROWS
    assert status["counts"]["invalid"] == 0 and status["invalid_by_reason"] == {}
    assert read_topic(broker_bootstrap, cfg.topics.deadletter, idle_ms=1000) == []
    predictions = read_topic(broker_bootstrap, cfg.topics.predictions, N_ROWS)
    assert len({r.key for r in predictions}) == N_ROWS  # every event predicted
    metrics = status["models"][status["serving"]]["metrics"]
    assert set(metrics) == set(cfg.metric_names)
    for name in cfg.metric_names:
        expected = evaluate.progressive_val_score(
            samples, build_model("logreg", "binary"), river_metric(name, "binary"), delay=LABEL_DELAY
        ).get()
        assert metrics[name] == pytest.approx(expected, abs=1e-12), name
