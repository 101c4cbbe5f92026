"""One benchmark row in its own process: ``python -m bench.worker SPEC_JSON``.

Every row runs in a fresh interpreter so that its peak RSS is its own and no row warms a cache
for another. ``SPEC_JSON`` names the row (``kind``) and its parameters; the result is written as
JSON to ``spec["out"]``. Progress goes to stderr.

Rows
----
``bare``
    The limit P (:func:`bench.workload.bare_river_rate`).
``riverbed``
    :class:`stream.engine.processor.Processor` on topics already filled with the workload: the clock
    starts when the first fetched records reach the merge and stops when the final checkpoint
    has flushed the producer, i.e. when Kafka has acknowledged the last prediction. Periodic
    checkpoints happen inside that window.
``riverbed_live``
    The same processor on live topics fed by the ``producer`` row; records label freshness
    (wall time of the learn minus the label's create time).
``faust``
    A straightforward faust-streaming pipeline (see :func:`run_faust`).
``naive``
    A newcomer's kafka-python loop (see :func:`run_naive`).
``riverbed_soak``
    The live processor on a long run (``riverbed_live`` without the per-label freshness list),
    sampled every ``sample_s`` seconds by :class:`SoakProbes`: RSS, pending entries, learned
    ids, state-dir size; every garbage collection timed by :class:`GcPauses`.
``producer``
    A rate-limited aiokafka producer of the workload's events and labels, each message stamped
    with its wall-clock create time in ``ts``.

Every Kafka client a row makes takes the ``[kafka]`` security keys of ``spec["kafka"]``
(:func:`_security_config`); the SASL password is never in the spec: it is read from
``$RIVERBED_KAFKA_SASL_PASSWORD`` (or ``sasl_password_file``), which the suite passes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import sys
import struct
import threading
import time
from array import array
from pathlib import Path

import msgpack


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    """This process's resident set size now (``VmRSS`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _say(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def _config(spec: dict):
    from stream.config import load_config

    return load_config(None, env={}).replace(**spec["config"])


def _security_config(spec: dict):
    """A config holding only the spec's ``[kafka]`` security keys (no password: that comes from the environment)."""
    from stream.config import load_config

    return load_config(None, env={}).replace(kafka=spec.get("kafka", {}))


def _kafka_python_security(spec: dict) -> dict:
    """Keyword arguments that log kafka-python clients in as ``spec["kafka"]`` says."""
    from stream.connect.security import kafka_python_security

    return kafka_python_security(_security_config(spec))


def _aiokafka_security(spec: dict) -> dict:
    """Keyword arguments that log aiokafka clients in as ``spec["kafka"]`` says."""
    from stream.connect.security import aiokafka_security

    return aiokafka_security(_security_config(spec))


def _workload(spec: dict):
    from bench.workload import Workload

    return Workload(spec["dataset"], spec["n"])


# -- the limit P -----------------------------------------------------------------------------


def run_bare(spec: dict) -> dict:
    from bench.workload import bare_river_rate

    return bare_river_rate(_workload(spec), spec["preset"])


# -- riverbed ----------------------------------------------------------------------------------


