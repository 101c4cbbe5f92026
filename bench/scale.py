"""The scale-out rows of the benchmark (``--rows scale``, ``make bench-scale``; issue #13).

For each scorer count ``k`` (``--scale-scorers``, default 1, 2, 3) one fresh run:

- topics of its own: ``events``, ``labels``, ``served``, ``predictions`` and ``deadletter`` with
  :data:`PARTITIONS` partitions, the compacted ``models`` topic (:mod:`stream.scale.topics`);
  ``predictions`` uses ``message.timestamp.type=LogAppendTime``, so the broker stamps every
  prediction when it appends it;
- one ``riverbed run --role trainer`` and ``k`` ``riverbed run --role scorer`` subprocesses (the
  real CLI) with the bench's workload settings: SEA, the ``--models`` preset, delayed labels (the
  label of event ``i`` follows event ``i + 100`` in the replay), the default ``[scale]`` snapshot
  cadence (every 1,000 labels or 10 s);
- **pinning** (:func:`pinning`; ``taskset``, when the machine has at least 2 cores): the trainer,
  the producer and the broker (only when the bench started it) on core 0, the scorers on the
  other cores round robin (on 2 cores: every scorer on core 1). Each row says what was pinned;
- once the trainer consumes and the scorers' group is stable (every scorer logged an assignment,
  the assignments are disjoint and cover every partition), a producer subprocess (:func:`produce`,
  pinned like the trainer) replays the workload twice, event ``i`` and its label to partition
  ``i mod 6``:

  1. **burst**: ``--scale-events`` events as fast as it can, each label at least
     :data:`BURST_LABEL_LAG_S` after its event: the scorers start with a backlog, so this
     measures their throughput and CPU cost (the latency includes the backlog's queueing);
  2. **steady**: ``--scale-events`` more at ``--scale-rate`` events/s, each label at least
     ``--scale-label-lag`` seconds after its event: latency under load, and staleness.

  Labels trail their events in wall time because a label that reaches the trainer before its
  served record makes the trainer's merge hold everything behind it (rule 7, at most ``[scale]
  trainer_max_wait_ms``), which would measure that wait, not the scorers; real labels come
  seconds to days later;
- a phase ends when the predictions topic holds every event and the trainer (its ``/metrics``)
  has processed every label; after both, every process gets ``SIGTERM``.

Measured per phase (the row's keys are the burst's, ``row["steady"]`` the steady phase's):

- ``rate``: prediction throughput, ``(n - 1)`` / (last − first prediction's LogAppendTime);
- ``cpu_seconds``: user + system CPU seconds (``/proc/<pid>/stat``) over the phase (from just
  before the producer starts to the last label), summed over the scorers, the trainer's, and the
  broker's when the bench started it; ``cpu_per_1000``: the same per 1,000 events (idle polling
  included, so the steady phase costs more per event);
- ``latency``: per event, the prediction record's timestamp (LogAppendTime) minus the event
  record's (CreateTime, stamped by the producer client when it batched the event), p50/p99;
- ``staleness``: per label, the labels learned before it (its position in the replay, the order
  the trainer's event-time merge learns them) minus the version of the snapshot that served its
  event (from the ``served`` topic), floored at 0, p50/p99/mean. It counts every label learned
  between serving and the label's arrival, so the label lag contributes about lag × rate
  (``label_lag_labels``) and the snapshot cadence up to 1,000 more; the trainer's own histogram
  ``riverbed_served_staleness_labels`` (count, sum, mean, p50/p99 as bucket upper bounds) is
  reported beside it as ``staleness_histogram``, and its mean equals the computed one;
- ``joined``, ``unmatched``, ``predictions``, ``distinct_predicted`` (each event once, each label
  once is the check), and per row ``published_version`` and ``snapshots`` of the trainer.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench.processes import (
    ROOT,
    child_env,
    load_sections,
    pin_broker,
    pinned,
    pinning,
    process_cpu_seconds,
    riverbed_sections,
    topic_names,
)

PARTITIONS = 6
"""Partitions of the events topic (and labels, served, predictions) of every scale row."""
DEFAULT_SCORERS = (1, 2, 3)
READY_TIMEOUT_S = 120.0
"""How long the trainer and the scorers' group may take to be ready."""
PRODUCER_BATCH = 500
"""Records per producer step when the producer is unthrottled."""
PRODUCER_TICK_S = 0.005
DEFAULT_STEADY_RATE = 4000.0
"""Events/s of the steady phase (below what one trainer learns on a shared core here)."""
BURST_LABEL_LAG_S = 2.0
"""In the burst, each label is sent at least this long after its event (longer than the burst takes to be served)."""
LABEL_LAG_S = 0.5
"""In the steady phase, each label is sent at least this long after its event (longer than serving takes)."""

