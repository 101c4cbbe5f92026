"""Exactly-once output on the real broker: kill -9, a fenced second writer, a broker killed mid-transaction.

A ``read_committed`` consumer of ``predictions``, ``label-requests`` and ``deadletter`` must see each
event id (each source offset for dead letters) exactly once, byte-identical to an uninterrupted
run's output, whatever was killed when.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaProducer

from stream.config import Config
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import schedule
from tests.support import fresh_config, riverbed, spawn_processor, write_config
from tests.support import POISON_EVENTS, POISON_LABELS, create_all, events_checkpointed, read_topic, run_once

pytestmark = pytest.mark.broker

N_EVENTS = 20_000
FENCED_LINE = "riverbed: error: another riverbed instance with transactional id"


def publish_with_poison(cfg: Config, n: int, seed: int = 7) -> int:
    """``n`` sea events with labels 50 events late, and ~2 % poison messages in both topics."""
    create_all(cfg)
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all",
                             max_in_flight_requests_per_connection=1, linger_ms=20)
    rng = random.Random(seed)
    poison = 0
    for record in schedule(open_dataset("sea", limit=n, seed=seed).rows, label_delay=50, id_prefix="sea", seed=seed):
        topic = cfg.topics.events if record.kind == "event" else cfg.topics.labels
        producer.send(topic, key=record.id.encode(), value=msgpack.packb(record.value))
        if rng.random() < 0.02:
            pool = POISON_EVENTS if record.kind == "event" else POISON_LABELS
            value, _ = pool[poison % len(pool)]
            producer.send(topic, key=f"poison-{poison}".encode(), value=value)
            poison += 1
    producer.flush()
    producer.close()
    assert poison >= 0.01 * 2 * n
    return poison


def with_outputs(base: Config, tmp_path: Path, name: str, **sections) -> Config:
    """``base`` reading the same inputs, with its own outputs, group, state dir and label-request topic."""
    t = base.topics
    cfg = base.replace(
        kafka={"group_id": f"g-{name}-{uuid.uuid4().hex[:6]}"},
        topics={"predictions": f"{t.predictions}-{name}", "deadletter": f"{t.deadletter}-{name}"},
        labels={"request_budget": 400, "request_window_s": 86_400.0, "request_topic": f"{t.predictions}-{name}-requests"},
        state={"dir": str(tmp_path / f"state-{name}")},
    )
    return cfg.replace(**sections) if sections else cfg


def committed_output(cfg: Config) -> dict[str, Counter]:
    """What a read_committed consumer sees: {topic kind: Counter of (key, value)}; dead letters by source."""
    bootstrap = cfg.kafka.bootstrap_servers
    predictions = Counter((r.key, r.value) for r in read_topic(bootstrap, cfg.topics.predictions, idle_ms=2000))
    requests = Counter((r.key, r.value) for r in read_topic(bootstrap, cfg.labels.request_topic, idle_ms=1000))
    dead = Counter()
    for r in read_topic(bootstrap, cfg.topics.deadletter, idle_ms=1000):
        headers = dict(r.headers)
        dead[(headers["source_topic"], headers["source_offset"], headers["reason"], r.value)] += 1
    return {"predictions": predictions, "label_requests": requests, "deadletter": dead}


def assert_exactly_once(actual: dict[str, Counter], expected: dict[str, Counter]) -> None:
    for kind, seen in actual.items():
        duplicates = {k: n for k, n in seen.items() if n > 1}
        assert not duplicates, f"{kind}: {len(duplicates)} duplicated, e.g. {next(iter(duplicates))}"
        missing = set(expected[kind]) - set(seen)
        extra = set(seen) - set(expected[kind])
        assert not missing and not extra, f"{kind}: {len(missing)} missing, {len(extra)} not in the reference"
    keys = [key for key, _ in actual["predictions"]]
    assert len(keys) == len(set(keys))  # one prediction per id, byte-identical to the reference's
    assert {f"sea-{i}".encode() for i in range(N_EVENTS)} <= set(keys)


@pytest.fixture
def replayed(test_config, broker_bootstrap, tmp_path):
    """Published inputs, and the committed output of an uninterrupted run over them."""
    base = fresh_config(test_config, broker_bootstrap, tmp_path / "unused",
                        model={"preset": "hoeffding_adaptive", "task": "binary", "metrics": ["accuracy"]})
    base = base.replace(state={"checkpoint_interval_s": 0.1}, output={"guarantee": "exactly_once"})
    publish_with_poison(base, N_EVENTS)
    reference = with_outputs(base, tmp_path, "reference")
    run_once(reference)
    expected = committed_output(reference)
    assert sum(expected["label_requests"].values()) > 0 and sum(expected["deadletter"].values()) > 0
    from stream.ops.status import read_status

    return base, expected, read_status(reference)


def test_kill_9_at_random_moments_publishes_everything_exactly_once(replayed, tmp_path):
    base, expected, reference_status = replayed
    from stream.ops.status import read_status

    crashy = with_outputs(base, tmp_path, "crashy")
    config_file = write_config(crashy, tmp_path / "crashy.toml")
    rng = random.Random(2025)
    progress = []
    total = reference_status["counts"]["events"]
    for kill in range(5):
        before = progress[-1] if progress else 0
        if before >= total:  # a fast run finished the replay before its kill: nothing left to interrupt
            break
        proc = spawn_processor(config_file)
        deadline = time.monotonic() + 60
        while events_checkpointed(crashy) <= before:  # this run has a checkpoint of its own
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        # even kills: often while the next checkpoint lands; odd ones: later, mid-transaction
        time.sleep(rng.uniform(0.0, 0.08) if kill % 2 == 0 else rng.uniform(0.1, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        progress.append(events_checkpointed(crashy))
    riverbed("run", "--exit-when-idle", "1", config=config_file)

    print("events covered by the checkpoint after each kill:", progress)
    # a kill lands mid-replay unless a loaded machine let the run finish first: most must
    assert sum(0 < p < total for p in progress) >= 3, progress
    assert_exactly_once(committed_output(crashy), expected)
    actual = read_status(crashy)
    model = "hoeffding_adaptive"
    assert actual["models"][model]["fingerprint"] == reference_status["models"][model]["fingerprint"]
    assert actual["counts"] == reference_status["counts"]


def test_a_second_instance_fences_the_first(replayed, tmp_path):
    base, expected, _ = replayed
    first = with_outputs(base, tmp_path, "fenced")
    second = first.replace(state={"dir": str(tmp_path / "state-second")})  # same topics and group
    first_file = write_config(first, tmp_path / "first.toml")
    second_file = write_config(second, tmp_path / "second.toml")

    proc = spawn_processor(first_file)
    deadline = time.monotonic() + 60
    while events_checkpointed(first) == 0:
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.05)
    taker = spawn_processor(second_file, "--exit-when-idle", "1")
    took_over = time.monotonic()
    try:
        code = proc.wait(timeout=20)
    except Exception:
        proc.kill()
        raise
    fenced_after = time.monotonic() - took_over
    proc.drain.join(10)
    stderr = "".join(proc.captured)
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("riverbed: error:")]
    assert len(errors) == 1 and errors[0].startswith(FENCED_LINE), stderr[-2000:]
    assert "published nothing more" in errors[0] and "Traceback" not in stderr
    assert fenced_after < 10, fenced_after
    assert taker.wait(timeout=120) == 0
    assert_exactly_once(committed_output(first), expected)


@pytest.fixture
def own_broker(test_config, tmp_path):
    """A broker of this test only (ports 19292/19293), so killing it disturbs no other test."""
    from stream.devtools.broker import LocalBroker

    cfg = test_config.replace(broker={"port": 19292, "controller_port": 19293, "dir": str(tmp_path / "broker"),
                                      "heap_mb": 512})
    broker = LocalBroker(cfg)
    assert broker.start(), f"something already listens on {broker.bootstrap}"
    yield broker
    broker.stop()


def test_broker_killed_mid_transaction_still_exactly_once(test_config, own_broker, tmp_path):
    base = fresh_config(test_config, own_broker.bootstrap, tmp_path / "unused",
                        model={"preset": "hoeffding_adaptive", "task": "binary", "metrics": ["accuracy"]})
    base = base.replace(state={"checkpoint_interval_s": 0.2}, output={"guarantee": "exactly_once"})
    publish_with_poison(base, N_EVENTS, seed=3)
    reference = with_outputs(base, tmp_path, "reference")
    run_once(reference)
    expected = committed_output(reference)

    crashy = with_outputs(base, tmp_path, "crashy")
    config_file = write_config(crashy, tmp_path / "crashy.toml")
    proc = spawn_processor(config_file)
    deadline = time.monotonic() + 60
    while events_checkpointed(crashy) == 0:
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.02)
    time.sleep(0.3)  # busy: a transaction is open
    os.kill(own_broker.running_pid(), signal.SIGKILL)
    time.sleep(1.0)
    own_broker.start()
    deadline = time.monotonic() + 120
    while events_checkpointed(crashy) < N_EVENTS:  # the processor rides the restart out, or is restarted
        assert time.monotonic() < deadline, f"stuck at {events_checkpointed(crashy)} events"
        if proc.poll() is not None:
            proc = spawn_processor(config_file)
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    riverbed("run", "--exit-when-idle", "1", config=config_file)  # the labels after the last event
    assert_exactly_once(committed_output(crashy), expected)
