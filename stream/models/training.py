"""``riverbed train``: learn the configured model from labelled history, without Kafka.

Every labelled row is handled as the service handles an event whose label follows at once
(``--label-delay 0``): the model set predicts it, then learns it, test-then-train, exactly as
:func:`river.evaluate.progressive_val_score` with ``delay=0`` -- through the same calls as the
record handlers (:meth:`learners.ModelSet.predict`, then :meth:`~learners.ModelSet.learn` with
the prediction record as the pending store keeps it, msgpack round trip included), so drift
monitors, challengers and the metrics history evolve as in the service. The result is written as
checkpoint 1 (:mod:`stream.models.first_checkpoint`), which ``riverbed run`` starts from:

* the version (the champion's ``n_learned``) is the number of rows learned;
* the prequential metrics of the pass are the starting point: the cumulative metrics after
  ``run`` cover history *and* stream (River's ``progressive_val_score`` over the stream alone
  starts from a fresh metric; the rolling metrics, once the window has filled with stream
  labels, are over the stream only);
* the counts ``events``, ``labels`` and ``joined`` count the rows of the pass (so the metrics
  history, indexed by labels learned, continues without a gap); ``predictions`` stays 0: nothing
  was published; offsets are empty.

Rows are read exactly as ``riverbed produce`` reads them (:mod:`stream.devtools.datasets`), the
``[features] transform`` is applied as by the processor, and labels are parsed by the task's
:class:`learners.labels.LabelParser`. A row without a label, with a label the task refuses, with
features the service would dead-letter, or whose prediction or learning raises, is skipped and
counted by reason (the service would dead-letter it too).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgpack
from tqdm import tqdm

from learners.labels import LabelError, LabelParser
from stream.config import Config
from stream.devtools.datasets import Samples
from stream.engine.codecs import InvalidMessage, plain_scalar
from stream.engine.decoding import FeaturePipeline
from stream.engine.history import model_snapshot
from stream.engine.model_config import build_model_set, build_sampler
from stream.engine.stream_state import StreamState
from stream.engine.transforms import first_line, load_transform
from stream.errors import RiverbedError
from stream.models.first_checkpoint import check_state_dir, write_first_checkpoint

__all__ = ["TrainReport", "train_model", "train_state"]


@dataclass
class TrainReport:
    """What ``riverbed train`` learned and wrote (:meth:`lines` prints it)."""

    source: str
    rows: int
    learned: int
    skipped: dict[str, int]
    first_skipped: str | None
    champion: str
    version: int
    metrics: dict
    seconds: float
    seq: int
    state_dir: str
    discarded: str | None

    def lines(self) -> list[str]:
        shown = ", ".join(f"{k} {v if v is None else round(v, 6)}" for k, v in self.metrics.items())
        lines = [f"learned {self.learned} of {self.rows} rows of {self.source} in {self.seconds:.1f} s "
                 f"(prequential {shown})"]
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            lines.append(f"skipped {sum(self.skipped.values())} rows: {reasons} (first: {self.first_skipped})")
        if self.discarded:
            lines.append(f"discarded {self.discarded} (--replace)")
        lines.append(f"wrote checkpoint {self.seq} to {self.state_dir}: champion {self.champion!r} "
                     f"v{self.version}; `riverbed run` starts from it")
        return lines


def _pending_round_trip(x: dict, ts, record: list) -> tuple[dict, list]:
    """``x`` and the prediction record as the pending store gives them back to ``learn``."""
    packed = msgpack.packb([x, ts, record], use_bin_type=True, default=plain_scalar)
    x, _ts, record = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    return x, record


class _Pass:
    """One prequential pass over rows, changing a :class:`StreamState` as the handlers would."""

    def __init__(self, config: Config, state: StreamState):
        transform = load_transform(config.features.transform) if config.features.transform else None
        self.features = FeaturePipeline(transform)
        m = config.model
        self.labels = LabelParser(m.task, m.positive_label, m.negative_label)
        self.state = state
        self.skipped: Counter = Counter()
        self.first_skipped: str | None = None

    def skip(self, reason: str, detail: str, row: int) -> None:
        self.skipped[reason] += 1
        if self.first_skipped is None:
            self.first_skipped = f"row {row}: {reason}: {detail}"[:300]

    def row(self, n: int, x, y, ts) -> None:
        if y is None:
            return self.skip("no_label", "the target is empty", n)
        try:
            y = self.labels.parse(y)
            x = self.features.prepare(x)
        except LabelError as exc:
            return self.skip("bad_label", str(exc), n)
        except InvalidMessage as exc:
            return self.skip(exc.reason, exc.detail, n)
        state = self.state
        try:
            served = state.models.predict(x, ts)
            x, record = _pending_round_trip(x, ts, served.record)
        except Exception as exc:  # the service dead-letters it as model_predict_failed
            return self.skip("model_predict_failed", first_line(exc), n)
        counts = state.counts
        counts["events"] += 1
        if ts is not None and (state.watermark is None or ts > state.watermark):
            state.watermark = ts
        try:
            state.models.learn(x, y, record, ts)
        except Exception as exc:  # the service dead-letters the label as model_learn_failed
            return self.skip("model_learn_failed", first_line(exc), n)
        counts["labels"] += 1
        counts["joined"] += 1
        if counts["joined"] % state.history.every == 0:
            state.history.append(
                counts["joined"], position=counts["events"], ts=state.watermark,
                models={name: model_snapshot(model) for name, model in state.models.models.items()},
            )


def train_state(config: Config, samples: Samples, *, progress: bool = False) -> tuple[StreamState, _Pass]:
    """The state after one prequential pass over ``samples`` (see the module docstring)."""
    state = StreamState(models=build_model_set(config), sampler=build_sampler(config))
    learner = _Pass(config, state)
    stamps = samples.stamps if samples.stamps is not None else itertools.repeat((None, None))
    rows = tqdm(zip(samples.rows, stamps), total=samples.n, unit=" rows", disable=not progress,
                desc=f"train {samples.name}", mininterval=0.5)
    with rows:
        for n, ((x, y), (_id, ts)) in enumerate(rows, start=1):
            learner.row(n, x, y, ts)
    return state, learner


def train_model(config: Config, samples: Samples, *, replace: bool = False, progress: bool = True) -> TrainReport:
    """Learn ``samples`` and write checkpoint 1 of ``[state] dir`` (see the module docstring).

    Raises
    ------
    RiverbedError, LearnerError, StateError
        One line: the state dir already has a checkpoint (without ``replace``), the config's
        model cannot be built, the file cannot be read. Nothing is written then.
    """
    existing = check_state_dir(config, replace=replace, command="train")
    started = time.perf_counter()
    state, learner = train_state(config, samples, progress=progress)
    seconds = time.perf_counter() - started
    learned = state.counts["joined"]
    if not learned:
        raise RiverbedError(
            f"no row of {samples.name} could be learned (first: {learner.first_skipped or 'there are no rows'}); "
            f"check --target and that the labels fit [model] task {config.model.task!r}; nothing was written"
        )
    origin = {"kind": "train", "source": samples.name, "rows": samples.n, "learned": learned,
              "skipped": dict(learner.skipped)}
    ckpt = write_first_checkpoint(config, state, origin, existing)
    champion = state.models.serving_model
    return TrainReport(
        samples.name, samples.n or 0, learned, dict(learner.skipped), learner.first_skipped, champion.name,
        champion.n_learned, champion.evaluation.values(), seconds, ckpt.seq, str(Path(config.state.dir)),
        existing.summary() if existing else None,
    )
