"""Scale-out end to end on the real broker: one trainer and scorer replicas learn what one process learns.

One SEA replay (6,000 events, labels 100 events late) is published once, live (~1,000 events/s),
to a 6-partition ``events`` topic, while a trainer subprocess and scorer subprocesses
(``riverbed run --role trainer|scorer``) serve and learn it: three scorers, one ``kill -9``-ed
once the scorers served two snapshots, a fourth started later. Afterwards ``--role all`` (one
in-process :class:`~stream.engine.processor.Processor`) runs over the same topics as the reference.

The scaled run must

- predict every event at least once (a crash replays what its scorer had not committed) or, with
  ``[output] guarantee = "exactly_once"``, exactly once as a ``read_committed`` consumer sees the
  predictions and served records (the killed scorer's open transactions are aborted by the
  scorers that take its partitions over), each
  prediction stamped with the version of a snapshot that reassembles and verifies on the models
  topic, or 0 (the fresh model before the first snapshot), versions never decreasing within an
  events partition;
- end with the trainer's model equal to the reference's (fingerprint, labels learned, none
  unmatched), also in its last snapshot;
- score each label against the prediction served first for its event: the trainer's accuracy is
  River's over the first served record per id joined to the labels, its staleness histogram
  sums ``labels learned before - served version`` over every label, and it counts every
  re-served record as a duplicate.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaConsumer, TopicPartition

from learners import river_metric
from stream.config import Config
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import produce, schedule
from stream.engine.output import partition_for
from stream.engine.processor import Processor
from stream.ops.status import read_status
from stream.scale.served import decode_served
from stream.scale.snapshots import reassemble_all, verify_snapshot
from stream.connect.topics import create_topics
from stream.scale.topics import create_scale_topics
from tests.support import fresh_config, write_config

pytestmark = pytest.mark.broker

N_EVENTS = 6000
DELAY = 100
PARTITIONS = 6
SNAPSHOT_EVERY = 500
MODEL = "logreg"
PUBLISH_EVERY_S = 0.02
"""The replay is published live, 40 records (~20 events) every this long (~1,000 events/s): a
backlog would be served partition after partition, so the trainer (which learns a label only
once its event's served record is in) and the snapshots would trail the whole replay."""
DEADLINE_S = 45.0
"""Every wait of the scaled run ends within this (the scorers' group needs its 10 s session
timeout to notice the killed member)."""


def paced(records: list, stop: threading.Event):
    """``records`` with a sleep of :data:`PUBLISH_EVERY_S` after every 40 (ends early when ``stop`` is set)."""
    for i, record in enumerate(records):
        if stop.is_set():
            return
        if i and not i % 40:
            time.sleep(PUBLISH_EVERY_S)
        yield record


class Role:
    """A ``riverbed run --role ...`` subprocess whose stderr is read by a thread.

    ``consuming`` is set once its loop consumes; ``metrics_port`` is the port of its ``/metrics``.
    """

    def __init__(self, config_file: Path, role: str, *args: str, env: dict | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
        full_env.update(env or {})
        self.role = role
        self.lines: list[str] = []
        self.consuming = threading.Event()
        self.metrics_port: int | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", "INFO", "run",
             "--role", role, *args],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"metrics on http://[^:]+:(\d+)/metrics", line)
            if found:
                self.metrics_port = int(found.group(1))
            if "consuming" in line:
                self.consuming.set()

    def wait_consuming(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.consuming.wait(0.05):
            assert self.proc.poll() is None, f"{self.role} exited {self.proc.returncode}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"{self.role} did not start consuming within {timeout} s"

    def stderr(self) -> str:
        return "".join(self.lines)[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Tail:
    """Reads every partition of a topic from the beginning, record by record, as it grows."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                      isolation_level=isolation_level)
        deadline = time.monotonic() + 10
        while not self.consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"no metadata for {topic}"
            time.sleep(0.05)
        self.tps = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.records: list = []

    def poll(self, timeout_ms: int = 100) -> list:
        new = [r for batch in self.consumer.poll(timeout_ms=timeout_ms).values() for r in batch]
        self.records.extend(new)
        return new

    def read_to_end(self, timeout: float = 20) -> list:
        end = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < end[tp] for tp in self.tps):
            assert time.monotonic() < deadline, f"could not read {self.tps[0].topic} to its end"
            self.poll(200)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def wait_until(condition, what: str, deadline: float, roles: list[Role], poll=None) -> float:
    """Poll ``condition`` until true; fail with ``what`` at ``deadline`` or when a live role died."""
    while True:
        if poll is not None:
            poll()
        if condition():
            return time.monotonic()
        for role in roles:
            assert role.proc.poll() is None, f"{role.role} exited {role.proc.returncode}:\n{role.stderr()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def status_counts(cfg: Config) -> dict:
    try:
        return read_status(cfg, fingerprints=False)["counts"]
    except Exception:  # no checkpoint yet
        return {}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_one_trainer_and_scorers_with_a_kill_learn_the_model_of_one_process(test_config, broker_bootstrap, tmp_path,
                                                                            guarantee):
    started = time.monotonic()
    exactly_once = guarantee == "exactly_once"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    base = fresh_config(
        test_config, broker_bootstrap, tmp_path / "all",
        kafka={"partitions": PARTITIONS},
        model={"preset": MODEL, "task": "binary", "metrics": ["accuracy"]},
        scale={"snapshot_every_labels": SNAPSHOT_EVERY, "snapshot_interval_s": 60.0},
    )
    records = list(schedule(open_dataset("sea", limit=N_EVENTS, seed=7).rows, label_delay=DELAY, id_prefix="sea",
                            seed=7))
    # labels on ONE partition: published live, labels of different partitions can reach the trainer
    # out of event-time order (a partition caught up and empty does not hold the merge back), as they
    # would reach a live single process; one partition keeps the label order, hence the model,
    # that of the offline reference. The events (the served records) stay on 6 partitions.
    create_topics(broker_bootstrap, [base.topics.labels], 1)
    create_scale_topics(broker_bootstrap, base)
    labels = [r for r in records if r.kind == "label"]
    assert len(labels) == N_EVENTS

    # the scaled run: its own outputs, group and state; the served/models topics are not the reference's
    cfg = base.replace(
        kafka={"group_id": f"trainer-{uuid.uuid4().hex[:6]}"},
        state={"dir": str(tmp_path / "trainer")},
        topics={"predictions": base.topics.predictions + "-scaled", "deadletter": base.topics.deadletter + "-scaled"},
        metrics={"enabled": True, "port": 0},
        # the trainer holds a label whose served record is not in yet (merge rule 7) for the default
        # [scale] trainer_max_wait_ms, 30 s: more than the scorers' group takes to hand a killed
        # scorer's partitions over (10 s)
        processor={"poll_timeout_ms": 50},
        output={"guarantee": guarantee},
    )
    config_file = write_config(cfg, tmp_path / "scaled.toml")
    create_scale_topics(broker_bootstrap, cfg)  # its own predictions and dead letters
    predictions = Tail(broker_bootstrap, cfg.topics.predictions, isolation)
    roles: list[Role] = []
    stop = threading.Event()
    try:
        trainer = Role(config_file, "trainer")
        roles.append(trainer)
        scorers = [Role(config_file, "scorer") for _ in range(3)]
        roles += scorers
        for role in roles:
            role.wait_consuming(30)
        publisher = threading.Thread(target=produce, args=(broker_bootstrap, base.topics, paced(records, stop)),
                                     kwargs={"progress": False}, daemon=True)
        publisher.start()  # the replay, once, live
        deadline = time.monotonic() + DEADLINE_S
        ids: set[str] = set()
        served_versions: set[int] = set()

        def poll():
            for r in predictions.poll(50):
                p = msgpack.unpackb(r.value)
                ids.add(p["id"])
                served_versions.add(p["version"])

        live = roles[:]
        # kill once the scorers swapped in two snapshots after the fresh model
        wait_until(lambda: len(served_versions - {0}) >= 2, "predictions by two snapshots", deadline, live, poll)
        victim = scorers[0]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed_at, n_at_kill = time.monotonic(), len(predictions.records)
        live.remove(victim)
        assert len(ids) < N_EVENTS, "the kill landed after every event was served: nothing was tested"
        wait_until(lambda: len(ids) >= N_EVENTS // 2, "half of the predictions", deadline, live, poll)
        fourth = Role(config_file, "scorer")
        roles.append(fourth)
        live.append(fourth)
        fourth.wait_consuming(30)
        covered_at = wait_until(lambda: len(ids) == N_EVENTS, "a prediction of every event", deadline, live, poll)
        # the trainer has seen every served record once it has processed every label (none is
        # left unmatched, see below): then it is stopped and publishes its last snapshot
        wait_until(lambda: status_counts(cfg).get("labels", 0) >= N_EVENTS, "the trainer to read every label",
                   deadline, live)
        assert trainer.metrics_port is not None, trainer.stderr()
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=5).read().decode()
        for role in live:
            role.proc.send_signal(signal.SIGTERM)
        for role in live:
            assert role.proc.wait(timeout=30) == 0, f"{role.role} exited {role.proc.returncode}:\n{role.stderr()}"
        all_predictions = predictions.read_to_end()
        publisher.join(10)
        assert not publisher.is_alive()
    finally:
        stop.set()
        for role in roles:
            role.kill()
        predictions.close()
    scaled_s = time.monotonic() - started

    # the reference: one process over the same input, now on the broker
    reference = Processor(base, exit_when_idle=1.0, serve_metrics=False)
    summary = asyncio.run(reference.run())
    expected = reference.models.describe()[MODEL]
    assert summary.counts["joined"] == N_EVENTS and expected["n_learned"] == N_EVENTS
    wall = time.monotonic() - started

    # every event predicted, each with a verified snapshot's version (or 0), monotone per partition
    chunks = Tail(broker_bootstrap, cfg.scale.models_topic)
    try:
        snapshots = reassemble_all([(c.value, c.headers) for c in chunks.read_to_end()])
    finally:
        chunks.close()
    verified = {s.version: verify_snapshot(s)["models"] for s in snapshots}
    assert len(verified) >= 4, sorted(verified)  # at start, every ~500 labels, at stop
    assert max(verified) == N_EVENTS
    decoded = [(r.partition, r.offset, r.key, msgpack.unpackb(r.value)) for r in all_predictions]
    event_ids = {r.id for r in records if r.kind == "event"}
    assert {p["id"] for _, _, _, p in decoded} == event_ids
    versions = Counter(p["version"] for _, _, _, p in decoded)
    assert set(versions) <= set(verified) | {0}, sorted(set(versions) - set(verified))
    assert len(set(versions) - {0}) >= 2, versions  # scorers swapped snapshots while they served
    by_partition = defaultdict(list)
    for partition, _, key, p in sorted(decoded, key=lambda t: (t[0], t[1])):
        assert partition == partition_for(key, PARTITIONS)  # the partition of its event
        by_partition[partition].append(p["version"])
    assert len(by_partition) == PARTITIONS
    for partition, seen in by_partition.items():
        assert seen == sorted(seen), f"a version decreased within events partition {partition}"

    # the trainer learned the model of one process, and scored what was served
    status = read_status(cfg)
    assert status["counts"]["unmatched_labels"] == 0, status["counts"]
    assert status["counts"]["joined"] == summary.counts["joined"] == N_EVENTS, status["counts"]
    assert status["models"][MODEL]["fingerprint"] == expected["fingerprint"], status["counts"]
    assert verified[N_EVENTS].serving_model.fingerprint() == expected["fingerprint"]
    served = Tail(broker_bootstrap, cfg.scale.served_topic, isolation)
    try:
        served_records = sorted(served.read_to_end(), key=lambda r: (r.partition, r.offset))
    finally:
        served.close()
    first_served: dict = {}
    for r in served_records:  # a re-served event is in its first one's partition, later: the trainer keeps the first
        s = decode_served(r.value)
        first_served.setdefault(s.id, s)
    assert set(first_served) == event_ids
    offline = river_metric("accuracy", "binary")
    staleness = 0
    for k, label in enumerate(labels):  # the order the trainer learns them (event time), as one process
        first = first_served[label.id]
        (champion,) = [e for e in first.record if e[0] == MODEL]
        offline.update(label.value["y"], champion[1])
        staleness += max(0, k - first.version)  # labels learned before this one minus the served version
    assert status["models"][MODEL]["metrics"]["accuracy"] == pytest.approx(offline.get(), abs=1e-12)

    def sample(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", scraped, re.M)
        assert found is not None, f"no {name} on the trainer's /metrics"
        return float(found.group(1))

    assert sample("riverbed_served_staleness_labels_count") == N_EVENTS
    assert sample("riverbed_served_staleness_labels_sum") == staleness
    re_served = len(served_records) - N_EVENTS
    assert sample("riverbed_served_duplicates_total") == re_served  # skipped: the first one stands
    if exactly_once:  # what a read_committed consumer sees: each prediction and served record once
        assert len(all_predictions) == N_EVENTS, Counter(Counter(p["id"] for *_, p in decoded).values())
        assert re_served == 0

    print(f"scale-out ({guarantee}): {wall:.1f} s wall ({scaled_s:.1f} s scaled run, every id predicted "
          f"{covered_at - killed_at:.1f} s after the kill); {len(all_predictions)} predictions "
          f"({len(all_predictions) - N_EVENTS} duplicates, {len(all_predictions) - n_at_kill} published after the kill), "
          f"{re_served} served records re-served; versions served {dict(sorted(versions.items()))}; "
          f"snapshots {sorted(verified)}; mean staleness {staleness / N_EVENTS:.0f} labels")
