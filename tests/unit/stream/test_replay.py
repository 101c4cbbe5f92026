"""Replay: River's question/answer order, label sampling, datasets and files, and one broker run.

The order test is the anchor of evaluation parity: riverbed's events and labels must come in
exactly the order ``river.stream.simulate_qa(dataset, moment=None, delay=N)`` reveals them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
from river import datasets as river_datasets
from river import stream as river_stream

from stream.devtools.datasets import (
    DATASETS,
    infer_task,
    message_features,
    message_value,
    open_dataset,
    open_file,
    parse_cell,
    snake_case,
)
from stream.errors import RiverbedError
from stream.devtools.replay import Record, encoder, schedule

START = 1_700_000_000.0


def index_of(record: Record) -> int:
    return int(record.id.rsplit("-", 1)[1])


@pytest.fixture(scope="module")
def phishing_500() -> list:
    return list(river_datasets.Phishing().take(500))


# ---------------------------------------------------------------------------------------------
# The schedule: River's order
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0, 1, 7, 100])
def test_schedule_reveals_in_simulate_qa_order(phishing_500, delay):
    expected = [
        ("event" if y is None else "label", i)
        for i, _, y in river_stream.simulate_qa(phishing_500, moment=None, delay=delay)
    ]
    records = list(schedule(phishing_500, label_delay=delay))

    assert [(r.kind, index_of(r)) for r in records] == expected
    assert len(records) == 1000
    timestamps = [r.ts for r in records]
    assert all(a < b for a, b in zip(timestamps, timestamps[1:]))


def test_delay_zero_matches_simulate_qa_without_delay(phishing_500):
    expected = [
        ("event" if y is None else "label", i)
        for i, _, y in river_stream.simulate_qa(phishing_500, moment=None, delay=None)
    ]
    assert [(r.kind, index_of(r)) for r in schedule(phishing_500, label_delay=0)] == expected


@pytest.mark.parametrize("delay", [0, 3])
def test_records_carry_ids_timestamps_and_message_values(phishing_500, delay):
    records = list(schedule(phishing_500[:20], label_delay=delay, id_prefix="ph", interval_s=2.0))
    events = [r for r in records if r.kind == "event"]
    labels = [r for r in records if r.kind == "label"]

    for i, (event, (x, y)) in enumerate(zip(events, phishing_500)):
        assert event.id == f"ph-{i}"
        assert event.ts == START + 2.0 * i
        assert event.value == {"id": f"ph-{i}", "x": message_features(x), "ts": event.ts}
    for i, (label, (x, y)) in enumerate(zip(labels, phishing_500)):
        assert label.id == f"ph-{i}"
        assert label.ts == START + 2.0 * (i + max(delay, 1) - 0.5)
        assert label.value == {"id": f"ph-{i}", "y": y, "ts": label.ts}


def test_labels_of_the_last_events_follow_the_last_event_in_order():
    records = list(schedule([({"a": i}, i % 2 == 0) for i in range(5)], label_delay=10))
    assert [(r.kind, index_of(r)) for r in records] == [("event", i) for i in range(5)] + [
        ("label", i) for i in range(5)
    ]


def test_unlabelled_samples_publish_no_label():
    records = list(schedule([({"a": 1}, None), ({"a": 2}, 1.5), ({"a": 3}, float("nan"))]))
    assert [(r.kind, r.id) for r in records] == [
        ("event", "e-0"),
        ("event", "e-1"),
        ("label", "e-1"),
        ("event", "e-2"),
    ]


def test_feature_keys_become_strings():
    (event,) = [r for r in schedule([({0: 1.0, 1: np.float32(2.5)}, None)])]
    assert event.value["x"] == {"0": 1.0, "1": 2.5}
    assert type(event.value["x"]["1"]) is float


@pytest.mark.parametrize(
    "kwargs",
    [{"label_delay": -1}, {"label_delay": 1.5}, {"label_fraction": 1.1}, {"interval_s": 0.0}],
)
def test_bad_schedule_arguments_are_refused(kwargs):
    with pytest.raises(RiverbedError):
        next(schedule([({}, 1)], **kwargs))


# ---------------------------------------------------------------------------------------------
# Label sampling
# ---------------------------------------------------------------------------------------------


def labelled_ids(n: int, fraction: float, seed: int, delay: int = 0) -> list[str]:
    samples = (({"i": i}, i % 2 == 0) for i in range(n))
    records = schedule(samples, label_delay=delay, label_fraction=fraction, seed=seed)
    return [r.id for r in records if r.kind == "label"]


def test_label_fraction_is_deterministic_per_seed():
    first = labelled_ids(10_000, 0.3, seed=7)
    assert first == labelled_ids(10_000, 0.3, seed=7)
    assert first == labelled_ids(10_000, 0.3, seed=7, delay=50)  # same labels whatever the delay
    assert first != labelled_ids(10_000, 0.3, seed=8)
    assert 2_700 <= len(first) <= 3_300


def test_label_fraction_zero_publishes_no_labels_and_one_publishes_all():
    assert labelled_ids(1_000, 0.0, seed=1) == []
    assert len(labelled_ids(1_000, 1.0, seed=1)) == 1_000


def test_sampled_labels_keep_simulate_qa_order(phishing_500):
    expected = [
        ("event" if y is None else "label", i)
        for i, _, y in river_stream.simulate_qa(phishing_500, moment=None, delay=7)
    ]
    records = list(schedule(phishing_500, label_delay=7, label_fraction=0.5, seed=3))
    kept = {index_of(r) for r in records if r.kind == "label"}
    assert [(r.kind, index_of(r)) for r in records] == [
        (kind, i) for kind, i in expected if kind == "event" or i in kept
    ]


# ---------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_builtin_dataset_opens_offline_with_message_ready_samples(name):
    samples = open_dataset(name, limit=5)
    rows = list(samples.rows)

    assert samples.name == name
    assert samples.task == DATASETS[name].task
    assert samples.n == len(rows) == 5
    x, y = rows[0]
    assert x and all(type(key) is str for key in x)
    json.dumps({"x": x, "y": y}, allow_nan=False)
    assert msgpack.unpackb(msgpack.packb(x, use_bin_type=True), strict_map_key=True) == x
    assert rows == list(samples.rows)  # rows can be replayed


def test_river_builtins_are_described_as_river_describes_them():
    tasks = {"Binary classification": "binary", "Multi-class classification": "multiclass",
             "Regression": "regression"}
    checked = 0
    for class_name in river_datasets.__all__:
        cls = getattr(river_datasets, class_name)
        info = DATASETS.get(snake_case(class_name))
        if info is None:
            continue
        dataset = cls()
        assert (info.n, info.task) == (dataset.n_samples, tasks[dataset.task]), class_name
        checked += 1
    assert checked == 9


def test_lengths_without_a_limit():
    assert open_dataset("phishing").n == len(list(open_dataset("phishing").rows)) == 1250
    assert open_dataset("sea").n == len(list(open_dataset("sea").rows)) == 20_000
    assert open_dataset("agrawal").n == 20_000
    assert open_dataset("phishing", limit=10_000).n == 1250


def test_synthetic_streams_are_seeded():
    assert list(open_dataset("agrawal", limit=50, seed=1).rows) == list(
        open_dataset("agrawal", limit=50, seed=1).rows
    )
    assert list(open_dataset("sea", limit=50, seed=1).rows) != list(
        open_dataset("sea", limit=50, seed=2).rows
    )


def sea_rule_holds(rows, threshold: float) -> list[bool]:
    return [y == (x["0"] + x["1"] > threshold) for x, y in rows]


def test_sea_drift_switches_concept_exactly_at_drift_at():
    rows = list(open_dataset("sea_drift", limit=3_000, drift_at=1_200, seed=5).rows)
    before, after = rows[:1_200], rows[1_200:]

    assert all(sea_rule_holds(before, 8.0))
    assert all(sea_rule_holds(after, 9.5))
    accuracy_of_old_rule_after = sum(sea_rule_holds(after, 8.0)) / len(after)
    assert accuracy_of_old_rule_after < 0.95  # the old concept now misclassifies ~1 in 10


def test_sea_drift_defaults_to_the_middle():
    rows = list(open_dataset("sea_drift", limit=1_000).rows)
    assert all(sea_rule_holds(rows[:500], 8.0))
    assert all(sea_rule_holds(rows[500:], 9.5))
    assert not all(sea_rule_holds(rows[500:], 8.0))


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(RiverbedError) as error:
        open_dataset("no_such_data")
    for name in DATASETS:
        assert name in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["elec2", "credit_card", "sms_spam"])
def test_datasets_that_need_a_download_are_refused(name):
    with pytest.raises(RiverbedError, match="downloaded"):
        open_dataset(name)


@pytest.mark.parametrize("kwargs", [{"limit": -1}, {"drift_at": -5}])
def test_bad_dataset_arguments_are_refused(kwargs):
    with pytest.raises(RiverbedError):
        open_dataset("sea_drift", **kwargs)


def test_drift_at_only_applies_to_sea_drift():
    with pytest.raises(RiverbedError, match="sea_drift"):
        open_dataset("sea", drift_at=10)


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def test_values_become_json_and_msgpack_scalars():
    assert type(message_value(np.int64(3))) is int
    assert type(message_value(np.float32(0.5))) is float
    assert message_value(np.bool_(True)) is True
    assert message_value(dt.datetime(1970, 1, 1, 0, 1)) == 60.0  # naive means UTC
    assert message_value(dt.datetime(1970, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == 0.0
    assert message_value(dt.date(1970, 1, 2)) == 86_400.0
    assert message_value(None) is None
    assert message_value(float("inf")) is None
    assert message_features({"a": None, "b": float("nan"), 3: "x"}) == {"3": "x"}
    with pytest.raises(RiverbedError, match="list"):
        message_value([1, 2])


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_cells_are_typed_and_empty_cells_are_absent(tmp_path):
    path = write(tmp_path, "d.csv", "a,b,colour,label\n1,2.5,red,yes\n-3,,blue,no\n4,1e3,,yes\n")
    samples = open_file(path, target="label")

    assert (samples.name, samples.task, samples.n) == ("d.csv", "binary", 3)
    assert list(samples.rows) == [
        ({"a": 1, "b": 2.5, "colour": "red"}, "yes"),
        ({"a": -3, "colour": "blue"}, "no"),
        ({"a": 4, "b": 1000.0}, "yes"),
    ]
    assert type(list(samples.rows)[0][0]["a"]) is int


@pytest.mark.parametrize(
    "column, task",
    [("y", "regression"), ("klass", "multiclass"), ("flag", "binary")],
)
def test_csv_task_is_inferred_from_the_target(tmp_path, column, task):
    path = write(tmp_path, "t.csv", "x,y,klass,flag\n1,0.5,a,T\n2,3,b,F\n3,1,c,T\n")
    assert open_file(path, target=column).task == task


def test_task_can_be_given_for_integer_classes(tmp_path):
    path = write(tmp_path, "t.csv", "x,y\n1,0\n2,1\n")
    assert open_file(path, target="y").task == "regression"
    assert open_file(path, target="y", task="binary").task == "binary"


def test_empty_target_cell_means_no_label(tmp_path):
    path = write(tmp_path, "t.csv", "x,y\n1,a\n2,\n3,b\n")
    samples = open_file(path, target="y")
    assert [y for _, y in samples.rows] == ["a", None, "b"]
    assert [r.id for r in schedule(samples.rows) if r.kind == "label"] == ["e-0", "e-2"]


def test_file_limit(tmp_path):
    path = write(tmp_path, "t.csv", "x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(100)))
    samples = open_file(path, target="y", limit=10)
    assert samples.n == 10 == len(list(samples.rows))


def test_jsonl_lines_become_samples(tmp_path):
    lines = [
        {"a": 1, "b": "x", "c": True, "d": None, "y": 2.5},
        {"a": 2.0, "y": 1},
        {"a": 3},
    ]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    samples = open_file(path, target="y")

    assert (samples.task, samples.n) == ("regression", 3)
    assert list(samples.rows) == [({"a": 1, "b": "x", "c": True}, 2.5), ({"a": 2.0}, 1), ({"a": 3}, None)]


def test_missing_target_is_one_clear_line(tmp_path):
    csv_path = write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(RiverbedError, match="no target column 'label'; columns are: a, b"):
        open_file(csv_path, target="label")
    jsonl_path = write(tmp_path, "d.jsonl", '{"a": 1}\n')
    with pytest.raises(RiverbedError, match="target key 'label'"):
        open_file(jsonl_path, target="label")


def test_missing_file_and_bad_lines_are_clear(tmp_path):
    with pytest.raises(RiverbedError, match="no such file"):
        open_file(str(tmp_path / "absent.csv"), target="y")
    with pytest.raises(RiverbedError, match="unsupported file type"):
        open_file(write(tmp_path, "d.parquet", ""), target="y")
    with pytest.raises(RiverbedError, match=r"d\.jsonl:2: not valid JSON"):
        open_file(write(tmp_path, "d.jsonl", '{"y": 1}\n{"y": \n'), target="y")
    with pytest.raises(RiverbedError, match=r"n\.jsonl:1: .*flatten"):
        open_file(write(tmp_path, "n.jsonl", '{"y": 1, "a": [1, 2]}\n'), target="y")


def test_cells_and_tasks():
    assert [parse_cell(c) for c in ["7", "-0.5", ".5", "1_000", "nan", "inf", " ", "a b"]] == [
        7, -0.5, 0.5, "1_000", "nan", "inf", None, "a b",
    ]
    assert infer_task([True, False, None]) == "binary"
    assert infer_task([1, 2, 3]) == "regression"
    assert infer_task([]) is None


def test_csv_booleans_are_parsed_case_insensitively_and_numbers_stay_numbers():
    assert [parse_cell(c) for c in ["true", "FALSE", " True ", "0", "1", "yes", "t"]] == [
        True, False, True, 0, 1, "yes", "t",
    ]


def test_csv_id_and_ts_columns_are_ids_and_times_not_features(tmp_path):
    path = write(tmp_path, "d.csv", "id,ts,flag,a,label\nu-7,1700000000,TRUE,1.5,true\n"
                                    "u-8,2023-11-14T22:13:21Z,false,2,False\n")
    samples = open_file(path, target="label")
    assert list(samples.rows) == [({"flag": True, "a": 1.5}, True), ({"flag": False, "a": 2}, False)]
    assert list(samples.stamps) == [("u-7", 1_700_000_000.0), ("u-8", 1_700_000_001.0)]
    assert (samples.has_ids, samples.has_times, samples.task) == (True, True, "binary")


def test_id_and_ts_columns_can_be_named_or_switched_off(tmp_path):
    path = write(tmp_path, "d.csv", "key,when,id,ts,label\n17,5.5,x,9,1\n")
    named = open_file(path, target="label", id_column="key", ts_column="when")
    assert list(named.stamps) == [("17", 5.5)]
    assert list(named.rows) == [({"id": "x", "ts": 9}, 1)]  # other columns are ordinary features
    off = open_file(path, target="label", id_column="", ts_column="")
    assert list(off.stamps) == [(None, None)] and not off.has_ids and not off.has_times
    assert list(off.rows) == [({"key": 17, "when": 5.5, "id": "x", "ts": 9}, 1)]
    with pytest.raises(RiverbedError, match="no id column 'nope'"):
        open_file(path, target="label", id_column="nope")


def test_rows_without_their_id_or_a_bad_time_are_one_clear_line(tmp_path):
    with pytest.raises(RiverbedError, match=r"d\.csv:3: no id in column 'id'"):
        open_file(write(tmp_path, "d.csv", "id,a,y\nu1,1,a\n,2,b\n"), target="y")
    with pytest.raises(RiverbedError, match=r"t\.csv:2: event time 'soon' is neither"):
        open_file(write(tmp_path, "t.csv", "ts,a,y\nsoon,1,a\n"), target="y")


def test_jsonl_keeps_its_types_and_reads_ids_and_times(tmp_path):
    lines = [{"id": 7, "ts": 1_700_000_000.25, "flag": True, "n": 1, "s": "true", "y": 0},
             {"id": "b", "ts": "2023-11-14T22:13:21+00:00", "n": 2.5, "y": "true"}]
    samples = open_file(write(tmp_path, "d.jsonl", "\n".join(json.dumps(line) for line in lines)), target="y")
    assert list(samples.rows) == [({"flag": True, "n": 1, "s": "true"}, 0), ({"n": 2.5}, "true")]
    assert type(list(samples.rows)[0][1]) is int
    assert list(samples.stamps) == [("7", 1_700_000_000.25), ("b", 1_700_000_001.0)]


def test_schedule_uses_the_files_ids_and_times():
    rows = [({"a": 1}, True), ({"a": 2}, False), ({"a": 3}, True)]
    stamps = [("u1", 100.0), ("u2", 104.0), ("u3", 110.0)]
    records = list(schedule(rows, label_delay=1, stamps=stamps, interval_s=2.0))
    assert [(r.kind, r.id, r.ts) for r in records] == [
        ("event", "u1", 100.0), ("label", "u1", 102.0), ("event", "u2", 104.0),
        ("label", "u2", 107.0), ("event", "u3", 110.0), ("label", "u3", 111.0),
    ]
    assert records[0].value == {"id": "u1", "x": {"a": 1}, "ts": 100.0}


def test_schedule_without_stamps_is_unchanged_by_none_stamps():
    rows = [({"a": i}, i % 2 == 0) for i in range(20)]
    assert list(schedule(rows, label_delay=3, stamps=[(None, None)] * 20)) == list(schedule(rows, label_delay=3))


def test_replay_freezes_the_heap_only_while_it_sends():
    import gc

    from stream.devtools.replay import _frozen_heap

    frozen_by_others = gc.get_freeze_count()
    gc.unfreeze()  # start from a heap nobody froze
    try:
        with _frozen_heap():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
        gc.freeze()  # frozen by someone else (a processor's tune_gc): replay leaves it frozen
        frozen = gc.get_freeze_count()
        with _frozen_heap():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        if frozen_by_others:
            gc.freeze()
        else:
            gc.unfreeze()


def test_in_flight_window_waits_for_the_message_sent_limit_messages_earlier():
    from stream.devtools.replay import _InFlightWindow

    class Sent:
        def __init__(self, n):
            self.n, self.waited = n, False

        def get(self):
            self.waited = True

    window = _InFlightWindow(limit=4, every=2)
    sent = [Sent(n) for n in range(1, 11)]
    for future in sent:
        window.sent(future)
    assert [f.n for f in sent if f.waited] == [2, 4, 6]  # marks at 2, 4, ...; two kept, older ones awaited


def test_encoders():
    value = {"id": "e-1", "x": {"a": 1.5, "b": "s", "c": True}, "ts": START}
    assert msgpack.unpackb(encoder("msgpack")(value)) == value
    assert json.loads(encoder("json")(value)) == value
    with pytest.raises(RiverbedError, match="msgpack, json"):
        encoder("avro")


# ---------------------------------------------------------------------------------------------
# A real broker
# ---------------------------------------------------------------------------------------------


def read_all(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 60.0) -> dict:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    received: dict[str, list] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while sum(map(len, received.values())) < expected and time.monotonic() < deadline:
            for partition, messages in consumer.poll(timeout_ms=500).items():
                received[partition.topic].extend(messages)
    finally:
        consumer.close()
    return received


@pytest.mark.broker
def test_produce_publishes_events_and_labels_in_order(broker_bootstrap):
    from stream.devtools.replay import produce
    from stream.connect.topics import create_topics

    suffix = uuid.uuid4().hex[:10]
    topics = SimpleNamespace(events=f"replay-{suffix}-events", labels=f"replay-{suffix}-labels")
    create_topics(broker_bootstrap, [topics.events, topics.labels], 1)
    records = list(schedule(open_dataset("phishing", limit=300).rows, label_delay=5, id_prefix="ph"))

    result = produce(broker_bootstrap, topics, records, total=300, progress=False)

    assert (result["events"], result["labels"]) == (300, 300)
    received = read_all(broker_bootstrap, [topics.events, topics.labels], expected=600)
    for topic, kind in [(topics.events, "event"), (topics.labels, "label")]:
        sent = [r for r in records if r.kind == kind]
        messages = received[topic]
        assert len(messages) == 300
        assert [m.key for m in messages] == [r.id.encode() for r in sent]
        assert [msgpack.unpackb(m.value, strict_map_key=True) for m in messages] == [r.value for r in sent]
