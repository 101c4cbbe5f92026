"""Scorer replicas on the real broker: every event predicted by a verified snapshot, hot swap, tampering.

A snapshot of a model set trained offline is published to the models topic in several chunks;
scorers in one group over a 3-partition events topic must predict every event with it (the
prediction and the served record both stamped with its version), commit exactly the offsets they
delivered, swap a newer snapshot in without a pause and refuse a tampered one.
"""

from __future__ import annotations

import asyncio
import pickle
import random
import time
import types
from collections import Counter, defaultdict

import msgpack
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from stream.config import Config
from stream.devtools.datasets import open_dataset
from stream.engine import model_bytes
from stream.engine.model_bytes import load_model_state, seal_model_state
from stream.engine.model_config import build_model_set
from stream.engine.output import partition_for
from stream.scale.scorer import Scorer
from stream.scale.scorer_progress import TransactionalProgress, scorer_transactional_id
from stream.scale.served import decode_served
from stream.scale.snapshots import Chunk, make_chunks
from stream.scale.topics import create_scale_topics
from tests.support import fresh_config

pytestmark = pytest.mark.broker

CHUNK_BYTES = 2048
SWAP_GAP_BOUND_S = 1.0
"""Serving may pause at most this long across a swap (measured ~0.01-0.05 s; generous for a shared 2-core box)."""


@pytest.fixture(autouse=True)
def no_model_key(monkeypatch):
    monkeypatch.delenv("RIVERBED_MODEL_KEY", raising=False)


def scale_config(test_config: Config, bootstrap: str, tmp_path) -> Config:
    return fresh_config(test_config, bootstrap, tmp_path / "state", kafka={"partitions": 3},
                        scale={"snapshot_chunk_bytes": CHUNK_BYTES}, processor={"poll_timeout_ms": 50})


def trained_blob(cfg: Config, n: int, seed: int) -> bytes:
    """The sealed model bytes of the configured model set trained offline on ``n`` SEA rows."""
    models = build_model_set(cfg)
    for x, y in open_dataset("sea", limit=n, seed=seed).rows:
        models.learn(x, y, models.predict(x).record)
    return seal_model_state(models, None)


def snapshot_chunks(cfg: Config, blob: bytes, version: int) -> list[Chunk]:
    chunks = make_chunks(blob, name=cfg.model_name, version=version, chunk_bytes=CHUNK_BYTES)
    assert len(chunks) >= 3, "the snapshot must span several chunks"
    return chunks


