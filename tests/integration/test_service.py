"""End to end on the real broker: evaluation parity with River, crash recovery, poison input."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import msgpack
import pytest
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry
from river import evaluate

from learners import build_model, river_metric
from stream.ops.status import read_status
from stream.devtools.datasets import open_dataset
from stream.engine.processor import Processor
from stream.devtools.replay import schedule
from tests.support import POISON_EVENTS, POISON_LABELS, create_all, events_checkpointed, fresh_config, publish, read_topic, reader_config, riverbed, run_once, write_config

pytestmark = pytest.mark.broker










@pytest.mark.parametrize("delay", [100, 0])
def test_prequential_metrics_equal_river_progressive_val_score(test_config, broker_bootstrap, tmp_path, delay):
    """The acceptance anchor: `status --json` reports exactly River's progressive_val_score."""
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state",
                       model={"preset": "logreg", "task": "binary", "metrics": ["rocauc", "accuracy", "logloss"]})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    riverbed("produce", "--dataset", "phishing", "--label-delay", str(delay), "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    status = json.loads(riverbed("status", "--json", config=config_file).stdout)

    model = status["models"][status["serving"]]
    assert status["counts"]["events"] == 1250
    assert status["counts"]["joined"] == 1250 == model["n_learned"]
    for name in ("rocauc", "accuracy", "logloss"):
        expected = evaluate.progressive_val_score(
            open_dataset("phishing").rows, build_model("logreg", "binary"), river_metric(name, "binary"), delay=delay
        ).get()
        assert model["metrics"][name] == pytest.approx(expected, abs=1e-12), name


def test_predictions_follow_the_contract(service_config, broker_bootstrap):
    cfg = service_config
    publish(cfg, "phishing", delay=10, limit=200)
    run_once(cfg)
    records = read_topic(broker_bootstrap, cfg.topics.predictions, expected=200)
    assert len(records) == 200
    first = msgpack.unpackb(records[0].value, strict_map_key=False)
    assert set(first) == {"id", "y_pred", "proba", "model", "version", "ts"}
    assert records[0].key == first["id"].encode()
    assert first["model"] == "logreg" and first["version"] == 0
    last = msgpack.unpackb(records[-1].value, strict_map_key=False)
    assert last["version"] == 190  # labels of events 0..189 were revealed before event 199 was asked
    assert sum(last["proba"].values()) == pytest.approx(1.0)






N_KILL_EVENTS = 10_000


def test_kill_9_at_random_moments_changes_nothing(test_config, broker_bootstrap, tmp_path):
    """kill -9 five times during a 10,000-event replay: same model, each label learned once."""
    base = fresh_config(
        test_config, broker_bootstrap, tmp_path / "unused",
        model={"preset": "hoeffding_adaptive", "task": "binary", "metrics": ["accuracy", "logloss"]},
    )
    base = base.replace(state={"checkpoint_interval_s": 0.1})
    published = publish(base, "sea", delay=50, limit=N_KILL_EVENTS)
    assert (published["events"], published["labels"]) == (N_KILL_EVENTS, N_KILL_EVENTS)

    reference = reader_config(base, tmp_path, "reference")
    run_once(reference)
    expected = read_status(reference)

    crashy = reader_config(base, tmp_path, "crashy")
    config_file = write_config(crashy, tmp_path / "crashy.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    rng = random.Random(2024)
    progress = []
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", "INFO", "run"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for line in proc.stderr:  # wait until the model is restored and the loop starts
            if "consuming" in line:
                break
        else:
            pytest.fail(f"processor exited early with {proc.wait()}")
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 60
        while events_checkpointed(crashy) <= before:  # this run has checkpointed progress of its own
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.15))  # then a random moment, often while a checkpoint lands
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        progress.append(events_checkpointed(crashy))
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    actual = read_status(crashy)

    print("events covered by the checkpoint after each kill:", progress)
    assert all(0 < p < N_KILL_EVENTS for p in progress), progress  # every kill landed mid-replay
    assert progress == sorted(set(progress)), progress  # and each run made progress of its own
    assert actual["models"]["hoeffding_adaptive"]["fingerprint"] == expected["models"]["hoeffding_adaptive"]["fingerprint"]
    assert actual["models"]["hoeffding_adaptive"]["metrics"] == expected["models"]["hoeffding_adaptive"]["metrics"]
    assert actual["models"]["hoeffding_adaptive"]["n_learned"] == N_KILL_EVENTS
    assert actual["counts"] == expected["counts"]
    assert actual["counts"]["joined"] == N_KILL_EVENTS
    assert actual["counts"]["duplicate_labels"] == 0 and actual["counts"]["unmatched_labels"] == 0

    reference_values = {r.key: r.value for r in read_topic(broker_bootstrap, reference.topics.predictions, N_KILL_EVENTS)}
    crash_values = defaultdict(set)
    for record in read_topic(broker_bootstrap, crashy.topics.predictions):
        crash_values[record.key].add(record.value)
    assert len(reference_values) == N_KILL_EVENTS
    assert set(crash_values) == set(reference_values)  # every event predicted
    assert all(values == {reference_values[key]} for key, values in crash_values.items())  # duplicates identical




