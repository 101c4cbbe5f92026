"""The checkpointer: snapshot, land, settle, restore -- exactly-once model state.

Recovery contract
-----------------
A checkpoint is made every ``[state] checkpoint_interval_s`` *when something changed* (records
were applied since the last one: an idle processor writes none), sooner once ``[state]
checkpoint_max_changes`` changes wait (:mod:`stream.engine.checkpoint_schedule`), at clean
shutdown and when ``--exit-when-idle`` fires:

1. **Snapshot**, on the loop (the only pause): wait for a previous checkpoint still landing,
   take an output barrier, pickle and seal the models and the label-request sampler
   (:mod:`stream.engine.model_bytes`), build the metadata with the next offset of every input
   partition -- exactly what was applied -- and freeze the pending/learned overlays
   (:meth:`state.StateStore.begin_commit`).
2. **Land**, while processing goes on: wait until Kafka acknowledged every output message
   before the barrier (predictions, label requests, dead letters of the snapshotted records),
   write one synced RocksDB ``WriteBatch`` in a thread (models, metadata, offsets and the frozen
   overlays), then :meth:`~state.StateStore.end_commit`.
3. **Settle**: commit the same offsets to the consumer group (lag tools only; a failure is a
   warning). A failed land aborts the commit: the frozen overlays merge back, nothing is lost,
   the next checkpoint writes it all; the error stops the processor with one line.

What a crash costs: before step 2's batch is durable, the previous checkpoint stands and the
records after it are replayed on restart (same order, same operations: nothing is learned
twice); predictions published after it are published again, byte-identical (at-least-once
output). After it, nothing.

Exactly-once output (``[output] guarantee = "exactly_once"``, :mod:`stream.engine.transactions`):
the barrier of step 1 *cuts* the output transaction at the snapshot, step 2 waits until that
transaction (output and offsets) committed before it writes RocksDB, and step 3 is skipped (the
transaction committed the offsets). So a checkpoint never covers offsets whose output is not
committed; output replayed after a crash is suppressed up to the committed offsets instead of
published again (the recovery contract is written in that module).

On start (:meth:`Checkpointer.restore`) the newest checkpoint that can be read and verified is
loaded: its model bytes are checked (SHA-256, the HMAC with ``RIVERBED_MODEL_KEY``, the format)
before anything is unpickled. A refused checkpoint is logged with its reason and the previous
kept one is tried (labels learned between the two then count as duplicates: the pending store is
the newest). When checkpoints exist but none can be used, the processor stops with one line and
leaves the state dir untouched: it never silently starts a new model. A state dir whose model
was built from another ``[model]`` spec is refused with one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple

import river

from learners.active import LabelRequestSampler
from state import Checkpoint, StateStore
from state.errors import StateError
from stream import __version__
from stream.config import Config
from stream.engine.history import MetricsHistory
from stream.engine.model_bytes import load_model_state, seal_model_state
from stream.engine.model_config import build_model_set, learner_settings, model_spec
from stream.engine.output import Output
from stream.engine.stream_state import StreamState
from stream.engine.telemetry import Telemetry
from stream.engine.transactions import OutputFenced
from stream.errors import RiverbedError

log = logging.getLogger("stream.engine.processor")


class ModelSpecMismatch(RiverbedError):
    """The state dir holds a model built from another specification."""


class NoUsableCheckpoint(StateError):
    """Checkpoints exist, but none can be read and verified."""


def checkpoint_meta(state: StreamState, spec: dict, pending: int, *, fingerprints: bool = False) -> dict:
    """A checkpoint's metadata from the live state (also the source of the live ``/status``).

    Fingerprints cost a canonical pickle of every model, so checkpoints leave them out; the live
    ``/status`` asks for them and ``riverbed status`` computes them from the verified bytes.
    """
    models = state.models
    return {
        "created_at": time.time(),
        "spec": spec,
        "offsets": [[t, p, o] for (t, p), o in sorted(state.offsets.items())],
        "counts": dict(state.counts),
        "invalid_by_reason": dict(state.invalid_by_reason),
        "watermark": state.watermark,
        "events_since_sweep": state.events_since_sweep,
        "serving": models.serving,
        "pending": pending,
        "models": models.describe(fingerprints=fingerprints),
        "drift": list(models.drift_log),
        "promotions": list(models.switch_log),
        "versions": {"riverbed": __version__, "river": river.__version__},
        "history": state.history.to_meta(),
    }


class Restored(NamedTuple):
    """What :func:`restore_state` found."""

    state: StreamState
    checkpoint: Checkpoint | None
    """The checkpoint resumed from (None: a new model)."""
    changed: bool
    """True when the next checkpoint must be written even with no new records: a newer checkpoint
    was refused (so the newest must become a good one) or the settings changed since."""
    refused: list[dict]
    """The checkpoints skipped as unusable, newest first: ``{"seq": N, "reason": "..."}``."""


def restore_state(store: StateStore, config: Config, sampler: LabelRequestSampler | None) -> Restored:
    """The state to resume from: the newest usable checkpoint's, or a new model when the dir has none.

    Raises
    ------
    ModelSpecMismatch
        The checkpoint's model was built from another ``[model]`` spec.
    NoUsableCheckpoint
        Checkpoints exist but every one was refused (the state dir is left as it is).
    """
    spec = model_spec(config)
    refused: list[dict] = []
    for problem in store.damage:
        log.warning("state dir %s: %s", store.path, problem)
    seqs = store.checkpoints()
    for seq in seqs:
        try:
            ckpt = store.load(seq)
            if ckpt is None:
                raise StateError(f"checkpoint {seq} is listed but could not be found")
            stored = ckpt.meta.get("spec")
            if stored != spec:
                raise ModelSpecMismatch(
                    f"state dir {store.path} holds a model built from {stored}, but the config asks for "
                    f"{spec}: point [state] dir at another directory or restore the previous [model] settings"
                )
            loaded = load_model_state(ckpt.model_blob)  # verified before it is unpickled
        except StateError as exc:
            log.error("checkpoint %d refused: %s", seq, exc)
            refused.append({"seq": seq, "reason": str(exc)})
            continue
        for problem in ckpt.damage:
            log.warning("checkpoint %d: %s", seq, problem)
        if refused:
            log.warning("resuming from older checkpoint %d: labels learned after it may count as duplicates", seq)
        state, reconfigured = _state_from(ckpt, loaded, config, sampler)
        model = state.models.serving_model
        log.info(
            "resumed from checkpoint %d: model %s v%d, offsets %s", seq, model.name, model.n_learned,
            ", ".join(f"{t}:{p}={o}" for (t, p), o in sorted(state.offsets.items())),
        )
        return Restored(state, ckpt, bool(refused) or reconfigured, refused)
    if seqs:
        reasons = "; ".join(f"{r['seq']}: {r['reason']}" for r in refused)
        raise NoUsableCheckpoint(
            f"no usable checkpoint in {store.path}: all {len(seqs)} were refused ({reasons[:700]}); "
            "riverbed will not start a new model over them: fix or move the directory aside"
        )
    m = config.model
    log.info("no checkpoint in %s: starting a new %s model (%s)", store.path, m.preset, m.task)
    return Restored(StreamState(models=build_model_set(config), sampler=sampler), None, True, [])


def _state_from(ckpt: Checkpoint, loaded: dict, config: Config,
                sampler: LabelRequestSampler | None) -> tuple[StreamState, bool]:
    models = loaded["models"]
    changes = models.reconfigure(**learner_settings(config))
    for change in changes:
        log.warning("configuration changed since checkpoint %d: %s", ckpt.seq, change)
    stored_sampler = loaded.get("sampler")
    if sampler is not None and stored_sampler is not None:
        if stored_sampler.params == sampler.params:
            sampler = stored_sampler
        else:
            log.info("[labels] request settings changed since the checkpoint: the label-request budget restarts")
    meta = ckpt.meta
    state = StreamState(
        models=models,
        sampler=sampler,
        invalid_by_reason=dict(meta.get("invalid_by_reason", {})),
        offsets={(t, p): o for t, p, o in meta["offsets"]},
        watermark=meta.get("watermark"),
        events_since_sweep=meta.get("events_since_sweep", 0),
        history=MetricsHistory.from_meta(meta.get("history")),
    )
    state.counts.update(meta["counts"])
    return state, bool(changes)


class Checkpointer:
    """Makes checkpoints of a :class:`StreamState` durable (see the module docstring).

    Parameters
    ----------
    store
        The open state dir.
    state
        What the handlers change.
    spec
        The model spec recorded in every checkpoint.
    output
        The output, for the barrier.
    commit_offsets
        ``await commit_offsets([(topic, partition, offset), ...])`` after a checkpoint landed
        (None: the output transactions commit the offsets).
    telemetry
        Checkpoint durations and sizes.
    last
        The checkpoint the state was restored from, if any.
    changed
        Write the next checkpoint even if no record is applied (see :class:`Restored`).
    """

    def __init__(
        self,
        store: StateStore,
        state: StreamState,
        spec: dict,
        output: Output,
        commit_offsets: Callable[[list], Awaitable[None]] | None,
        telemetry: Telemetry,
        last: Checkpoint | None = None,
        changed: bool = False,
    ):
        self.store = store
        self.state = state
        self.spec = spec
        self.output = output
        self.commit_offsets = commit_offsets
        self.telemetry = telemetry
        self.last = last
        self.written = 0
        self.changed = changed
        self._landing: asyncio.Future | None = None
        self.last_pause_s = 0.0
        """How long the last snapshot paused the loop (the schedule spaces checkpoints by it)."""

    def meta(self, fingerprints: bool = False) -> dict:
        meta = checkpoint_meta(self.state, self.spec, len(self.store.pending), fingerprints=fingerprints)
        origin = None if self.last is None else self.last.meta.get("origin")
        if origin is not None:  # where an imported or trained model came from (stream.models)
            meta["origin"] = origin
        return meta

    @property
    def changes(self) -> int:
        """Pending-label and learned-id changes the next checkpoint would write (its batch's size)."""
        return self.store.changes

    @property
    def landing(self) -> bool:
        """True while a checkpoint is in flight (snapshot taken, not durable yet)."""
        return self._landing is not None and not self._landing.done()

    @property
    def due(self) -> bool:
        """True when records were applied since the last snapshot (an idle processor writes none)."""
        return self.changed or self.state.applied > 0

    async def checkpoint(self, wait: bool = True) -> bool:
        """Snapshot now and land it (``wait=False``: return after the snapshot). False when nothing changed."""
        await self.landed()
        if not self.due:
            return False
        started = time.perf_counter()
        barrier = self.output.barrier()
        blob = seal_model_state(self.state.models, self.state.sampler)
        meta = self.meta()
        commit = self.store.begin_commit(meta, blob)
        self.state.applied = 0
        self.changed = False
        self.last_pause_s = time.perf_counter() - started
        self.telemetry.checkpoint_paused(self.last_pause_s)
        self._landing = asyncio.ensure_future(self._land(commit, barrier, meta["offsets"], started))
        if wait:
            await self.landed()
        return True

    async def _land(self, commit, barrier, offsets: list, started: float) -> None:
        try:
            await self.output.wait(barrier)
            await asyncio.to_thread(commit.write)
        except BaseException:
            self.store.abort_commit(commit)  # nothing lost: the next checkpoint writes it all
            raise
        ckpt = self.store.end_commit(commit)
        self.last = ckpt
        self.written += 1
        elapsed = time.perf_counter() - started
        self.telemetry.checkpoint_landed(elapsed, ckpt.size_bytes)
        log.debug("checkpoint %d: %d bytes, durable after %.3f s", ckpt.seq, ckpt.size_bytes, elapsed)
        if offsets and self.commit_offsets is not None:
            try:
                await self.commit_offsets(offsets)
            except Exception as exc:  # lag reporting only: the checkpoint is the truth
                log.warning("could not commit offsets to the consumer group: %s", exc)
        # Free the landed layer in the worker thread, in steps: on the loop it stopped
        # processing for 5-10 ms per 30,000 changes (state.release).
        await asyncio.to_thread(commit.release)

    async def landed(self) -> None:
        """Wait for the checkpoint in flight, if any; raise what made it fail."""
        landing, self._landing = self._landing, None
        if landing is not None:
            await landing

    def raise_if_failed(self) -> None:
        """Raise now if the checkpoint in flight already failed (called every loop turn)."""
        landing = self._landing
        if landing is not None and landing.done():
            self._landing = None
            landing.result()

    async def settle(self) -> None:
        """On the way out after an error: let a checkpoint in flight finish or fail (logged)."""
        try:
            await self.landed()
        except OutputFenced:
            pass  # the processor stops with that line already
        except Exception as exc:
            log.error("the checkpoint in flight failed: %s", exc)
