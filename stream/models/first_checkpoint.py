"""Checkpoint 1 of a state dir: the one ``riverbed model import`` and ``riverbed train`` write.

The service resumes from it as from any checkpoint: offsets empty (the events and labels
topics are read from their beginning), the model sealed (:mod:`stream.engine.model_bytes`), the
spec that of the configuration (:func:`~stream.engine.model_config.model_spec`), so
``riverbed run`` with the same config accepts it. Where the model came from is kept in the
meta under ``"origin"``.

A state dir that already has a checkpoint is refused, unless ``replace``: then it is deleted
(its checkpoints, pending labels and learned ids; the message says what) and created afresh, so
no older checkpoint is left for the processor to fall back to. A state dir that another process
holds (a running ``riverbed run``) is refused either way (:class:`state.errors.StateLockedError`).
Nothing is written before the new model is complete: a refused import or training leaves the
state dir as it was (a missing one is not created).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from state import Checkpoint, StateStore
from state.errors import StateError
from stream.config import Config
from stream.engine.checkpointer import checkpoint_meta
from stream.engine.model_bytes import seal_model_state
from stream.engine.model_config import model_spec
from stream.engine.stream_state import StreamState
from stream.errors import RiverbedError

log = logging.getLogger(__name__)


class StateDirNotEmpty(RiverbedError):
    """The state dir already has a checkpoint and ``--replace`` was not given."""


@dataclass(frozen=True)
class ExistingState:
    """What a state dir holds (what ``--replace`` discards)."""

    path: Path
    checkpoints: list[int]
    model: str
    pending: int
    learned: int

    def summary(self) -> str:
        seqs = self.checkpoints
        kept = f"checkpoint {seqs[0]}" if len(seqs) == 1 else f"checkpoints {seqs[-1]}..{seqs[0]}"
        return f"{kept} ({self.model}), {self.pending} pending labels and {self.learned} learned ids"


def _newest_model(store: StateStore, seq: int) -> str:
    try:
        ckpt = store.load(seq)
    except StateError as exc:
        return f"unreadable: {exc}"[:200]
    meta = ckpt.meta if ckpt is not None else {}
    serving = meta.get("serving")
    described = meta.get("models", {}).get(serving, {})
    return f"model {serving} v{described.get('n_learned', '?')}" if serving else "no model"


def survey(path: Path, *, for_writing: bool = False) -> ExistingState | None:
    """What the state dir at ``path`` holds; ``None`` when it is missing, empty or has no checkpoint.

    ``for_writing`` opens it with the write lock, so a running processor is refused
    (:class:`~state.errors.StateLockedError`) before anything is discarded.
    """
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    with StateStore(path, read_only=not for_writing) as store:
        seqs = store.checkpoints()
        if not seqs:
            return None
        return ExistingState(path, seqs, _newest_model(store, seqs[0]), len(store.pending), len(store.learned))


def check_state_dir(config: Config, *, replace: bool, command: str) -> ExistingState | None:
    """Refuse a state dir with a checkpoint unless ``replace``; returns what ``replace`` will discard.

    Raises
    ------
    StateDirNotEmpty
        The dir has a checkpoint and ``replace`` is false.
    StateError
        The dir is no riverbed state dir, is damaged, or another process holds it.
    """
    path = Path(config.state.dir)
    existing = survey(path, for_writing=replace)
    if existing is not None and not replace:
        raise StateDirNotEmpty(
            f"state dir {path} already holds {existing.summary()}; `riverbed {command}` writes the first "
            "checkpoint of an empty state dir: point [state] dir elsewhere, or pass --replace to discard it"
        )
    return existing


def write_first_checkpoint(config: Config, state: StreamState, origin: dict,
                           discard: ExistingState | None = None) -> Checkpoint:
    """Seal ``state`` and commit it as the first checkpoint of ``[state] dir``.

    Parameters
    ----------
    config
        The configuration the service will run with (its spec is recorded).
    state
        The models, sampler, counts and metrics history to start from (offsets should be empty).
    origin
        Where the model came from (msgpack-able), kept in the meta as ``"origin"``.
    discard
        What :func:`check_state_dir` found and ``--replace`` deletes first.
    """
    blob = seal_model_state(state.models, state.sampler)
    meta = checkpoint_meta(state, model_spec(config), 0)
    meta["origin"] = origin
    path = Path(config.state.dir)
    if discard is not None:
        log.info("--replace: deleting %s: %s", path, discard.summary())
        shutil.rmtree(path)
    with StateStore(path, keep=config.state.keep) as store:
        if store.checkpoints():  # someone wrote one since the check: never overwrite it
            raise StateDirNotEmpty(f"state dir {path} got a checkpoint meanwhile; nothing was written")
        return store.commit(meta, blob)
