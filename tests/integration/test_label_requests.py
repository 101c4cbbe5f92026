"""Label requests within a budget, the oracle, and the sampler riding the checkpoint (real broker)."""

from __future__ import annotations

import asyncio
import collections
import math

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from stream.ops.status import read_status
from stream.devtools.datasets import open_dataset
from stream.errors import RiverbedError
from stream.engine.processor import Processor
from stream.devtools.replay import produce, schedule
from tests.support import fresh_config, riverbed, write_config
from tests.support import create_all, read_topic

pytestmark = pytest.mark.broker

WINDOW = 100.0
BUDGET = 5
START = 1_000_000.0  # a multiple of WINDOW: 100 events per window


def requests_config(test_config, broker_bootstrap, path, **labels):
    cfg = fresh_config(test_config, broker_bootstrap, path,
                       model={"preset": "logreg", "task": "binary", "metrics": ["accuracy"]})
    return cfg.replace(labels={"request_budget": BUDGET, "request_window_s": WINDOW, "request_strategy": "entropy",
                               "request_topic": cfg.topics.events.replace("-events", "-label-requests"), **labels})


def publish_unlabelled(cfg, start: int, stop: int) -> None:
    create_all(cfg)
    rows = list(open_dataset("phishing", limit=stop).rows)[start:]
    records = [r for r in schedule(rows, label_fraction=0.0, start_ts=START + start, id_prefix="phishing")]
    # schedule numbers from 0: shift ids to the global index
    records = [type(r)(r.kind, f"phishing-{start + i}", dict(r.value, id=f"phishing-{start + i}"), r.ts)
               for i, r in enumerate(records)]
    produce(cfg.kafka.bootstrap_servers, cfg.topics, records, progress=False)


def test_requests_follow_the_contract_and_the_budget_and_the_oracle_answers(test_config, broker_bootstrap, tmp_path):
    cfg = requests_config(test_config, broker_bootstrap, tmp_path / "state")
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    riverbed("produce", "--dataset", "phishing", "--limit", "400", "--label-fraction", "0",
             "--start-ts", str(START), "--no-progress", config=config_file)
    registry = CollectorRegistry()
    asyncio.run(Processor(cfg, registry=registry, exit_when_idle=1.0, serve_metrics=False).run())

    requests = [msgpack.unpackb(r.value, strict_map_key=False)
                for r in read_topic(broker_bootstrap, cfg.labels.request_topic, idle_ms=2000)]
    per_window = collections.Counter(math.floor(r["ts"] / WINDOW) for r in requests)
    assert set(per_window) == {10_000, 10_001, 10_002, 10_003}
    assert max(per_window.values()) <= BUDGET and sum(per_window.values()) >= 3 * BUDGET
    assert all(set(r) == {"id", "y_pred", "proba", "score", "model", "version", "ts"} for r in requests)
    assert all(0.0 <= r["score"] <= 1.0 and r["model"] == "logreg" for r in requests)
    assert registry.get_sample_value("riverbed_label_requests_total") == len(requests)
    assert read_status(cfg)["counts"]["label_requests"] == len(requests)

    answered = riverbed("oracle", "--dataset", "phishing", "--limit", "400", "--delay-events", "10",
                        "--exit-when-idle", "2", config=config_file)
    assert f"answered {len(requests)} of {len(requests)} label requests" in answered.stdout
    truth = {f"phishing-{i}": y for i, (_, y) in enumerate(open_dataset("phishing", limit=400).rows)}
    labels = [msgpack.unpackb(r.value) for r in read_topic(broker_bootstrap, cfg.topics.labels, idle_ms=2000)]
    assert [lab["id"] for lab in labels] == [r["id"] for r in requests]
    assert all(lab["y"] == truth[lab["id"]] for lab in labels)
    assert all(lab["ts"] == r["ts"] + 9.5 for lab, r in zip(labels, requests))

    again = riverbed("oracle", "--dataset", "phishing", "--limit", "400", "--exit-when-idle", "1", config=config_file)
    assert "answered 0 of 0" in again.stdout  # the oracle's group remembers what it answered

    asyncio.run(Processor(cfg, exit_when_idle=1.0, serve_metrics=False).run())
    counts = read_status(cfg)["counts"]
    assert counts["joined"] == len(requests) and counts["unmatched_labels"] == 0


def test_the_sampler_rides_the_checkpoint(test_config, broker_bootstrap, tmp_path):
    """Stopping and resuming mid-window asks for exactly the labels an uninterrupted run asks for."""
    resumed = requests_config(test_config, broker_bootstrap, tmp_path / "resumed")
    publish_unlabelled(resumed, 0, 150)  # stops in the middle of the second window
    asyncio.run(Processor(resumed, exit_when_idle=0.5, serve_metrics=False).run())
    publish_unlabelled(resumed, 150, 400)
    asyncio.run(Processor(resumed, exit_when_idle=0.5, serve_metrics=False).run())

    reference = resumed.replace(labels={"request_topic": resumed.labels.request_topic + "-ref"},
                                topics={"predictions": resumed.topics.predictions + "-ref",
                                        "deadletter": resumed.topics.deadletter + "-ref"},
                                state={"dir": str(tmp_path / "reference")})
    asyncio.run(Processor(reference, exit_when_idle=0.5, serve_metrics=False).run())

    def ids(cfg):
        return [msgpack.unpackb(r.value, strict_map_key=False)["id"] for r in read_topic(broker_bootstrap, cfg.labels.request_topic, idle_ms=2000)]

    assert ids(resumed) == ids(reference)
    assert len(ids(reference)) >= 3 * BUDGET


def test_regression_needs_the_random_strategy(test_config, broker_bootstrap, tmp_path):
    cfg = requests_config(test_config, broker_bootstrap, tmp_path / "state")
    cfg = cfg.replace(model={"preset": "linreg", "task": "regression", "metrics": ["mae"]})
    with pytest.raises(RiverbedError, match="use \"random\""):
        Processor(cfg)
    Processor(cfg.replace(labels={"request_strategy": "random"}))
