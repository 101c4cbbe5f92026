"""The benchmark run: broker, workload, rows, latency, recovery, table and JSON.

What is measured (all rows, same broker, same data, same run):

- **rate** (events/s): events processed / seconds, where each event also had its label learned.
  For Kafka rows the clock starts when the first input records were fetched and stops when
  Kafka has acknowledged the last prediction (riverbed: the final checkpoint's producer flush;
  Faust: ``app.producer.flush()``; naive: ``producer.flush()``). Start-up (connecting, group
  joins, restoring state) is outside the window and reported separately for riverbed.
- **η** = rate / P, **overhead** = 1/rate − 1/P in µs per event (one event + its label).
- **latency** (riverbed): the prediction record's Kafka timestamp minus the event's create time.
  The producer stamps ``ts = time.time()`` into each event just before handing it to its
  client; riverbed copies the event time into the prediction's ``ts``; the live predictions
  topic is created with ``message.timestamp.type=LogAppendTime``, so the broker stamps each
  prediction (milliseconds) when it appends it to the log. So latency covers producer client →
  broker → riverbed fetch → merge → predict → output batch → broker, at 1 ms resolution.
  With at least 2 cores and ``taskset``, riverbed runs alone on core 1 and the load generator and
  the bench's own broker on core 0 for the latency runs (the table says which), so the number
  measures riverbed, not two oversubscribed cores.
- **label freshness** (riverbed): wall time when ``learn_one`` returned minus the label's
  create time (``ts`` stamped by the producer).
- **checkpoint duty**: sum of ``riverbed_checkpoint_pause_seconds`` (the time checkpoints stop
  processing: model pickle, metadata, overlay freeze; the producer flush and the synced RocksDB
  write happen while processing goes on) over the measured wall time.
- **guarantees**: the throughput row and a latency run at 50 % of the at-least-once rate, once
  with ``[output] guarantee = "exactly_once"`` and once with ``"at_least_once"``, and the ratio
  of the two rates (the exactly-once clock stops when the last transaction committed).
- **recovery**: ``riverbed run`` as a subprocess on the full backlog, ``SIGKILL`` mid-way, restart;
  time from the restart (just before ``Popen``) to the Kafka timestamp of the first prediction
  record appended after the kill.
- **scale** (``--rows scale`` only, not a default row; ``make bench-scale``): one
  ``riverbed run --role trainer`` and 1, 2, 3 ``--role scorer`` subprocesses on a 6-partition
  events topic, pinned with ``taskset`` (trainer, producer and the bench's broker on core 0,
  scorers on the others): burst throughput, CPU seconds per 1,000 events, latency, staleness in
  labels (:mod:`bench.scale`).
- **soak** (``--rows soak`` only, not a default row): ``--soak-events`` events with labels through
  the live processor at a steady ``--soak-rate`` (default 50 % of the riverbed row's rate); RSS
  when 100,000 events were applied and at the end (goal: growth ≤ 10 %), pending entries,
  learned ids and state-dir size every ``--soak-sample-s`` seconds, and every GC pause.

Security: with ``--bootstrap``, the ``[kafka]`` security keys of the caller's config
(``--config`` or ``$RIVERBED_CONFIG``, then ``RIVERBED_KAFKA_*``) go into every riverbed config and
worker spec the bench builds, the bench's own kafka-python clients log in through a
:class:`~stream.connect.security.SecuredBootstrap`, and ``$RIVERBED_KAFKA_SASL_PASSWORD`` (never
written anywhere) is passed through to the worker processes. The Faust row is plaintext only and
is skipped under TLS or SASL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from bench.processes import ROOT, child_env, load_sections, pin_broker, pinned, pinning, process_cpu_seconds, riverbed_sections, topic_names, unpin_broker
from bench.scale import markdown as scale_markdown
from bench.worker import percentiles

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
PEER_ROWS = ("faust", "bytewax", "quix", "quix_eos")
#: A peer row's accuracy must be within this of the bare loop's prequential accuracy, on runs of at
#: least ACCURACY_CHECK_MIN_EVENTS events (below that, which topic a framework's fetch batches of
#: ~1000 records read first changes how much the model has learned when it predicts, so accuracy differs).
ACCURACY_TOLERANCE = 0.01
ACCURACY_CHECK_MIN_EVENTS = 10_000
DEFAULT_ROWS = ("bare", "riverbed", "lean", "faust", "bytewax", "quix", "quix_eos", "naive", "latency", "recovery",
                "guarantees")
ALL_ROWS = (*DEFAULT_ROWS, "soak", "scale")
#: The rows that read the workload published once to the shared bench topics (latency and a soak
#: without --soak-rate take their rate from the riverbed row, which reads it).
BACKLOG_ROWS = ("riverbed", "lean", "faust", "bytewax", "quix", "quix_eos", "naive", "latency", "recovery",
                "guarantees")
#: The ``[kafka]`` keys that say how a client logs in (the password is never one of them).
SECURITY_KEYS = ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file",
                 "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
#: The soak's RSS is compared between this many events applied and the end.
SOAK_RSS_MARK = 100_000
TARGET_SOAK_RSS_GROWTH = 0.10
ROW_TITLES = {
    "bare": "limit P (bare River loop)",
    "riverbed": "riverbed (default config)",
    "lean": "riverbed, lean config (accuracy only, no drift detectors)",
    "faust": "faust-streaming agents",
    "bytewax": "bytewax 0.21 dataflow (recovery on)",
    "quix": "Quix Streams 3.28 application (at-least-once)",
    "quix_eos": "Quix Streams 3.28 application (exactly-once)",
    "naive": "naive kafka-python loop",
}
#: The lean row: what riverbed costs without its evaluation extras (rolling metrics still run).
LEAN = {"model": {"metrics": ["accuracy"]}, "drift": {"detector": "none", "input_detector": "none"}}
TARGET_ETA = {"logreg": 0.6, "hoeffding_adaptive": 0.9}
GUARANTEES = ("exactly_once", "at_least_once")
"""The ``guarantees`` rows: the same workload under each ``[output] guarantee``, throughput and latency."""
TARGET_EXACTLY_ONCE_RATIO = 0.85

_T0 = time.monotonic()


def say(message: str) -> None:
    elapsed = time.monotonic() - _T0
    print(f"[bench {int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000, help="events (each with one label) per row (default 100000)")
    p.add_argument("--naive-events", type=int, default=None,
                   help="events for the naive kafka-python row (default: --events)")
    p.add_argument("--faust-events", type=int, default=30_000,
                   help="events for the faust row, the slowest (default 30000, capped at --events)")
    p.add_argument("--models", default="logreg,hoeffding_adaptive", help="comma-separated presets")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                   help=f"comma-separated subset of {','.join(ALL_ROWS)} (default: all but soak and scale; "
                        "soak is make bench-soak, scale is make bench-scale: 1 trainer + 1, 2, 3 scorers, a few minutes)")
    p.add_argument("--dataset", default="sea", help="built-in dataset replayed as the workload (default sea)")
    p.add_argument("--loads", default="0.1,0.5,0.8", help="latency runs at these fractions of riverbed's rate")
    p.add_argument("--latency-seconds", type=float, default=12.0, help="length of each latency run")
    p.add_argument("--latency-warmup-seconds", type=float, default=15.0,
                   help="one unrecorded live run this long before the first latency row, so a freshly "
                        "started broker has compiled its hot paths (0: none)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--bootstrap", default="", help="use this running Kafka instead of starting one")
    p.add_argument("--port", type=int, default=29092, help="port of the benchmark's own broker (controller: +1)")
    p.add_argument("--config", default=None,
                   help="riverbed config whose [kafka] security keys the clients use with --bootstrap "
                        "(default: $RIVERBED_CONFIG, then RIVERBED_KAFKA_* overrides)")
    p.add_argument("--soak-events", type=int, default=1_000_000, help="events (with labels) of the soak row")
    p.add_argument("--soak-rate", type=float, default=None,
                   help="events/s of the soak row (default: 50%% of the riverbed row's rate)")
    p.add_argument("--soak-sample-s", type=float, default=2.0, help="seconds between the soak row's samples")
    p.add_argument("--scale-events", type=int, default=20_000,
                   help="events (with labels) of each phase of a scale row: a burst, then a steady stream (default 20000)")
    p.add_argument("--scale-scorers", default="1,2,3", help="scorer counts of the scale rows, one trainer each (default 1,2,3)")
    p.add_argument("--scale-rate", type=float, default=4000.0,
                   help="events/s of the scale rows' steady phase (default 4000)")
    p.add_argument("--scale-label-lag", type=float, default=0.5,
                   help="seconds each label of the steady phase follows its event at least (default 0.5)")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="run every row's worker under cProfile and write DIR/<row>-<model>-<pid>.pstats "
                        "(slower rows: for finding where the time goes, not for the table)")
    return p.parse_args(argv)


# -- processes ---------------------------------------------------------------------------------




def run_row(spec: dict, workdir: Path, timeout: float = 900, cores: list[int] | None = None) -> dict:
    """Run one row in a fresh interpreter (on ``cores`` when given) and return its JSON result."""
    out = workdir / f"{spec['kind']}-{uuid.uuid4().hex[:8]}.json"
    spec = {**spec, "out": str(out)}
    command = pinned([sys.executable, "-m", "bench.worker", json.dumps(spec)], cores)
    proc = subprocess.run(command, cwd=ROOT, env=child_env(),
                          stdout=subprocess.DEVNULL, timeout=timeout)  # on timeout the child is killed
    if not out.exists():
        raise RuntimeError(f"row {spec['kind']} exited {proc.returncode} without a result")
    return json.loads(out.read_text())


class _StderrWatcher:
    """Forwards a child's stderr to ours and notes when a line containing ``marker`` appears."""

    def __init__(self, proc: subprocess.Popen, marker: str, forward: bool = True):
        self.seen = threading.Event()
        self.seen_at: float | None = None
        self.lines: list[tuple[float, str]] = []
        self._marker = marker
        self._forward = forward
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            now = time.time()
            self.lines.append((now, line.rstrip()))
            if self._marker in line and not self.seen.is_set():
                self.seen_at = now
                self.seen.set()
            elif self._forward:
                print(line, end="", file=sys.stderr, flush=True)


