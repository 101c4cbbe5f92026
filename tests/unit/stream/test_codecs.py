"""Input detection and validation: every broken contract maps to a bounded reason."""

from __future__ import annotations

import json

import msgpack
import pytest

from learners.labels import LabelParser
from stream.engine.codecs import REASONS, InvalidMessage, OutputCodec, decode_any, parse_event, parse_label

MAX = 4096


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_msgpack_and_json_are_detected_per_message():
    event = {"id": "e1", "x": {"a": 1, "b": 2.5, "c": "red", "d": True}, "ts": 10.0}
    assert parse_event(pack(event), MAX) == parse_event(json.dumps(event).encode(), MAX)
    assert parse_event(b'  {"id":"e2","x":{}}', MAX).ts is None


BINARY = LabelParser("binary")
SPAM = LabelParser("binary", positive_label="spam", negative_label="ham")
MULTICLASS = LabelParser("multiclass")
REGRESSION = LabelParser("regression")


@pytest.mark.parametrize(
    "y, labels, expected",
    [
        (True, BINARY, True),
        (0, BINARY, False),
        (1.0, BINARY, True),
        ("yes", BINARY, True),
        (" False ", BINARY, False),
        ("1", BINARY, True),
        ("spam", SPAM, True),
        ("ham", SPAM, False),
        (False, SPAM, False),
        ("cat", MULTICLASS, "cat"),
        (3, MULTICLASS, 3),
        ("3", MULTICLASS, "3"),
        (2.5, REGRESSION, 2.5),
        (7, REGRESSION, 7),
        ("2.5", REGRESSION, 2.5),
    ],
)
def test_labels_become_the_label_of_the_task(y, labels, expected):
    for raw in (pack({"id": "a", "y": y, "ts": 3}), json.dumps({"id": "a", "y": y, "ts": 3}).encode()):
        label = parse_label(raw, MAX, labels)
        assert (label.y, type(label.y), label.ts) == (expected, type(expected), 3.0)


def test_the_regression_flag_still_works_until_every_caller_passes_a_parser():
    assert parse_label(pack({"id": "a", "y": "cat"}), MAX, False).y == "cat"
    assert parse_label(pack({"id": "a", "y": True}), MAX, False).y is True
    assert parse_label(pack({"id": "a", "y": 2.5}), MAX, True).y == 2.5
    with pytest.raises(InvalidMessage) as info:
        parse_label(pack({"id": "a", "y": "cat"}), MAX, True)
    assert info.value.reason == "bad_label"


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
    "raw, labels, reason",
    [
        (pack({"id": "a"}), BINARY, "missing_y"),
        (pack({"id": "a", "y": None}), MULTICLASS, "bad_y"),
        (pack({"id": "a", "y": [1]}), BINARY, "bad_y"),
        (pack({"id": "a", "y": {"c": 1}}), REGRESSION, "bad_y"),
        (pack({"id": "a", "y": float("inf")}), REGRESSION, "non_finite"),
        (pack({"id": "a", "y": float("nan")}), BINARY, "non_finite"),
        (pack({"id": "a", "y": "maybe"}), BINARY, "bad_label"),
        (pack({"id": "a", "y": 2}), BINARY, "bad_label"),
        (pack({"id": "a", "y": 0.5}), BINARY, "bad_label"),
        (pack({"id": "a", "y": "yes"}), SPAM, "bad_label"),  # configured names replace the spellings
        (pack({"id": "a", "y": "Spam"}), SPAM, "bad_label"),  # a typo is not a negative
        (pack({"id": "a", "y": "cat"}), REGRESSION, "bad_label"),
        (pack({"id": "a", "y": "inf"}), REGRESSION, "bad_label"),
        (pack({"id": "a", "y": True}), REGRESSION, "bad_label"),
    ],
)
def test_invalid_labels(raw, labels, reason):
    with pytest.raises(InvalidMessage) as info:
        parse_label(raw, MAX, labels)
    assert info.value.reason == reason
    assert reason in REASONS
    assert info.value.detail and "\n" not in info.value.detail


def test_output_codecs():
    message = {"id": "a", "y_pred": True, "proba": {False: 0.25, True: 0.75}, "model": "m", "version": 3, "ts": 1.5}
    assert msgpack.unpackb(OutputCodec("msgpack").encode(message), strict_map_key=False) == message
    decoded = json.loads(OutputCodec("json").encode(message))
    assert decoded["proba"] == {"False": 0.25, "True": 0.75}
    assert decode_any(OutputCodec("msgpack").encode(message))["version"] == 3
    assert decode_any(b"\xff\xfe plain") == "\ufffd\ufffd plain"
