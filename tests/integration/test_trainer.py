"""The trainer role on the real broker: it learns what one process learns, whoever served the events.

The same SEA replay with delayed labels goes once through ``--role all`` and once, as served
records predicted by *other* models (a fresh model set, then one that learned half of the
stream), through the trainer, with at-least-once and with exactly-once output. The trainer must
end with the same model, score each label against the prediction that was served (River's
metrics over the served predictions), observe the staleness of each served prediction, publish
no prediction, and publish model snapshots that reassemble and verify, with strictly increasing
versions up to the labels learned.
"""

from __future__ import annotations

import asyncio
import uuid

import msgpack
import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from learners import river_metric
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import produce, schedule
from stream.engine.decoding import FeaturePipeline
from stream.engine.model_config import build_model_set
from stream.engine.processor import Processor
from stream.engine.transforms import load_transform
from stream.scale.served import encode_served
from stream.scale.snapshots import reassemble_all, verify_snapshot
from stream.scale.topics import create_scale_topics
from stream.scale.trainer import Trainer
from tests.support import create_all, fresh_config, read_topic

pytestmark = pytest.mark.broker

N_EVENTS = 3000
DELAY = 50
SWITCH = 1500  # events before this are served by a fresh model (version 0), the rest by one at version SWITCH
TRANSFORM = "tests.integration.test_trainer:shifted"


def shifted(x: dict) -> dict:
    """The ``[features] transform`` of this test: applied by whoever serves, never again by the trainer."""
    out = {k: 2.0 * v + 1.0 for k, v in x.items()}
    out["total"] = sum(x.values())
    return out


def run(processor: Processor):
    return asyncio.run(processor.run())


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_trainer_learns_the_model_of_one_process_from_served_records(test_config, broker_bootstrap, tmp_path,
                                                                         guarantee):
    base = fresh_config(
        test_config, broker_bootstrap, tmp_path / "all",
        model={"preset": "logreg", "task": "binary", "metrics": ["accuracy", "logloss"]},
        features={"transform": TRANSFORM}, output={"guarantee": guarantee},
        scale={"snapshot_every_labels": 700, "snapshot_interval_s": 60.0, "snapshot_chunk_bytes": 4096},
    )
    records = list(schedule(open_dataset("sea", limit=N_EVENTS, seed=7).rows, label_delay=DELAY, id_prefix="sea",
                            seed=7))
    create_all(base)
    produce(broker_bootstrap, base.topics, records, progress=False)

    one_process = Processor(base, exit_when_idle=1.0, serve_metrics=False)
    run(one_process)
    expected = one_process.models.describe()["logreg"]
    assert expected["n_learned"] == N_EVENTS

    # The served records of scorers: x after the transform, predicted by other models than the trainer's.
    cfg = base.replace(
        kafka={"group_id": f"trainer-{uuid.uuid4().hex[:6]}"},
        state={"dir": str(tmp_path / "trainer")},
        topics={"predictions": base.topics.predictions + "-trainer", "deadletter": base.topics.deadletter + "-trainer"},
    )
    create_scale_topics(broker_bootstrap, cfg)
    features = FeaturePipeline(load_transform(TRANSFORM))
    events = [r for r in records if r.kind == "event"]
    xs = [features.prepare(msgpack.unpackb(msgpack.packb(r.value))["x"]) for r in events]  # as a consumer decodes
    y_of = {r.id: r.value["y"] for r in records if r.kind == "label"}
    later = build_model_set(cfg)  # learns the first SWITCH labels offline, then serves at version SWITCH
    for record, x in zip(events[:SWITCH], xs):
        later.learn(x, y_of[record.id], later.predict(x).record)
    fresh = build_model_set(cfg)
    served_by_id = {}
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=20)
    for i, (record, x) in enumerate(zip(events, xs)):
        serving, version = (fresh, 0) if i < SWITCH else (later, SWITCH)
        served = serving.predict(x, record.ts)
        served_by_id[record.id] = (served.y_pred, served.proba, version)
        producer.send(cfg.scale.served_topic, key=record.id.encode(),
                      value=encode_served(record.id, x, record.ts, served.record, served.model, version))
    producer.flush()
    producer.close()

    registry = CollectorRegistry()
    trainer = Trainer(cfg, registry=registry, exit_when_idle=1.0, serve_metrics=False)
    summary = run(trainer)

    counts = summary.counts
    assert (counts["events"], counts["joined"], counts["predictions"], counts["invalid"]) == (N_EVENTS, N_EVENTS, 0, 0)
    actual = trainer.models.describe()["logreg"]
    assert actual["fingerprint"] == expected["fingerprint"]  # learning does not depend on who served
    assert actual["n_learned"] == N_EVENTS
    assert actual["metrics"] != expected["metrics"]  # ... but scoring does: against what was served

    # The prequential metrics are River's over the served predictions joined to the labels.
    offline = {name: river_metric(name, "binary") for name in ("accuracy", "logloss")}
    staleness = []
    for k, label in enumerate(r for r in records if r.kind == "label"):
        y_pred, proba, version = served_by_id[label.id]
        offline["accuracy"].update(label.value["y"], y_pred)
        offline["logloss"].update(label.value["y"], proba)
        staleness.append(max(0, k - version))  # labels learned before this one minus the served version
    for name, metric in offline.items():
        assert actual["metrics"][name] == pytest.approx(metric.get(), abs=1e-12), name
    assert registry.get_sample_value("riverbed_served_duplicates_total") == 0
    assert registry.get_sample_value("riverbed_served_staleness_labels_count") == N_EVENTS
    assert registry.get_sample_value("riverbed_served_staleness_labels_sum") == sum(staleness)

    assert read_topic(broker_bootstrap, cfg.topics.predictions, idle_ms=1000) == []  # scorers predict, not the trainer

    chunks = read_topic(broker_bootstrap, cfg.scale.models_topic, idle_ms=1500)
    assert all(c.key.startswith(b"logreg/") for c in chunks)
    snapshots = reassemble_all([(c.value, c.headers) for c in chunks])
    versions = [s.version for s in snapshots]
    assert len(chunks) > len(snapshots) >= 3, versions  # chunked; at start, after 700 labels (checked per slice), at stop
    assert versions[0] == 0 and versions[-1] == N_EVENTS == counts["joined"]
    assert all(b - a >= 700 for a, b in zip(versions[:-2], versions[1:-1])), versions  # not before 700 labels
    assert versions[-2] < versions[-1], versions
    models = [verify_snapshot(s)["models"] for s in snapshots]
    assert [m.serving_model.n_learned for m in models] == versions
    assert models[-1].serving_model.fingerprint() == actual["fingerprint"]
    last = snapshots[-1].offsets
    assert sum(o for key, o in last.items() if key.startswith(cfg.scale.served_topic + ":")) == N_EVENTS
    assert sum(o for key, o in last.items() if key.startswith(cfg.topics.labels + ":")) == N_EVENTS
    assert registry.get_sample_value("riverbed_snapshots_published_total") == len(snapshots)
    assert registry.get_sample_value("riverbed_snapshot_published_version") == N_EVENTS