_ASSIGNED = re.compile(r"scoring (.*)$")
_PARTITION = re.compile(r"(\S+):(\d+)")


# -- the producer (a subprocess: python -m bench.scale produce SPEC_JSON) -----------------------


async def _produce(spec: dict) -> dict:
    """Replay the workload to ``spec["topics"]``: event ``i`` and its label to partition ``i mod p``.

    Events go out at ``spec["rate"]`` events/s (0: as fast as possible); each label goes out in
    its replay position but never before ``spec["label_lag_s"]`` seconds after its event was sent
    (labels come later in wall time than the scorers need to serve their event).
    """
    import msgpack
    from aiokafka import AIOKafkaProducer

    from bench.worker import _aiokafka_security
    from bench.workload import Workload

    partitions, rate, lag = spec["partitions"], float(spec.get("rate") or 0.0), float(spec.get("label_lag_s", 0.0))
    pack = msgpack.Packer(use_bin_type=True).pack
    partition_of: dict[str, int] = {}
    events: list = []  # (topic, partition, key, value, event id)
    labels: list = []  # (events before it in the replay, topic, partition, key, value, event id)
    for record in Workload(spec["dataset"], spec["n"]).records(id_prefix=spec["id_prefix"]):
        if record.kind == "event":
            partition_of[record.id] = len(events) % partitions
            events.append((spec["topics"]["events"], partition_of[record.id], record.id.encode(), pack(record.value),
                           record.id))
        else:
            labels.append((len(events), spec["topics"]["labels"], partition_of[record.id], record.id.encode(),
                           pack(record.value), record.id))
    producer = AIOKafkaProducer(bootstrap_servers=spec["bootstrap"], acks="all", linger_ms=5,
                                max_batch_size=256 * 1024, **_aiokafka_security(spec))
    await producer.start()
    in_flight = []
    sent_at: dict[str, float] = {}
    n_events = n_labels = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        while n_events < len(events) or n_labels < len(labels):
            now = time.perf_counter()
            due = len(events) if rate <= 0 else min(len(events), int((now - started) * rate) + 1)
            due = min(due, n_events + PRODUCER_BATCH)
            batches: dict[tuple[str, int], list] = {}
            while n_events < due:
                topic, partition, key, value, event_id = events[n_events]
                batches.setdefault((topic, partition), []).append((key, value))
                sent_at[event_id] = now
                n_events += 1
            while n_labels < len(labels):
                before, topic, partition, key, value, event_id = labels[n_labels]
                if before > n_events or event_id not in sent_at or now < sent_at[event_id] + lag:
                    break
                batches.setdefault((topic, partition), []).append((key, value))
                n_labels += 1
            if not batches:
                await asyncio.sleep(PRODUCER_TICK_S)
                continue
            for (topic, partition), items in batches.items():
                batch = producer.create_batch()
                for key, value in items:
                    if batch.append(timestamp=None, key=key, value=value) is None:  # full: send, start another
                        batch.close()
                        in_flight.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(timestamp=None, key=key, value=value)
                batch.close()
                in_flight.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.sleep(0)
        await producer.flush()
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    events_seconds = max(sent_at.values()) - started if sent_at else seconds
    return {"events": n_events, "labels": n_labels, "seconds": seconds,
            "rate": n_events / events_seconds if events_seconds > 0 else None,
            "cpu_seconds": time.process_time() - cpu_started}


