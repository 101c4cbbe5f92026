"""``riverbed model export``: the current model of the newest checkpoint as a plain pickle.

The newest checkpoint whose model bytes verify (SHA-256, the HMAC with ``RIVERBED_MODEL_KEY``,
the format: :func:`stream.engine.model_bytes.load_model_state`) is read; older ones are used only
when newer ones are refused, as on restore. The chosen model (the champion unless another is
named) is written as ``pickle.dumps(model)`` -- the River estimator itself, which
``pickle.load`` returns and which predicts exactly as the service did at that checkpoint -- and
``PATH.json`` describes it: its SHA-256, River's and riverbed's versions, the name, role and
version (``n_learned``), the metrics, the model spec and the checkpoint it came from.

Loading the pickle needs the same River version (pickles depend on class layout), and
``riverbed`` installed when the model is a wrapped scikit-learn estimator
(:mod:`learners.sklearn_models`). ``riverbed model import`` of the exported file continues from
the version in ``PATH.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path

import river

from state import StateStore
from state.errors import StateError
from stream import __version__
from stream.config import Config
from stream.engine.model_bytes import load_model_state
from stream.errors import RiverbedError
from stream.models.model_files import sidecar_path

__all__ = ["export_model"]

log = logging.getLogger(__name__)


def _verified_models(config: Config):
    """``(checkpoint, ModelSet)`` of the newest checkpoint whose model bytes verify."""
    path = Path(config.state.dir)
    if not path.exists():
        raise RiverbedError(f"no state in {path}: run `riverbed run`, `train` or `model import` first")
    refused = []
    with StateStore(path, read_only=True) as store:
        seqs = store.checkpoints()
        for seq in seqs:
            try:
                ckpt = store.load(seq)
                if ckpt is None:
                    raise StateError("listed but not found")
                return ckpt, load_model_state(ckpt.model_blob)["models"]  # verified, then unpickled
            except StateError as exc:
                log.warning("checkpoint %d refused: %s", seq, exc)
                refused.append(f"{seq}: {exc}")
    if not seqs:
        raise RiverbedError(f"no checkpoint in {path}: run `riverbed run`, `train` or `model import` first")
    raise RiverbedError(f"no checkpoint in {path} verifies ({'; '.join(refused)[:600]}); nothing exported")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def export_model(config: Config, path: str | os.PathLike, model: str | None = None) -> dict:
    """Write the current verified model as a pickle at ``path`` and its description at ``PATH.json``.

    Parameters
    ----------
    config
        Its ``[state] dir`` is read (read-only: a running ``riverbed run`` may hold it).
    path
        Where to write the pickle.
    model
        The model's name (default: the champion).

    Returns
    -------
    dict
        What ``PATH.json`` holds.

    Raises
    ------
    RiverbedError
        No state or checkpoint, none that verifies, or no model of that name.
    """
    ckpt, models = _verified_models(config)
    name = model or models.serving
    if name not in models.models:
        raise RiverbedError(
            f"checkpoint {ckpt.seq} has no model {name!r}; its models are {', '.join(models.models)}"
        )
    online = models.models[name]
    data = pickle.dumps(online.model, protocol=5)
    out = Path(path)
    if out.is_dir():
        raise RiverbedError(f"--out {out} is a directory; name the file to write, e.g. {out / 'model.pkl'}")
    description = {
        "file": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "class": f"{type(online.model).__module__}.{type(online.model).__qualname__}",
        "name": name,
        "role": models.role(name),
        "task": online.task,
        "version": online.n_learned,
        "n_learned": online.n_learned,
        "metrics": online.evaluation.values(),
        "rolling_metrics": online.evaluation.rolling_values(),
        "fingerprint": online.fingerprint(),
        "spec": ckpt.meta.get("spec"),
        "checkpoint": ckpt.seq,
        "origin": ckpt.meta.get("origin"),
        "versions": {"river": river.__version__, "riverbed": __version__},
        "exported_at": time.time(),
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(out, data)
        _write_atomically(sidecar_path(out), (json.dumps(description, indent=2, default=repr) + "\n").encode())
    except OSError as exc:
        raise RiverbedError(f"cannot write {out}: {exc.strerror or exc}") from None
    return description
