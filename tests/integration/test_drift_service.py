"""Drift and champion/challenger end to end on the real broker: metrics, status, predictions, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from stream.ops.status import read_status
from stream.errors import RiverbedError
from tests.support import fresh_config, riverbed, write_config
from tests.support import reader_config, publish, read_topic, run_once

pytestmark = pytest.mark.broker


def test_label_free_feature_drift_is_detected_with_labels_withheld(test_config, broker_bootstrap, tmp_path):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state")
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    riverbed("produce", "--dataset", "sea_shift", "--limit", "4000", "--drift-at", "2000", "--label-fraction", "0",
             "--no-progress", config=config_file)
    registry = CollectorRegistry()
    run_once(cfg, registry=registry)
    status = json.loads(riverbed("status", "--json", config=config_file).stdout)

    assert status["counts"]["events"] == 4000 and status["counts"]["labels"] == 0
    fired = [d for d in status["drift"] if d["signal"].startswith("feature:")]
    print("label-free detections:", status["drift"])
    assert [d["signal"] for d in fired] == ["feature:2"]
    detection = fired[0]
    assert 2000 < detection["position"] <= 2500
    assert detection == {"model": "logreg", "detector": "adwin", "signal": "feature:2",
                         "position": detection["position"], "ts": detection["ts"], "action": "alert"}
    predictions = read_topic(broker_bootstrap, cfg.topics.predictions, expected=4000)
    fired_on = msgpack.unpackb(predictions[detection["position"] - 1].value, strict_map_key=False)
    assert detection["ts"] == fired_on["ts"]  # the event time of the event that moved the detector
    labels = {"model": "logreg", "detector": "adwin", "signal": "feature:2"}
    assert registry.get_sample_value("riverbed_drift_detections_total", labels) == 1
    assert registry.get_sample_value("riverbed_drift_last_detected_timestamp_seconds", labels) > time.time() - 600
    assert status["models"]["logreg"]["role"] == "champion"
    assert status["models"]["logreg"]["rolling_metrics"] == {"accuracy": None, "logloss": None, "rocauc": None}


def test_challenger_is_promoted_on_bananas_and_a_crash_changes_nothing(test_config, broker_bootstrap, tmp_path):
    base = fresh_config(
        test_config, broker_bootstrap, tmp_path / "unused",
        model={"preset": "logreg", "metrics": ["accuracy", "logloss"], "window": 1000},
        challengers={"models": [{"preset": "hoeffding_adaptive"}], "publish": True, "margin": 0.02, "min_labels": 500},
        drift={"error_action": "retrain", "detector": "ddm"},
    )
    base = base.replace(state={"checkpoint_interval_s": 0.2})
    publish(base, "bananas", delay=0)

    reference = reader_config(base, tmp_path, "reference")
    registry = CollectorRegistry()
    run_once(reference, registry=registry)
    expected = read_status(reference)
    print("promotions:", expected["promotions"])
    assert [(p["kind"], p["from"], p["to"]) for p in expected["promotions"]] == [
        ("promotion", "logreg", "hoeffding_adaptive")
    ]
    assert expected["serving"] == "hoeffding_adaptive"
    assert expected["models"]["hoeffding_adaptive"]["role"] == "champion"
    assert expected["models"]["logreg"]["role"] == "challenger"
    assert registry.get_sample_value("riverbed_promotions_total", {"from": "logreg", "to": "hoeffding_adaptive"}) == 1
    assert registry.get_sample_value("riverbed_model_is_champion", {"model": "hoeffding_adaptive"}) == 1
    assert registry.get_sample_value(
        "riverbed_model_metric", {"model": "hoeffding_adaptive", "metric": "accuracy", "window": "rolling"}
    ) == expected["models"]["hoeffding_adaptive"]["rolling_metrics"]["accuracy"]

    # the prediction stream shows the switch from the event after the promotion on
    at = expected["promotions"][0]["position"]
    predictions = [msgpack.unpackb(r.value, strict_map_key=False)
                   for r in read_topic(broker_bootstrap, reference.topics.predictions, expected=5300)]
    assert len(predictions) == 5300
    assert {p["model"] for p in predictions[:at]} == {"logreg"}
    assert {p["model"] for p in predictions[at:]} == {"hoeffding_adaptive"}
    assert set(predictions[0]["challengers"]) == {"hoeffding_adaptive"}
    assert set(predictions[-1]["challengers"]) == {"logreg"}

    # the same run, killed with SIGKILL mid-way and resumed, ends in the same state
    crashy = reader_config(base, tmp_path, "crashy")
    config_file = write_config(crashy, tmp_path / "crashy.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    proc = subprocess.Popen([sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", "INFO", "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "consuming" in line:
            break
    else:
        pytest.fail(f"processor exited early with {proc.wait()}")
    time.sleep(0.5)
    assert proc.poll() is None, "the processor finished before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    try:
        covered = read_status(crashy)["counts"]["events"]
    except RiverbedError:
        covered = 0
    print("events covered by the checkpoint at the kill:", covered)
    assert covered < 5300
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    actual = read_status(crashy)
    for name, model in expected["models"].items():
        assert actual["models"][name] == model, name
    assert actual["promotions"] == expected["promotions"]
    assert actual["drift"] == expected["drift"]
    assert actual["serving"] == expected["serving"]
    assert actual["counts"] == expected["counts"]