# -- configuration -----------------------------------------------------------------------------




def security_keys(config_path: str | None) -> dict:
    """The ``[kafka]`` security keys of the caller's config (``config_path``, ``$RIVERBED_CONFIG``, ``RIVERBED_KAFKA_*``).

    A config that cannot be read, or a SASL setup without a password source, ends the run with
    one line.
    """
    from stream.config import load_config
    from stream.errors import ConfigError

    try:
        kafka = load_config(config_path).kafka
    except ConfigError as exc:
        raise SystemExit(f"riverbed: error: {exc}") from None
    return {key: getattr(kafka, key) for key in SECURITY_KEYS}


def is_secured(security: dict) -> bool:
    return security.get("security_protocol", "PLAINTEXT") != "PLAINTEXT"






# -- Kafka helpers -----------------------------------------------------------------------------


def create(bootstrap: str, topics: dict) -> None:
    from stream.connect.topics import create_topics

    create_topics(bootstrap, list(topics.values()), 1)


def create_log_append_time_topic(bootstrap: str, name: str) -> None:
    """A topic whose records the broker stamps with the time it appended them (LogAppendTime)."""
    from kafka.admin import NewTopic

    from stream.connect.topics import admin_client

    with admin_client(bootstrap) as admin:
        admin.create_topics([NewTopic(name, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})])
    create(bootstrap, {"predictions": name})  # waits until it is usable


