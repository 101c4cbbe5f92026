"""Helpers shared by the test modules: configs, the real CLI, topics and their records.

Fixtures live in ``conftest.py``; everything a test module imports lives here, so no test module
imports another.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import msgpack
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from learners import ModelSet

from state.errors import StateError
from stream.config import Config, to_toml
from stream.connect.topics import create_topics
from stream.devtools.datasets import open_dataset
from stream.devtools.replay import produce, schedule
from stream.engine.processor import Processor
from stream.engine.decoding import FeaturePipeline
from stream.engine.history import MetricsHistory
from stream.engine.metrics import ServiceMetrics
from stream.engine.transforms import load_transform
from stream.errors import RiverbedError
from stream.ops.status import read_status

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TEST_CONFIG = TESTS / "config.toml"


def fresh_config(base: Config, bootstrap: str, state_dir: Path, **sections) -> Config:
    """``base`` with unique topic names, its own state dir and no metrics or HTTP server."""
    suffix = uuid.uuid4().hex[:10]
    cfg = base.replace(
        kafka={"bootstrap_servers": bootstrap},
        topics={name: f"t{suffix}-{name}" for name in ("events", "labels", "predictions", "deadletter")},
        state={"dir": str(state_dir), "checkpoint_interval_s": 1.0},
        metrics={"enabled": False},
        http={"enabled": False},
        scale={"served_topic": f"t{suffix}-served", "models_topic": f"t{suffix}-models",
               "scorer_group_id": f"t{suffix}-scorers"},
    )
    return cfg.replace(**sections) if sections else cfg

def write_config(cfg: Config, path: Path) -> Path:
    path.write_text(to_toml(cfg), encoding="utf-8")
    return path

def riverbed(*args: str, config: Path | None = None, timeout: float = 300, env: dict | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI (``python -m stream``) in a subprocess."""
    cmd = [sys.executable, "-m", "stream"]
    if config is not None:
        cmd += ["--config", str(config)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    full_env.update(env or {})
    result = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"riverbed {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result

def spawn_processor(config_file: Path, *args: str, log_level: str = "INFO") -> subprocess.Popen:
    """``riverbed run`` as a subprocess, returned once its loop consumes; the rest of its stderr is
    collected in ``proc.captured`` (join ``proc.drain`` after it exited).

    Raises
    ------
    AssertionError
        When the processor exits before it logs that it is consuming.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", log_level, "run", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    proc.captured = []  # stderr lines after "consuming", read by a thread so the pipe never fills up
    for line in proc.stderr:  # wait until the model is restored and the loop starts
        if "consuming" in line:
            proc.drain = threading.Thread(target=_drain, args=(proc,), daemon=True)
            proc.drain.start()
            return proc
    raise AssertionError(f"processor exited early with {proc.wait()}")

def _drain(proc: subprocess.Popen) -> None:
    for line in proc.stderr:
        proc.captured.append(line)


def create_all(cfg) -> None:
    t = cfg.topics
    create_topics(cfg.kafka.bootstrap_servers, [t.events, t.labels, t.predictions, t.deadletter], cfg.kafka.partitions)


def publish(cfg, dataset: str, *, delay: int, limit: int | None = None, seed: int = 42) -> dict:
    create_all(cfg)
    samples = open_dataset(dataset, limit=limit, seed=seed)
    records = schedule(samples.rows, label_delay=delay, id_prefix=dataset, seed=seed)
    return produce(cfg.kafka.bootstrap_servers, cfg.topics, records, progress=False)


def run_once(cfg, registry: CollectorRegistry | None = None, idle: float = 1.0):
    return asyncio.run(Processor(cfg, registry=registry, exit_when_idle=idle, serve_metrics=False).run())


def read_topic(bootstrap: str, topic: str, expected: int | None = None, idle_ms: int = 3000) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=idle_ms,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            if expected is not None and len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def events_checkpointed(cfg) -> int:
    try:
        return read_status(cfg, fingerprints=False)["counts"]["events"]  # polled: skip the model bytes
    except (RiverbedError, StateError):  # no state dir or no checkpoint yet
        return 0


def reader_config(cfg, tmp_path: Path, name: str):
    """A second processor reading the same input topics, writing its own outputs and state."""
    return cfg.replace(
        topics={"predictions": cfg.topics.predictions + f"-{name}", "deadletter": cfg.topics.deadletter + f"-{name}"},
        state={"dir": str(tmp_path / f"state-{name}")},
        kafka={"group_id": f"{cfg.kafka.group_id}-{name}"},  # its own committed output offsets
    )


POISON_EVENTS = [
    (b"\xc1\xc1 not msgpack", "undecodable"),
    (b'{"id": "p-nan", "x": {"f": NaN}}', "non_finite"),
    (msgpack.packb({"x": {"f": 1.0}}), "missing_id"),
    (msgpack.packb({"id": "p-ts", "x": {"f": 1.0}, "ts": "soon"}), "bad_ts"),
    (msgpack.packb([1, 2, 3]), "not_an_object"),
    (msgpack.packb({"id": "p-list", "x": {"f": [1, 2]}}), "bad_feature_value"),
    (msgpack.packb({"id": "p-big", "x": {"blob": "z" * 5000}}), "oversized"),
    (None, "empty"),
]


POISON_LABELS = [
    (msgpack.packb({"id": "phishing-3"}), "missing_y"),
    (msgpack.packb({"id": "phishing-4", "y": [True]}), "bad_y"),
    (b"\x93garbage", "undecodable"),
]


class StaticService:
    """A :class:`LiveService` whose lag and broker answer are set by the test."""

    def __init__(self, models: ModelSet | None = None, lag: dict | None = None, broker_problem: str | None = None,
                 transform: str = ""):
        self.models = models
        self.counts = {"events": 0, "labels": 0, "predictions": 0}
        self.metrics = ServiceMetrics(CollectorRegistry())
        self.history = MetricsHistory()
        self.last_checkpoint = None
        self.store = None
        self.refused_checkpoints = [{"seq": 3, "reason": "checksum mismatch"}]
        self.features = FeaturePipeline(load_transform(transform) if transform else None)
        self.partition_lag = {} if lag is None else lag
        self.broker_problem = broker_problem

    def checkpoint_meta(self, fingerprints: bool = False) -> dict:
        return {"serving": self.models.serving, "models": self.models.describe(fingerprints=fingerprints),
                "counts": dict(self.counts), "offsets": [["events", 0, 10], ["labels", 0, 10]],
                "drift": [], "promotions": []}

    def lag(self) -> dict[str, int | None]:
        return dict(self.partition_lag)

    async def broker_reachable(self, timeout_s: float) -> str | None:
        return self.broker_problem
