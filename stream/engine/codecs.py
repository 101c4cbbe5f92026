"""Message codecs and contract validation.

Input values are accepted as msgpack or JSON, detected per message: a value whose first
non-blank byte is ``{`` is JSON, anything else is msgpack. Output is msgpack by default
(``[codec] output = "json"`` for JSON).

Every way a message can break the contract maps to one short, bounded ``reason`` (used as a
Prometheus label and as the ``reason`` header of the dead-letter copy):

>>> parse_event(b'{"id": "a", "x": {"f": 1.5}}', max_bytes=1024)
Event(id='a', x={'f': 1.5}, ts=None)
>>> try:
...     parse_event(b'{"id": "a", "x": {"f": NaN}}', max_bytes=1024)
... except InvalidMessage as exc:
...     print(exc.reason)
non_finite
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import msgpack

if TYPE_CHECKING:
    from learners.labels import LabelParser

#: Every reason an input message can be rejected for (bounded: safe as a metric label).
REASONS = (
    "empty",
    "oversized",
    "undecodable",
    "not_an_object",
    "missing_id",
    "bad_id",
    "missing_x",
    "bad_x",
    "bad_feature_value",
    "non_finite",
    "bad_ts",
    "missing_y",
    "bad_y",  # a y of an unsupported type (null, list, map)
    "bad_label",  # a y that is no label of the task ("maybe" for a binary task, a string for regression)
    "transform_failed",  # [features] transform raised (detail: its first line)
    "bad_transform_output",  # it returned something else than a dict of finite scalars
    "model_predict_failed",  # a model, monitor or sampler raised for this event (stream.engine.handlers)
    "model_learn_failed",  # a metric, monitor or model raised learning this label
)

MAX_ID_LENGTH = 512
_JSON_START = frozenset(b"{ \t\r\n")


class InvalidMessage(Exception):
    """A message that breaks the contract; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Event(NamedTuple):
    id: str
    x: dict
    ts: float | None


class Label(NamedTuple):
    id: str
    y: Any
    ts: float | None


def _reject_constant(name: str) -> None:
    raise InvalidMessage("non_finite", f"JSON constant {name} is not a number riverbed accepts")


