"""Run the digits scenario: three labelling strategies at the same daily budget, through riverbed.

See the package docstring (``examples/digits/__init__.py``) for the story; this module is the
machinery. Each strategy gets its own topics and state directory and runs the real
:class:`riverbed.Service` (the processor in a background thread, on its own asyncio loop) and the
real :class:`~stream.devtools.oracle.Oracle`, day by day:

1. publish the day's images as events (PNG bytes in msgpack), 08:00-20:00 of event time;
2. wait until the processor has predicted all of them (and published its label requests);
3. the oracle answers the day's requests, each ``--delay-h`` hours of event time later
   (overnight), and the processor learns those labels before the next day's first image.

Waiting for the processor between steps makes every run with the same seeds produce exactly
the same predictions, so the comparison is reproducible (see :mod:`stream.devtools.oracle`).
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: 2023-11-15 00:00:00 UTC: days of event time start at a UTC midnight, like the budget windows.
START_TS = 1_700_006_400.0
DAY_S = 86_400.0
WORK_START_S = 8 * 3600.0
WORK_LENGTH_S = 12 * 3600.0
TRANSFORM = "examples.digits.transform:pixels"
PRESET = "softmax"

#: name -> (request strategy, budget: "budget" or "all")
STRATEGIES = {
    "requested": "margin",
    "random": "random",
    "all": "random",
}


@dataclass(frozen=True)
class Image:
    id: str
    png: bytes
    label: int


@dataclass
class StrategyResult:
    name: str
    strategy: str
    preset: str
    budget: int
    labels_used: int
    requests_per_day: list[int]
    correct: list[bool]  # per image, in stream order
    versions: list[int]  # model version that served each image
    day_of: list[int]
    checkpoint_bytes: int
    seconds: float
    counts: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)

    @property
    def last_third_accuracy(self) -> float:
        tail = self.correct[2 * len(self.correct) // 3:]
        return sum(tail) / len(tail)

    def daily_accuracy(self) -> list[float]:
        days = max(self.day_of) + 1
        hits, totals = [0] * days, [0] * days
        for day, ok in zip(self.day_of, self.correct):
            hits[day] += ok
            totals[day] += 1
        return [h / t for h, t in zip(hits, totals)]


def png_bytes(pixels_0_to_16) -> bytes:
    """An 8x8 digit (grey levels 0..16, as scikit-learn ships them) as a PNG file."""
    from PIL import Image as PILImage

    values = bytes(round(float(v) * 255 / 16) for v in pixels_0_to_16)
    buffer = io.BytesIO()
    PILImage.frombytes("L", (8, 8), values).save(buffer, format="PNG")
    return buffer.getvalue()


def load_images(seed: int = 7, limit: int | None = None) -> list[Image]:
    """scikit-learn's bundled 1,797 digits, shuffled with ``seed``, as PNG images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = list(range(len(digits.target)))
    random.Random(seed).shuffle(order)
    if limit is not None:
        order = order[:limit]
    return [Image(f"digits-{i}", png_bytes(digits.data[k]), int(digits.target[k])) for i, k in enumerate(order)]


def schedule_days(images: list[Image], days: int) -> list[list[tuple[Image, float]]]:
    """Split the stream into ``days`` days of images spread over 08:00-20:00 of event time."""
    per_day = math.ceil(len(images) / days)
    out = []
    for d in range(days):
        chunk = images[d * per_day:(d + 1) * per_day]
        step = WORK_LENGTH_S / max(1, len(chunk))
        out.append([(image, START_TS + d * DAY_S + WORK_START_S + j * step) for j, image in enumerate(chunk)])
    return [day for day in out if day]


