"""The status document: what a checkpoint (or the live service) says about the models and the stream.

``riverbed status``, ``GET /status``, the demo report and the public API all read the same
document, built here from checkpoint metadata (:func:`status_document`); model fingerprints are
computed from the verified model bytes (:func:`checkpoint_fingerprints`), never stored.
"""

from __future__ import annotations

import time
from pathlib import Path

from state import StateStore
from state.errors import CheckpointUnreadable, StateError
from stream.config import Config
from stream.engine.model_bytes import load_model_state
from stream.errors import RiverbedError


def newest_checkpoint(cfg: Config, *, with_disk_size: bool = False):
    """The newest *readable* checkpoint in ``[state] dir`` (and the dir's size), or one clear error.

    Checkpoints that cannot be read (:class:`state.errors.CheckpointUnreadable`) are skipped;
    :func:`newest_readable_checkpoint` also says which and why.
    """
    ckpt, path, disk, _refused = newest_readable_checkpoint(cfg, with_disk_size=with_disk_size)
    return ckpt, path, disk


def newest_readable_checkpoint(cfg: Config, *, with_disk_size: bool = False):
    """The newest checkpoint that :meth:`state.StateStore.load` reads, and the refused newer ones.

    Parameters
    ----------
    cfg
        The configuration (``[state] dir``).
    with_disk_size
        Also measure the state dir.

    Returns
    -------
    tuple
        ``(checkpoint, path, disk_bytes or None, refused)`` where ``refused`` is
        ``[{"seq": N, "reason": "..."}]``, newest first.

    Raises
    ------
    RiverbedError
        No state, no checkpoint, or every checkpoint was refused (the reasons in the message).
    """
    path = Path(cfg.state.dir)
    if not path.exists():
        raise RiverbedError(f"no state in {path}: run `riverbed run` first (or point [state] dir at the right place)")
    refused: list[dict] = []
    with StateStore(path, read_only=True) as store:
        seqs = store.checkpoints()
        ckpt = _first_readable(store, seqs, refused)
        disk = store.disk_size_bytes() if with_disk_size else None
    if ckpt is None and refused:
        reasons = "; ".join(f"checkpoint {r['seq']}: {r['reason']}" for r in refused)
        raise RiverbedError(
            f"no readable checkpoint in {path}: every one was refused ({reasons}); move the directory aside to start from scratch"
        )
    if ckpt is None:
        raise RiverbedError(f"no checkpoint in {path} yet: `riverbed run` writes one every [state] checkpoint_interval_s")
    return ckpt, path, disk, refused


def _first_readable(store: StateStore, seqs: list[int], refused: list[dict]):
    for seq in seqs:
        try:
            ckpt = store.load(seq)
        except CheckpointUnreadable as exc:
            refused.append({"seq": seq, "reason": exc.reason})
            continue
        if ckpt is not None:
            return ckpt
    return None


def read_status(cfg: Config, *, fingerprints: bool = True) -> dict:
    """The status document of the newest readable checkpoint in ``[state] dir``.

    Checkpoints do not store model fingerprints (a canonical pickle of every model would cost the
    processor's loop tens of milliseconds per checkpoint): they are computed here from the
    checkpoint's model bytes, verified before anything is unpickled (:func:`checkpoint_fingerprints`).
    ``fingerprints=False`` skips that (a quick look at counts and offsets, e.g. when polling).

    Newer checkpoints that the state store cannot read (neither copy) are skipped, as the
    processor skips them on restore, and listed in the document's ``"refused"``:
    ``[{"seq": N, "reason": "..."}]`` (empty when all is well). A checkpoint read from its file
    copy says so in ``checkpoint.copy`` and ``checkpoint.damage``. Model bytes that fail their
    seal are reported per model as ``fingerprint_error``.
    """
    ckpt, path, disk, refused = newest_readable_checkpoint(cfg, with_disk_size=True)
    document = status_document(ckpt.meta, checkpoint_info(ckpt, path, disk))
    document["refused"] = refused
    if fingerprints:
        document["models"] = with_fingerprints(document["models"], *checkpoint_fingerprints(ckpt))
    return document


def checkpoint_fingerprints(ckpt) -> tuple[dict[str, str], str | None]:
    """Each model's canonical fingerprint from the checkpoint's model bytes, or why there is none.

    The bytes are verified as the processor verifies them on restore (SHA-256, the HMAC when
    ``RIVERBED_MODEL_KEY`` is set, the producer version) and only then unpickled; refused or
    unloadable bytes give ``({}, reason)`` instead of an error, so ``status`` still works.
    """
    try:
        state = load_model_state(ckpt.model_blob)
    except StateError as exc:
        return {}, f"the model bytes of checkpoint {ckpt.seq} are refused: {exc}"
    try:
        models = state["models"].models
        return {name: model.fingerprint() for name, model in models.items()}, None
    except Exception as exc:  # verified bytes this riverbed cannot read: report it, do not crash
        return {}, f"the model bytes of checkpoint {ckpt.seq} could not be read: {type(exc).__name__}: {exc}"