def produce(spec: dict) -> dict:
    """The producer row (see :func:`_produce`); ``spec``: bootstrap, kafka, topics, partitions, dataset, n, rate."""
    return asyncio.run(_produce(spec))


# -- processes ---------------------------------------------------------------------------------






def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Child:
    """A ``riverbed run`` subprocess whose stderr lines are collected by a thread."""

    def __init__(self, command: list[str], env: dict, cwd: Path):
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def said(self, marker: str) -> bool:
        return any(marker in line for line in self.lines)

    def assignment(self) -> set[tuple[str, int]] | None:
        """The partitions of this scorer's latest ``scoring ...`` log line (None: none yet)."""
        for line in reversed(self.lines):
            found = _ASSIGNED.search(line)
            if found:
                return {(t, int(p)) for t, p in _PARTITION.findall(found.group(1))}
        return None

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.lines[-n:])


def _wait(condition, what: str, timeout: float, children: list[_Child]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"a process exited {child.proc.returncode} while waiting for {what}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _group_stable(scorers: list[_Child], partitions: set[tuple[str, int]]) -> bool:
    """Every scorer logged an assignment, none shares a partition, together they cover ``partitions``,
    and as many scorers as there are partitions (at most) have some."""
    seen: set[tuple[str, int]] = set()
    busy = 0
    for scorer in scorers:
        assigned = scorer.assignment()
        if assigned is None or assigned & seen:
            return False
        seen |= assigned
        busy += bool(assigned)
    return seen == partitions and busy == min(len(scorers), len(partitions))


# -- Kafka reads -------------------------------------------------------------------------------


def _consumer(bootstrap: str):
    from kafka import KafkaConsumer

    from stream.connect.security import carried_security

    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         isolation_level="read_committed", **carried_security(bootstrap))


def _end_total(consumer, topic: str, partitions: int) -> int:
    from kafka import TopicPartition

    return sum(consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)]).values())


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> list:
    """Every record of ``topic`` up to its end offsets now."""
    from kafka import TopicPartition

    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {topic} to its end within {timeout:.0f} s")
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def scrape(port: int) -> dict[str, float]:
    """The trainer's ``/metrics`` as ``{sample name{labels}: value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of histogram ``name`` (None: empty)."""
    buckets = sorted(
        (float(key.split("le=", 1)[1].rstrip("}")), value)
        for key, value in samples.items() if key.startswith(f"{name}_bucket{{")
    )
    total = samples.get(f"{name}_count", 0.0)
    if not total:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return None


# -- one row -----------------------------------------------------------------------------------


def staleness(label_ids: list[str], served_version: dict[str, int], learned_before: int = 0) -> list[int]:
    """Per label in learning order: labels learned before it minus the served version, floored at 0.

    ``learned_before`` labels were learned before the first of ``label_ids``.

    >>> staleness(["a", "b", "c"], {"a": 0, "b": 0, "c": 2})
    [0, 1, 0]
    >>> staleness(["d"], {"d": 5}, learned_before=7)
    [2]
    """
    return [max(0, learned_before + k - served_version[i]) for k, i in enumerate(label_ids) if i in served_version]


def _latencies(predictions: list, created: dict) -> list[float]:
    """Prediction LogAppendTime minus the event's CreateTime, in seconds, per prediction of a known event."""
    return [(r.timestamp - created[r.key]) / 1000.0 for r in predictions if r.key in created]


