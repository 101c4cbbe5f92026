"""``riverbed demo``: the embedded default end to end, with a report a person can read.

It starts the local broker (unless ``[kafka] bootstrap_servers`` names a cluster), replays a
bundled dataset with delayed labels into fresh topics of its own, runs the processor until it is
caught up, and compares riverbed's prequential metrics with River's own
``evaluate.progressive_val_score`` on the same data, model and label delay.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time

from river import evaluate

from learners import build_model, river_metric
from stream.connect.bootstrap import ensure_kafka
from stream.ops.status import read_status
from stream.config import Config
from stream.devtools.datasets import open_dataset
from stream.errors import ConfigError
from stream.engine.processor import Processor, build_model_set
from stream.devtools.replay import produce, schedule
from stream.connect.topics import create_topics

log = logging.getLogger(__name__)


def river_reference(dataset: str, limit: int | None, preset: str, task: str, metric: str, delay: int) -> float:
    """River's own progressive validation score for the same data, model and delay."""
    samples = open_dataset(dataset, limit=limit)
    return evaluate.progressive_val_score(
        list(samples.rows), build_model(preset, task), river_metric(metric, task), delay=delay
    ).get()


def run_demo(cfg: Config, *, dataset: str, label_delay: int, limit: int | None) -> int:
    """Replay ``dataset`` through a fresh riverbed and print the report; returns the exit status.

    The dataset, task and model spec are checked before any broker is started or topic created.

    Raises
    ------
    ConfigError, LearnerError
        When the dataset does not fit ``[model] task``, or the preset, task or a metric is unknown.
    """
    samples = open_dataset(dataset, limit=limit)
    if samples.task != cfg.model.task and not (samples.task == "binary" and cfg.model.task == "multiclass"):
        raise ConfigError(
            f"dataset {dataset} is a {samples.task} task but [model] task is {cfg.model.task}: "
            "pick another --dataset or set [model] task and preset to match"
        )
    build_model_set(cfg)  # a bad preset, task or metric is refused before the broker starts
    run_id = time.strftime("%Y%m%d-%H%M%S")
    state_dir = tempfile.mkdtemp(prefix="riverbed-demo-")
    cfg = cfg.replace(
        topics={name: f"demo-{run_id}-{name}" for name in ("events", "labels", "predictions", "deadletter")},
        state={"dir": state_dir},
        metrics={"port": 0},
        http={"port": 0},
    )
    t = cfg.topics
    print(f"riverbed demo: {dataset}, label delay {label_delay} events, model {cfg.model.preset}", flush=True)
    started = time.monotonic()
    bootstrap = ensure_kafka(cfg)
    print(f"  broker     {bootstrap} ready after {time.monotonic() - started:.1f} s", flush=True)
    create_topics(bootstrap, cfg.topic_names(), cfg.kafka.partitions)
    records = schedule(samples.rows, label_delay=label_delay, id_prefix=dataset, start_ts=float(int(time.time())))
    published = produce(bootstrap, t, records, total=samples.n, progress=True)
    print(f"  published  {published['events']:,} events and {published['labels']:,} labels to {t.events}, {t.labels}")

    summary = asyncio.run(Processor(cfg, exit_when_idle=2.0).run())
    status = read_status(cfg)
    model = status["models"][status["serving"]]
    c = status["counts"]
    rate = summary.processed / summary.busy_seconds if summary.busy_seconds > 0 else float("nan")
    print()
    print("Report")
    print(f"  events       {c['events']:>10,}   predictions {c['predictions']:,} (topic {t.predictions})")
    print(f"  labels       {c['labels']:>10,}   learned {c['joined']:,}, unmatched {c['unmatched_labels']:,}, "
          f"duplicate {c['duplicate_labels']:,}, expired {c['expired']:,}")
    print(f"  invalid      {c['invalid']:>10,}   (dead-letter topic {t.deadletter})")
    print(f"  throughput   {rate:>10,.0f}   records/s while busy ({summary.processed:,} records in "
          f"{summary.busy_seconds:.2f} s; the bare River loop is the limit, see `make bench`)")
    print(f"  checkpoint   {status['checkpoint']['size_bytes']:>10,}   bytes (model, metrics and offsets; "
          f"{summary.checkpoints} written; state dir {state_dir})")
    fingerprint = f"{model['fingerprint'][:16]}…" if model.get("fingerprint") else (
        f"unavailable ({model.get('fingerprint_error') or 'not computed'})"
    )
    print(f"  model        {status['serving']} v{model['n_learned']:,}, fingerprint {fingerprint}")
    print()
    print(f"  {'metric':<10} {'riverbed':>12} {'River progressive_val_score':>28}")
    for name, value in model["metrics"].items():
        reference = river_reference(dataset, limit, cfg.model.preset, cfg.model.task, name, label_delay)
        if value is None:  # no label was scored (e.g. --limit 0)
            print(f"  {name:<10} {'n/a':>12} {reference:>28.6f}")
            continue
        verdict = "equal" if abs(value - reference) <= 1e-12 else "DIFFERENT"
        print(f"  {name:<10} {value:>12.6f} {reference:>28.6f}   {verdict}")
    print()
    print(f"Look at the predictions: riverbed tail --topic {t.predictions} --limit 5")
    return 0