def _measured_processor_class():
    from stream.engine.handlers import RecordHandlers
    from stream.engine.processor import Processor

    class MeasuredHandlers(RecordHandlers):
        """The real handlers, plus clocks: first record in, target reached, label freshness."""

        def __init__(self, *args, run: "MeasuredProcessor", **kwargs):
            super().__init__(*args, **kwargs)
            self.run = run

        def apply(self, items, until=float("inf")):
            run = self.run
            if not run.ready and run.live:
                run.ready = True
                if run.on_ready is not None:
                    run.on_ready()
                print("READY", file=sys.stderr, flush=True)
            if run.t_first is None and run.merge.buffered():
                run.t_first = time.perf_counter()
                run.cpu_first = time.process_time()
            n = super().apply(items, until)
            counts = self.state.counts
            if run.rss_mark is not None and run.rss_at_mark is None and counts["events"] >= run.rss_mark:
                run.rss_at_mark = _rss_bytes()
            if run.t_done is None and counts["events"] + counts["labels"] >= run.target:
                run.t_done = time.perf_counter()
                run.rss_at_done = _rss_bytes() if run.rss_mark is not None else None
                run.stop()
            return n

        def on_label(self, label, ts, record):
            super().on_label(label, ts, record)
            if self.run.record_freshness:
                self.run.freshness.append(time.time() - ts)

    class MeasuredProcessor(Processor):
        """The real processor, plus clocks: first record in, last prediction acknowledged."""

        def __init__(self, *args, target: int, record_freshness: bool = False, live: bool | None = None,
                     rss_mark: int | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.target = target
            self.live = record_freshness if live is None else live  # say READY on the first apply
            self.on_ready = None  # called once, just before READY
            self.rss_mark = rss_mark  # note the RSS when this many events were applied (soak)
            self.rss_at_mark: int | None = None
            self.rss_at_done: int | None = None
            self.measured_handlers = None
            self.t_first: float | None = None
            self.t_done: float | None = None
            self.t_acked: float | None = None
            self.ready = False
            self.freshness: list[float] = []
            self.record_freshness = record_freshness

        def build_handlers(self, state, store, output, telemetry):
            cfg = self.config
            from stream.engine.codecs import OutputCodec

            self.measured_handlers = MeasuredHandlers(
                state, store.pending, store.learned, output, OutputCodec(cfg.codec.output), self.topics,
                ttl_s=cfg.labels.ttl_s, publish_challengers=cfg.challengers.publish, observer=telemetry, run=self,
            )
            return self.measured_handlers

        async def checkpoint(self, wait=True):
            await super().checkpoint(wait)
            self.t_acked = time.perf_counter()
            self.cpu_acked = time.process_time()

    return MeasuredProcessor


def run_riverbed(spec: dict, live: bool = False, soak: bool = False) -> dict:
    """The processor until ``spec["target"]`` events + labels were applied; ``soak`` adds :class:`SoakProbes`."""
    from prometheus_client import CollectorRegistry

    cfg = _config(spec)
    registry = CollectorRegistry()
    processor = _measured_processor_class()(
        cfg, registry=registry, serve_metrics=False, target=spec["target"], record_freshness=live and not soak,
        live=live or soak, rss_mark=spec.get("rss_mark") if soak else None,
    )
    probes = SoakProbes(processor, registry, Path(cfg.state.dir), spec.get("sample_s", 2.0)) if soak else None
    if probes is not None:
        processor.on_ready = probes.start
    with probes if probes is not None else contextlib.nullcontext():
        summary = asyncio.run(processor.run())
    seconds = processor.t_acked - processor.t_first
    ckpt_sum = registry.get_sample_value("riverbed_checkpoint_duration_seconds_sum") or 0.0
    ckpt_count = registry.get_sample_value("riverbed_checkpoint_duration_seconds_count") or 0.0
    pause_sum = registry.get_sample_value("riverbed_checkpoint_pause_seconds_sum") or 0.0
    result = {
        "events": summary.counts["events"],
        "labels": summary.counts["labels"],
        "joined": summary.counts["joined"],
        "seconds": seconds,
        "rate": summary.counts["events"] / seconds,
        "checkpoints": int(ckpt_count),
        "checkpoint_seconds": ckpt_sum,
        "checkpoint_pause_seconds": pause_sum,
        "checkpoint_duty": pause_sum / seconds,
        "checkpoint_bytes": registry.get_sample_value("riverbed_checkpoint_size_bytes"),
        "outside_window_seconds": summary.seconds - seconds,  # start-up (connect, restore) and shutdown
        "cpu_seconds": processor.cpu_acked - processor.cpu_first,  # all threads, same window
    }
    if live:
        fresh = sorted(processor.freshness)
        result["freshness"] = percentiles(fresh)
    if probes is not None:
        result["soak"] = probes.report()
    return result


# -- the soak: memory, state and collector pauses over a long live run ---------------------------


class GcPauses:
    """Every cyclic garbage collection of this process, timed through :data:`gc.callbacks`.

    A pause is the wall time from the collector's ``"start"`` to its ``"stop"`` callback (explicit
    ``gc.collect()`` calls included). Pauses are kept in an ``array('d')``: 8 bytes per
    collection, so the soak's own bookkeeping does not grow the RSS it measures.
    """

    def __init__(self) -> None:
        self.pauses = array("d")
        self.by_generation = [0, 0, 0]
        self._started: float | None = None

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses.append(time.perf_counter() - self._started)
            self.by_generation[min(2, info.get("generation", 2))] += 1
            self._started = None

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict:
        """Collections, total collector seconds, pause percentiles and collections per generation."""
        return {**percentiles(list(self.pauses)), "total_seconds": sum(self.pauses),
                "by_generation": list(self.by_generation)}


def _dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (a file vanishing mid-walk, as RocksDB compacts, is skipped)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


class SoakProbes:
    """Samples of a live processor every ``every_s`` seconds, from a thread, plus its GC pauses.

    Each sample: seconds since READY, events and labels applied, RSS (/proc/self/status),
    ``riverbed_pending_entries`` (the gauge ``/metrics`` serves, read from the processor's
    registry), learned ids kept (the learned-id store's count) and the state directory's size.
    """

    def __init__(self, processor, registry, state_dir: Path, every_s: float):
        self.processor, self.registry, self.state_dir, self.every_s = processor, registry, state_dir, every_s
        self.samples: list[dict] = []
        self.gc = GcPauses()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="soak-probes", daemon=True)
        self._t0: float | None = None

    def start(self) -> None:
        """Called on the first apply (after start-up): from now on collections and samples count."""
        self._t0 = time.monotonic()
        self.gc.install()
        self.samples.append(self.sample())
        self._thread.start()

    def __enter__(self) -> "SoakProbes":
        return self

    def __exit__(self, *exc_info) -> None:
        self.gc.remove()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(self.sample())

    def sample(self) -> dict:
        handlers = self.processor.measured_handlers
        counts = handlers.state.counts if handlers is not None else {"events": 0, "labels": 0}
        return {
            "seconds": time.monotonic() - (self._t0 or time.monotonic()),
            "events": counts["events"],
            "labels": counts["labels"],
            "rss_bytes": _rss_bytes(),
            "pending": self.registry.get_sample_value("riverbed_pending_entries"),
            "learned_ids": len(handlers.learned) if handlers is not None else 0,
            "state_dir_bytes": _dir_bytes(self.state_dir),
        }

    def report(self) -> dict:
        """RSS at the mark and at the end, state growth per million labels, GC pauses, the samples."""
        processor, samples = self.processor, self.samples
        final = {**self.sample(), "seconds": samples[-1]["seconds"] if samples else 0.0}  # after the last checkpoint
        # The slope while running, from the first sample at the RSS mark (past RocksDB's fixed files) to
        # the last one before shutdown (write-ahead log and unflushed tables included; closing
        # flushes and compacts, so the final size is smaller).
        mark = processor.rss_mark or 0
        base = next((s for s in samples if s["labels"] > 0 and s["events"] >= mark), final)
        last = samples[-1] if samples else final
        labels_added = last["labels"] - base["labels"]
        state_added = last["state_dir_bytes"] - base["state_dir_bytes"]
        return {
            "rss_mark_events": processor.rss_mark,
            "rss_at_mark_bytes": processor.rss_at_mark,
            "rss_at_end_bytes": processor.rss_at_done,
            "rss_growth": (processor.rss_at_done / processor.rss_at_mark - 1
                           if processor.rss_at_mark and processor.rss_at_done else None),
            "pending_max": max((s["pending"] or 0 for s in samples), default=None),
            "learned_ids_end": final["learned_ids"],
            "state_dir_end_bytes": final["state_dir_bytes"],
            "state_dir_end_bytes_per_learned_id": (final["state_dir_bytes"] / final["learned_ids"]
                                                   if final["learned_ids"] else None),
            "state_dir_bytes_per_million_labels": state_added / labels_added * 1e6 if labels_added else None,
            "gc_pauses": self.gc.summary(),
            "sample_s": self.every_s,
            "samples": samples + [final],
        }


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))]

    return {"n": len(values), "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": values[-1]}


