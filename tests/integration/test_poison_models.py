"""Issue 9, "no record can stop the stream", end to end on the real broker.

One poisoned stream carries every failure :data:`stream.engine.codecs.REASONS` names -- bad
bytes, broken contracts, a transform that raises or returns NaN, events a numeric-only custom
pipeline cannot predict (a string feature, a missing feature), labels that are no label of the
task, and a custom model whose ``learn_one`` raises on every N-th call and on events without a
feature it needs (:mod:`tests.custom_poison`) -- mixed into a clean stream. An uninterrupted run
dead-letters each one with its reason, ``detail`` and source headers and counts them exactly per
reason; a run killed with ``kill -9`` twice and restarted ends with every valid event predicted
and the same model fingerprint, counts and dead letters: a replay fails at the same records and
leaves the same partial updates (``stream/engine/handlers.py``, "What a failed learn leaves
behind").
"""

from __future__ import annotations

from tests.support import ROOT as REPO

import collections
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import msgpack
import pytest
from kafka import KafkaProducer

from stream.engine.codecs import REASONS, InvalidMessage
from stream.devtools.replay import schedule
from stream.ops.status import read_status
from tests.support import fresh_config, riverbed, write_config
from tests.custom_poison import FAIL_EVERY
from tests.support import create_all, events_checkpointed, read_topic, run_once

pytestmark = pytest.mark.broker

N_CLEAN = 24_000
LABEL_DELAY = 25
WARM_UP = 200  # clean records before the first poison: the scaler has seen varied numbers by then
POISON_EVERY = 30  # one poison record (or pair) after every this many clean records
MAX_MESSAGE_BYTES = 4096


@dataclass
class Outgoing:
    """One record to publish, and what riverbed must make of it.

    ``message`` is the decoded payload of a record that passes decoding (None otherwise);
    ``reason``/``detail`` are the dead-letter reason and the start of its ``detail`` header when
    known before processing (decoding, transform and prediction failures); ``learn_failure`` is
    ``(reason, detail)`` of a label whose learning fails, found by :class:`ExpectedOutcome`.
    """

    ts: float
    topic: str  # "events" or "labels"
    key: bytes
    value: bytes | None
    message: dict | None = None
    reason: str | None = None
    detail: str = ""
    offset: int = -1
    learn_failure: tuple[str, str] | None = None

    @property
    def dead_letter(self) -> tuple[str, str] | None:
        """``(reason, detail)`` of its expected dead letter, or None."""
        return (self.reason, self.detail) if self.reason is not None else self.learn_failure

    @property
    def rank(self) -> int:
        return 0 if self.topic == "labels" else 1  # labels before events at equal event time