def publish_chunks(bootstrap: str, topic: str, chunks: list[Chunk]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for c in chunks:
        producer.send(topic, key=c.key, value=c.value, headers=c.headers)
    producer.flush()
    producer.close()


def events(n: int, seed: int) -> list[dict]:
    return [{"id": f"e{i}", "x": x, "ts": float(i)} for i, (x, _) in enumerate(open_dataset("sea", limit=n, seed=seed).rows)]


def read_all(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted") -> list:
    """Every record of ``topic`` up to its current end offsets (no idle wait)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             isolation_level=isolation_level)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


async def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` on the running loop until it holds; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
def unpickles(monkeypatch):
    """Every unpickle of model bytes (model_bytes is the only place a snapshot is unpickled)."""
    calls: list[int] = []

    def loads(data, *a, **k):
        calls.append(len(data))
        return pickle.loads(data, *a, **k)

    monkeypatch.setattr(model_bytes, "pickle", types.SimpleNamespace(loads=loads, dumps=pickle.dumps))
    return calls


def test_two_scorers_predict_every_event_with_the_snapshot(test_config, broker_bootstrap, tmp_path):
    cfg = scale_config(test_config, broker_bootstrap, tmp_path)
    create_scale_topics(broker_bootstrap, cfg)
    blob = trained_blob(cfg, 500, seed=3)
    publish_chunks(broker_bootstrap, cfg.scale.models_topic, snapshot_chunks(cfg, blob, 500))
    offline = load_model_state(blob)["models"]
    sent = events(2000, seed=11)
    expected = {e["id"]: offline.predict(e["x"]).y_pred for e in sent}
    assert 0 < sum(expected.values()) < len(expected)  # both classes: a wrong model would show
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=20)
    # explicit partitions, not the key's: a served record must follow its event's partition number
    sent_to = {e["id"]: i % 3 for i, e in enumerate(sent)}
    assert any(sent_to[e["id"]] != partition_for(e["id"].encode(), 3) for e in sent)
    for e in sent:
        producer.send(cfg.topics.events, key=e["id"].encode(), value=msgpack.packb(e), partition=sent_to[e["id"]])
    producer.flush()
    producer.close()

    async def two():
        scorers = [Scorer(cfg, registry=CollectorRegistry(), exit_when_idle=1.5, serve_metrics=False)
                   for _ in range(2)]
        return scorers, await asyncio.gather(*(s.run() for s in scorers))

    scorers, summaries = asyncio.run(two())
    assert all(s.version == 500 for s in summaries)
    assert sum(s.processed for s in summaries) >= 2000

    predictions = [msgpack.unpackb(r.value) for r in read_all(broker_bootstrap, cfg.topics.predictions)]
    assert {p["id"] for p in predictions} == set(expected)
    assert {(p["model"], p["version"]) for p in predictions} == {(cfg.model_name, 500)}
    assert all(p["y_pred"] == expected[p["id"]] for p in predictions)
    served_records = read_all(broker_bootstrap, cfg.scale.served_topic)
    served = [decode_served(r.value) for r in served_records]
    assert all(r.partition == sent_to[s.id] for r, s in zip(served_records, served))  # one writer per partition
    by_id = {e["id"]: e for e in sent}
    assert {s.id for s in served} == set(expected)
    for s in served:
        assert (s.version, s.model, s.x, s.ts) == (500, cfg.model_name, by_id[s.id]["x"], by_id[s.id]["ts"])
        (champion,) = [r for r in s.record if r[0] == cfg.model_name]
        assert champion[1] == expected[s.id]
    consumer = KafkaConsumer(bootstrap_servers=broker_bootstrap, group_id=cfg.scale.scorer_group_id,
                             enable_auto_commit=False)
    try:  # not subscribed: it only reads the group's committed offsets
        tps = [TopicPartition(cfg.topics.events, p) for p in range(3)]
        assert {tp: consumer.committed(tp) for tp in tps} == consumer.end_offsets(tps)
    finally:
        consumer.close()


def test_hot_swap_without_a_pause_and_a_tampered_snapshot_is_refused(test_config, broker_bootstrap, tmp_path,
                                                                      unpickles):
    cfg = scale_config(test_config, broker_bootstrap, tmp_path)
    create_scale_topics(broker_bootstrap, cfg)
    publish_chunks(broker_bootstrap, cfg.scale.models_topic, snapshot_chunks(cfg, trained_blob(cfg, 500, 3), 500))
    newer = snapshot_chunks(cfg, trained_blob(cfg, 1000, 3), 1000)
    tampered = snapshot_chunks(cfg, trained_blob(cfg, 1500, 3), 1500)
    c = tampered[1]
    flip = random.Random(5).randrange(len(c.value))
    tampered[1] = Chunk(c.key, c.value[:flip] + bytes([c.value[flip] ^ 0x01]) + c.value[flip + 1:], c.headers)
    sent = events(2400, seed=12)
    registry = CollectorRegistry()
    scorer = Scorer(cfg, registry=registry, serve_metrics=False)

    async def scenario():
        run = asyncio.create_task(scorer.run())
        await wait_for(lambda: scorer.follower is not None and scorer.follower.version == 500, "the first snapshot")
        producer = AIOKafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            for i in range(0, len(sent), 20):  # ~1,000 events/s for 2.4 s
                for e in sent[i:i + 20]:
                    await producer.send(cfg.topics.events, key=e["id"].encode(), value=msgpack.packb(e))
                if i == 600:  # 0.6 s into the stream: a newer snapshot
                    for chunk in newer:
                        await producer.send(cfg.scale.models_topic, key=chunk.key, value=chunk.value,
                                            headers=chunk.headers)
                if i == 1400:  # after it landed: a tampered one
                    assert scorer.follower.version == 1000
                    for chunk in tampered:
                        await producer.send(cfg.scale.models_topic, key=chunk.key, value=chunk.value,
                                            headers=chunk.headers)
                await asyncio.sleep(0.02)
            await producer.flush()
        finally:
            await producer.stop()
        await wait_for(lambda: scorer.processed >= len(sent), "every event scored")
        await wait_for(lambda: scorer.follower.rejected, "the tampered snapshot's rejection")
        scorer.stop()
        return await run

    summary = asyncio.run(scenario())
    assert summary.version == 1000 and summary.swaps == 2  # the snapshot it started with, then the newer one
    assert summary.rejected == {"sha256": 1}
    assert registry.get_sample_value("riverbed_snapshots_rejected_total", {"reason": "sha256"}) == 1
    assert registry.get_sample_value("riverbed_snapshot_swaps_total") == 2
    assert registry.get_sample_value("riverbed_scorer_model_version") == 1000
    assert registry.get_sample_value("riverbed_scorer_predictions_total") >= len(sent)
    assert len(unpickles) == 2  # the snapshots of version 500 and 1000; the tampered one never
    swapped_ms = int(scorer.follower.swapped_at * 1000)

    records = read_all(broker_bootstrap, cfg.topics.predictions)
    predictions = [(r.timestamp, r.partition, r.offset, msgpack.unpackb(r.value)) for r in records]
    assert {p["id"] for _, _, _, p in predictions} == {e["id"] for e in sent}
    versions = Counter(p["version"] for _, _, _, p in predictions)
    assert set(versions) == {500, 1000} and min(versions.values()) > 100
    # the swap lands between records: before it version 500, after it 1000 (ms clock: skip the tie)
    assert all(p["version"] == 500 for ts, _, _, p in predictions if ts < swapped_ms)
    assert all(p["version"] == 1000 for ts, _, _, p in predictions if ts > swapped_ms)
    by_partition = defaultdict(list)
    for _, partition, offset, p in sorted(predictions, key=lambda t: (t[1], t[2])):
        by_partition[partition].append(p["version"])
    assert len(by_partition) == 3
    assert all(v == sorted(v) for v in by_partition.values()), "versions never decrease within a partition"
    stamps = sorted(ts for ts, _, _, _ in predictions)
    gaps = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:])]
    across = max(b - a for a, b in zip(stamps, stamps[1:]) if a <= swapped_ms <= b) / 1000
    first_after = min(ts for ts in stamps if ts >= swapped_ms) - swapped_ms
    print(f"longest gap between predictions: {max(gaps):.3f} s overall, {across:.3f} s across the swap; "
          f"first prediction {first_after} ms after it")
    assert across < SWAP_GAP_BOUND_S and max(gaps) < SWAP_GAP_BOUND_S


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_scorer_joining_mid_stream_takes_partitions_over_without_loss(test_config, broker_bootstrap, tmp_path,
                                                                        guarantee):
    """The eager rebalance: the first scorer commits what it delivered (or its last transaction)
    before its partitions go, so the second resumes exactly there."""
    cfg = scale_config(test_config, broker_bootstrap, tmp_path).replace(output={"guarantee": guarantee})
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    create_scale_topics(broker_bootstrap, cfg)
    scorers = [Scorer(cfg, registry=CollectorRegistry(), exit_when_idle=1.5, serve_metrics=False) for _ in range(2)]
    first, second = scorers
    sent = events(20_000, seed=13)

    async def scenario():
        runs = [asyncio.create_task(first.run())]
        producer = AIOKafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            i, deadline, joined_at = 0, time.monotonic() + 20, None
            while i < len(sent):  # ~1,500 events/s until the second scorer has served 500 and 1,500 more
                for e in sent[i:i + 30]:
                    await producer.send(cfg.topics.events, key=e["id"].encode(), value=msgpack.packb(e))
                i += 30
                if len(runs) == 1 and first.processed >= 1000:
                    runs.append(asyncio.create_task(second.run()))
                if joined_at is None and second.processed >= 500:
                    joined_at = i
                if (joined_at is not None and i >= joined_at + 1500) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            await producer.flush()
        finally:
            await producer.stop()
        assert joined_at is not None, "the second scorer never took partitions over"
        return i, await asyncio.gather(*runs)

    n, summaries = asyncio.run(scenario())
    ids = [msgpack.unpackb(r.value)["id"] for r in read_all(broker_bootstrap, cfg.topics.predictions, isolation)]
    served = [decode_served(r.value).id for r in read_all(broker_bootstrap, cfg.scale.served_topic, isolation)]
    print(f"{n} events, processed {[s.processed for s in summaries]}")
    assert all(s.processed > 500 for s in summaries)
    # aiokafka returns no records while a rebalance is under way and the revocation commits every
    # delivered record first: a graceful handover predicts each event once (a crash would replay)
    assert sorted(ids) == sorted(served) == sorted(e["id"] for e in sent[:n])
    assert all(s.checkpoints > 0 for s in summaries)  # offset commits, or committed transactions
    consumer = KafkaConsumer(bootstrap_servers=broker_bootstrap, group_id=cfg.scale.scorer_group_id,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(cfg.topics.events, p) for p in range(3)]
        assert {tp: consumer.committed(tp) for tp in tps} == consumer.end_offsets(tps)
    finally:
        consumer.close()


def test_a_scorer_answers_status_readiness_and_metrics_over_http(test_config, broker_bootstrap, tmp_path):
    import json
    import urllib.error
    import urllib.request

    cfg = scale_config(test_config, broker_bootstrap, tmp_path).replace(http={"enabled": True, "port": 0})
    create_scale_topics(broker_bootstrap, cfg)
    publish_chunks(broker_bootstrap, cfg.scale.models_topic, snapshot_chunks(cfg, trained_blob(cfg, 300, 3), 300))
    producer = KafkaProducer(bootstrap_servers=broker_bootstrap, acks="all")
    for e in events(300, seed=13):
        producer.send(cfg.topics.events, key=e["id"].encode(), value=msgpack.packb(e))
    producer.flush()
    producer.close()
    scorer = Scorer(cfg, registry=CollectorRegistry(), serve_metrics=False)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{scorer.http_port}{path}", timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    async def scenario():
        task = asyncio.create_task(scorer.run())
        deadline = time.monotonic() + 30
        while scorer.counts["predictions"] < 300:
            assert time.monotonic() < deadline and not task.done(), "the scorer did not predict the 300 events"
            await asyncio.sleep(0.05)
        answers = {path: await asyncio.to_thread(get, path)
                   for path in ("/", "/healthz", "/status", "/metrics", "/predict")}
        dom = await asyncio.to_thread(render_page, f"http://127.0.0.1:{scorer.http_port}/", tmp_path)
        while True:  # the lag gauge is refreshed about once a second
            ready = await asyncio.to_thread(get, "/readyz")
            if ready[0] == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        scorer.stop()
        await task
        return answers, ready, dom

    answers, ready, dom = asyncio.run(scenario())
    assert answers["/healthz"][0] == 200
    status = json.loads(answers["/status"][1])
    assert status["role"] == "scorer" and status["version"] == 300 and status["model"] == cfg.model_name
    assert status["counts"]["predictions"] == 300 and status["group"] == cfg.scale.scorer_group_id
    assert sorted(status["partitions"]) == [f"{cfg.topics.events}:{p}" for p in range(3)]
    assert status["rejected"] == {} and status["snapshot_age_s"] >= 0
    assert b"riverbed_scorer_predictions_total 300.0" in answers["/metrics"][1]
    assert answers["/predict"][0] == 404  # a scorer's predictions are the predictions topic
    assert ready[0] == 200 and json.loads(ready[1])["version"] == 300, ready
    assert status["guarantee"] == "at_least_once"
    assert answers["/"][0] == 200 and b"<script src" not in answers["/"][1]  # self-contained page
    if dom is None:
        pytest.skip("Debian's chromium is not installed (`make system-deps` installs it as root)")
    assert 'data-state="rendered"' in dom, dom[:2000]
    assert "serving " + cfg.model_name + " version 300" in dom and "at-least-once output" in dom
    assert "events:0" in dom.replace(cfg.topics.events, "events")  # the partitions owned


def render_page(url: str, tmp_path) -> str | None:
    """The DOM of ``url`` after its scripts ran, in headless Chromium (None when not installed)."""
    import shutil
    import subprocess

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        return None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    done = subprocess.run([binary, *flags, "--virtual-time-budget=3000", "--dump-dom", url],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.decode()


def test_a_fenced_exactly_once_scorer_drops_the_partition_and_a_successor_loses_and_repeats_nothing(
        test_config, broker_bootstrap, tmp_path):
    """A zombie: another producer takes the transactional id of events partition 0 (as the next
    owner does when the group removed a stalled scorer). The fenced scorer publishes nothing more
    for partition 0, keeps scoring 1 and 2 and stops cleanly; a successor resumes partition 0 at
    its last committed transaction: a read_committed consumer sees every prediction once."""
    cfg = scale_config(test_config, broker_bootstrap, tmp_path).replace(output={"guarantee": "exactly_once"})
    create_scale_topics(broker_bootstrap, cfg)
    sent = events(3000, seed=17)
    first = Scorer(cfg, registry=CollectorRegistry(), serve_metrics=False)

    async def send(producer, batch):
        for i, e in batch:
            await producer.send(cfg.topics.events, key=e["id"].encode(), value=msgpack.packb(e), partition=i % 3)
        await producer.flush()

    async def scenario():
        run = asyncio.create_task(first.run())
        producer = AIOKafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        impostor = None
        try:
            indexed = list(enumerate(sent))
            await send(producer, indexed[:1500])
            await wait_for(lambda: first.processed >= 1500 and first.commits >= 3, "the first half scored")
            await asyncio.sleep(0.3)  # its last transactions committed
            impostor = AIOKafkaProducer(
                bootstrap_servers=broker_bootstrap,
                transactional_id=scorer_transactional_id(cfg.scale.scorer_group_id, cfg.topics.events, 0),
            )
            await impostor.start()  # InitProducerId: the scorer's producer of partition 0 is fenced
            await send(producer, indexed[1500:])
            progress = first.progress
            assert isinstance(progress, TransactionalProgress)
            await wait_for(lambda: progress.dropped, "the fenced partition dropped")
            await wait_for(lambda: first.processed >= 3000, "the rest scored")
            await asyncio.sleep(0.5)
            first.stop()
            summary = await run
        finally:
            if impostor is not None:
                await impostor.stop()
            await producer.stop()
        second = Scorer(cfg, registry=CollectorRegistry(), exit_when_idle=1.5, serve_metrics=False)
        return summary, progress.dropped, await second.run()

    summary, dropped, successor = asyncio.run(scenario())
    assert dropped == [TopicPartition(cfg.topics.events, 0)]
    assert summary.processed >= 3000
    ids = [msgpack.unpackb(r.value)["id"] for r in read_all(broker_bootstrap, cfg.topics.predictions, "read_committed")]
    served = [decode_served(r.value).id for r in read_all(broker_bootstrap, cfg.scale.served_topic, "read_committed")]
    late_p0 = {e["id"] for i, e in enumerate(sent) if i >= 1500 and i % 3 == 0}
    assert 0 < successor.processed <= 1000 + 500  # partition 0's second half (plus its last cut, at most)
    assert sorted(ids) == sorted(served) == sorted(e["id"] for e in sent)  # each once: none lost, none repeated
    assert late_p0 <= set(ids)