def decode_value(raw: bytes | None, max_bytes: int) -> Any:
    """Decode one message value (msgpack or JSON) without interpreting it."""
    if not raw:
        raise InvalidMessage("empty", "the message has no value")
    if len(raw) > max_bytes:
        raise InvalidMessage("oversized", f"{len(raw)} bytes > [codec] max_message_bytes {max_bytes}")
    try:
        if raw[0] in _JSON_START:
            return json.loads(raw, parse_constant=_reject_constant)
        return msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except InvalidMessage:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidMessage("undecodable", (str(exc) or type(exc).__name__)[:200]) from None
    except Exception as exc:  # msgpack raises a few exotic ones on hostile input
        raise InvalidMessage("undecodable", f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _check_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise InvalidMessage("not_an_object", f"expected a map, got {type(value).__name__}")
    return value


def _check_id(value: dict) -> str:
    if "id" not in value:
        raise InvalidMessage("missing_id", "no 'id' field")
    event_id = value["id"]
    if type(event_id) is not str or not event_id or len(event_id) > MAX_ID_LENGTH:
        raise InvalidMessage("bad_id", f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return event_id


def _check_ts(value: dict) -> float | None:
    ts = value.get("ts")
    if ts is None:
        return None
    if type(ts) not in (int, float):
        raise InvalidMessage("bad_ts", "'ts' must be a finite, non-negative number of epoch seconds")
    seconds = float(ts) if abs(ts) < 1e300 else math.inf  # a 400-digit integer overflows float()
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidMessage("bad_ts", "'ts' must be a finite, non-negative number of epoch seconds")
    return seconds


_NUMBERS = frozenset((float, int, bool))
_STR = frozenset((str,))


def check_features(x: Any, binary: bool = False) -> dict:
    """``x`` when it is a map of string names to finite numbers, strings or bools (bytes with ``binary``)."""
    if type(x) is dict:
        # Fast path for the usual all-numeric event: C-level type checks and one finite sum
        # (a NaN or an infinity makes the sum non-finite). Anything else, including a sum that
        # merely overflows, takes the exact per-feature checks below.
        try:
            if (_NUMBERS.issuperset(map(type, x.values())) and _STR.issuperset(map(type, x))
                    and math.isfinite(sum(x.values()))):
                return x
        except OverflowError:
            pass
    if not isinstance(x, dict):
        raise InvalidMessage("bad_x", f"'x' must be a map of feature name to value, got {type(x).__name__}")
    for name, v in x.items():
        t = type(v)
        if t is float:
            if not math.isfinite(v):
                raise InvalidMessage("non_finite", f"feature {name!r} is {v}")
        elif t is not int and t is not str and t is not bool and not (binary and t is bytes):
            raise InvalidMessage(
                "bad_feature_value", f"feature {str(name)[:64]!r} has a {t.__name__}; use a number, string or bool"
            )
        if type(name) is not str:
            raise InvalidMessage("bad_x", "feature names must be strings")
    return x


def parse_event(raw: bytes | None, max_bytes: int, binary: bool = False) -> Event:
    """Decode and validate an event ``{"id", "x", "ts"?}``.

    ``binary=True`` (a ``[features] transform`` is configured) also accepts ``bytes`` feature
    values (msgpack ``bin``, e.g. a PNG image), which only a transform can turn into features.
    """
    value = _check_object(decode_value(raw, max_bytes))
    event_id = _check_id(value)
    if "x" not in value:
        raise InvalidMessage("missing_x", "no 'x' field")
    return Event(event_id, check_features(value["x"], binary), _check_ts(value))


def parse_label(raw: bytes | None, max_bytes: int, labels: "LabelParser | bool") -> Label:
    """Decode and validate a label ``{"id", "y", "ts"?}``; ``y`` becomes the label of the task.

    ``labels`` is the task's :class:`learners.labels.LabelParser` (a bool, the old
    ``regression`` flag, still works: labels then keep their type, regression ones must be
    numbers). A ``y`` that is no label of the task is refused with reason ``bad_label``; a ``y``
    of an unsupported type with ``bad_y``.
    """
    value = _check_object(decode_value(raw, max_bytes))
    event_id = _check_id(value)
    if "y" not in value:
        raise InvalidMessage("missing_y", "no 'y' field")
    y = value["y"]
    t = type(y)
    if t is float and not math.isfinite(y):
        raise InvalidMessage("non_finite", f"label is {y}")
    if isinstance(labels, bool):
        if t not in (bool, int, str, float):
            raise InvalidMessage("bad_y", f"a label must be a bool, number or string, got {t.__name__}")
        if labels and (t is not int and t is not float):
            raise InvalidMessage("bad_label", f"a regression label must be a number, got {t.__name__}")
        return Label(event_id, y, _check_ts(value))
    try:
        y = labels.parse(y)
    except TypeError as exc:  # learners.labels.LabelTypeError (not imported: tools need no River)
        raise InvalidMessage("bad_y", str(exc)) from None
    except ValueError as exc:  # learners.labels.LabelError
        raise InvalidMessage("bad_label", str(exc)) from None
    return Label(event_id, y, _check_ts(value))


def plain_scalar(value: Any) -> Any:
    """msgpack/JSON fallback for numpy scalars and other number-likes."""
    item = getattr(value, "item", None)
    if item is not None:
        return item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _json_keys(v) for k, v in value.items()}
    return value


class OutputCodec:
    """Encodes output messages (predictions, status) as msgpack or JSON."""

    def __init__(self, name: str):
        if name not in ("msgpack", "json"):
            raise ValueError(f"unknown output codec {name!r}")
        self.name = name
        if name == "msgpack":
            self._packer = msgpack.Packer(default=plain_scalar, use_bin_type=True)
            self.encode = self._packer.pack
        else:
            self.encode = self._encode_json

    @staticmethod
    def _encode_json(value: Any) -> bytes:
        return json.dumps(_json_keys(value), separators=(",", ":"), default=plain_scalar, allow_nan=False).encode()


def decode_any(raw: bytes | None) -> Any:
    """Best-effort decode for display (``riverbed tail``): msgpack, JSON, else text."""
    if raw is None:
        return None
    try:
        if raw[:1] in (b"{", b"["):
            return json.loads(raw)
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return raw.decode("utf-8", errors="replace")