def end_offset(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from stream.connect.security import carried_security

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             **carried_security(bootstrap))
    try:
        tp = TopicPartition(topic, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def read_records(bootstrap: str, topic: str, start: int = 0, expected: int | None = None, idle_ms: int = 3000):
    from kafka import KafkaConsumer, TopicPartition

    from stream.connect.security import carried_security

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", consumer_timeout_ms=idle_ms,
                             **carried_security(bootstrap))
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, start)
    try:
        records = []
        for record in consumer:
            records.append(record)
            if expected is not None and len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def run_comparator(entry: dict, base: dict, kind: str, n: int, bootstrap: str, topics: dict, workdir) -> None:
    """One peer-implementation row (``faust`` or ``naive``); its failure must not lose the other rows."""
    preset = base["preset"]
    if kind in PEER_ROWS and is_secured(base["kafka"]):
        reason = (f"{kind}: skipped, the {kind} row is plaintext only and [kafka] security_protocol is "
                  f"{base['kafka']['security_protocol']!r}")
        say(f"{preset}: {reason}")
        entry.setdefault("skipped", []).append(reason)
        return
    own = {**topics, "predictions": f"{topics['events']}-{kind}-{preset}-predictions"}
    create(bootstrap, {"predictions": own["predictions"]})
    try:
        entry["rows"][kind] = run_row(
            {**base, "kind": kind, "n": n, "bootstrap": str(bootstrap), "topics": own,
             "app_id": f"bench-{kind}-{uuid.uuid4().hex[:6]}"}, workdir, timeout=600)
        say(f"{preset}: {kind} {entry['rows'][kind]['rate']:,.0f} events/s")
        problems = check_peer_row(entry["rows"][kind], n, entry["rows"].get("bare", {}).get("accuracy"))
        entry["rows"][kind]["check"] = "ok" if not problems else "FAILED: " + "; ".join(problems)
        if problems:
            say(f"{preset}: {kind} row failed its check: {'; '.join(problems)}")
            entry.setdefault("errors", []).append(f"{kind} check: {'; '.join(problems)}")
    except Exception as exc:
        say(f"{preset}: {kind} row failed: {exc}")
        entry.setdefault("errors", []).append(f"{kind}: {exc}")


def check_peer_row(row: dict, n: int, reference_accuracy: float | None) -> list[str]:
    """Why a peer row does not count: not every event predicted once, label learned once, or accuracy off."""
    problems = []
    if row.get("events") != n:
        problems.append(f"predicted {row.get('events')} events, expected {n}")
    if row.get("joined") != n:
        problems.append(f"learned {row.get('joined')} labels, expected {n}")
    if reference_accuracy is not None and row.get("accuracy") is not None and n >= ACCURACY_CHECK_MIN_EVENTS:
        if abs(row["accuracy"] - reference_accuracy) > ACCURACY_TOLERANCE:
            problems.append(f"accuracy {row['accuracy']:.4f} vs {reference_accuracy:.4f} of the bare loop")
    return problems


# -- measurements ------------------------------------------------------------------------------