def _rate(predictions: list) -> tuple[float | None, float]:
    """``(n - 1) / (last - first)`` LogAppendTime of ``predictions``, and that span in seconds."""
    appended = sorted(r.timestamp for r in predictions)
    span = (appended[-1] - appended[0]) / 1000.0 if len(appended) > 1 else 0.0
    return ((len(appended) - 1) / span if span > 0 else None), span


def _histogram(metrics: dict, before: dict | None = None) -> dict:
    """Count, sum, mean and bucket bounds of the staleness histogram (minus ``before``'s samples)."""
    name = "riverbed_served_staleness_labels"
    if before is not None:
        metrics = {k: v - before.get(k, 0.0) for k, v in metrics.items() if k.startswith(name)}
    count = metrics.get(f"{name}_count", 0.0)
    return {"count": count, "sum": metrics.get(f"{name}_sum"),
            "mean": metrics.get(f"{name}_sum", 0.0) / count if count else None,
            "p50_le": histogram_quantile(metrics, name, 0.5), "p99_le": histogram_quantile(metrics, name, 0.99)}


def measure_scale(ctx: dict, preset: str, scorers: int, n: int, rate: float = DEFAULT_STEADY_RATE,
                  cores: dict | None = None, label_lag_s: float = LABEL_LAG_S) -> dict:
    """One trainer and ``scorers`` scorers on a :data:`PARTITIONS`-partition topic (see the module docstring)."""
    from kafka.admin import NewTopic

    from bench.workload import Workload
    from bench.worker import percentiles
    from stream.config import to_toml
    from stream.connect.topics import admin_client
    from stream.scale.served import decode_served
    from stream.scale.topics import create_scale_topics

    bootstrap, workdir = ctx["bootstrap"], Path(ctx["workdir"])
    cores = pinning() if cores is None else cores
    prefix = f"scale-{preset}-{scorers}-{uuid.uuid4().hex[:6]}"
    topics = topic_names(prefix)
    scale = {"served_topic": f"{prefix}-served", "models_topic": f"{prefix}-models",
             "scorer_group_id": f"{prefix}-scorers"}
    metrics_port = _free_port()
    base = riverbed_sections(ctx, topics, workdir / f"state-{prefix}", preset, kafka={"partitions": PARTITIONS},
                             scale=scale, log={"level": "INFO"})
    trainer_cfg = load_sections({**base, "metrics": {"enabled": True, "host": "127.0.0.1", "port": metrics_port}})
    scorer_cfg = load_sections(base)
    with admin_client(bootstrap) as admin:
        admin.create_topics([NewTopic(topics["predictions"], PARTITIONS, 1,
                                      topic_configs={"message.timestamp.type": "LogAppendTime"})])
    create_scale_topics(bootstrap, trainer_cfg)
    trainer_file, scorer_file = workdir / f"{prefix}-trainer.toml", workdir / f"{prefix}-scorer.toml"
    trainer_file.write_text(to_toml(trainer_cfg), encoding="utf-8")
    scorer_file.write_text(to_toml(scorer_cfg), encoding="utf-8")

    def command(config_file: Path, role: str) -> list[str]:
        return [sys.executable, "-m", "stream", "--config", str(config_file), "run", "--role", role]

    env = child_env()
    scorer_cores = cores.get("scorers") or []
    broker_pid = ctx.get("broker_pid")
    children: list[_Child] = []
    phases: dict = {}
    try:
        trainer = _Child(pinned(command(trainer_file, "trainer"), cores.get("trainer")), env, ROOT)
        children.append(trainer)
        _wait(lambda: trainer.said("consuming"), "the trainer to consume", READY_TIMEOUT_S, children)
        group = [_Child(pinned(command(scorer_file, "scorer"),
                                [scorer_cores[i % len(scorer_cores)]] if scorer_cores else None), env, ROOT)
                 for i in range(scorers)]
        children += group
        everything = {(topics["events"], p) for p in range(PARTITIONS)}
        _wait(lambda: _group_stable(group, everything), f"a stable group of {scorers} scorers", READY_TIMEOUT_S,
              children)

        def cpu() -> dict:
            return {"trainer": trainer.cpu_seconds(), "scorers": [s.cpu_seconds() for s in group],
                    "broker": process_cpu_seconds(broker_pid)}

        consumer = _consumer(bootstrap)
        try:
            for phase, phase_rate, lag in (("burst", 0.0, BURST_LABEL_LAG_S), ("steady", rate, label_lag_s)):
                done_before = sum(p["n"] for p in phases.values())
                cpu0 = cpu()
                spec = {"bootstrap": str(bootstrap), "kafka": ctx["security"], "topics": topics,
                        "partitions": PARTITIONS, "dataset": ctx["dataset"], "n": n, "rate": phase_rate,
                        "label_lag_s": lag, "id_prefix": f"{prefix}-{phase}"}
                out = workdir / f"{prefix}-{phase}-producer.json"
                subprocess.run(pinned([sys.executable, "-m", "bench.scale", "produce", json.dumps(spec), str(out)],
                                       cores.get("producer")), cwd=ROOT, env=env, check=True, timeout=600)
                progress: dict = {}
                target = done_before + n

                def done(target: int = target, progress: dict = progress) -> bool:
                    progress["predictions"] = _end_total(consumer, topics["predictions"], PARTITIONS)
                    try:
                        progress["labels"] = scrape(metrics_port).get("riverbed_labels_total", 0)
                    except OSError:
                        return False
                    return progress["predictions"] >= target and progress["labels"] >= target

                try:
                    _wait(done, f"{target:,} predictions and labels", max(120.0, 20 * n / 1000), children)
                except RuntimeError as exc:
                    raise RuntimeError(f"{phase}: {exc} (so far {progress})") from None
                phases[phase] = {"n": n, "producer": json.loads(out.read_text()), "cpu0": cpu0, "cpu1": cpu(),
                                 "metrics": scrape(metrics_port)}
        finally:
            consumer.close()
    finally:
        codes = [child.stop() for child in children]

    predictions = read_all(bootstrap, topics["predictions"], PARTITIONS)
    if predictions and predictions[0].timestamp_type != 1:
        raise RuntimeError("the predictions topic does not use LogAppendTime")
    created = {r.key: r.timestamp for r in read_all(bootstrap, topics["events"], PARTITIONS)}
    served_version: dict[str, int] = {}
    for r in read_all(bootstrap, scale["served_topic"], PARTITIONS):
        s = decode_served(r.value)
        served_version.setdefault(s.id, s.version)

    def phase_result(phase: str, learned_before: int, before: dict | None) -> dict:
        found = phases[phase]
        mine = [r for r in predictions if r.key.startswith(f"{prefix}-{phase}-".encode())]
        label_ids = [r.id for r in Workload(ctx["dataset"], n).records(id_prefix=f"{prefix}-{phase}")
                     if r.kind == "label"]
        stale = [float(s) for s in staleness(label_ids, served_version, learned_before)]
        cpu0, cpu1 = found["cpu0"], found["cpu1"]
        spent = {
            "scorers": None if None in cpu0["scorers"] + cpu1["scorers"] else sum(cpu1["scorers"]) - sum(cpu0["scorers"]),
            "trainer": None if None in (cpu0["trainer"], cpu1["trainer"]) else cpu1["trainer"] - cpu0["trainer"],
            "broker": None if None in (cpu0["broker"], cpu1["broker"]) else cpu1["broker"] - cpu0["broker"],
        }
        rate_found, span = _rate(mine)
        metrics = found["metrics"]
        return {
            "events": n,
            "offered_rate": found["producer"]["rate"],
            "predictions": len(mine),
            "distinct_predicted": len({r.key for r in mine}),
            "rate": rate_found,
            "seconds": span,
            "cpu_seconds": spent,
            "cpu_per_1000": {k: None if v is None else v * 1000 / n for k, v in spent.items()},
            "latency": percentiles(_latencies(mine, created)),
            "staleness": {**percentiles(stale), "mean": sum(stale) / len(stale) if stale else None},
            "staleness_histogram": _histogram(metrics, before),
            "joined": metrics.get("riverbed_labels_joined_total", 0.0) - (before or {}).get(
                "riverbed_labels_joined_total", 0.0),
            "unmatched": metrics.get("riverbed_labels_unmatched_total", 0.0) - (before or {}).get(
                "riverbed_labels_unmatched_total", 0.0),
        }

    burst = phase_result("burst", 0, None)
    after_burst = phases["burst"]["metrics"]
    steady = phase_result("steady", int(after_burst.get("riverbed_labels_joined_total", 0)), after_burst)
    final = phases["steady"]["metrics"]
    return {
        "scorers": scorers,
        "partitions": PARTITIONS,
        **burst,
        "steady": {**steady, "target_rate": rate, "label_lag_s": label_lag_s,
                   "label_lag_labels": label_lag_s * (steady["offered_rate"] or 0.0)},
        "published_version": final.get("riverbed_snapshot_published_version"),
        "snapshots": final.get("riverbed_snapshots_published_total"),
        "snapshot_every_labels": trainer_cfg.scale.snapshot_every_labels,
        "snapshot_interval_s": trainer_cfg.scale.snapshot_interval_s,
        "label_lag_s": BURST_LABEL_LAG_S,
        "exit_codes": codes,
        "pinning": describe_pinning(cores, scorers, broker_pid is not None),
    }


