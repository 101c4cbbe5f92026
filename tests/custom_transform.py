"""Feature transforms for the tests (``[features] transform = "tests.custom_transform:NAME"``)."""

from __future__ import annotations

import base64


def blob_features(x: dict) -> dict:
    """``{"blob": bytes or base64 text, ...}`` -> a few numbers; fails loudly on odd input."""
    blob = x["blob"]
    if isinstance(blob, str):
        blob = base64.b64decode(blob, validate=True)
    if blob == b"boom":
        raise ValueError("cannot decode this blob\nsecond line is not reported")
    if blob == b"nan":
        return {"mean": float("nan")}
    if blob == b"list":
        return [1, 2, 3]
    return {"length": len(blob), "mean": sum(blob) / len(blob), "first": blob[0]}
