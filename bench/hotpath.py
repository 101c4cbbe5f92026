"""``python -m bench.hotpath``: riverbed's processing loop with Kafka replaced by memory.

``make bench`` measures riverbed end to end against a real broker on the same two cores, so
its rates move by ±20 % with whatever else the machine is doing. This measures only the part
riverbed's own code decides: the real :class:`~stream.engine.loop.ProcessingLoop` with the
real decoder, event-time merge, record handlers, models, metrics, drift monitors, Prometheus
telemetry, RocksDB state store and checkpoints (every ``--checkpoint-every`` records,
synchronously), fed the ``make bench`` workload (SEA, one label per event, label delay 100,
msgpack) from memory in fetch-sized chunks, writing its output into aiokafka's own record
batch builder (the same C code a real producer runs) that is then thrown away. No broker, no
sockets, no other process.

It prints the bare River loop's time per event and label (the limit P of ``make bench``), the
loop's, and their difference: riverbed's overhead in µs per event and label, the figure the
performance issue's target (≤ 20 µs) is about. ``--repeat`` runs it several times in one
process (fresh state each time) and reports the median; ``--profile FILE`` writes a cProfile
of one run. Being one process doing fixed work, it also suits ``valgrind --tool=callgrind``
(instruction counts, repeatable whatever the machine is doing).

>>> # python -m bench.hotpath --models logreg,hoeffding_adaptive --events 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from bench.workload import Workload, bare_river_rate
from stream.config import load_config
from stream.devtools.replay import encoder
from stream.engine.checkpointer import restore_state
from stream.engine.processor import Processor
from stream.engine.runtime import tune_gc
from stream.engine.telemetry import Telemetry
from state.store import StateStore

#: What the loop reads of a fetched record (aiokafka's ConsumerRecord has these and more).
MemoryRecord = namedtuple("MemoryRecord", "topic partition offset timestamp key value")

EVENTS, LABELS, PREDICTIONS, DEADLETTER = "events", "labels", "predictions", "deadletter"


class MemoryKafka:
    """The loop's view of Kafka (:class:`~stream.engine.kafka_io.KafkaIO`), served from lists.

    ``fetch`` hands out up to ``chunk`` records per partition (a fetch response's worth) and
    never waits; a partition is caught up once every record of it was handed out.
    """

    def __init__(self, records: dict[TopicPartition, list], chunk: int):
        self.records = records
        self.inputs = list(records)
        self.chunk = chunk
        self.position = dict.fromkeys(self.inputs, 0)
        self.paused: set = set()
        self.producer = MemoryProducer()

    async def assign(self, partitions, offsets) -> None:
        pass  # a fresh state dir: every partition from offset 0

    async def fetch(self, timeout_ms: int, max_records: int) -> dict:
        if all(self.position[tp] >= len(self.records[tp]) for tp in self.inputs):
            await asyncio.sleep(timeout_ms / 1000)  # nothing left: wait as a consumer would
            return {}
        out = {}
        for tp in self.inputs:
            at = self.position[tp]
            if (tp.topic, tp.partition) in self.paused or at >= len(self.records[tp]):
                continue
            out[tp] = self.records[tp][at:at + min(self.chunk, max_records)]
            self.position[tp] = at + len(out[tp])
        return out

    async def caught_up(self, tp: TopicPartition) -> bool:
        return self.position[tp] >= len(self.records[tp])

    def pause(self, keys) -> None:
        self.paused.update(keys)

    def resume(self, keys) -> None:
        self.paused.difference_update(keys)

    def lag(self, offsets) -> dict:
        return {}

    async def commit(self, offsets) -> None:
        pass


class MemoryProducer:
    """What :class:`~stream.engine.output.BatchedOutput` needs of a producer: aiokafka's real
    batch builder; a sent batch is built (serialized, as a producer would) and dropped."""

    def __init__(self) -> None:
        self.records = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int):
        self.records += batch.record_count()
        batch._build()
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def workload_records(n: int) -> dict[TopicPartition, list]:
    """The ``make bench`` workload as fetched records, one partition per topic."""
    encode = encoder("msgpack")
    records: dict[TopicPartition, list] = {TopicPartition(EVENTS, 0): [], TopicPartition(LABELS, 0): []}
    for record in Workload("sea", n).records():
        topic = EVENTS if record.kind == "event" else LABELS
        tp_records = records[TopicPartition(topic, 0)]
        tp_records.append(MemoryRecord(topic, 0, len(tp_records), int(record.ts * 1000), record.id.encode(),
                                       encode(record.value)))
    return records


def run_once(preset: str, records: dict, state_dir: Path, *, lean: bool, chunk: int, checkpoint_every: int) -> dict:
    """One pass of the loop over ``records`` with a fresh state dir; seconds and counts."""
    sections: dict = {
        "topics": {"events": EVENTS, "labels": LABELS, "predictions": PREDICTIONS, "deadletter": DEADLETTER},
        "state": {"dir": str(state_dir)}, "model": {"preset": preset, "task": "binary"},
        "metrics": {"enabled": False}, "http": {"enabled": False},
        # The last labels (after the last event) wait max_wait_ms of input waiting (merge rule 6).
        "processor": {"max_wait_ms": 1},
    }
    if lean:
        sections["model"]["metrics"] = ["accuracy"]
        sections["drift"] = {"detector": "none", "input_detector": "none"}
    sections["state"]["checkpoint_interval_s"] = 1e9  # checkpoints come by record count (see _run)
    cfg = load_config(None, env={}).replace(**sections)
    total = sum(len(r) for r in records.values())
    return asyncio.run(_run(cfg, records, total, chunk, checkpoint_every))


async def _run(cfg, records: dict, total: int, chunk: int, checkpoint_every: int) -> dict:
    """The processor's own wiring (:meth:`Processor._consume`: output, handlers, merge, checkpointer,
    loop) over :class:`MemoryKafka`, after the state restore :meth:`Processor.run` does first."""
    processor = Processor(cfg, registry=CollectorRegistry(), serve_metrics=False, serve_http=False)
    processor.store = store = StateStore(cfg.state.dir, keep=cfg.state.keep)
    kafka = MemoryKafka({tp: list(rs) for tp, rs in records.items()}, chunk)
    partitions = {topic: [0] for topic in processor.topic_names()}
    try:
        restored = restore_state(store, cfg, processor.sampler)
        processor.state = state = restored.state
        tune_gc()
        telemetry = Telemetry(processor.metrics, state)

        async def watch() -> None:  # checkpoints by record count (deterministic), stop at the end
            next_checkpoint = checkpoint_every
            while processor.loop is None or processor.loop.processed < total:
                if processor.loop is not None and processor.loop.processed >= next_checkpoint:
                    next_checkpoint += checkpoint_every
                    await processor.checkpoint()
                await asyncio.sleep(0)
            processor.stop()

        started, cpu = time.perf_counter(), time.process_time()
        watcher = asyncio.ensure_future(watch())
        await processor._consume(kafka, partitions, telemetry, restored.checkpoint, restored.changed)  # type: ignore[arg-type]
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        await watcher
        counts = dict(state.counts)
        accuracy = state.models.serving_model.evaluation.values()["accuracy"]
        assert processor.checkpointer is not None, "_consume built it"
        checkpoints = processor.checkpointer.written
    finally:
        store.close()
    assert counts["predictions"] == counts["joined"] == total // 2, counts
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "events": counts["events"], "joined": counts["joined"],
            "published": kafka.producer.records, "checkpoints": checkpoints, "accuracy": accuracy}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="logreg,hoeffding_adaptive", help="comma-separated presets")
    p.add_argument("--events", type=int, default=20_000, help="events (each with one label) per run (default 20000)")
    p.add_argument("--repeat", type=int, default=3, help="runs per model; the median is reported (default 3)")
    p.add_argument("--lean", action="store_true", help="the lean config of make bench (accuracy only, no drift)")
    p.add_argument("--chunk", type=int, default=500, help="records per partition per fetch (default 500)")
    p.add_argument("--checkpoint-every", type=int, default=20_000,
                   help="records between checkpoints (default 20000, about what 5 s hold at make bench's rates)")
    p.add_argument("--profile", type=Path, default=None, metavar="FILE", help="write a cProfile of the last run")
    p.add_argument("--no-bare", action="store_true",
                   help="skip the bare River loop (e.g. under callgrind, to count the riverbed loop's instructions)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    logging.getLogger("stream.engine.processor").setLevel(logging.ERROR)  # drift alerts would drown the figures
    records = workload_records(args.events)
    results = {}
    for preset in args.models.split(","):
        bare = [0.0] if args.no_bare else [
            bare_river_rate(Workload("sea", args.events), preset)["seconds"] for _ in range(args.repeat)]
        loop, cpu = [], []
        for i in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="riverbed-hotpath-") as tmp:
                kwargs = dict(lean=args.lean, chunk=args.chunk, checkpoint_every=args.checkpoint_every)
                if args.profile is not None and i == args.repeat - 1:
                    import cProfile

                    profiler = cProfile.Profile()
                    result = profiler.runcall(run_once, preset, records, Path(tmp), **kwargs)
                    profiler.dump_stats(args.profile)
                else:
                    result = run_once(preset, records, Path(tmp), **kwargs)
            loop.append(result["seconds"])
            cpu.append(result["cpu_seconds"])
        n = args.events
        p_us, loop_us = statistics.median(bare) / n * 1e6, statistics.median(loop) / n * 1e6
        results[preset] = {"events": n, "bare_us": p_us, "loop_us": loop_us, "overhead_us": loop_us - p_us,
                           "loop_cpu_us": statistics.median(cpu) / n * 1e6, "runs": args.repeat,
                           "loop_seconds": loop, "bare_seconds": bare}
        print(f"{preset:20s} bare River loop {p_us:6.1f} us  riverbed loop {loop_us:6.1f} us  "
              f"overhead {loop_us - p_us:6.1f} us per event and label (median of {args.repeat}; "
              f"loop runs {', '.join(f'{s:.2f}' for s in loop)} s)", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
