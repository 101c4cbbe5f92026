"""The HTTP API without a broker: the real server on loopback, an in-memory service behind it.

:class:`StaticService` implements :class:`stream.ops.http_api.LiveService` in pure Python over a
real River model set and the processor's own :class:`~stream.engine.decoding.FeaturePipeline`;
the live processor behind the same interface is tested in ``test_operations.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from learners import ModelSet, build_model
from stream.errors import RiverbedError
from stream.ops.http_api import MAX_EVENTS_PER_REQUEST, HttpApi, LiveService, missing_members
from tests.support import StaticService


def logreg() -> ModelSet:
    return ModelSet.single("logreg", build_model("logreg", "binary"), "binary", ["accuracy"])


def trained_logreg() -> ModelSet:
    """A logistic regression that learned 20 examples of one feature ``f`` (it scales ``f`` as a float now)."""
    models = logreg()
    model = models.serving_model
    for i in range(20):
        x = {"f": float(i)}
        y_pred, proba = model.predict(x)
        model.learn(x, i % 2 == 0, y_pred, proba)
    return models


async def request(port: int, raw: bytes) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def call(service, *raws: bytes, ready_lag: int = 5) -> list[tuple[int, dict]]:
    async def main():
        api = HttpApi(service, "127.0.0.1", 0, ready_lag=ready_lag)
        port = await api.start()
        try:
            return [await request(port, raw) for raw in raws]
        finally:
            await api.stop()

    return asyncio.run(main())


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def post(path: str, body: bytes, content_length: str | None = None) -> bytes:
    length = str(len(body)) if content_length is None else content_length
    return f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode() + body


def test_the_static_service_implements_the_interface_and_an_incomplete_one_is_refused():
    assert isinstance(StaticService(), LiveService) and missing_members(StaticService()) == []

    class Partial:
        counts = {}
        models = None

    with pytest.raises(TypeError, match="Partial does not implement LiveService: no broker_reachable, checkpoint_meta, features"):
        HttpApi(Partial(), "127.0.0.1", 0)


def test_not_ready_while_starting_and_status_is_503():
    (ready, status, predict, health) = call(StaticService(), get("/readyz"), get("/status"), post("/predict", b'{"x": {}}'),
                                            get("/healthz"))
    assert ready[0] == 503 and "starting" in ready[1]["reason"]
    assert status[0] == 503 and predict[0] == 503
    assert health[0] == 200


def test_not_ready_when_the_broker_is_unreachable_lag_is_high_or_nothing_is_consumed_yet():
    both = {"events:0": 2, "labels:0": 2}
    (down,) = call(StaticService(logreg(), both, broker_problem="KafkaConnectionError: 127.0.0.1:1"), get("/readyz"))
    assert down == (503, {"ready": False, "reason": "broker unreachable: KafkaConnectionError: 127.0.0.1:1"})
    (lagging,) = call(StaticService(logreg(), {"events:0": 6, "labels:0": 6}), get("/readyz"), ready_lag=5)
    assert lagging[0] == 503 and lagging[1]["lag"] == {"events:0": 6, "labels:0": 6}
    (unknown,) = call(StaticService(logreg(), {"events:0": None, "labels:0": 0}), get("/readyz"))
    assert unknown[0] == 503 and "high watermark" in unknown[1]["reason"]
    (not_consuming,) = call(StaticService(logreg(), {}), get("/readyz"))
    assert not_consuming[0] == 503 and "starting" in not_consuming[1]["reason"]
    (ready,) = call(StaticService(logreg(), both), get("/readyz"), ready_lag=5)
    assert ready == (200, {"ready": True, "lag": both})


def test_status_and_history_come_from_the_interface():
    service = StaticService(logreg(), {"events:0": 0, "labels:0": 1})
    (status, history) = call(service, get("/status"), get("/history"))
    assert status[0] == 200 and status[1]["live"] is True and status[1]["lag"] == {"events:0": 0, "labels:0": 1}
    assert status[1]["serving"] == "logreg" and status[1]["offsets"] == {"events:0": 10, "labels:0": 10}
    assert status[1]["checkpoint"] is None and "fingerprint" in status[1]["models"]["logreg"]
    assert status[1]["refused"] == [{"seq": 3, "reason": "checksum mismatch"}]
    assert history[0] == 200 and history[1]["serving"] == "logreg" and history[1]["points"] == []
    assert status[1]["role"] == "all" and "snapshots" not in status[1]  # one process publishes no snapshots


class PublishingService(StaticService):
    """A :class:`StaticService` that publishes model snapshots, as the scale-out trainer does."""

    def snapshot_status(self) -> dict:
        return {"topic": "models", "published_version": 1200, "published": 3, "age_s": 2.5}


def test_status_shows_the_trainer_role_and_its_published_snapshots():
    ((code, status),) = call(PublishingService(logreg()), get("/status"))
    assert code == 200 and status["role"] == "trainer"
    assert status["snapshots"] == {"topic": "models", "published_version": 1200, "published": 3, "age_s": 2.5}


def test_the_trainer_reports_its_snapshots_and_one_process_is_no_publisher(tmp_path):
    from stream.config import load_config
    from stream.engine.processor import Processor
    from stream.engine.stream_state import StreamState
    from stream.ops.http_api import SnapshotPublishing
    from stream.scale.publisher import SnapshotPublisher
    from stream.scale.trainer import Trainer

    cfg = load_config(None, env={}).replace(state={"dir": str(tmp_path)}, scale={"models_topic": "m1"})
    assert not isinstance(Processor(cfg, serve_metrics=False), SnapshotPublishing)
    trainer = Trainer(cfg, serve_metrics=False)
    assert isinstance(trainer, SnapshotPublishing)
    assert trainer.snapshot_status() == {"topic": "m1", "published_version": None, "published": 0, "age_s": None}

    class Sink:
        def __init__(self):
            self.records = []

        def add(self, topic, key, value, headers=()):
            self.records.append(topic)

    clock = iter([10.0, 13.5])  # the publish, then the status
    state = StreamState(models=logreg())
    state.counts["joined"] = 42
    trainer.publisher = SnapshotPublisher(state, Sink(), topic="m1", name="logreg", every_labels=100, interval_s=60,
                                          chunk_bytes=1 << 20, clock=lambda: next(clock))
    trainer.publisher.publish()
    assert trainer.snapshot_status() == {"topic": "m1", "published_version": 42, "published": 1, "age_s": 3.5}


def test_predictions_are_the_kafka_prediction_message_with_string_proba_keys():
    (one, many, with_id) = call(StaticService(logreg()), post("/predict", b'{"x": {"a": 1.0}}'),
                                post("/predict", b'[]'), post("/predict", b'{"x": {"a": true, "b": "s"}, "id": 3, "ts": 7}'))
    assert one == (200, {"y_pred": False, "proba": {"false": 0.5, "true": 0.5}, "model": "logreg", "version": 0,
                         "ts": None})
    assert many == (200, [])
    assert with_id[0] == 200 and with_id[1]["id"] == 3 and with_id[1]["ts"] == 7.0


def test_class_labels_that_are_not_bools_are_spelled_with_str():
    models = ModelSet.single("nb", build_model("naive_bayes", "multiclass"), "multiclass", ["accuracy"])
    model = models.serving_model
    for i in range(12):
        x = {"f": float(i % 3)}
        y_pred, proba = model.predict(x)
        model.learn(x, i % 3 + 1, y_pred, proba)  # integer classes 1, 2, 3
    ((status, body),) = call(StaticService(models), post("/predict", b'{"x": {"f": 1.0}, "id": "q"}'))
    expected_pred, expected_proba = model.predict({"f": 1.0})
    assert status == 200 and body["proba"] == {str(label): p for label, p in expected_proba.items()}
    assert set(body["proba"]) == {"1", "2", "3"} and body["y_pred"] == expected_pred and type(body["y_pred"]) is int


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (DEEP, 400, "undecodable"),
        (b'{"x": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, 400, "undecodable"),
        (b'{"x": {"f": [' + b"[" * 500 + b"]" * 500 + b"]}}", 400, "bad_feature_value"),
        (b'{"x": {"f": 1e400}}', 400, "non_finite"),
        (b'{"x": {"f": -1e400}}', 400, "non_finite"),
        (b'{"x": {"f": ' + b"1" + b"0" * 10_000 + b"}}", 400, "undecodable"),
        (b'{"x": {"f": NaN}}', 400, "non_finite"),
        (b'{"x": {"f": Infinity}}', 400, "non_finite"),
        (b'{"x": {"f": -Infinity}}', 400, "non_finite"),
        (b'{"x": {"f": "\xff\xfe"}}', 400, "undecodable"),
        (b"\xef\xbb\xbf" + b'{"x": {}}', 400, "undecodable"),  # a UTF-8 byte order mark
        (b'{"x": {"f": 1}', 400, "undecodable"),  # truncated
        (b'{"x": [1, 2]}', 400, "bad_x"),
        (b'{"x": "abc"}', 400, "bad_x"),
        (b'{"x": null}', 400, "bad_x"),
        (b'{"x": {"f": {"g": 1}}}', 400, "bad_feature_value"),
        (b'{"x": {"f": null}}', 400, "bad_feature_value"),
        (b'{"id": "a"}', 400, "missing_x"),
        (b'{"x": {}, "id": true}', 400, "bad_id"),
        (b'{"x": {}, "id": ""}', 400, "bad_id"),
        (b'{"x": {}, "id": 18446744073709551616}', 400, "bad_id"),
        (b'{"x": {}, "id": [1]}', 400, "bad_id"),
        (b'{"x": {}, "ts": -1}', 400, "bad_ts"),
        (b'{"x": {}, "ts": "now"}', 400, "bad_ts"),
        (b'{"x": {}, "ts": 1' + b"0" * 400 + b"}", 400, "bad_ts"),  # found by the fuzz: was a 500
        (b'{"x": {}, "ts": NaN}', 400, "non_finite"),
        (b'"just a string"', 400, "not_an_object"),
        (b"null", 400, "not_an_object"),
        (b"", 400, "empty"),
    ],
)
def test_hostile_bodies_are_400_with_the_event_contract_reason(body, status, reason):
    ((got, document),) = call(StaticService(logreg()), post("/predict", body))
    assert (got, document["status"], document["reason"]) == (status, status, reason), document
    assert document["error"] and len(document["error"]) < 400


def test_duplicate_keys_the_last_one_wins_as_on_kafka():
    huge = b"1" + b"0" * 400  # the model cannot score it (see the 422 test below): proof the first x is ignored
    raw = b'{"x": {"f": ' + huge + b'}, "x": {"f": 1.0}}'
    ((status, body),) = call(StaticService(trained_logreg()), post("/predict", raw))
    assert status == 200 and body["y_pred"] in (True, False)


def test_a_batch_of_1000_with_one_bad_event_names_its_index():
    events = [{"x": {"f": float(i)}, "id": f"e{i}"} for i in range(MAX_EVENTS_PER_REQUEST)]
    bad = [*events[:537], {"x": {"f": "PLACEHOLDER"}}, *events[538:]]
    body = json.dumps(bad).replace('"PLACEHOLDER"', "1e400").encode()  # valid JSON, an infinite feature
    ((refused, document), (ok, results)) = call(StaticService(trained_logreg()), post("/predict", body),
                                                post("/predict", json.dumps(events).encode()))
    assert refused == 400 and document["index"] == 537 and document["error"].startswith("event 537: ")
    assert document["reason"] == "non_finite"
    assert ok == 200 and [r["id"] for r in results] == [e["id"] for e in events]


def test_an_event_the_model_cannot_score_is_422_not_500():
    service = StaticService(trained_logreg())
    huge = b"1" + b"0" * 400  # an integer: valid JSON and a valid feature, but no float holds it
    (single, batch) = call(service, post("/predict", b'{"x": {"f": ' + huge + b"}}"),
                           post("/predict", b'[{"x": {"f": 1}}, {"x": {"f": -' + huge + b"}}]"))
    assert single[0] == 422 and single[1]["reason"] == "predict_failed" and "OverflowError" in single[1]["error"]
    assert batch[0] == 422 and batch[1]["index"] == 1 and batch[1]["error"].startswith("event 1: model 'logreg'")


def test_the_transform_applies_and_its_failures_are_400():
    service = StaticService(logreg(), transform="tests.custom_transform:blob_features")
    (ok, boom, listed, not_base64) = call(
        service, post("/predict", b'{"x": {"blob": "AAEC"}}'), post("/predict", b'{"x": {"blob": "Ym9vbQ=="}}'),
        post("/predict", b'{"x": {"blob": "bGlzdA=="}}'), post("/predict", b'{"x": {"blob": "%%"}}'))
    assert ok[0] == 200
    assert boom[0] == 400 and boom[1]["reason"] == "transform_failed" and "second line" not in boom[1]["error"]
    assert listed[0] == 400 and listed[1]["reason"] == "bad_transform_output"
    assert not_base64[0] == 400 and not_base64[1]["reason"] == "transform_failed"


@pytest.mark.parametrize("length", ["+5", "5_0", "\u0663", "9" * 5000, "1 2"])
def test_odd_content_lengths_are_400(length):
    ((status, body),) = call(StaticService(logreg()), post("/predict", b'{"x": {}}', content_length=length))
    assert status == 400 and "Content-Length" in body["error"]


def test_other_content_types_are_415():
    raw = b"POST /predict HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n" + b'{"x": {}}'
    ((status, body),) = call(StaticService(logreg()), raw)
    assert status == 415


def test_a_bug_is_500_and_logged_once_with_its_traceback(caplog):
    class BrokenService(StaticService):
        def checkpoint_meta(self, fingerprints: bool = False) -> dict:
            raise RuntimeError("a bug in riverbed")

    with caplog.at_level(logging.ERROR, logger="stream.ops.http_api"):
        (status, health) = call(BrokenService(logreg()), get("/status"), get("/healthz"))
    assert status == (500, {"error": "internal error; see the riverbed log", "status": 500})
    assert health[0] == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info[0] is RuntimeError and "GET /status" in errors[0].getMessage()


def test_a_busy_port_is_a_one_line_user_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main():
            await HttpApi(StaticService(), "127.0.0.1", port).start()

        with pytest.raises(RiverbedError, match=r"set \[http\] port \(0 = any free port\)"):
            asyncio.run(main())
