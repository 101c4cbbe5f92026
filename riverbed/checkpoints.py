"""The newest checkpoint of a state dir, and the models in it (verified before unpickling)."""

from __future__ import annotations

from state import Checkpoint
from stream.config import Config
from stream.engine.model_bytes import load_model_state
from stream.ops.status import newest_checkpoint


def latest_checkpoint(config: Config) -> Checkpoint:
    """The newest readable checkpoint in ``[state] dir`` (its ``meta``, ``model_blob``, ``seq``).

    Raises :class:`stream.errors.RiverbedError` with one line when there is none.
    """
    ckpt, _, _ = newest_checkpoint(config)
    return ckpt


def load_models(config: Config):
    """The :class:`learners.ModelSet` of the newest checkpoint.

    The model bytes are checked (SHA-256, the HMAC with ``RIVERBED_MODEL_KEY``, the format)
    before anything is unpickled; refused bytes raise :class:`state.errors.StateError`.
    """
    return load_model_state(latest_checkpoint(config).model_blob)["models"]