def measure_latency(ctx: dict, preset: str, rate: float, load: float, seconds: float | None = None,
                    **extra) -> dict:
    """riverbed on live topics fed at ``load × rate`` events/s for ``seconds`` (default: the
    run's ``--latency-seconds``); latency from prediction timestamps.

    ``extra`` config sections override the default config (e.g. ``output={"guarantee": ...}``).
    """
    import msgpack

    bootstrap, workdir = ctx["bootstrap"], ctx["workdir"]
    target_rate = max(1.0, load * rate)
    n = max(200, int(target_rate * (ctx["latency_seconds"] if seconds is None else seconds)))
    topics = topic_names(f"live-{preset}-{int(load * 100)}-{uuid.uuid4().hex[:6]}")
    create_log_append_time_topic(bootstrap, topics["predictions"])
    create(bootstrap, topics)
    sections = riverbed_sections(ctx, topics, workdir / f"state-{topics['events']}", preset, **extra)
    out = workdir / f"live-{uuid.uuid4().hex[:8]}.json"
    spec = {"kind": "riverbed_live", "config": sections, "target": 2 * n, "out": str(out)}
    cores = pinning()  # riverbed alone on core 1; the load generator and our broker on core 0
    riverbed_cores = cores.get("scorers", [])[:1] or None
    pinned_broker = pin_broker(ctx.get("broker_pid"), cores)
    try:
        proc = subprocess.Popen(pinned([sys.executable, "-m", "bench.worker", json.dumps(spec)], riverbed_cores),
                                cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watcher = _StderrWatcher(proc, "READY")
        if not watcher.seen.wait(120):
            proc.kill()
            raise RuntimeError("the live processor did not start")
        broker_cpu = process_cpu_seconds(ctx.get("broker_pid"))
        producer = run_row({"kind": "producer", "bootstrap": str(bootstrap), "kafka": ctx["security"],
                            "topics": topics, "rate": target_rate, "n": n, "dataset": ctx["dataset"],
                            "label_delay": 100}, workdir, cores=cores.get("producer"))
        if broker_cpu is not None:
            broker_cpu = process_cpu_seconds(ctx.get("broker_pid")) - broker_cpu
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("the live processor did not see every event and label within 300 s") from None
    finally:
        if pinned_broker:
            unpin_broker(ctx.get("broker_pid"))
    result = json.loads(out.read_text())
    records = read_records(bootstrap, topics["predictions"], expected=n)
    warmup = int(0.1 * len(records))  # the first 10% (connection warm-up, first batches) are left out
    if records and records[0].timestamp_type != 1:
        raise RuntimeError("the live predictions topic does not use LogAppendTime")
    latencies = [r.timestamp / 1000.0 - msgpack.unpackb(r.value, raw=False, strict_map_key=False)["ts"]
                 for r in records[warmup:]]
    return {
        "load": load,
        "target_rate": target_rate,
        "offered_rate": producer["rate"],
        "load_generator": producer.get("client", "aiokafka"),
        "events": n,
        "latency": percentiles(latencies),
        "freshness": result.get("freshness"),
        "checkpoint_duty": result["checkpoint_duty"],
        "processor_peak_rss_bytes": result["peak_rss_bytes"],
        "pinning": (f"riverbed on core {riverbed_cores[0]}; load generator"
                    f"{' and broker' if pinned_broker else ''} on core 0") if riverbed_cores else "not pinned",
        # CPU in cores (CPU seconds / wall seconds) while the load ran: the three share 2 cores
        "cpu_cores": {
            "riverbed": result["cpu_seconds"] / result["seconds"],
            "load_generator": producer["cpu_seconds"] / producer["seconds"],
            "broker": None if broker_cpu is None else broker_cpu / producer["seconds"],
        },
    }


def latency_base_rate(ctx: dict, preset: str, topics: dict, unpinned_rate: float) -> dict:
    """The rate the latency rows' loads are fractions of: riverbed's sustained rate on the core
    the latency runs give it (the riverbed row again, pinned like them, broker on the other core).

    The riverbed row itself is not pinned: riverbed, its checkpoint thread, RocksDB's background
    threads and the broker share both cores as the scheduler likes, and its rate moved with that
    (two runs on 2026-12-04: logreg 6,671 and 11,283 events/s not pinned, 10,108 and 10,490 pinned;
    hoeffding_adaptive 4,477 / 3,689 against 4,181 / 4,468). Loads of the rate riverbed sustains
    under the latency runs' own conditions are what "50 % load" means. Without pinning (one core,
    no ``taskset``) the riverbed row's rate is used.
    """
    cores = pinning()
    core = cores.get("scorers", [])[:1]
    if not core:
        return {"rate": unpinned_rate, "unpinned_rate": unpinned_rate, "what": "the riverbed row, not pinned"}
    own = {**topics, "predictions": f"{topics['events']}-pin-{preset}-predictions",
           "deadletter": f"{topics['events']}-pin-{preset}-deadletter"}
    create(ctx["bootstrap"], own)
    sections = riverbed_sections(ctx, own, ctx["workdir"] / f"state-pin-{preset}", preset)
    pinned_broker = pin_broker(ctx.get("broker_pid"), cores)
    try:
        row = run_row({"kind": "riverbed", "config": sections, "target": 2 * ctx["events"]}, ctx["workdir"],
                      cores=core)
    finally:
        if pinned_broker:
            unpin_broker(ctx.get("broker_pid"))
    say(f"{preset}: riverbed on core {core[0]} alone: {row['rate']:,.0f} events/s "
        f"(not pinned: {unpinned_rate:,.0f})")
    return {"rate": row["rate"], "unpinned_rate": unpinned_rate, "what": f"riverbed pinned to core {core[0]}"}


def warm_up_broker(ctx: dict, preset: str, rate: float) -> None:
    """One unrecorded live run at 50 % load for ``--latency-warmup-seconds``, once per benchmark,
    before the first latency row.

    A broker started a minute ago is still compiling its hot paths: measured on this machine, the
    benchmark's fresh broker used 0.72-0.85 of a core at 10 % load, a broker warmed by one earlier
    run 0.15-0.23, and the same 10 % runs had p99 26-40 ms against 8-10 ms. A production broker is
    warm; the latency rows should measure riverbed, not the broker's JIT compiler.
    """
    seconds = ctx.get("latency_warmup_s", 0.0)
    if ctx.get("warmed") or seconds <= 0:
        return
    ctx["warmed"] = True
    say(f"{preset}: warming the broker up: one unrecorded run at 50% load for {seconds:g} s")
    try:
        lat = measure_latency(ctx, preset, rate, 0.5, seconds=seconds)
    except Exception as exc:  # the measured runs will say what is wrong
        say(f"{preset}: warm-up run failed: {exc}")
        return
    say(f"{preset}: warm-up (not recorded) p50/p99 = "
        f"{lat['latency'].get('p50', 0) * 1e3:.1f}/{lat['latency'].get('p99', 0) * 1e3:.1f} ms")


def measure_guarantees(ctx: dict, preset: str, topics: dict) -> dict:
    """Throughput and 50 %-load latency with each ``[output] guarantee`` on the same workload."""
    bootstrap, workdir, n = ctx["bootstrap"], ctx["workdir"], ctx["events"]
    found: dict = {}
    for guarantee in GUARANTEES:
        own = {**topics, "predictions": f"{topics['events']}-{guarantee}-{preset}-predictions",
               "deadletter": f"{topics['events']}-{guarantee}-{preset}-deadletter"}
        create(bootstrap, own)
        sections = riverbed_sections(ctx, own, workdir / f"state-{guarantee}-{preset}", preset,
                                     output={"guarantee": guarantee})
        found[guarantee] = {"throughput": run_row({"kind": "riverbed", "config": sections, "target": 2 * n}, workdir)}
        say(f"{preset}: {guarantee} {found[guarantee]['throughput']['rate']:,.0f} events/s")
    base_rate = found["at_least_once"]["throughput"]["rate"]
    warm_up_broker(ctx, preset, base_rate)
    for guarantee in GUARANTEES:
        lat = measure_latency(ctx, preset, base_rate, 0.5, output={"guarantee": guarantee})
        found[guarantee]["latency_50"] = lat
        say(f"{preset}: {guarantee} latency at 50% p50/p99 = "
            f"{lat['latency'].get('p50', 0) * 1e3:.1f}/{lat['latency'].get('p99', 0) * 1e3:.1f} ms")
    found["ratio"] = found["exactly_once"]["throughput"]["rate"] / base_rate
    say(f"{preset}: exactly-once / at-least-once throughput = {found['ratio']:.3f}")
    return found


def measure_soak(ctx: dict, preset: str, rate: float, n: int, sample_s: float) -> dict:
    """The live processor fed ``n`` events (and labels) at ``rate`` events/s; its probes' report (:class:`bench.worker.SoakProbes`)."""
    bootstrap, workdir = ctx["bootstrap"], ctx["workdir"]
    topics = topic_names(f"soak-{preset}-{uuid.uuid4().hex[:6]}")
    create(bootstrap, topics)
    sections = riverbed_sections(ctx, topics, workdir / f"state-{topics['events']}", preset)
    out = workdir / f"soak-{uuid.uuid4().hex[:8]}.json"
    mark = SOAK_RSS_MARK if n > SOAK_RSS_MARK else n // 2
    spec = {"kind": "riverbed_soak", "config": sections, "target": 2 * n, "rss_mark": mark, "sample_s": sample_s,
            "out": str(out)}
    proc = subprocess.Popen([sys.executable, "-m", "bench.worker", json.dumps(spec)], cwd=ROOT, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = _StderrWatcher(proc, "READY")
    if not watcher.seen.wait(120):
        proc.kill()
        raise RuntimeError("the soak's live processor did not start")
    expected_s = n / rate
    producer = run_row({"kind": "producer", "bootstrap": str(bootstrap), "kafka": ctx["security"], "topics": topics,
                        "rate": rate, "n": n, "dataset": ctx["dataset"], "label_delay": 100, "id_prefix": "soak"},
                       workdir, timeout=2 * expected_s + 300)
    try:
        proc.wait(timeout=expected_s + 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"the soak's processor did not see every event and label within {expected_s + 300:.0f} s") from None
    result = json.loads(out.read_text())
    return {"events": n, "target_rate": rate, "offered_rate": producer["rate"], "seconds": producer["seconds"],
            "processor_peak_rss_bytes": result["peak_rss_bytes"], **result["soak"]}


def report_soak(preset: str, soak: dict) -> None:
    """One progress line: RSS at the mark and at the end, state growth, GC p99."""
    mib = 2 ** 20
    growth = soak.get("rss_growth")
    say(f"{preset}: soak RSS {_fmt(soak['rss_at_mark_bytes'] and soak['rss_at_mark_bytes'] / mib, '.0f')} MB at "
        f"{soak['rss_mark_events']:,} events, {_fmt(soak['rss_at_end_bytes'] and soak['rss_at_end_bytes'] / mib, '.0f')}"
        f" MB at {soak['events']:,} ({_fmt(growth, '+.1%')}); state dir "
        f"{soak['state_dir_end_bytes'] / mib:.1f} MB; GC p99 {soak['gc_pauses'].get('p99', 0) * 1e3:.2f} ms")




def measure_recovery(ctx: dict, preset: str, topics: dict, rate: float) -> dict:
    """``riverbed run`` on the backlog, SIGKILL mid-way, restart: time to the first new prediction."""
    from kafka import KafkaConsumer, TopicPartition

    from stream.config import to_toml
    from stream.connect.security import carried_security
    from stream.ops.status import read_status

    bootstrap, workdir, n = ctx["bootstrap"], ctx["workdir"], ctx["events"]
    own = {**topics, "predictions": f"{topics['events']}-recovery-{preset}-predictions",
           "deadletter": f"{topics['events']}-recovery-{preset}-deadletter"}
    create(bootstrap, own)
    interval = 1.0
    sections = riverbed_sections(ctx, own, workdir / f"state-recovery-{preset}", preset,
                                 state={"checkpoint_interval_s": interval}, log={"level": "INFO"})
    cfg = load_sections(sections)
    config_file = workdir / f"recovery-{preset}.toml"
    config_file.write_text(to_toml(cfg), encoding="utf-8")
    command = [sys.executable, "-m", "stream", "--config", str(config_file), "run"]
    expected = n / rate
    kill_after = min(max(interval + 1.0, 0.5 * expected), 0.7 * expected)

    first = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    watcher = _StderrWatcher(first, "consuming", forward=False)
    if not watcher.seen.wait(120):
        first.kill()
        raise RuntimeError("riverbed run did not start consuming")
    time.sleep(kill_after)
    killed_while_running = first.poll() is None
    first.send_signal(signal.SIGKILL)
    first.wait()
    try:
        covered = read_status(cfg)["counts"]["events"]
    except Exception:
        covered = 0
    high = end_offset(bootstrap, own["predictions"])

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=20, **carried_security(bootstrap))
    tp = TopicPartition(own["predictions"], 0)
    consumer.assign([tp])
    consumer.seek(tp, high)
    consumer.poll(timeout_ms=100)  # connect before the clock starts
    restarted_at = time.time()
    second = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    watcher2 = _StderrWatcher(second, "consuming", forward=False)
    first_new = None
    deadline = time.monotonic() + 60
    try:
        while first_new is None and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                if records:
                    first_new = records[0]
                    break
    finally:
        consumer.close()
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    if first_new is None:
        tail = "\n".join(line for _, line in (watcher.lines + watcher2.lines)[-30:])
        raise RuntimeError(f"no prediction within 60 s of the restart; the processor said:\n{tail}")
    return {
        "seconds": first_new.timestamp / 1000.0 - restarted_at,
        "to_consuming_seconds": (watcher2.seen_at - restarted_at) if watcher2.seen_at else None,
        "killed_after_seconds": kill_after,
        "killed_while_running": killed_while_running,
        "events_in_checkpoint_at_kill": covered,
        "predictions_before_kill": high,
        "checkpoint_interval_s": interval,
    }


# -- the run -----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": mem, "python": platform.python_version(),
            "load_avg_1m_at_start": load}


