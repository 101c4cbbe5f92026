"""The output contracts: one builder per message riverbed publishes or answers with.

Every place that shows a prediction (the ``predictions`` topic in msgpack or JSON, label
requests, ``POST /predict``, ``riverbed tail``) builds it here, so the spelling is the same
everywhere:

- ``y_pred`` keeps the label's own type (a bool stays a bool, a class name a string);
- ``proba`` maps **strings** to probabilities: ``"true"``/``"false"`` for bool classes,
  ``str(label)`` otherwise. Any client decodes it with default settings (msgpack's
  ``strict_map_key``, JSON objects, kcat).

>>> wire_proba({False: 0.25, True: 0.75})
{'false': 0.25, 'true': 0.75}
>>> prediction_message("e1", True, {False: 0.25, True: 0.75}, "logreg", 12, 1.5)
{'id': 'e1', 'y_pred': True, 'proba': {'false': 0.25, 'true': 0.75}, 'model': 'logreg', 'version': 12, 'ts': 1.5}
>>> prediction_message("e2", 3.25, None, "linreg", 0, None)
{'id': 'e2', 'y_pred': 3.25, 'model': 'linreg', 'version': 0, 'ts': None}
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def class_key(label: Any) -> str:
    """The wire spelling of a class label: ``"true"``/``"false"`` for bools, else ``str(label)``."""
    if label is True:
        return "true"
    if label is False:
        return "false"
    return label if type(label) is str else str(label)


def wire_proba(proba: Mapping[Any, float]) -> dict[str, float]:
    """Class probabilities with string keys (see :func:`class_key`)."""
    return {class_key(label): p for label, p in proba.items()}


def prediction_message(
    event_id: Any, y_pred: Any, proba: Mapping[Any, float] | None, model: str, version: int, ts: float | None
) -> dict:
    """A prediction: ``{"id", "y_pred", "proba"?, "model", "version", "ts"}`` (``proba`` for classifiers)."""
    message: dict[str, Any] = {"id": event_id, "y_pred": y_pred}
    if proba is not None:
        message["proba"] = wire_proba(proba)
    message["model"] = model
    message["version"] = version
    message["ts"] = ts
    return message


def challenger_predictions(record: Iterable, serving: str) -> dict[str, dict]:
    """The shadow predictions of a served record (``[name, y_pred, proba items | None]`` per model)."""
    out: dict[str, dict] = {}
    for name, y_pred, proba in record:
        if name == serving:
            continue
        out[name] = {"y_pred": y_pred} if proba is None else {"y_pred": y_pred, "proba": wire_proba(dict(proba))}
    return out


def label_request_message(
    event_id: str, y_pred: Any, proba: Mapping[Any, float] | None, score: float, model: str, version: int,
    ts: float | None,
) -> dict:
    """A label request: ``{"id", "y_pred", "proba", "score", "model", "version", "ts"}``."""
    return {
        "id": event_id,
        "y_pred": y_pred,
        "proba": None if proba is None else wire_proba(proba),
        "score": score,
        "model": model,
        "version": version,
        "ts": ts,
    }


#: A dead letter's ``detail`` header is cut to this many bytes.
MAX_DETAIL_BYTES = 500


def dead_letter_message(record: Any, reason: str, detail: str) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers of ``record`` copied to the dead-letter topic: the record unchanged
    (``b""`` for a record with neither key nor value), with where it came from and why."""
    headers = [
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        ("reason", reason.encode()),
        ("detail", detail.encode("utf-8", errors="replace")[:MAX_DETAIL_BYTES]),
    ]
    value = record.value if record.value is not None or record.key is not None else b""
    return value, headers