def clean_rows(n: int, seed: int = 7) -> list[tuple[dict, bool]]:
    """Seeded numeric samples ``{"age", "income", "visits"} -> bool``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        age, income, visits = round(rng.uniform(18, 80), 3), round(rng.gauss(50, 15), 3), rng.randint(0, 20)
        score = 0.04 * (age - 50) + 0.05 * (income - 50) + 0.1 * (visits - 10) + rng.gauss(0, 1)
        rows.append(({"age": age, "income": income, "visits": visits}, score > 0))
    return rows


def _valid(topic: str, message: dict, reason: str | None = None, detail: str = "") -> Outgoing:
    return Outgoing(message["ts"], topic, message["id"].encode(), msgpack.packb(message), message, reason, detail)


def _raw(topic: str, ts: float, key: str, value: bytes | None, reason: str) -> Outgoing:
    return Outgoing(ts, topic, key.encode(), value, None, reason)


def _predict_failure(event_id: str, x: dict, ts: float, detail: str) -> list[Outgoing]:
    """An event the model cannot predict, and a valid label for it (unmatched: nothing was kept)."""
    return [
        _valid("events", {"id": event_id, "x": x, "ts": ts}, "model_predict_failed", detail),
        _valid("labels", {"id": event_id, "y": True, "ts": ts + 2.3}),
    ]


#: Poison makers: ``(n, ts, id of the newest clean event) -> records``, used in turn.
POISONS: list[Callable[[int, float, str], list[Outgoing]]] = [
    # events broken before the model sees them
    lambda n, ts, last: [_raw("events", ts, f"p{n}", b"\xc1\xc1 not msgpack", "undecodable")],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", b'{"id": "p%d", "x": {"age": NaN}}' % n, "non_finite")],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", msgpack.packb({"x": {"age": 1.0}, "ts": ts}), "missing_id")],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", msgpack.packb({"id": "", "x": {"age": 1.0}}), "bad_id")],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", msgpack.packb({"id": f"p{n}", "ts": ts}), "missing_x")],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", msgpack.packb({"id": f"p{n}", "x": [1, 2]}), "bad_x")],
    lambda n, ts, last: [
        _raw("events", ts, f"p{n}", msgpack.packb({"id": f"p{n}", "x": {"age": [1, 2]}}), "bad_feature_value")
    ],
    lambda n, ts, last: [
        _raw("events", ts, f"p{n}", msgpack.packb({"id": f"p{n}", "x": {"age": 1.0}, "ts": "soon"}), "bad_ts")
    ],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", msgpack.packb([1, 2, 3]), "not_an_object")],
    lambda n, ts, last: [
        _raw("events", ts, f"p{n}", msgpack.packb({"id": f"p{n}", "x": {"blob": "z" * 5000}}), "oversized")
    ],
    lambda n, ts, last: [_raw("events", ts, f"p{n}", None, "empty")],
    # the transform fails
    lambda n, ts, last: [
        _valid("events", {"id": f"p{n}", "x": {"age": 30.0, "income": 50.0, "explode": 1}, "ts": ts},
               "transform_failed", "ValueError: this event explodes by design")
    ],
    lambda n, ts, last: [
        _valid("events", {"id": f"p{n}", "x": {"age": 30.0, "income": 50.0, "nan": 1}, "ts": ts},
               "bad_transform_output", "tests.custom_poison:guarded_passthrough returned feature 'nan' = nan")
    ],
    lambda n, ts, last: [  # bytes pass the contract only for a transform, which passes them on
        _valid("events", {"id": f"p{n}", "x": {"age": b"\x00\x01"}, "ts": ts}, "bad_transform_output",
               "tests.custom_poison:guarded_passthrough returned feature 'age' of type bytes")
    ],
    # the model fails: a string into StandardScaler, no "age" for predict_proba_one
    lambda n, ts, last: _predict_failure(
        f"p{n}", {"age": 33.0, "income": "high", "visits": 2}, ts, "TypeError: unsupported operand"
    ),
    lambda n, ts, last: _predict_failure(f"p{n}", {"income": 40.0, "visits": 3}, ts, "KeyError: 'age'"),
    # predicted, but its label cannot be learned (no "income" for learn_one): found by the simulation
    lambda n, ts, last: [
        _valid("events", {"id": f"p{n}", "x": {"age": 40.0, "visits": 3}, "ts": ts}),
        _valid("labels", {"id": f"p{n}", "y": False, "ts": ts + 5.3}),
    ],
    # labels that are no label of the task, for a pending event (its real label comes later)
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "ts": ts}), "missing_y")],
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "y": [True], "ts": ts}), "bad_y")],
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "y": None, "ts": ts}), "bad_y")],
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "y": "maybe", "ts": ts}), "bad_label")],
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "y": 2, "ts": ts}), "bad_label")],
    lambda n, ts, last: [_raw("labels", ts, last, b'{"id": "%s", "y": NaN}' % last.encode(), "non_finite")],
    lambda n, ts, last: [_raw("labels", ts, last, msgpack.packb({"id": last, "y": True, "ts": -1}), "bad_ts")],
    lambda n, ts, last: [_raw("labels", ts, last, b"\x93garbage", "undecodable")],
    lambda n, ts, last: [_raw("labels", ts, last, None, "empty")],
]


def poisoned_stream(seed: int = 7) -> list[Outgoing]:
    """The clean stream (River's question/answer order) with a poison after every POISON_EVERY-th record."""
    records: list[Outgoing] = []
    last_event = ""
    n = 0
    for i, record in enumerate(schedule(clean_rows(N_CLEAN, seed), label_delay=LABEL_DELAY, id_prefix="c")):
        topic = "events" if record.kind == "event" else "labels"
        records.append(_valid(topic, record.value))
        if topic == "events":
            last_event = record.id
        if i >= WARM_UP and i % POISON_EVERY == 0:
            records += POISONS[n % len(POISONS)](n, record.ts + 0.25, last_event)
            n += 1
    return records


class ExpectedOutcome:
    """What riverbed must do with the records, derived from the rules, not from riverbed.

    Records are applied in the merge's order (event time, labels first at equal times); an event
    is predicted unless its failure is known up front; a label of a pending event is one
    ``learn_one`` call of :class:`tests.custom_poison.FragileClassifier`, which fails without
    ``income`` or on every :data:`FAIL_EVERY`-th call and then leaves the event pending.
    """

    def __init__(self) -> None:
        self.pending: dict[str, dict] = {}
        self.learned: set[str] = set()
        self.learn_calls = 0
        self.counts = collections.Counter()
        self.predicted: list[str] = []
        self.failed_by_design: list[str] = []  # ids whose learn failed on a FAIL_EVERY-th call

    def apply(self, records: list[Outgoing]) -> None:
        for record in sorted(records, key=lambda r: (r.ts, r.rank)):
            record.learn_failure = None
            if record.reason is not None:
                self.counts["invalid"] += 1
            elif record.topic == "events":
                self.pending[record.message["id"]] = record.message["x"]
                self.predicted.append(record.message["id"])
                self.counts["events"] += 1
                self.counts["predictions"] += 1
            else:
                self._label(record)

    def _label(self, record: Outgoing) -> None:
        label_id = record.message["id"]
        self.counts["labels"] += 1
        x = self.pending.get(label_id)
        if x is None:
            self.counts["duplicate_labels" if label_id in self.learned else "unmatched_labels"] += 1
            return
        self.learn_calls += 1
        if "income" not in x:
            record.learn_failure = ("model_learn_failed", "KeyError: 'income'")
        elif self.learn_calls % FAIL_EVERY == 0:
            record.learn_failure = ("model_learn_failed", f"RuntimeError: learn_one call {self.learn_calls} fails by design")
            self.failed_by_design.append(label_id)
        else:
            del self.pending[label_id]
            self.learned.add(label_id)
            self.counts["joined"] += 1
            return
        self.counts["invalid"] += 1  # the label is dead-lettered, its event stays pending


def corrected_labels(ids: list[str], after: float) -> list[Outgoing]:
    """A valid label again for each id whose learn failed by design (the pending entry was kept)."""
    return [_valid("labels", {"id": label_id, "y": True, "ts": after + 1 + k}) for k, label_id in enumerate(ids)]


def publish_records(cfg, records: list[Outgoing]) -> None:
    """Send in event-time order (each topic's offsets follow it) and note each record's offset."""
    create_all(cfg)
    topics = {"events": cfg.topics.events, "labels": cfg.topics.labels}
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all",
                             max_in_flight_requests_per_connection=1, linger_ms=5)
    try:
        futures = [(record, producer.send(topics[record.topic], key=record.key, value=record.value))
                   for record in sorted(records, key=lambda r: (r.ts, r.rank))]
        producer.flush()
        for record, future in futures:
            record.offset = future.get(timeout=30).offset
    finally:
        producer.close()