def test_poison_messages_go_to_deadletter_and_change_nothing(test_config, broker_bootstrap, tmp_path):
    clean = fresh_config(test_config, broker_bootstrap, tmp_path / "clean", codec={"max_message_bytes": 4096})
    poisoned = fresh_config(test_config, broker_bootstrap, tmp_path / "poisoned", codec={"max_message_bytes": 4096})
    publish(clean, "phishing", delay=20)

    create_all(poisoned)
    samples = open_dataset("phishing")
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", max_in_flight_requests_per_connection=1)
    rng = random.Random(11)
    sent = []  # (topic, value, reason)
    n_valid = 0
    for record in schedule(samples.rows, label_delay=20, id_prefix="phishing"):
        topic = poisoned.topics.events if record.kind == "event" else poisoned.topics.labels
        producer.send(topic, key=record.id.encode(), value=msgpack.packb(record.value))
        n_valid += 1
        if rng.random() < 0.03:
            pool = POISON_EVENTS if record.kind == "event" else POISON_LABELS
            value, reason = pool[len(sent) % len(pool)]
            producer.send(topic, key=f"poison-{len(sent)}".encode(), value=value)
            sent.append((topic, value, reason))
    producer.flush()
    producer.close()
    assert len(sent) >= 0.01 * n_valid
    assert {r for _, _, r in sent} >= {"undecodable", "non_finite", "missing_id", "oversized", "empty", "missing_y"}

    run_once(clean)
    registry = CollectorRegistry()
    run_once(poisoned, registry=registry)
    clean_status, poisoned_status = read_status(clean), read_status(poisoned)

    model_clean = clean_status["models"]["logreg"]
    model_poisoned = poisoned_status["models"]["logreg"]
    assert model_poisoned["fingerprint"] == model_clean["fingerprint"]
    assert model_poisoned["metrics"] == model_clean["metrics"]
    assert poisoned_status["counts"]["invalid"] == len(sent)
    assert {k: v for k, v in poisoned_status["counts"].items() if k != "invalid"} == {
        k: v for k, v in clean_status["counts"].items() if k != "invalid"
    }

    expected_by_reason = defaultdict(int)
    for topic, _, reason in sent:
        expected_by_reason[(topic, reason)] += 1
    for (topic, reason), n in expected_by_reason.items():
        value = registry.get_sample_value("riverbed_invalid_messages_total", {"topic": topic, "reason": reason})
        assert value == n, (topic, reason)
        assert poisoned_status["invalid_by_reason"][f"{topic}:{reason}"] == n

    dead = read_topic(broker_bootstrap, poisoned.topics.deadletter, expected=len(sent))
    assert len(dead) == len(sent)
    for record, (topic, value, reason) in zip(dead, sent):  # one partition each: order is kept
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["source_topic"] == topic
        assert headers["reason"] == reason
        assert int(headers["source_offset"]) >= 0 and headers["source_partition"] == "0"
        assert record.value == value  # copied unchanged (a null value stays null)


def test_metrics_are_exported(service_config):
    cfg = service_config
    publish(cfg, "phishing", delay=5, limit=300)
    registry = CollectorRegistry()
    run_once(cfg, registry=registry)
    value = registry.get_sample_value
    assert value("riverbed_events_total") == 300
    assert value("riverbed_labels_total") == 300
    assert value("riverbed_labels_joined_total") == 300
    assert value("riverbed_predictions_total", {"model": "logreg"}) == 300
    assert value("riverbed_label_delay_seconds_count") == 300
    assert value("riverbed_predict_duration_seconds_count") == 300
    assert value("riverbed_model_metric", {"model": "logreg", "metric": "accuracy", "window": "cumulative"}) > 0.5
    assert value("riverbed_model_metric", {"model": "logreg", "metric": "accuracy", "window": "rolling"}) > 0.5
    assert value("riverbed_checkpoint_size_bytes") > 0
    assert value("riverbed_pending_entries") == 0
    assert value("riverbed_consumer_lag_messages", {"topic": cfg.topics.events, "partition": "0"}) == 0


def test_labels_without_events_duplicates_and_ttl(service_config, broker_bootstrap):
    cfg = service_config.replace(labels={"ttl_s": 100.0})
    create_all(cfg)
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", max_in_flight_requests_per_connection=1)
    events, labels = cfg.topics.events, cfg.topics.labels

    def send(topic, obj):
        producer.send(topic, key=obj["id"].encode(), value=msgpack.packb(obj))

    send(events, {"id": "a", "x": {"f": 1.0}, "ts": 1000.0})
    send(events, {"id": "old", "x": {"f": 2.0}, "ts": 1001.0})
    send(labels, {"id": "a", "y": True, "ts": 1002.0})
    send(labels, {"id": "a", "y": True, "ts": 1003.0})          # duplicate
    send(labels, {"id": "nobody", "y": False, "ts": 1004.0})    # unmatched
    send(events, {"id": "b", "x": {"f": 3.0}, "ts": 1200.0})     # moves the watermark past old's ttl
    send(labels, {"id": "old", "y": False, "ts": 1201.0})       # expired
    producer.flush()
    producer.close()
    run_once(cfg)
    counts = read_status(cfg)["counts"]
    assert counts["events"] == 3 and counts["labels"] == 4
    assert counts["joined"] == 1
    assert counts["duplicate_labels"] == 1
    assert counts["unmatched_labels"] == 1
    assert counts["expired"] == 1