def describe_pinning(cores: dict, scorers: int, own_broker: bool) -> str:
    """One line: which process ran on which core."""
    if not cores:
        return f"not pinned ({os.cpu_count()} cores or no taskset)"
    scorer_cores = sorted({cores["scorers"][i % len(cores["scorers"])] for i in range(scorers)})
    broker = "broker" if own_broker else "(broker not started by the bench: not pinned)"
    return (f"core {','.join(map(str, cores['trainer']))}: trainer, producer, {broker}; "
            f"core {','.join(map(str, scorer_cores))}: {scorers} scorer{'s' if scorers > 1 else ''}")






def measure(ctx: dict, preset: str, scorer_counts: list[int], n: int, rate: float, say,
            label_lag_s: float = LABEL_LAG_S) -> dict:
    """Every scale row of one model: ``{"rows": [...], "events", "partitions", "steady_rate", "errors"}``."""
    cores = pinning()
    pinned_broker = pin_broker(ctx.get("broker_pid"), cores)
    found: dict = {"events": n, "partitions": PARTITIONS, "steady_rate": rate, "label_lag_s": label_lag_s,
                   "rows": [], "broker_pinned": pinned_broker}
    for k in scorer_counts:
        say(f"{preset}: scale, 1 trainer + {k} scorer{'s' if k > 1 else ''} on {PARTITIONS} partitions, "
            f"{n:,} events as a burst, then {n:,} at {rate:,.0f} events/s")
        try:
            row = measure_scale(ctx, preset, k, n, rate, cores, label_lag_s)
        except Exception as exc:  # one failed row must not lose the others
            say(f"{preset}: scale row with {k} scorers failed: {exc}")
            found.setdefault("errors", []).append(f"scale {k}: {exc}")
            continue
        found["rows"].append(row)
        say(f"{preset}: {k} scorers: " + row_summary(row))
        for phase in (row, row["steady"]):
            if phase["joined"] != n or phase["distinct_predicted"] != n:
                problem = (f"scale {k}: {phase['distinct_predicted']:,} of {n:,} events predicted, "
                           f"{phase['joined']:,.0f} labels learned ({phase['unmatched']:,.0f} unmatched)")
                say(f"{preset}: {problem}")
                found.setdefault("errors", []).append(problem)
    say(f"{preset}: pinning: {found['rows'][-1]['pinning'] if found['rows'] else describe_pinning(cores, 1, False)}")
    one = next((r for r in found["rows"] if r["scorers"] == 1 and r["rate"]), None)
    for row in found["rows"]:
        row["speedup"] = row["rate"] / one["rate"] if one and row["rate"] else None
    return found


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _ms(q: dict, key: str) -> str:
    return _fmt(None if q.get(key) is None else q[key] * 1e3, ".0f")