def run(args: argparse.Namespace) -> dict:
    from stream.devtools.replay import produce

    from bench.workload import Workload

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    security = security_keys(args.config) if args.bootstrap else {}
    unknown = set(rows) - set(ALL_ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {', '.join(ALL_ROWS)}")
    n_naive = min(args.naive_events or args.events, args.events)
    n_faust = min(args.faust_events, args.events)
    workdir = Path(tempfile.mkdtemp(prefix="riverbed-bench-"))
    broker = None
    results: dict = {"machine": machine(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "command": "python -m bench " + " ".join(sys.argv[1:]),
                     "workload": {"dataset": args.dataset, "events": args.events, "naive_events": n_naive,
                                  "faust_events": n_faust,
                                  "label_delay": 100, "labels_per_event": 1},
                     "models": {}}
    try:
        bootstrap = args.bootstrap
        if bootstrap:
            from stream.config import load_config
            from stream.connect.security import secured_bootstrap

            bootstrap = secured_bootstrap(bootstrap, load_config(None, env={}).replace(kafka=security))
            say(f"Kafka at {bootstrap} ([kafka] security_protocol {security['security_protocol']})")
        else:
            from stream.devtools.broker import LocalBroker

            cfg = load_sections({"broker": {"port": args.port, "controller_port": args.port + 1,
                                            "dir": str(workdir / "broker")}})
            broker = LocalBroker(cfg)
            say(f"starting the benchmark's own Kafka broker on {broker.bootstrap} (dir {broker.dir})")
            broker.start()
            bootstrap = broker.bootstrap
        ctx = {"bootstrap": bootstrap, "security": security, "workdir": workdir, "dataset": args.dataset, "events": args.events,
               "latency_seconds": args.latency_seconds, "latency_warmup_s": args.latency_warmup_seconds,
               "broker_pid": broker.running_pid() if broker else None}
        workload = Workload(args.dataset, args.events)
        topics = topic_names(f"bench-{args.dataset}-{uuid.uuid4().hex[:6]}")
        if set(rows) & set(BACKLOG_ROWS) or ("soak" in rows and not args.soak_rate):
            create(bootstrap, {k: topics[k] for k in ("events", "labels")})
            say(f"publishing {workload.n:,} events and {workload.n:,} labels ({args.dataset}, label delay 100)")
            published = produce(bootstrap, SimpleNamespace(**topics), workload.records(), progress=False)
            say(f"published in {published['seconds']:.1f} s")
            results["workload"]["published"] = published

        for preset in models:
            say(f"== {preset} ==")
            entry: dict = {"rows": {}}
            results["models"][preset] = entry
            base = {"dataset": args.dataset, "preset": preset, "kafka": security}
            if "bare" in rows:
                say(f"{preset}: the limit P, bare River loop on {args.events:,} events")
                entry["rows"]["bare"] = run_row({**base, "kind": "bare", "n": args.events}, workdir)
                say(f"{preset}: P = {entry['rows']['bare']['rate']:,.0f} events/s")
            if "riverbed" in rows or "latency" in rows or "recovery" in rows or ("soak" in rows and not args.soak_rate):
                say(f"{preset}: riverbed end to end on {args.events:,} events + labels already in Kafka")
                own = {**topics, "predictions": f"{topics['events']}-rb-{preset}-predictions",
                       "deadletter": f"{topics['events']}-rb-{preset}-deadletter"}
                create(bootstrap, own)
                sections = riverbed_sections(ctx, own, workdir / f"state-{preset}", preset)
                entry["rows"]["riverbed"] = run_row(
                    {"kind": "riverbed", "config": sections, "target": 2 * args.events}, workdir)
                r = entry["rows"]["riverbed"]
                say(f"{preset}: riverbed {r['rate']:,.0f} events/s, {r['checkpoints']} checkpoints "
                    f"({r['checkpoint_duty']:.1%} of the time)")
            if "lean" in rows:
                say(f"{preset}: riverbed with the lean config on the same {args.events:,} events")
                own = {**topics, "predictions": f"{topics['events']}-lean-{preset}-predictions",
                       "deadletter": f"{topics['events']}-lean-{preset}-deadletter"}
                create(bootstrap, own)
                sections = riverbed_sections(ctx, own, workdir / f"state-lean-{preset}", preset,
                                             model=LEAN["model"], drift=LEAN["drift"])
                entry["rows"]["lean"] = run_row(
                    {"kind": "riverbed", "config": sections, "target": 2 * args.events}, workdir)
                say(f"{preset}: riverbed lean {entry['rows']['lean']['rate']:,.0f} events/s")
            for kind, n_kind, label in (("faust", n_faust, "faust-streaming agents"),
                                        ("bytewax", n_faust, "bytewax dataflow"),
                                        ("quix", n_faust, "Quix Streams application, at-least-once"),
                                        ("quix_eos", n_faust, "Quix Streams application, exactly-once"),
                                        ("naive", n_naive, "naive kafka-python loop")):
                if kind in rows:
                    say(f"{preset}: {label} on {n_kind:,} events")
                    run_comparator(entry, base, kind, n_kind, bootstrap, topics, workdir)
            rate = entry["rows"].get("riverbed", {}).get("rate")
            if "latency" in rows and rate:
                entry["latency"] = []
                entry["latency_base"] = base = latency_base_rate(ctx, preset, topics, rate)
                warm_up_broker(ctx, preset, base["rate"])
                for load in [float(x) for x in args.loads.split(",") if x.strip()]:
                    say(f"{preset}: latency at {load:.0%} of {base['rate']:,.0f} events/s ({base['what']}) "
                        f"for {args.latency_seconds:g} s")
                    try:
                        lat = measure_latency(ctx, preset, base["rate"], load)
                    except Exception as exc:  # one failed measurement must not lose the others
                        say(f"{preset}: latency run failed: {exc}")
                        entry.setdefault("errors", []).append(f"latency {load}: {exc}")
                        continue
                    entry["latency"].append(lat)
                    say(f"{preset}: latency p50/p99/p99.9 = "
                        + "/".join(f"{lat['latency'].get(k, float('nan')) * 1000:.1f}" for k in ("p50", "p99", "p999"))
                        + f" ms at {lat['offered_rate']:,.0f} events/s")
            if "recovery" in rows and rate:
                say(f"{preset}: recovery after kill -9")
                try:
                    entry["recovery"] = measure_recovery(ctx, preset, topics, rate)
                except Exception as exc:
                    say(f"{preset}: recovery measurement failed: {exc}")
                    entry.setdefault("errors", []).append(f"recovery: {exc}")
            if "guarantees" in rows:
                say(f"{preset}: exactly-once and at-least-once output on the same {args.events:,} events")
                try:
                    entry["guarantees"] = measure_guarantees(ctx, preset, topics)
                except Exception as exc:
                    say(f"{preset}: guarantee measurement failed: {exc}")
                    entry.setdefault("errors", []).append(f"guarantees: {exc}")
            soak_rate = args.soak_rate or (0.5 * rate if rate else None)
            if "soak" in rows and soak_rate:
                say(f"{preset}: soak, {args.soak_events:,} events with labels at {soak_rate:,.0f} events/s")
                try:
                    entry["soak"] = measure_soak(ctx, preset, soak_rate, args.soak_events, args.soak_sample_s)
                    report_soak(preset, entry["soak"])
                except Exception as exc:
                    say(f"{preset}: soak failed: {exc}")
                    entry.setdefault("errors", []).append(f"soak: {exc}")
            if "scale" in rows:
                from bench.scale import measure as measure_scale

                counts = [int(k) for k in args.scale_scorers.split(",") if k.strip()]
                entry["scale"] = measure_scale(ctx, preset, counts, args.scale_events, args.scale_rate, say,
                                               args.scale_label_lag)
                for error in entry["scale"].get("errors", []):
                    entry.setdefault("errors", []).append(error)
            if "recovery" in entry:
                say(f"{preset}: first new prediction {entry['recovery']['seconds']:.2f} s after the restart")
            derive(entry, preset)
    finally:
        if broker is not None:
            say("stopping the benchmark's broker")
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    return results


def derive(entry: dict, preset: str) -> None:
    """η, overhead, ratio to riverbed, and the targets, from the rows of one model."""
    rows = entry["rows"]
    p = rows.get("bare", {}).get("rate")
    rb = rows.get("riverbed", {}).get("rate")
    for row in rows.values():
        rate = row["rate"]
        row["eta"] = rate / p if p else None
        row["overhead_us"] = (1 / rate - 1 / p) * 1e6 if p else None
        row["ratio_to_riverbed"] = rate / rb if rb else None
    targets = {}
    if p and rb:
        targets[f"eta >= {TARGET_ETA.get(preset, 0.6)}"] = rows["riverbed"]["eta"] >= TARGET_ETA.get(preset, 0.6)
    if rb and "faust" in rows:
        targets["riverbed >= 5x faust"] = rb >= 5 * rows["faust"]["rate"]
    if rb and "naive" in rows:
        targets["riverbed >= 3x naive"] = rb >= 3 * rows["naive"]["rate"]
    peers = {k: rows[k]["rate"] for k in PEER_ROWS if k in rows}
    if rb and peers:
        fastest = max(peers, key=peers.get)
        entry["ratio_to_fastest_peer"] = {"peer": fastest, "ratio": rb / peers[fastest]}
        targets[f"riverbed >= 1.5x fastest peer ({fastest})"] = rb >= 1.5 * peers[fastest]
    if p and rb:
        targets["overhead <= 20 us"] = rows["riverbed"]["overhead_us"] <= 20
    for load, goal in ((0.5, 0.020), (0.1, 0.010)):
        at = [x for x in entry.get("latency", []) if abs(x["load"] - load) < 1e-9]
        if at and at[0]["latency"].get("p99") is not None:
            targets[f"p99 <= {goal * 1e3:.0f} ms at {load:.0%} load"] = at[0]["latency"]["p99"] <= goal
    if "riverbed" in rows:
        targets["checkpoint duty <= 2%"] = rows["riverbed"]["checkpoint_duty"] <= 0.02
    if "recovery" in entry:
        targets["recovery <= 3 s"] = entry["recovery"]["seconds"] <= 3.0
    if "guarantees" in entry:
        targets[f"exactly-once >= {TARGET_EXACTLY_ONCE_RATIO} x at-least-once"] = (
            entry["guarantees"]["ratio"] >= TARGET_EXACTLY_ONCE_RATIO)
    if entry.get("soak", {}).get("rss_growth") is not None:
        targets[f"soak RSS growth <= {TARGET_SOAK_RSS_GROWTH:.0%}"] = entry["soak"]["rss_growth"] <= TARGET_SOAK_RSS_GROWTH
    entry["targets"] = targets


# -- report ------------------------------------------------------------------------------------


def _fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _cores(cpu: dict | None) -> str:
    if not cpu:
        return "–"
    return " / ".join(_fmt(cpu.get(k), ".2f") for k in ("riverbed", "load_generator", "broker"))


def markdown(results: dict) -> str:
    m = results["machine"]
    w = results["workload"]
    lines = [
        f"Workload: `{w['dataset']}`, {w['events']:,} events (naive loop: {w['naive_events']:,}, faust: "
        f"{w['faust_events']:,}), one label per "
        f"event, label delay 100. Machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GB RAM, Python {m['python']}.",
        "",
        "| model | row | events/s | η = rate/P | overhead µs/event | × riverbed | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for preset, entry in results["models"].items():
        for key in ("bare", "riverbed", "lean", "faust", "bytewax", "quix", "quix_eos", "naive"):
            row = entry["rows"].get(key)
            if row is None:
                continue
            lines.append(
                f"| {preset} | {ROW_TITLES[key]} | {row['rate']:,.0f} | {_fmt(row.get('eta'), '.2f')} | "
                f"{_fmt(row.get('overhead_us'), '.1f')} | {_fmt(row.get('ratio_to_riverbed'), '.2f')} | "
                f"{row['peak_rss_bytes'] / 2**20:.0f} |"
            )
    bases = [f"{preset} {entry['latency_base']['rate']:,.0f} events/s ({entry['latency_base']['what']}; "
             f"not pinned {entry['latency_base']['unpinned_rate']:,.0f})"
             for preset, entry in results["models"].items() if entry.get("latency_base")]
    lines += ["", "riverbed only" + (f"; loads are fractions of {', '.join(bases)}" if bases else "") + ":", "",
              "| model | load | offered events/s | latency p50 / p99 / p99.9 ms | label freshness p50 / p99 ms "
              "| CPU cores: riverbed / load generator / broker | pinning | load generator |",
              "|---|---:|---:|---|---|---|---|---|"]
    for preset, entry in results["models"].items():
        for lat in entry.get("latency", []):
            q = lat["latency"]
            f = lat.get("freshness") or {}
            lines.append(
                f"| {preset} | {lat['load']:.0%} | {lat['offered_rate']:,.0f} | "
                f"{q.get('p50', 0) * 1e3:.1f} / {q.get('p99', 0) * 1e3:.1f} / {q.get('p999', 0) * 1e3:.1f} | "
                f"{_fmt(f.get('p50') and f['p50'] * 1e3, '.1f')} / {_fmt(f.get('p99') and f['p99'] * 1e3, '.1f')} | "
                f"{_cores(lat.get('cpu_cores'))} | {lat.get('pinning', 'not pinned')} | "
                f"{lat.get('load_generator', 'aiokafka')} |"
            )
    lines += ["", "| model | checkpoints (pause, duty cycle) | recovery after kill -9 | targets |", "|---|---|---|---|"]
    for preset, entry in results["models"].items():
        rb = entry["rows"].get("riverbed")
        ck = (f"{rb['checkpoints']} in {rb['seconds']:.1f} s, paused {rb['checkpoint_pause_seconds'] * 1e3:.0f} ms "
              f"({rb['checkpoint_duty']:.2%}); {rb['checkpoint_seconds'] * 1e3:.0f} ms until durable") if rb else "–"
        rec = entry.get("recovery")
        rc = (f"{rec['seconds']:.2f} s (checkpoint covered {rec['events_in_checkpoint_at_kill']:,} events)"
              if rec else "–")
        targets = ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in entry.get("targets", {}).items())
        lines.append(f"| {preset} | {ck} | {rc} | {targets or '–'} |")
    guarantee_rows = []
    for preset, entry in results["models"].items():
        found = entry.get("guarantees")
        for guarantee in GUARANTEES if found else ():
            row, q = found[guarantee]["throughput"], found[guarantee]["latency_50"]["latency"]
            guarantee_rows.append(
                f"| {preset} | {guarantee} | {row['rate']:,.0f} | "
                f"{q.get('p50', 0) * 1e3:.1f} / {q.get('p99', 0) * 1e3:.1f} | "
                f"{found['ratio']:.3f} |" if guarantee == "exactly_once" else
                f"| {preset} | {guarantee} | {row['rate']:,.0f} | "
                f"{q.get('p50', 0) * 1e3:.1f} / {q.get('p99', 0) * 1e3:.1f} | 1 |"
            )
    if guarantee_rows:
        lines += ["", "| model | [output] guarantee | events/s | latency p50 / p99 ms at 50% load | × at-least-once |",
                  "|---|---|---:|---|---:|", *guarantee_rows]
    lines += soak_markdown(results)
    lines += scale_markdown(results)
    for preset, entry in results["models"].items():
        for reason in entry.get("skipped", []):
            lines.append(f"\n{preset}: {reason}")
        for error in entry.get("errors", []):
            lines.append(f"\n{preset}: measurement failed: {error}")
    return "\n".join(lines)


def _mib(value) -> str:
    return _fmt(value and value / 2**20, ".1f")


def soak_markdown(results: dict) -> list[str]:
    """The soak's summary row per model, then its samples (at most about 12 per model)."""
    soaks = {preset: entry["soak"] for preset, entry in results["models"].items() if "soak" in entry}
    if not soaks:
        return []
    lines = ["", "| model | soak events | offered events/s | RSS MB at mark / end (growth) | pending max "
             "| learned ids | state dir MB at the end (bytes per learned id) | state dir MB per million labels while running "
             "| GC: collections, p50 / p99 / max ms, total s |",
             "|---|---:|---:|---|---:|---:|---|---:|---|"]
    for preset, soak in soaks.items():
        gc_pauses = soak["gc_pauses"]
        lines.append(
            f"| {preset} | {soak['events']:,} | {soak['offered_rate']:,.0f} | {_mib(soak['rss_at_mark_bytes'])} at "
            f"{soak['rss_mark_events']:,} / {_mib(soak['rss_at_end_bytes'])} ({_fmt(soak['rss_growth'], '+.1%')}) | "
            f"{_fmt(soak['pending_max'], ',.0f')} | {soak['learned_ids_end']:,} | {_mib(soak['state_dir_end_bytes'])} "
            f"({_fmt(soak['state_dir_end_bytes_per_learned_id'], '.0f')}) | "
            f"{_mib(soak['state_dir_bytes_per_million_labels'])} | {gc_pauses['n']}, "
            f"{gc_pauses.get('p50', 0) * 1e3:.2f} / {gc_pauses.get('p99', 0) * 1e3:.2f} / "
            f"{gc_pauses.get('max', 0) * 1e3:.2f}, "
            f"{gc_pauses['total_seconds']:.2f} |")
    lines += ["", "| model | s | events | RSS MB | pending | learned ids | state dir MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for preset, soak in soaks.items():
        samples = soak["samples"]
        step = max(1, len(samples) // 12)
        for sample in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            lines.append(f"| {preset} | {sample['seconds']:.0f} | {sample['events']:,} | {_mib(sample['rss_bytes'])} | "
                         f"{_fmt(sample['pending'], ',.0f')} | {sample['learned_ids']:,} | "
                         f"{_mib(sample['state_dir_bytes'])} |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.profile is not None:
        from bench.worker import PROFILE_ENV

        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())  # the workers inherit it (see child_env)
        say(f"profiling every row's worker into {args.profile}/ (rates are slower under cProfile)")
    say(f"riverbed benchmark: {args.events:,} events per row, models {args.models}, rows {args.rows}")
    results = run(args)
    table = markdown(results)
    results["markdown"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table)
    say(f"wrote {args.out}")
    return 0
