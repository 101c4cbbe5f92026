"""Pure River: model presets, feature preprocessing, labels per task, metrics by name, prequential
evaluation, online models.

Nothing here imports a Kafka client, rocksdict, :mod:`stream` or :mod:`state`; every piece can be
driven by a plain iterable and compared with :mod:`river.evaluate` directly.
"""

from __future__ import annotations

from learners.errors import LearnerError
from learners.evaluation import Prequential
from learners.fingerprint import fingerprint
from learners.features import MixedFeatureScaler
from learners.labels import LabelError, LabelParser, LabelTypeError
from learners.metrics import DEFAULT_METRICS, build_metric, default_metric_names, metric_names, river_metric
from learners.drift import ACTIONS, DETECTORS, INPUT_DETECTORS
from learners.model_set import DriftSettings, ModelSet, PromotionPolicy, Served
from learners.online_model import OnlineModel
from learners.presets import PRESETS, TASKS, PresetSpec, build_model

__all__ = [
    "ACTIONS",
    "DEFAULT_METRICS",
    "DETECTORS",
    "INPUT_DETECTORS",
    "DriftSettings",
    "PromotionPolicy",
    "PRESETS",
    "TASKS",
    "LabelError",
    "LabelParser",
    "LabelTypeError",
    "LearnerError",
    "MixedFeatureScaler",
    "ModelSet",
    "OnlineModel",
    "PresetSpec",
    "Prequential",
    "Served",
    "build_metric",
    "default_metric_names",
    "river_metric",
    "build_model",
    "fingerprint",
    "metric_names",
]
