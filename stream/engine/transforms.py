"""Feature transforms: turn an event's payload into River features before prediction.

``[features] transform = "package.module:function"`` names a function that takes an event's
``x`` (a dict, whose values may be ``bytes`` from msgpack ``bin`` or base64 strings from JSON)
and returns River features: a dict of string names to finite numbers, strings or bools. For
example, ``examples.digits.transform:pixels`` decodes ``{"image": <PNG bytes>}`` to 64 pixel
intensities.

The processor applies the transform right after decoding an event, so the model predicts, and
the pending store keeps, the transformed features; a label later learns from exactly what was
predicted. A transform that raises, or returns anything else than such a dict, sends the event to
the dead-letter topic with reason ``transform_failed`` or ``bad_transform_output`` (detail: the
first line of the error), like any other bad input: it never stops the stream.

A transform must be deterministic (the same payload always gives the same features) for
replays from a checkpoint to repeat the same predictions.

>>> transform = load_transform("math:fabs")
>>> transform.name
'math:fabs'
>>> try:
...     load_transform("no.such.module:f")
... except TransformError as exc:
...     print(exc)
[features] transform = 'no.such.module:f': cannot import module 'no.such.module' (No module named 'no'); install it or fix the name
"""

from __future__ import annotations

import math
from typing import Any, Callable

from learners.specs import SpecError, first_line, import_spec
from stream.engine.codecs import InvalidMessage
from stream.errors import ConfigError

__all__ = ["FeatureTransform", "TransformError", "load_transform", "first_line"]


class TransformError(ConfigError):
    """``[features] transform`` names nothing callable."""


class FeatureTransform:
    """A loaded transform: ``transform(x)`` returns checked features or raises InvalidMessage."""

    def __init__(self, name: str, function: Callable[[dict], Any]):
        self.name = name
        self.function = function

    def __call__(self, x: dict) -> dict:
        try:
            features = self.function(x)
        except Exception as exc:  # any failure of user code is bad input, never a crash
            raise InvalidMessage("transform_failed", first_line(exc)) from None
        if not isinstance(features, dict):
            raise InvalidMessage(
                "bad_transform_output", f"{self.name} returned a {type(features).__name__}, not a dict of features"
            )
        for key, value in features.items():
            if type(key) is not str:
                raise InvalidMessage("bad_transform_output", f"{self.name} returned a non-string feature name {key!r:.64}")
            t = type(value)
            if t is float:
                if not math.isfinite(value):
                    raise InvalidMessage("bad_transform_output", f"{self.name} returned feature {key!r:.64} = {value}")
            elif t is not int and t is not bool and t is not str:
                raise InvalidMessage(
                    "bad_transform_output",
                    f"{self.name} returned feature {key!r:.64} of type {t.__name__}; use a number, string or bool",
                )
        return features

    def __repr__(self) -> str:
        return f"FeatureTransform({self.name!r})"


def load_transform(spec: str) -> FeatureTransform:
    """Import ``"package.module:function"``; one-line :class:`TransformError` when it cannot."""
    where = f"[features] transform = {spec!r}"
    try:
        function = import_spec(spec, where, expected="'package.module:function'")
    except SpecError as exc:
        raise TransformError(str(exc)) from None
    if not callable(function):
        attr = spec.partition(":")[2]
        raise TransformError(f"{where}: {attr!r} is a {type(function).__name__}, not a function")
    return FeatureTransform(spec, function)