def row_summary(row: dict) -> str:
    c, q, s = row["cpu_per_1000"], row["steady"]["latency"], row["steady"]["staleness"]
    return (f"burst {_fmt(row['rate'], ',.0f')} events/s, CPU s per 1,000 events scorers {_fmt(c['scorers'], '.3f')} "
            f"/ trainer {_fmt(c['trainer'], '.3f')}; steady at {_fmt(row['steady']['offered_rate'], ',.0f')} events/s: "
            f"latency p50/p99 {_ms(q, 'p50')}/{_ms(q, 'p99')} ms, staleness p50/p99 {_fmt(s.get('p50'), '.0f')}/"
            f"{_fmt(s.get('p99'), '.0f')} labels")


def markdown(results: dict) -> list[str]:
    """The scale table of every model that has scale rows."""
    entries = {preset: entry["scale"] for preset, entry in results["models"].items() if "scale" in entry}
    if not entries:
        return []
    lines = ["", "| model | scorers | burst events/s | × 1 scorer | burst CPU s / 1,000 events: scorers / trainer / broker "
             "| burst latency p50 / p99 ms | steady events/s | steady latency p50 / p99 ms "
             "| steady staleness p50 / p99 / mean labels (trainer histogram's mean) |",
             "|---|---:|---:|---:|---|---|---:|---|---|"]
    pinnings = set()
    for preset, found in entries.items():
        for row in found["rows"]:
            c, q, st = row["cpu_per_1000"], row["latency"], row["steady"]
            lines.append(
                f"| {preset} | {row['scorers']} | {_fmt(row['rate'], ',.0f')} | {_fmt(row.get('speedup'), '.2f')} | "
                f"{_fmt(c['scorers'], '.3f')} / {_fmt(c['trainer'], '.3f')} / {_fmt(c['broker'], '.3f')} | "
                f"{_ms(q, 'p50')} / {_ms(q, 'p99')} | {_fmt(st['offered_rate'], ',.0f')} | "
                f"{_ms(st['latency'], 'p50')} / {_ms(st['latency'], 'p99')} | "
                f"{_fmt(st['staleness'].get('p50'), '.0f')} / {_fmt(st['staleness'].get('p99'), '.0f')} / "
                f"{_fmt(st['staleness'].get('mean'), '.0f')} ({_fmt(st['staleness_histogram']['mean'], '.0f')}) |")
            pinnings.add(f"{row['scorers']} scorer{'s' if row['scorers'] > 1 else ''}: {row['pinning']}")
        lines.append(
            f"\n{preset}: scale rows on {found['partitions']} partitions: {found['events']:,} events offered as fast as "
            f"the producer goes (burst: throughput, CPU, latency with the backlog's queueing), then {found['events']:,} "
            f"at {found['steady_rate']:,.0f} events/s (steady: latency, staleness), labels at least "
            f"{found['label_lag_s']:g} s after their event (about {found['label_lag_s'] * found['steady_rate']:,.0f} "
            f"labels of the staleness).")
    lines += ["", "Pinning (taskset): " + "; ".join(sorted(pinnings))] if pinnings else []
    return lines


def main(argv: list[str]) -> int:
    """``python -m bench.scale produce SPEC_JSON OUT``: the producer row, its result as JSON in OUT."""
    if len(argv) != 3 or argv[0] != "produce":
        print("usage: python -m bench.scale produce SPEC_JSON OUT", file=sys.stderr)
        return 2
    result = produce(json.loads(argv[1]))
    Path(argv[2]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