# -- faust-streaming ---------------------------------------------------------------------------


def run_faust(spec: dict) -> dict:
    """The pipeline as a Faust user writes it: two agents, a table for the join.

    - agent on ``events``: decode, predict, send the prediction; keep ``x`` in the ``features``
      table (changelogged, as Faust tables are) until the label comes;
    - agent on ``labels``: pop ``x`` from the table and ``learn_one``.

    Faust does not merge the two topics by time, and with both topics already full the label
    agent can run ahead of the event agent; a label whose event has not been seen yet waits in
    an ``early`` table and is learned right after its event is predicted. So every label is
    learned once, as in riverbed.

    Plaintext only: the app is given ``kafka://host:port`` and none of ``[kafka]``'s TLS or SASL
    settings, so the suite skips this row (and says so) when security is configured.
    """
    import faust
    from learners import build_model

    target_events, target_labels = spec["n"], spec["n"]
    model = build_model(spec["preset"], "binary")
    app = faust.App(
        spec["app_id"],
        broker=f"kafka://{spec['bootstrap']}",
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        key_serializer="json",
        value_serializer="json",
    )
    events = app.topic(spec["topics"]["events"], key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    labels = app.topic(spec["topics"]["labels"], key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    predictions = app.topic(spec["topics"]["predictions"], key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")
    features = app.Table("features", default=None, partitions=1)
    early = app.Table("early", default=None, partitions=1)
    state = {"events": 0, "labels": 0, "joined": 0, "early": 0, "t_first": None, "done": False}
    out = spec["out"]

    def learn(x, y):
        model.learn_one(x, y)
        state["joined"] += 1

    async def maybe_finish():
        if state["done"] or state["events"] < target_events or state["labels"] < target_labels:
            return
        state["done"] = True
        await app.producer.flush()
        t_acked = time.perf_counter()
        seconds = t_acked - state["t_first"]
        _write(out, {
            "events": state["events"], "labels": state["labels"], "joined": state["joined"],
            "early_labels": state["early"], "seconds": seconds, "rate": state["events"] / seconds, "peak_rss_bytes": _peak_rss_bytes(),
        })
        os.kill(os.getpid(), 15)  # the Faust worker shuts down on SIGTERM

    @app.agent(events)
    async def on_events(stream):
        async for key, value in stream.items():
            if state["t_first"] is None:
                state["t_first"] = time.perf_counter()
            event = msgpack.unpackb(value, raw=False)
            x = event["x"]
            proba = model.predict_proba_one(x)
            y_pred = max(proba, key=proba.get) if proba else None
            await predictions.send(key=key, value=msgpack.packb(
                {"id": event["id"], "y_pred": y_pred, "proba": proba, "model": spec["preset"], "ts": event.get("ts")}
            ))
            y = early.get(event["id"])
            if y is None:
                features[event["id"]] = x
            else:
                del early[event["id"]]
                learn(x, y)
            state["events"] += 1
            await maybe_finish()

    @app.agent(labels)
    async def on_labels(stream):
        async for key, value in stream.items():
            if state["t_first"] is None:
                state["t_first"] = time.perf_counter()
            label = msgpack.unpackb(value, raw=False)
            x = features.get(label["id"])
            if x is None:
                early[label["id"]] = label["y"]
                state["early"] += 1
            else:
                del features[label["id"]]
                learn(x, label["y"])
            state["labels"] += 1
            await maybe_finish()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG (faust/worker.py,
    # _setup_spinner_handler), so every aiokafka send builds a debug LogRecord: ~8 % of the
    # worker's time in a profile. Without a terminal nobody wants it; leave it out.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    return None  # written by maybe_finish()


# -- a newcomer's kafka-python loop ------------------------------------------------------------


def run_naive(spec: dict) -> dict:
    """Poll, predict, send per message; labels joined through a dict (and an early-label dict)."""
    from kafka import KafkaConsumer, KafkaProducer
    from learners import build_model

    model = build_model(spec["preset"], "binary")
    topics = spec["topics"]
    security = _kafka_python_security(spec)
    consumer = KafkaConsumer(
        topics["events"], topics["labels"],
        bootstrap_servers=spec["bootstrap"], group_id=spec["app_id"], auto_offset_reset="earliest", **security,
    )
    producer = KafkaProducer(bootstrap_servers=spec["bootstrap"], **security)
    pending: dict = {}
    early: dict = {}
    events = labels = joined = n_early = 0
    target = spec["n"]
    t_first = None
    for message in consumer:
        if t_first is None:
            t_first = time.perf_counter()
        value = msgpack.unpackb(message.value, raw=False)
        if message.topic == topics["events"]:
            x = value["x"]
            proba = model.predict_proba_one(x)
            y_pred = max(proba, key=proba.get) if proba else None
            producer.send(topics["predictions"], key=message.key, value=msgpack.packb(
                {"id": value["id"], "y_pred": y_pred, "proba": proba, "model": spec["preset"], "ts": value.get("ts")}
            ))
            y = early.pop(value["id"], None)
            if y is None:
                pending[value["id"]] = x
            else:
                model.learn_one(x, y)
                joined += 1
            events += 1
        else:
            x = pending.pop(value["id"], None)
            if x is None:
                early[value["id"]] = value["y"]
                n_early += 1
            else:
                model.learn_one(x, value["y"])
                joined += 1
            labels += 1
        if events >= target and labels >= target:
            break
    producer.flush()
    seconds = time.perf_counter() - t_first
    consumer.close()
    producer.close()
    return {"events": events, "labels": labels, "joined": joined, "early_labels": n_early, "seconds": seconds,
            "rate": events / seconds}


# -- the rate-limited producer -----------------------------------------------------------------


PRODUCER_TICK_S = 0.005


async def _produce_at_rate(spec: dict) -> dict:
    """Publish events (and each label ``label_delay`` events later) at ``rate`` events/s.

    Every :data:`PRODUCER_TICK_S`, the messages that became due are appended to one batch per
    topic (``ts`` stamped at append, so latency starts when the message is handed to the client)
    and sent at once, as a batching producer client does (Kafka's Java producer lingers 5 ms by
    default). A per-message ``await send()`` loop
    needed a whole core at 8,000 events/s on this 2-core machine and took it from the broker and
    riverbed, which then measured the load generator more than riverbed. The topics have one
    partition.
    """
    from aiokafka import AIOKafkaProducer

    topics = spec["topics"]
    rate = spec["rate"]
    n = spec["n"]
    delay = spec.get("label_delay", 100)
    event_messages, label_messages = _live_messages(spec)
    producer = AIOKafkaProducer(bootstrap_servers=spec["bootstrap"], acks="all", linger_ms=0, **_aiokafka_security(spec))
    await producer.start()
    stamp = struct.Struct(">d").pack
    sent = 0
    labelled = 0
    in_flight = []
    started = time.perf_counter()
    cpu_started = time.process_time()

    def label_message(i):
        key, prefix = label_messages[i]
        return key, prefix + stamp(time.time())

    async def send(topic, messages):
        if not messages:
            return
        batch = producer.create_batch()
        for key, value in messages:
            if batch.append(timestamp=None, key=key, value=value) is None:  # full: send it, start another
                batch.close()
                in_flight.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value)
        batch.close()
        in_flight.append(await producer.send_batch(batch, topic, partition=0))

    try:
        while sent < n or labelled < n:
            due = n if sent >= n else min(n, int((time.perf_counter() - started) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(PRODUCER_TICK_S)
                continue
            labels, batch_events = [], []
            while sent < due:
                while labelled + delay <= sent:  # label i just before event i + delay
                    labels.append(label_message(labelled))
                    labelled += 1
                key, prefix = event_messages[sent]
                batch_events.append((key, prefix + stamp(time.time())))
                sent += 1
            if sent >= n:
                while labelled < n:
                    labels.append(label_message(labelled))
                    labelled += 1
            await send(topics["labels"], labels)
            await send(topics["events"], batch_events)
            if len(in_flight) > 1000:
                in_flight = [f for f in in_flight if not f.done()]
        await producer.flush()
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    return {"events": sent, "labels": labelled, "seconds": seconds, "rate": sent / seconds,
            "cpu_seconds": time.process_time() - cpu_started}


def _live_messages(spec: dict) -> tuple[list, list]:
    """``(key, value without its ts)`` of every event and of its label, encoded before the clock
    starts: ``ts`` is packed last, as a msgpack float 64 (0xcb + 8 bytes big-endian), so stamping
    is a concatenation with ``struct.pack(">d", time.time())``."""
    rows = list(_workload(spec).records(id_prefix=spec.get("id_prefix", "live")))
    events = [r for r in rows if r.kind == "event"]
    ys = {r.id: r.value["y"] for r in rows if r.kind == "label"}
    pack = msgpack.Packer(use_bin_type=True).pack
    event_messages = [(e.id.encode(), pack({"id": e.id, "x": e.value["x"], "ts": 0.0})[:-8]) for e in events]
    label_messages = [(e.id.encode(), pack({"id": e.id, "y": ys[e.id], "ts": 0.0})[:-8]) for e in events]
    assert all(m[1][-1] == 0xCB for m in event_messages[:1] + label_messages[:1])
    return event_messages, label_messages


def _produce_at_rate_librdkafka(spec: dict) -> dict:
    """:func:`_produce_at_rate` with librdkafka (confluent-kafka) as the client, for plaintext Kafka.

    The same schedule (every :data:`PRODUCER_TICK_S` the messages that became due, each label
    ``label_delay`` events after its event, ``ts`` stamped when the message is handed to the
    client), but the client's work runs in C on librdkafka's threads: at 6,000 events/s the
    aiokafka generator used 0.82 of a core (8.19 CPU-s in 10 s, measured), which on this 2-core
    machine it shared with the broker, so the latency rows measured an oversubscribed core rather
    than riverbed. ``linger.ms`` 0 as the aiokafka generator; ``acks`` all; delivery failures are
    counted and fail the row.
    """
    from confluent_kafka import KafkaException, Producer

    topics = spec["topics"]
    rate = spec["rate"]
    n = spec["n"]
    delay = spec.get("label_delay", 100)
    event_messages, label_messages = _live_messages(spec)
    failed: list[str] = []

    def delivered(err, msg):  # called only for failures (delivery.report.only.error)
        if err is not None:
            failed.append(str(err))

    producer = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all", "linger.ms": 0,
                         "queue.buffering.max.messages": 2 * n + 1000, "delivery.report.only.error": True,
                         "on_delivery": delivered})
    stamp = struct.Struct(">d").pack
    produce, poll, now = producer.produce, producer.poll, time.time
    labels_topic, events_topic = topics["labels"], topics["events"]
    sent = labelled = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    while sent < n or labelled < n:
        due = n if sent >= n else min(n, int((time.perf_counter() - started) * rate) + 1)
        if due <= sent:
            poll(0)
            time.sleep(PRODUCER_TICK_S)
            continue
        while sent < due:
            while labelled + delay <= sent:  # label i just before event i + delay
                key, prefix = label_messages[labelled]
                produce(labels_topic, prefix + stamp(now()), key, partition=0)
                labelled += 1
            key, prefix = event_messages[sent]
            produce(events_topic, prefix + stamp(now()), key, partition=0)
            sent += 1
        if sent >= n:
            while labelled < n:
                key, prefix = label_messages[labelled]
                produce(labels_topic, prefix + stamp(now()), key, partition=0)
                labelled += 1
        poll(0)
    left = producer.flush(120)
    if left or failed:
        raise KafkaException(f"the load generator could not deliver {left} messages; failures: {failed[:3]}")
    seconds = time.perf_counter() - started
    return {"events": sent, "labels": labelled, "seconds": seconds, "rate": sent / seconds,
            "cpu_seconds": time.process_time() - cpu_started, "client": "librdkafka"}


def run_producer(spec: dict) -> dict:
    """The live load generator: librdkafka for plaintext Kafka, else aiokafka (TLS/SASL keys of ``spec["kafka"]``)."""
    plaintext = spec.get("kafka", {}).get("security_protocol", "PLAINTEXT") == "PLAINTEXT"
    if plaintext and spec.get("client", "librdkafka") == "librdkafka":
        return _produce_at_rate_librdkafka(spec)
    return {**asyncio.run(_produce_at_rate(spec)), "client": "aiokafka"}


def _run_bytewax(spec: dict) -> dict:
    """The bytewax 0.21 dataflow (:mod:`bench.peers.bytewax_row`), recovery on."""
    from bench.peers.bytewax_row import run_bytewax

    return run_bytewax(spec)


def _run_quix(spec: dict, guarantee: str) -> dict:
    """The Quix Streams 3.28 application (:mod:`bench.peers.quix_row`) with this processing guarantee."""
    from bench.peers.quix_row import run_quix

    return run_quix({**spec, "guarantee": guarantee})


# -- entry point -------------------------------------------------------------------------------

ROWS = {
    "bare": run_bare,
    "riverbed": run_riverbed,
    "riverbed_live": lambda spec: run_riverbed(spec, live=True),
    "riverbed_soak": lambda spec: run_riverbed(spec, soak=True),
    "faust": run_faust,
    "naive": run_naive,
    "bytewax": _run_bytewax,
    "quix": lambda spec: _run_quix(spec, "at-least-once"),
    "quix_eos": lambda spec: _run_quix(spec, "exactly-once"),
    "producer": run_producer,
}


def _write(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f)


#: Set by ``python -m bench --profile DIR``: every worker runs its row under cProfile into DIR.
PROFILE_ENV = "BENCH_PROFILE_DIR"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="    %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stream.engine.processor").setLevel(logging.ERROR)  # drift alerts would drown the progress
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.CRITICAL)  # first join on a new broker
    logging.getLogger("kafka.coordinator.assignors").setLevel(logging.ERROR)
    spec = json.loads(argv[0])
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:  # python -m bench --profile DIR
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(ROWS[spec["kind"]], spec)
        preset = spec.get("preset") or spec.get("config", {}).get("model", {}).get("preset", "model")
        name = f"{spec['kind']}-{preset}-{os.getpid()}.pstats"
        profiler.dump_stats(os.path.join(profile_dir, name))
    else:
        result = ROWS[spec["kind"]](spec)
    if result is not None:
        result["peak_rss_bytes"] = _peak_rss_bytes()
        _write(spec["out"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
