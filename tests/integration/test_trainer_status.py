"""The live trainer's ``GET /status`` on the real broker: its role and the snapshots it published.

A trainer learns a short SEA replay of served records and delayed labels with its HTTP API on;
while it runs (caught up), ``/status`` must say ``"role": "trainer"`` and report the version and
number of the snapshots its publisher handed to the models topic.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from stream.devtools.datasets import open_dataset
from stream.devtools.replay import schedule
from stream.engine.model_config import build_model_set
from stream.scale.served import encode_served
from stream.scale.topics import create_scale_topics
from stream.scale.trainer import Trainer
from tests.support import fresh_config

pytestmark = pytest.mark.broker

N = 600


async def get_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    return json.loads(body)


def test_the_live_trainer_status_shows_its_role_and_published_snapshots(test_config, broker_bootstrap, tmp_path):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state",
                       http={"enabled": True, "host": "127.0.0.1", "port": 0},
                       scale={"snapshot_every_labels": 200, "snapshot_interval_s": 60.0})
    create_scale_topics(broker_bootstrap, cfg)
    records = list(schedule(open_dataset("sea", limit=N, seed=5).rows, label_delay=20, id_prefix="st", seed=5))
    serving = build_model_set(cfg)  # a fresh model served every event (version 0)
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=20)
    for r in records:
        if r.kind == "event":
            served = serving.predict(r.value["x"], r.value["ts"])
            value = encode_served(r.id, r.value["x"], r.value["ts"], served.record, served.model, 0)
            producer.send(cfg.scale.served_topic, key=r.id.encode(), value=value)
        else:
            producer.send(cfg.topics.labels, key=r.id.encode(), value=json.dumps(r.value).encode())
    producer.flush()
    producer.close()

    async def scenario():
        trainer = Trainer(cfg, registry=CollectorRegistry(), serve_metrics=False)
        run = asyncio.create_task(trainer.run())
        try:
            deadline = time.monotonic() + 30
            while trainer.http_port is None or trainer.counts["joined"] < N:
                assert not run.done(), run.exception() if run.done() else None
                assert time.monotonic() < deadline, f"learned {trainer.counts['joined']} of {N} labels"
                await asyncio.sleep(0.05)
            status = await get_json(trainer.http_port, "/status")
            publisher = trainer.publisher
            assert publisher is not None
            return status, publisher.last_version, publisher.published
        finally:
            trainer.stop()
            await run

    status, last_version, published = asyncio.run(scenario())
    assert status["role"] == "trainer" and status["live"] is True
    snapshots = status["snapshots"]
    assert snapshots["topic"] == cfg.scale.models_topic
    assert (snapshots["published_version"], snapshots["published"]) == (last_version, published)
    assert published >= 2 and 200 <= last_version <= N  # at start (version 0), then once 200 labels were learned
    assert 0 <= snapshots["age_s"] < 30
