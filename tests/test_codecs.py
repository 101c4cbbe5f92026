"""Input detection and validation: every broken contract maps to a bounded reason."""

from __future__ import annotations

import json

import msgpack
import pytest

from stream.engine.codecs import REASONS, InvalidMessage, OutputCodec, decode_any, parse_event, parse_label

MAX = 4096


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_msgpack_and_json_are_detected_per_message():
    event = {"id": "e1", "x": {"a": 1, "b": 2.5, "c": "red", "d": True}, "ts": 10.0}
    assert parse_event(pack(event), MAX) == parse_event(json.dumps(event).encode(), MAX)
    assert parse_event(b'  {"id":"e2","x":{}}', MAX).ts is None


def test_label_types():
    assert parse_label(pack({"id": "a", "y": True}), MAX, regression=False).y is True
    assert parse_label(b'{"id":"a","y":"cat","ts":3}', MAX, regression=False).ts == 3.0
    assert parse_label(pack({"id": "a", "y": 2.5}), MAX, regression=True).y == 2.5


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xc1\xc1\xc1", "undecodable"),
        (b'{"id": "a", "x": {', "undecodable"),
        (pack([1, 2]), "not_an_object"),
        (pack({"x": {}}), "missing_id"),
        (pack({"id": 7, "x": {}}), "bad_id"),
        (pack({"id": "", "x": {}}), "bad_id"),
        (pack({"id": "a"}), "missing_x"),
        (pack({"id": "a", "x": [1]}), "bad_x"),
        (pack({"id": "a", "x": {"f": [1, 2]}}), "bad_feature_value"),
        (pack({"id": "a", "x": {"f": None}}), "bad_feature_value"),
        (pack({"id": "a", "x": {"f": float("nan")}}), "non_finite"),
        (b'{"id": "a", "x": {"f": Infinity}}', "non_finite"),
        (pack({"id": "a", "x": {}, "ts": "yesterday"}), "bad_ts"),
        (pack({"id": "a", "x": {}, "ts": -1}), "bad_ts"),
        (pack({"id": "a", "x": {"f": "v" * MAX}}), "oversized"),
        (pack({"id": "a", "x": {}}) + b"\x01", "undecodable"),
    ],
)
def test_invalid_events(raw, reason):
    with pytest.raises(InvalidMessage) as info:
        parse_event(raw, MAX)
    assert info.value.reason == reason
    assert reason in REASONS


@pytest.mark.parametrize(
    "raw, regression, reason",
    [
        (pack({"id": "a"}), False, "missing_y"),
        (pack({"id": "a", "y": None}), False, "bad_y"),
        (pack({"id": "a", "y": [1]}), False, "bad_y"),
        (pack({"id": "a", "y": "cat"}), True, "bad_y"),
        (pack({"id": "a", "y": float("inf")}), True, "non_finite"),
    ],
)
def test_invalid_labels(raw, regression, reason):
    with pytest.raises(InvalidMessage) as info:
        parse_label(raw, MAX, regression=regression)
    assert info.value.reason == reason


def test_output_codecs():
    message = {"id": "a", "y_pred": True, "proba": {False: 0.25, True: 0.75}, "model": "m", "version": 3, "ts": 1.5}
    assert msgpack.unpackb(OutputCodec("msgpack").encode(message), strict_map_key=False) == message
    decoded = json.loads(OutputCodec("json").encode(message))
    assert decoded["proba"] == {"False": 0.25, "True": 0.75}
    assert decode_any(OutputCodec("msgpack").encode(message))["version"] == 3
    assert decode_any(b"\xff\xfe plain") == "\ufffd\ufffd plain"
