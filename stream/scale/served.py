"""The served record: what a scorer tells the trainer about each event it predicted.

A scorer publishes one record per predicted event to the ``[scale] served_topic``, keyed like the
event (its id), with a msgpack map as value:

======== ==============================================================================
key      meaning
======== ==============================================================================
id       the event id (string)
x        the features *after* the ``[features] transform`` (the trainer learns from them)
ts       the event time (seconds) the prediction was made at; the trainer merges on it
record   every model's prediction, ``[[name, y_pred, [[class, p], ...] | None], ...]``, exactly
         :attr:`learners.model_set.Served.record` (the trainer scores each label against it)
model    the name of the champion that served the prediction
version  the snapshot version that served it (labels the trainer had learned; 0: a fresh model)
======== ==============================================================================

>>> raw = encode_served("e1", {"a": 1.0}, 10.0, [["logreg", True, [[False, 0.2], [True, 0.8]]]], "logreg", 7)
>>> decode_served(raw)
ServedEvent(id='e1', x={'a': 1.0}, ts=10.0, record=[['logreg', True, [[False, 0.2], [True, 0.8]]]], model='logreg', version=7)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from stream.engine.codecs import InvalidMessage, plain_scalar

_pack = msgpack.Packer(use_bin_type=True, default=plain_scalar).pack


class ServedEvent(NamedTuple):
    """A decoded served record (see the module docstring)."""

    id: str
    x: dict
    ts: float
    record: list
    model: str
    version: int


def encode_served(event_id: str, x: dict, ts: float, record: list, model: str, version: int) -> bytes:
    """The value of a served record."""
    return _pack({"id": event_id, "x": x, "ts": ts, "record": record, "model": model, "version": version})


def decode_served(raw: bytes | None, max_bytes: int = 16 * 1024 * 1024) -> ServedEvent:
    """Parse a served record; raises :class:`InvalidMessage` (``empty``, ``oversized`` or ``undecodable``)."""
    if raw is None:
        raise InvalidMessage("empty", "a served record without a value")
    if len(raw) > max_bytes:
        raise InvalidMessage("oversized", f"{len(raw)} bytes > {max_bytes}")
    try:
        value: Any = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        served = ServedEvent(
            str(value["id"]), dict(value["x"]), float(value["ts"]), list(value["record"]),
            str(value["model"]), int(value["version"]),
        )
    except Exception as exc:  # any shape error is the same: not a served record
        raise InvalidMessage("undecodable", f"not a served record: {type(exc).__name__}: {exc}") from None
    return served
