"""Feature transforms: loading, checking their output, and the processor applying them (real broker)."""

from __future__ import annotations

import asyncio
import base64
import json

import msgpack
import pytest
from kafka import KafkaProducer

from stream.ops.status import read_status
from stream.engine.codecs import InvalidMessage, parse_event
from stream.engine.processor import Processor
from stream.connect.topics import create_topics
from stream.engine.transforms import TransformError, load_transform
from tests.support import fresh_config

TRANSFORM = "tests.custom_transform:blob_features"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon", "must look like 'package.module:function'"),
        ("tests.no_such_module:f", "cannot import module 'tests.no_such_module'"),
        ("tests.custom_transform:missing", "has no attribute 'missing'"),
        ("tests.custom_model:NOT_CALLABLE", "is a int, not a function"),
    ],
)
def test_load_errors_are_one_line(spec, message):
    with pytest.raises(TransformError, match=message) as info:
        load_transform(spec)
    assert "\n" not in str(info.value)


def test_transform_output_is_checked():
    transform = load_transform(TRANSFORM)
    assert transform({"blob": b"\x01\x03"}) == {"length": 2, "mean": 2.0, "first": 1}
    assert transform({"blob": base64.b64encode(b"\x05").decode()})["first"] == 5
    cases = {
        b"boom": ("transform_failed", "ValueError: cannot decode this blob"),
        b"nan": ("bad_transform_output", "'mean' = nan"),
        b"list": ("bad_transform_output", "returned a list"),
    }
    for blob, (reason, detail) in cases.items():
        with pytest.raises(InvalidMessage) as info:
            transform({"blob": blob})
        assert info.value.reason == reason and detail in info.value.detail, info.value
    with pytest.raises(InvalidMessage, match="transform_failed: KeyError"):
        transform({"other": 1})


def test_bytes_features_only_with_a_transform():
    raw = msgpack.packb({"id": "a", "x": {"blob": b"\x00\x01"}}, use_bin_type=True)
    with pytest.raises(InvalidMessage) as info:
        parse_event(raw, 1024)
    assert info.value.reason == "bad_feature_value"
    assert parse_event(raw, 1024, binary=True).x == {"blob": b"\x00\x01"}


@pytest.mark.broker
def test_processor_applies_the_transform_and_dead_letters_its_failures(test_config, broker_bootstrap, tmp_path):
    from tests.support import read_topic

    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state",
                       model={"preset": "softmax", "task": "multiclass", "metrics": ["accuracy"]},
                       features={"transform": TRANSFORM})
    t = cfg.topics
    create_topics(broker_bootstrap, [t.events, t.labels, t.predictions, t.deadletter], 1)
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", max_in_flight_requests_per_connection=1)
    good = 0
    for i in range(30):
        blob = bytes([i % 7, (i * 3) % 11, 5])
        if i % 2:  # msgpack bin
            value = msgpack.packb({"id": f"e-{i}", "x": {"blob": blob}, "ts": 1000.0 + i}, use_bin_type=True)
        else:  # JSON, base64 text
            value = json.dumps({"id": f"e-{i}", "x": {"blob": base64.b64encode(blob).decode()}, "ts": 1000.0 + i}).encode()
        producer.send(t.events, key=f"e-{i}".encode(), value=value)
        producer.send(t.labels, key=f"e-{i}".encode(), value=msgpack.packb({"id": f"e-{i}", "y": i % 3, "ts": 1000.5 + i}))
        good += 1
    bad = [
        (msgpack.packb({"id": "bad-boom", "x": {"blob": b"boom"}, "ts": 2000.0}, use_bin_type=True), "transform_failed"),
        (msgpack.packb({"id": "bad-nan", "x": {"blob": b"nan"}, "ts": 2001.0}, use_bin_type=True), "bad_transform_output"),
        (msgpack.packb({"id": "bad-x", "x": {"other": 1}, "ts": 2002.0}), "transform_failed"),
    ]
    for value, _ in bad:
        producer.send(t.events, key=b"bad", value=value)
    producer.flush()
    producer.close()

    asyncio.run(Processor(cfg, exit_when_idle=1.0, serve_metrics=False).run())
    status = read_status(cfg)
    assert status["counts"]["predictions"] == good
    assert status["counts"]["joined"] == good  # learned from the stored, transformed features
    assert status["invalid_by_reason"] == {f"{t.events}:transform_failed": 2, f"{t.events}:bad_transform_output": 1}
    dead = read_topic(broker_bootstrap, t.deadletter, expected=len(bad))
    assert [dict(r.headers)["reason"].decode() for r in dead] == [reason for _, reason in bad]
    assert dict(dead[0].headers)["detail"] == b"ValueError: cannot decode this blob"
    assert [r.value for r in dead] == [value for value, _ in bad]  # copied unchanged


def test_doctests():
    import doctest

    import stream.devtools.oracle
    import stream.engine.transforms

    modules = [stream.engine.transforms, stream.devtools.oracle]
    try:
        import examples.digits.transform
    except ImportError:  # Pillow is in the 'examples' extra
        pass
    else:
        modules.append(examples.digits.transform)
    for module in modules:
        assert doctest.testmod(module).failed == 0, module.__name__
