"""The HTTP API's refusals without a broker: a fake processor, the real server on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry

from learners import ModelSet, build_model
from stream.engine.history import MetricsHistory
from stream.ops.http_api import HttpApi
from stream.engine.metrics import ServiceMetrics


class TP:
    def __init__(self, topic, partition):
        self.topic, self.partition = topic, partition


class FakeConsumer:
    def __init__(self, high: int | None, reachable: bool = True):
        self.high, self.reachable = high, reachable

    async def topics(self):
        if not self.reachable:
            raise ConnectionError("no broker on 127.0.0.1:1")
        return {"events", "labels"}

    def highwater(self, tp):
        return self.high


class FakeProcessor:
    def __init__(self, models=None, consumer=None):
        self.models = models
        self.consumer = consumer
        self.counts = {"events": 0, "labels": 0, "predictions": 0}
        self.metrics = ServiceMetrics(CollectorRegistry())
        self.history = MetricsHistory()
        self.offsets = {("events", 0): 10, ("labels", 0): 10}
        self._inputs = [TP("events", 0), TP("labels", 0)]


async def request(port: int, raw: bytes) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def call(processor, *raws: bytes, ready_lag: int = 5) -> list[tuple[int, dict]]:
    async def main():
        api = HttpApi(processor, "127.0.0.1", 0, ready_lag=ready_lag)
        port = await api.start()
        try:
            return [await request(port, raw) for raw in raws]
        finally:
            await api.stop()

    return asyncio.run(main())


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_not_ready_while_starting_and_status_is_503():
    (ready, status, predict, health) = call(FakeProcessor(), get("/readyz"), get("/status"), post("/predict", b'{"x": {}}'),
                                            get("/healthz"))
    assert ready[0] == 503 and "starting" in ready[1]["reason"]
    assert status[0] == 503 and predict[0] == 503
    assert health[0] == 200


def test_not_ready_when_the_broker_is_unreachable_or_lag_is_high():
    models = ModelSet.single("logreg", build_model("logreg", "binary"), "binary", ["accuracy"])
    (down,) = call(FakeProcessor(models, FakeConsumer(10, reachable=False)), get("/readyz"))
    assert down[0] == 503 and "broker unreachable" in down[1]["reason"]
    (lagging,) = call(FakeProcessor(models, FakeConsumer(16)), get("/readyz"), ready_lag=5)
    assert lagging[0] == 503 and lagging[1]["lag"] == {"events:0": 6, "labels:0": 6}
    (unknown,) = call(FakeProcessor(models, FakeConsumer(None)), get("/readyz"))
    assert unknown[0] == 503
    (ready,) = call(FakeProcessor(models, FakeConsumer(12)), get("/readyz"), ready_lag=5)
    assert ready == (200, {"ready": True, "lag": {"events:0": 2, "labels:0": 2}})


def test_predict_before_any_label_and_for_an_untrained_model():
    models = ModelSet.single("logreg", build_model("logreg", "binary"), "binary", ["accuracy"])
    (one, many, bad) = call(FakeProcessor(models, FakeConsumer(10)), post("/predict", b'{"x": {"a": 1.0}}'),
                            post("/predict", b'[]'), post("/predict", b'{"x": {"a": true, "b": "s"}, "id": 3}'))
    assert one == (200, {"y_pred": False, "proba": {"false": 0.5, "true": 0.5}, "model": "logreg", "version": 0})
    assert many == (200, [])
    assert bad[0] == 200 and bad[1]["id"] == 3


def test_a_busy_port_is_a_one_line_user_error():
    import socket

    from stream.errors import RiverbedError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main():
            await HttpApi(FakeProcessor(), "127.0.0.1", port).start()

        with pytest.raises(RiverbedError, match=r"set \[http\] port \(0 = any free port\)"):
            asyncio.run(main())