def reader_config(cfg, tmp_path: Path, name: str):
    """A second processor reading the same input topics with its own outputs, state and identity.

    Its own consumer group too: exactly-once output knows what was published from the group's
    transactionally committed offsets, so two readers in one group would suppress each other.
    """
    return cfg.replace(
        kafka={"group_id": f"{cfg.kafka.group_id}-{name}"},
        topics={"predictions": cfg.topics.predictions + f"-{name}", "deadletter": cfg.topics.deadletter + f"-{name}"},
        state={"dir": str(tmp_path / f"state-{name}")},
    )


def dead_letters_by_source(records) -> dict[tuple[str, int], list]:
    by_source = collections.defaultdict(list)
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        by_source[(headers["source_topic"], int(headers["source_offset"]))].append((record, headers))
    return by_source


def start_killable(config_file: Path) -> subprocess.Popen:
    """``riverbed run`` in a subprocess, returned once it consumes (its model restored)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", "INFO", "run"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        if "consuming" in line:
            return proc
    pytest.fail(f"processor exited early with {proc.wait()}")


def kill_twice_then_finish(cfg, config_file: Path, total_events: int) -> list[int]:
    """kill -9 twice, each time 0.08-0.2 s after the run's first checkpoint; then run to the end.

    With ``checkpoint_interval_s = 0.25`` the kill comes before the next checkpoint, so each
    restart replays the last 0.08-0.2 s of work (over a thousand records at this machine's pace:
    every poison kind of :data:`POISONS` recurs every 30 * 26 records), and the second kill still
    lands before a fast processor (17,000 events/s) finished the stream. Returns the events the
    checkpoint covered after each kill.
    """
    rng = random.Random(909)
    progress: list[int] = []
    for _ in range(2):
        proc = start_killable(config_file)
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 60
        while events_checkpointed(cfg) <= before:
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.08, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        progress.append(events_checkpointed(cfg))
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    assert all(0 < p < total_events for p in progress), progress  # both kills landed mid-stream
    assert progress == sorted(set(progress)), progress
    return progress


def test_every_failure_kind_is_dead_lettered_and_kill_9_changes_nothing(test_config, broker_bootstrap, tmp_path):
    base = fresh_config(
        test_config, broker_bootstrap, tmp_path / "unused",
        model={"preset": "tests.custom_poison:fragile_logreg", "task": "binary", "metrics": ["accuracy", "logloss"]},
        features={"transform": "tests.custom_poison:guarded_passthrough"},
        codec={"max_message_bytes": MAX_MESSAGE_BYTES},
    )
    base = base.replace(state={"checkpoint_interval_s": 0.25})
    records = poisoned_stream()
    expected = ExpectedOutcome()
    expected.apply(records)
    assert expected.failed_by_design, "FAIL_EVERY is too large for the stream"
    failed_by_design = expected.failed_by_design
    records += corrected_labels(failed_by_design, after=max(r.ts for r in records))
    expected = ExpectedOutcome()  # again over the whole input, corrections included
    expected.apply(records)
    assert set(failed_by_design) <= expected.learned  # the kept pending entry learns the corrected label
    publish_records(base, records)

    poisons = [r for r in records if r.dead_letter is not None]
    reasons = collections.Counter((r.topic, r.dead_letter[0]) for r in poisons)
    assert {reason for _, reason in reasons} == set(REASONS)  # every failure riverbed knows
    assert len(poisons) >= 0.03 * len(records)

    reference = reader_config(base, tmp_path, "reference")
    run_once(reference)
    status = read_status(reference)
    name = status["serving"]
    topic_names = {"events": base.topics.events, "labels": base.topics.labels}
    assert status["invalid_by_reason"] == {f"{topic_names[t]}:{reason}": n for (t, reason), n in reasons.items()}
    assert status["counts"] == {**dict.fromkeys(status["counts"], 0), **expected.counts}
    assert status["models"][name]["n_learned"] == expected.counts["joined"]

    dead = read_topic(broker_bootstrap, reference.topics.deadletter, expected=len(poisons))
    by_source = dead_letters_by_source(dead)
    assert len(dead) == len(by_source) == len(poisons)  # each once
    for record in poisons:
        [(copy, headers)] = by_source[(topic_names[record.topic], record.offset)]
        reason, detail = record.dead_letter
        assert headers["reason"] == reason, record
        assert headers["source_partition"] == "0"
        assert headers["detail"].startswith(detail), (record, headers["detail"])
        assert "\n" not in headers["detail"] and "not reported" not in headers["detail"]
        assert copy.value == record.value and copy.key == record.key  # unchanged (a null stays null)

    crashy = reader_config(base, tmp_path, "crashy")
    progress = kill_twice_then_finish(crashy, write_config(crashy, tmp_path / "crashy.toml"), len(expected.predicted))
    print("events covered by the checkpoint after each kill:", progress)
    after_crashes = read_status(crashy)
    model, reference_model = after_crashes["models"][name], status["models"][name]
    assert model["fingerprint"] == reference_model["fingerprint"]
    assert model["metrics"] == reference_model["metrics"]
    assert after_crashes["counts"] == status["counts"]
    assert after_crashes["invalid_by_reason"] == status["invalid_by_reason"]

    reference_predictions = {
        r.key: r.value for r in read_topic(broker_bootstrap, reference.topics.predictions, len(expected.predicted))
    }
    assert set(reference_predictions) == {event_id.encode() for event_id in expected.predicted}
    crash_predictions = collections.defaultdict(set)
    for record in read_topic(broker_bootstrap, crashy.topics.predictions, idle_ms=1500):
        crash_predictions[record.key].add(record.value)
    assert set(crash_predictions) == set(reference_predictions)  # every valid event predicted
    assert all(values == {reference_predictions[key]} for key, values in crash_predictions.items())

    crash_dead = dead_letters_by_source(read_topic(broker_bootstrap, crashy.topics.deadletter, idle_ms=1500))
    assert set(crash_dead) == set(by_source)  # the same records failed, replays included
    for source, copies in crash_dead.items():
        [(reference_copy, reference_headers)] = by_source[source]
        assert all(headers == reference_headers and copy.value == reference_copy.value for copy, headers in copies)


def _raw_poisons() -> Iterator[Outgoing]:
    for n, make in enumerate(POISONS):
        for record in make(n, 1_700_000_000.25, "c-0"):
            record.offset = n  # only to name the case
            if record.reason is not None and not record.reason.startswith("model_"):
                yield record  # refused by the decoder (model failures are checked on the broker)


@pytest.mark.parametrize("poison", list(_raw_poisons()), ids=lambda r: f"{r.topic}-{r.reason}-{r.offset}")
def test_every_dead_letter_detail_says_why(poison):
    """The ``detail`` header of a refused record is never empty: an operator must learn why from it."""
    from stream.engine.decoding import FeaturePipeline, RecordDecoder
    from stream.engine.transforms import load_transform

    decoder = RecordDecoder("events", FeaturePipeline(load_transform("tests.custom_poison:guarded_passthrough")),
                            MAX_MESSAGE_BYTES, "binary")
    parse = decoder.parse_event if poison.topic == "events" else decoder.parse_label
    with pytest.raises(InvalidMessage) as refused:
        parse(poison.value)
    assert refused.value.reason == poison.reason
    assert refused.value.detail.strip(), f"{poison.reason} of {poison.value!r} has an empty detail"
