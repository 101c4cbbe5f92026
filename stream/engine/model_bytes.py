"""The model-bytes format: how the model set is pickled, sealed and verified.

Checkpoints (and, later, model snapshots and exports) carry the same sealed bytes: a pickle of
``{"models": ModelSet, "sampler": LabelRequestSampler | None}`` behind a header with the format
version, River's version, the length and a SHA-256 (and an HMAC with ``RIVERBED_MODEL_KEY``), see
:mod:`state.sealed`. Nothing is unpickled before that seal verifies.
"""

from __future__ import annotations

import os
import pickle

import river

from state import seal, unseal
from stream.config import MODEL_KEY_ENV

#: Model bytes are sealed with this producer version and refused by any other.
MODEL_FORMAT = f"riverbed-models 1; river {river.__version__}"


def model_key() -> bytes | None:
    """The HMAC key for model bytes, from ``RIVERBED_MODEL_KEY`` (never logged)."""
    key = os.environ.get(MODEL_KEY_ENV)
    return key.encode() if key else None


def load_model_state(blob: bytes) -> dict:
    """The state pickled in sealed model bytes (``{"models": ModelSet, "sampler": ...}``).

    The bytes are verified first, as on restore: SHA-256, the HMAC when ``RIVERBED_MODEL_KEY`` is
    set, and :data:`MODEL_FORMAT`; refused bytes raise :class:`state.errors.StateError` and are
    never unpickled.
    """
    payload = unseal(blob, expect_version=MODEL_FORMAT, key=model_key())
    return pickle.loads(payload)  # integrity verified by unseal() above


def seal_model_state(models, sampler) -> bytes:
    """The sealed bytes of a model set and its label-request sampler (see the module docstring)."""
    return seal(
        pickle.dumps({"models": models, "sampler": sampler}, protocol=5),
        producer_version=MODEL_FORMAT,
        key=model_key(),
    )
