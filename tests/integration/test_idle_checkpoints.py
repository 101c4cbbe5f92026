"""An idle processor writes no checkpoints; new input is checkpointed once, exactly (real broker).

``stream/engine/checkpointer.py``: a checkpoint is made every ``[state] checkpoint_interval_s``
*when something changed*. A processor that idles for ten intervals must not write ten copies of
the same state (each one a synced RocksDB batch and a file); the first records after the idle
spell must be in the next checkpoint.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import msgpack
import pytest
from kafka import KafkaProducer

from state import StateStore
from stream.devtools.replay import produce, schedule
from stream.engine.processor import Processor
from tests.support import create_all

pytestmark = pytest.mark.broker

INTERVAL_S = 0.2
START_TS = 1_700_000_000.0


def rows(n: int) -> list[tuple[dict, bool]]:
    return [({"f": float(i % 7), "g": float(i % 3)}, i % 2 == 0) for i in range(n)]


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def stored_checkpoints(state_dir: str) -> tuple[int, dict]:
    """The newest checkpoint's seq (one per commit) and metadata, as another reader sees them."""
    with StateStore(state_dir, read_only=True) as store:
        newest = store.load()
        return newest.seq, newest.meta


def pending_ids(state_dir: str, ids: list[str]) -> list[str]:
    with StateStore(state_dir, read_only=True) as store:
        return [event_id for event_id in ids if store.pending.get(event_id) is not None]


def publish_new_events(cfg, ids: list[str], first_ts: float) -> None:
    """Unlabelled events in one producer batch (so they are fetched together)."""
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all", linger_ms=200)
    try:
        for k, event_id in enumerate(ids):
            value = {"id": event_id, "x": {"f": float(k), "g": 1.0}, "ts": first_ts + k}
            producer.send(cfg.topics.events, key=event_id.encode(), value=msgpack.packb(value))
        producer.flush()
    finally:
        producer.close()


def test_an_idle_processor_writes_no_checkpoints_and_new_input_is_checkpointed(service_config):
    cfg = service_config.replace(state={"checkpoint_interval_s": INTERVAL_S})
    state_dir = cfg.state.dir
    create_all(cfg)
    produce(cfg.kafka.bootstrap_servers, cfg.topics, schedule(rows(100), start_ts=START_TS), progress=False)
    new_ids = [f"late-{k}" for k in range(10)]

    async def scenario():
        processor = Processor(cfg, serve_metrics=False, serve_http=False)
        running = asyncio.ensure_future(processor.run())

        def covers(events: int) -> bool:
            last = processor.last_checkpoint
            return last is not None and last.meta["counts"]["events"] == events and processor.state.applied == 0

        try:
            await until(lambda: covers(100), "the first 100 events to be checkpointed")
            written, (seq, meta) = processor.checkpointer.written, stored_checkpoints(state_dir)
            await asyncio.sleep(10 * INTERVAL_S)
            assert processor.checkpointer.written == written  # idle: not one checkpoint in ten intervals
            assert stored_checkpoints(state_dir)[0] == seq

            await asyncio.to_thread(publish_new_events, cfg, new_ids, START_TS + 1000)
            await until(lambda: covers(110), "the new events to be checkpointed")
            await asyncio.sleep(10 * INTERVAL_S)  # idle again
            assert processor.checkpointer.written == written + 1  # the new records, once
            new_seq, new_meta = stored_checkpoints(state_dir)
            assert new_seq == seq + 1
            return seq + 1, meta, new_meta
        finally:
            processor.stop()
            await running

    last_seq, before, after = asyncio.run(scenario())
    assert stored_checkpoints(state_dir)[0] == last_seq  # stopping an idle processor writes none either
    assert before["counts"]["events"] == before["counts"]["joined"] == 100 and before["pending"] == 0
    events, labels = f"{cfg.topics.events}:0", f"{cfg.topics.labels}:0"
    offsets = {f"{t}:{p}": o for t, p, o in after["offsets"]}
    assert offsets == {events: 110, labels: 100}  # exactly the new records, nothing else
    assert after["counts"] == {**before["counts"], "events": 110, "predictions": 110}
    assert after["pending"] == 10
    assert pending_ids(state_dir, new_ids) == new_ids  # the new events' features are durable


def test_enough_changes_trigger_a_checkpoint_before_the_interval(service_config, tmp_path):
    """``[state] checkpoint_max_changes``: with an interval far beyond the run, a checkpoint is
    still written once that many pending/learned changes wait (and none is landing); without it,
    only the final one. Both end in the same counts (every event and label once)."""
    base = service_config.replace(state={"checkpoint_interval_s": 3600.0})
    create_all(base)
    n = 1500
    produce(base.kafka.bootstrap_servers, base.topics, schedule(rows(n), start_ts=START_TS), progress=False)

    def run(max_changes: int) -> tuple[int, dict]:
        cfg = base.replace(state={"dir": str(tmp_path / f"state-{max_changes}"), "checkpoint_max_changes": max_changes})

        async def scenario() -> int:
            processor = Processor(cfg, serve_metrics=False, serve_http=False, exit_when_idle=1.0)
            await processor.run()  # exits (with a final checkpoint) once caught up and idle
            return processor.checkpointer.written

        written = asyncio.run(scenario())
        seq, meta = stored_checkpoints(cfg.state.dir)
        assert seq == written
        return written, meta

    written_off, meta_off = run(0)
    written_on, meta_on = run(100)
    assert written_off == 1  # the interval never came: only the final checkpoint
    assert written_on >= 2  # at least one more, triggered by the changes
    for meta in (meta_off, meta_on):
        assert meta["counts"]["events"] == meta["counts"]["joined"] == n and meta["pending"] == 0
    assert meta_on["counts"] == meta_off["counts"]