def batch_model_pickle_bytes(images: list[Image]) -> dict[str, int]:
    """Pickled sizes of batch scikit-learn models trained on all the images (the 'pickled model')."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    from examples.digits.transform import pixels

    X = np.array([list(pixels({"image": im.png}).values()) for im in images])
    y = np.array([im.label for im in images])
    sizes = {}
    for name, model in (("RandomForest(100)", RandomForestClassifier(n_estimators=100, random_state=0)),
                        ("SVC(rbf)", SVC())):
        model.fit(X, y)
        sizes[name] = len(pickle.dumps(model, protocol=5))
    return sizes


def strategy_config(base, bootstrap: str, name: str, strategy: str, budget: int, state_dir: Path, run_id: str,
                    preset: str = PRESET):
    prefix = f"digits-{run_id}-{name}"
    return base.replace(
        kafka={"bootstrap_servers": str(bootstrap)},  # a plain string; [kafka] security keys come with base
        topics={t: f"{prefix}-{t}" for t in ("events", "labels", "predictions", "deadletter")},
        labels={
            "request_topic": f"{prefix}-label-requests",
            "request_budget": budget,
            "request_window_s": DAY_S,
            "request_strategy": strategy,
        },
        features={"transform": TRANSFORM},
        model={"name": "", "preset": preset, "task": "multiclass", "metrics": ["accuracy"]},
        state={"dir": str(state_dir), "checkpoint_interval_s": 2.0},
        metrics={"enabled": False},
        http={"enabled": False},
    )


def run_strategy(base_cfg, bootstrap: str, name: str, days: list, budget: int, workdir: Path,
                 *, delay_h: float = 10.0, run_id: str | None = None, preset: str = PRESET,
                 strategy: str | None = None, model_file: Path | None = None,
                 model_version: int = 0) -> StrategyResult:
    """One strategy end to end on the real broker; returns what it predicted and learned.

    ``strategy`` is the request strategy (default: ``STRATEGIES[name]``). With ``model_file``, the
    state dir starts from that pickled model (``riverbed.import_model`` with ``model_version`` and
    the 64 pixel names as its column order, champion name ``"imported"``) instead of an empty
    ``preset``.
    """
    from kafka import KafkaConsumer

    import riverbed
    from riverbed import read_status
    from stream.engine.codecs import decode_any
    from stream.devtools.oracle import Oracle
    from stream.devtools.replay import EVENT, Record, produce
    from stream.connect.security import carried_security
    from stream.connect.topics import create_topics

    run_id = run_id or uuid.uuid4().hex[:8]
    strategy = strategy or STRATEGIES[name]
    if name == "all":
        budget = 10 * max(len(day) for day in days)  # a budget no day reaches: every image gets its label
    cfg = strategy_config(base_cfg, bootstrap, name, strategy, budget, workdir / name, run_id, preset)
    if model_file is not None:
        from examples.digits.transform import PIXEL_NAMES

        cfg = cfg.replace(model={"name": "imported"})
        riverbed.import_model(cfg, model_file, version=model_version, features=PIXEL_NAMES)
    t = cfg.topics
    create_topics(bootstrap, [t.events, t.labels, t.predictions, t.deadletter, cfg.labels.request_topic], 1)
    truth = {image.id: image.label for day in days for image, _ in day}
    started = time.monotonic()
    background = riverbed.Service(cfg).start()
    oracle = Oracle(bootstrap, cfg.labels.request_topic, t.labels, truth, delay_s=delay_h * 3600.0)
    requests_per_day = []
    try:
        published = 0
        for day in days:
            records = [Record(EVENT, image.id, {"id": image.id, "x": {"image": image.png}, "ts": ts}, ts)
                       for image, ts in day]
            produce(bootstrap, t, records, progress=False)
            published += len(records)
            background.wait_until(lambda c, n=published: c["events"] + c["invalid"] >= n, what="predict the day's images")
            before = oracle.counts["labels"]
            counts = oracle.answer(expect=background.counts["label_requests"])
            requests_per_day.append(counts["labels"] - before)
            background.wait_until(lambda c, n=counts["labels"]: c["labels"] >= n, what="read the day's labels")
        background.wait_until(lambda c: c["joined"] + c["unmatched_labels"] >= oracle.counts["labels"],
                              what="learn the last labels")
    finally:
        oracle.close()
        background.stop()
    seconds = time.monotonic() - started

    predictions = {}
    consumer = KafkaConsumer(t.predictions, **carried_security(bootstrap), bootstrap_servers=bootstrap,
                             group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        for record in consumer:
            message = decode_any(record.value)
            predictions[message["id"]] = message
            if len(predictions) >= published:
                break
    finally:
        consumer.close()
    correct, versions, day_of = [], [], []
    for d, day in enumerate(days):
        for image, _ in day:
            served = predictions.get(image.id)
            correct.append(served is not None and served["y_pred"] == image.label)
            versions.append(served["version"] if served else -1)
            day_of.append(d)
    status = read_status(cfg)
    return StrategyResult(
        name=name, strategy=strategy, preset=preset, budget=budget, labels_used=status["counts"]["joined"],
        requests_per_day=requests_per_day, correct=correct, versions=versions, day_of=day_of,
        checkpoint_bytes=status["checkpoint"]["size_bytes"], seconds=seconds,
        counts=dict(status["counts"], predicted=len(predictions)),
    )


def format_table(results: list[StrategyResult], budget: int, batch_sizes: dict[str, int] | None = None) -> str:
    days = len(results[0].requests_per_day)
    lines = [
        f"digits: {len(results[0].correct)} PNG images over {days} days, model {results[0].preset!r}, "
        f"budget {budget} labels/day",
        "",
        f"{'strategy':<10} {'labels':>6} {'accuracy':>9} {'last third':>10} {'checkpoint':>11}   accuracy per day",
    ]
    for r in results:
        daily = " ".join(f"{a:.2f}" for a in r.daily_accuracy())
        lines.append(
            f"{r.name:<10} {r.labels_used:>6} {r.accuracy:>9.3f} {r.last_third_accuracy:>10.3f} "
            f"{r.checkpoint_bytes / 1024:>8.1f} KB   {daily}"
        )
    if batch_sizes:
        lines.append("")
        lines.append("pickled batch models trained on all images: " + ", ".join(
            f"{name} {size / 1024:,.0f} KB" for name, size in batch_sizes.items()))
    return "\n".join(lines)


def plot(results: list[StrategyResult], path: Path, budget: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    styles = {"requested": ("tab:blue", "-o"), "random": ("tab:orange", "-s"), "all": ("tab:gray", "--^")}
    for r in results:
        color, style = styles.get(r.name, ("black", "-"))
        daily = r.daily_accuracy()
        ax.plot(range(1, len(daily) + 1), daily, style, color=color,
                label=f"{r.name} ({r.labels_used} labels, last third {r.last_third_accuracy:.3f})")
    ax.set_xlabel("day")
    ax.set_ylabel("accuracy of the day's predictions")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"riverbed digits: learning from {budget} labels a day while serving every image")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run(base_cfg, bootstrap: str, *, days: int = 10, budget: int = 20, seed: int = 7, limit: int | None = None,
        delay_h: float = 10.0, workdir: Path | None = None, strategies=("requested", "random", "all"),
        measure_batch: bool = True, preset: str = PRESET, log=print) -> tuple[list[StrategyResult], dict[str, int]]:
    """Every strategy on the same images; returns the results and the batch models' pickle sizes."""
    images = load_images(seed, limit)
    schedule = schedule_days(images, days)
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="riverbed-digits-")) if own_dir else Path(workdir)
    run_id = uuid.uuid4().hex[:8]
    results = []
    try:
        for name in strategies:
            log(f"running strategy {name!r} ...")
            result = run_strategy(base_cfg, bootstrap, name, schedule, budget, workdir, delay_h=delay_h, run_id=run_id,
                                  preset=preset)
            log(f"  {name}: {result.labels_used} labels, accuracy {result.accuracy:.3f} in {result.seconds:.1f} s")
            results.append(result)
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    batch = batch_model_pickle_bytes(images) if measure_batch else {}
    return results, batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.digits", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="riverbed TOML config (default: built-in defaults, local broker on 9092)")
    parser.add_argument("--days", type=int, default=10, help="simulated days (default 10)")
    parser.add_argument("--budget", type=int, default=20, help="labels a day for requested and random (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="order of the images (default 7)")
    parser.add_argument("--delay-h", type=float, default=10.0, help="hours of event time until a label (default 10)")
    parser.add_argument("--preset", default=PRESET, help=f"riverbed model preset (default {PRESET})")
    parser.add_argument("--out", default="digits-accuracy.png", help="where to write the strategies plot")
    parser.add_argument("--offline-out", default="digits-offline.png",
                        help="where to write the plot of the model trained offline (frozen / imported / empty)")
    parser.add_argument("--scenario", choices=("strategies", "offline", "both"), default="both",
                        help="strategies: requested/random/all from an empty model; offline: a pickled model "
                             "frozen, imported and learning, or empty, with a change of the images (default both)")
    args = parser.parse_args(argv)
    if args.scenario != "strategies" and args.days < 8:
        parser.error(f"--days {args.days} is too few for the offline scenario (3 days of training, the change on "
                     "day 7): use --days 8 or more, or --scenario strategies")

    import logging

    from stream.connect.bootstrap import ensure_kafka
    from stream.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    bootstrap = ensure_kafka(cfg)  # starts the embedded broker when none is configured
    started = time.monotonic()
    if args.scenario in ("strategies", "both"):
        results, batch = run(cfg, bootstrap, days=args.days, budget=args.budget, seed=args.seed,
                             delay_h=args.delay_h, preset=args.preset, log=log_line)
        print(format_table(results, args.budget, batch))
        print(f"\nplot: {plot(results, Path(args.out), args.budget)}\n")
    if args.scenario in ("offline", "both"):
        print(run_offline(cfg, bootstrap, args))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


def log_line(message: str) -> None:
    """Progress goes to stderr, results to stdout."""
    print(message, file=sys.stderr)


def run_offline(cfg, bootstrap: str, args) -> str:
    """The offline scenario (:mod:`examples.digits.offline`) for the command line: its table and plot."""
    from examples.digits.offline import format_offline_table, plot_offline, run_offline_comparison

    schedule = schedule_days(load_images(args.seed), args.days)
    workdir = Path(tempfile.mkdtemp(prefix="riverbed-digits-offline-"))
    try:
        comparison = run_offline_comparison(cfg, bootstrap, schedule, workdir, budget=args.budget,
                                            delay_h=args.delay_h, log=log_line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = plot_offline(comparison, Path(args.offline_out))
    return f"{format_offline_table(comparison)}\n\nplot: {out}\n"