def test_corrupt_newest_checkpoint_falls_back_and_spec_mismatch_is_refused(service_config, tmp_path):
    from state import StateStore

    from stream.engine.processor import ModelSpecMismatch

    cfg = service_config
    publish(cfg, "phishing", delay=5, limit=100)
    run_once(cfg)
    first = read_status(cfg)
    with StateStore(cfg.state.dir, keep=3) as store:  # a newer checkpoint whose model bytes are damaged
        newest = store.load()
        blob = bytearray(newest.model_blob)
        blob[-1] ^= 0xFF
        store.commit(dict(newest.meta), bytes(blob))
    refused = read_status(cfg)["models"]["logreg"]  # status still works, and says why there is no fingerprint
    assert refused["fingerprint"] is None and "SHA-256" in refused["fingerprint_error"]
    summary = run_once(cfg)
    assert summary.resumed_from == first["checkpoint"]["seq"]
    assert read_status(cfg)["models"]["logreg"]["fingerprint"] == first["models"]["logreg"]["fingerprint"]

    with pytest.raises(ModelSpecMismatch, match="point \\[state\\] dir at another directory"):
        run_once(cfg.replace(model={"preset": "naive_bayes"}))


def test_sigterm_checkpoints_and_exits_zero(service_config, tmp_path):
    cfg = service_config
    publish(cfg, "phishing", delay=5, limit=300)
    config_file = write_config(cfg.replace(state={"checkpoint_interval_s": 3600.0}), tmp_path / "c.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    proc = subprocess.Popen([sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", "INFO", "run"],
                            env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "consuming" in line:
            break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the status file is written only at shutdown: wait for the work instead
        time.sleep(0.5)
        if len(read_topic(cfg.kafka.bootstrap_servers, cfg.topics.predictions, expected=300, idle_ms=500)) >= 300:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    rest = proc.stderr.read()
    proc.stderr.close()
    assert "SIGTERM received" in rest
    assert read_status(cfg)["counts"]["events"] == 300


def test_metrics_endpoint_binds_loopback(service_config):
    import urllib.request

    cfg = service_config.replace(metrics={"enabled": True, "port": 0})
    publish(cfg, "phishing", delay=5, limit=50)
    processor = Processor(cfg, exit_when_idle=0.5)
    asyncio.run(processor.run())
    body = urllib.request.urlopen(f"http://127.0.0.1:{processor.metrics_port}/metrics", timeout=5).read().decode()
    assert "riverbed_events_total 50.0" in body
    assert 'riverbed_model_metric{metric="accuracy",model="logreg",window="cumulative"}' in body


def test_offsets_are_committed_to_the_consumer_group_for_lag_tools(service_config, broker_bootstrap):
    from kafka import TopicPartition

    cfg = service_config
    publish(cfg, "phishing", delay=5, limit=120)
    run_once(cfg)
    consumer = KafkaConsumer(bootstrap_servers=broker_bootstrap, group_id=cfg.kafka.group_id, enable_auto_commit=False)
    try:
        committed = {topic: consumer.committed(TopicPartition(topic, 0)) for topic in (cfg.topics.events, cfg.topics.labels)}
    finally:
        consumer.close()
    assert committed == {cfg.topics.events: 120, cfg.topics.labels: 120}
    assert read_status(cfg)["offsets"] == {f"{cfg.topics.events}:0": 120, f"{cfg.topics.labels}:0": 120}


def test_the_loop_lets_other_tasks_run_while_it_works_through_a_backlog(service_config):
    """Output senders, the HTTP API and a landing checkpoint share the processor's event loop:
    with a backlog every fetch returns at once, and the loop must still give them turns."""
    cfg = service_config.replace(model={"preset": "hoeffding_adaptive", "task": "binary"})
    publish(cfg, "sea", delay=100, limit=20_000)

    async def main():
        processor = Processor(cfg, exit_when_idle=1.0, serve_metrics=False)
        seen: list[tuple[int, int]] = []

        async def watch():  # what another task on the same loop sees, turn by turn
            while True:
                await asyncio.sleep(0)
                acked = processor.output.acked if processor.output is not None else 0
                seen.append((processor.counts["events"], acked))

        watcher = asyncio.ensure_future(watch())
        try:
            await processor.run()
        finally:
            watcher.cancel()
        return processor, seen

    processor, seen = asyncio.run(main())
    assert processor.counts["joined"] == 20_000
    mid_replay = [(events, acked) for events, acked in seen if 0 < events < 20_000]
    assert len({events for events, _ in mid_replay}) >= 20, "another task got no turns while the backlog was processed"
    assert any(acked > 0 for _, acked in mid_replay), "no prediction was acknowledged before the backlog was done"
