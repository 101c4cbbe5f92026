"""Pure River: model presets, feature preprocessing, labels per task, metrics by name, prequential
evaluation, online models.

Nothing here imports a Kafka client, rocksdict, :mod:`stream` or :mod:`state`; every piece can be
driven by a plain iterable and compared with :mod:`river.evaluate` directly.

The names below are loaded on first use (importing River and SciPy takes about a second), so
that ``import learners.errors`` -- or a CLI ``--help`` -- does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives.
_EXPORTS = {
    "LearnerError": "learners.errors",
    "Prequential": "learners.evaluation",
    "fingerprint": "learners.fingerprints",
    "MixedFeatureScaler": "learners.features",
    "LabelError": "learners.labels",
    "LabelParser": "learners.labels",
    "LabelTypeError": "learners.labels",
    "DEFAULT_METRICS": "learners.metrics",
    "build_metric": "learners.metrics",
    "default_metric_names": "learners.metrics",
    "metric_names": "learners.metrics",
    "river_metric": "learners.metrics",
    "ACTIONS": "learners.drift",
    "DETECTORS": "learners.drift",
    "INPUT_DETECTORS": "learners.drift",
    "DriftSettings": "learners.model_set",
    "ModelSet": "learners.model_set",
    "PromotionPolicy": "learners.model_set",
    "Served": "learners.model_set",
    "OnlineModel": "learners.online_model",
    "PRESETS": "learners.presets",
    "TASKS": "learners.presets",
    "PresetSpec": "learners.presets",
    "build_model": "learners.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'learners' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from learners.drift import ACTIONS, DETECTORS, INPUT_DETECTORS  # noqa: F401 - the lazy exports, for type checkers
    from learners.errors import LearnerError
    from learners.evaluation import Prequential
    from learners.features import MixedFeatureScaler
    from learners.fingerprints import fingerprint
    from learners.labels import LabelError, LabelParser, LabelTypeError
    from learners.metrics import DEFAULT_METRICS, build_metric, default_metric_names, metric_names, river_metric
    from learners.model_set import DriftSettings, ModelSet, PromotionPolicy, Served
    from learners.online_model import OnlineModel
    from learners.presets import PRESETS, TASKS, PresetSpec, build_model