def with_fingerprints(models: dict, fingerprints: dict[str, str], reason: str | None = None) -> dict:
    """``models`` (the status document's) with each ``"fingerprint"`` set from ``fingerprints``.

    A model without one gets ``"fingerprint": None`` and ``"fingerprint_error"``, the reason.
    """
    out = {}
    for name, entry in models.items():
        entry = dict(entry)
        if name in fingerprints:
            entry["fingerprint"] = fingerprints[name]
        else:
            entry["fingerprint"] = None
            entry["fingerprint_error"] = reason or f"model {name} is not in the checkpoint's model bytes"
        out[name] = entry
    return out


def checkpoint_info(ckpt, path, disk_bytes: int) -> dict:
    """The ``"checkpoint"`` part of the status document."""
    return {
        "seq": ckpt.seq,
        "created_at": ckpt.meta["created_at"],
        "age_s": round(time.time() - ckpt.meta["created_at"], 3),
        "size_bytes": ckpt.size_bytes,
        "state_dir": str(path),
        "state_dir_bytes": disk_bytes,
        "copy": ckpt.copy,
        "damage": list(ckpt.damage),
    }


def status_document(meta: dict, checkpoint: dict | None) -> dict:
    """The status document from checkpoint metadata (``status --json``; live ``GET /status``)."""
    return {
        "serving": meta["serving"],
        "models": meta["models"],
        "counts": meta["counts"],
        "invalid_by_reason": meta.get("invalid_by_reason", {}),
        "pending": meta.get("pending"),
        "offsets": {f"{t}:{p}": o for t, p, o in meta["offsets"]},
        "watermark": meta.get("watermark"),
        "checkpoint": checkpoint,
        "spec": meta.get("spec"),
        "versions": meta.get("versions"),
        "drift": meta.get("drift", []),
        "promotions": meta.get("promotions", []),
    }


def format_status(status: dict) -> str:
    lines = []
    ck = status["checkpoint"]
    lines.append(
        f"checkpoint {ck['seq']} in {ck['state_dir']} ({ck['size_bytes']:,} bytes, "
        f"{ck['age_s']:.0f} s old, state dir {ck['state_dir_bytes']:,} bytes)"
    )
    for damage in ck.get("damage") or []:
        lines.append(f"  read from its {ck.get('copy')} copy: {damage}")
    for refused in status.get("refused") or []:
        lines.append(f"checkpoint {refused['seq']} refused: {refused['reason']}")
    for name, model in status["models"].items():
        star = " (serving)" if name == status["serving"] else ""
        metrics = ", ".join(f"{k} {_metric(v)}" for k, v in model["metrics"].items())
        lines.append(f"model {name}{star}: {model['n_learned']:,} labels learned; {metrics}")
        if model.get("rolling_metrics"):
            rolling = ", ".join(f"{k} {_metric(v)}" for k, v in model["rolling_metrics"].items())
            lines.append(f"  rolling {rolling}")
        if model.get("fingerprint"):
            lines.append(f"  fingerprint {model['fingerprint']}")
        else:
            lines.append(f"  fingerprint unavailable: {model.get('fingerprint_error') or 'not computed'}")
    c = status["counts"]
    lines.append(
        f"events {c['events']:,}, predictions {c['predictions']:,}, labels {c['labels']:,} "
        f"(joined {c['joined']:,}, unmatched {c['unmatched_labels']:,}, duplicate {c['duplicate_labels']:,}, "
        f"expired {c['expired']:,}), invalid {c['invalid']:,}, pending {status['pending']:,}"
    )
    if c.get("label_requests"):
        lines.append(f"label requests {c['label_requests']:,} (labels joined {c['joined']:,})")
    for key, n in sorted(status["invalid_by_reason"].items()):
        lines.append(f"  invalid {key}: {n:,}")
    lines.append("offsets " + ", ".join(f"{k}={v}" for k, v in status["offsets"].items()))
    drift = status.get("drift") or []
    if drift:
        lines.append(f"drift detections: {len(drift)} kept (the latest 10 below; all in --json)")
        for d in drift[-10:]:
            lines.append(f"  event {d['position']:,}: {d['detector']} on {d['signal']} of {d['model']} -> {d['action']}")
    for p in status.get("promotions") or []:
        lines.append(f"{p['kind']} at event {p['position']:,}: {p['from']} -> {p['to']}")
    return "\n".join(lines)


def _metric(value: float | None) -> str:
    """A metric for people: four decimals, ``n/a`` before any label was scored."""
    return "n/a" if value is None else f"{value:.4f}"
