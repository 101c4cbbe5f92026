"""Drift monitors: River detectors on a model's errors (label-based) and on its inputs (label-free).

Two kinds of signal, as a :class:`~learners.model_set.ModelSet` feeds them:

* ``error`` (label-based): for each model, the per-example error of the prediction it made at event
  time, updated when the label is learned: ``1``/``0`` (wrong/right) for classifiers, the absolute
  error for regressors. A detection says the model got worse.
* ``score`` and ``feature:<name>`` (label-free): the served prediction score (probability of the
  positive class for binary tasks, the top probability for multiclass, the predicted value for
  regression) and each numeric feature, up to ``max_features`` features (the first ones seen),
  updated on every event. A detection says the inputs or the model's view of them changed, hours
  before the labels can say whether it matters.

River's detectors flag ``drift_detected`` for one update and restart by themselves on the next one
(``river/drift/adwin.py``: ``if self.drift_detected: self._reset()``); the binary ones (DDM, EDDM,
HDDM_A, HDDM_W) also raise ``warning_detected`` while the error rate is rising. Binary detectors
accept only ``0``/``1`` inputs and so only watch a classifier's ``error``.

Everything here is deterministic (KSWIN, the only detector that draws random numbers, is seeded)
and picklable: monitors are part of every checkpoint.

>>> monitor = DriftMonitor("error", "adwin")
>>> [monitor.update(0.0) for _ in range(1000)].count("drift")
0
>>> states = [monitor.update(1.0) for _ in range(200)]
>>> states.index("drift") < 100
True
"""

from __future__ import annotations

import dataclasses
import typing

from river import drift

from learners.errors import LearnerError
from learners.specs import import_spec

__all__ = [
    "ACTIONS",
    "DETECTORS",
    "INPUT_DETECTORS",
    "DriftDetected",
    "DriftMonitor",
    "InputMonitor",
    "ModelRetrained",
    "ModelSwitched",
    "ChallengerStarted",
    "build_detector",
    "check_detector",
]


def _kswin():
    return drift.KSWIN(seed=42)


#: Detector name -> (factory, accepts only 0/1 inputs, raises warnings). River's default parameters.
DETECTORS: dict[str, tuple[typing.Callable[[], typing.Any], bool, bool]] = {
    "adwin": (drift.ADWIN, False, False),
    "ddm": (drift.binary.DDM, True, True),
    "eddm": (drift.binary.EDDM, True, True),
    "hddm_a": (drift.binary.HDDMA, True, True),
    "hddm_w": (drift.binary.HDDMW, True, True),
    "page_hinkley": (drift.PageHinkley, False, False),
    "kswin": (_kswin, False, False),
}

#: Detectors that can watch real-valued signals (scores, features, regression losses).
INPUT_DETECTORS = tuple(name for name, (_, binary, _) in DETECTORS.items() if not binary)

#: River's detector classes known to have no ``warning_detected`` (checked in the tests): the
#: per-update ``getattr(detector, "warning_detected", False)`` of any other detector is skipped.
_NO_WARNINGS = frozenset({drift.ADWIN, drift.PageHinkley, drift.KSWIN})

#: What a detection does. ``alert``: count and log only; ``reset``: start the detector afresh;
#: ``retrain``: swap in the background model (River's ``DriftRetrainingClassifier``);
#: ``challenger``: start a fresh copy of the champion as a challenger.
ACTIONS = ("alert", "reset", "retrain", "challenger")


def check_detector(name: str, *, binary_input: bool, what: str = "detector") -> str:
    """Return ``name`` if it names a detector usable on the signal, else raise :class:`LearnerError`.

    ``"none"`` (no detector) is accepted. ``binary_input`` says whether the signal is 0/1.

    >>> check_detector("ddm", binary_input=False, what="[drift] input_detector")
    Traceback (most recent call last):
    ...
    learners.errors.LearnerError: [drift] input_detector 'ddm' only watches 0/1 errors of a classifier; use one of: adwin, page_hinkley, kswin, none
    """
    if name == "none" or ":" in name:
        return name
    entry = DETECTORS.get(name)
    allowed = list(DETECTORS) if binary_input else list(INPUT_DETECTORS)
    if entry is None:
        raise LearnerError(
            f"unknown {what} {name!r}; use one of: {', '.join(allowed + ['none'])} or 'package.module:factory'"
        )
    if entry[1] and not binary_input:
        raise LearnerError(
            f"{what} {name!r} only watches 0/1 errors of a classifier; use one of: "
            f"{', '.join(allowed + ['none'])}"
        )
    return name


def build_detector(name: str):
    """A new River drift detector by name, or from a ``package.module:factory`` spec."""
    if ":" in name:
        factory = import_spec(name, f"drift detector factory {name!r}", expected="'package.module:factory'")
        if not callable(factory):
            raise LearnerError(f"drift detector factory {name!r} is a {type(factory).__name__}, not callable")
        detector = factory()
        if not hasattr(detector, "update") or not hasattr(detector, "drift_detected"):
            raise LearnerError(f"drift detector factory {name!r} did not return a River drift detector")
        return detector
    entry = DETECTORS.get(name)
    if entry is None:
        raise LearnerError(f"unknown drift detector {name!r}; use one of: {', '.join(DETECTORS)}")
    return entry[0]()


class DriftMonitor:
    """One detector on one signal. :meth:`update` says ``"drift"``, ``"warning"`` or ``None``.

    Parameters
    ----------
    signal
        ``"error"``, ``"score"`` or ``"feature:<name>"`` (reported with each detection).
    detector
        A key of :data:`DETECTORS` or a ``package.module:factory`` spec.

    Attributes
    ----------
    n_updates, n_detections
        Values seen through :meth:`update` and drifts detected since the monitor was created (kept
        across resets; :class:`InputMonitor` updates feature detectors directly and counts events).
    """

    def __init__(self, signal: str, detector: str):
        self.signal = signal
        self.detector_name = detector
        self.detector = build_detector(detector)
        self.n_updates = 0
        self.n_detections = 0

    @property
    def has_warning(self) -> bool:
        """Whether the detector raises warnings before drifts (DDM, EDDM, HDDM_A, HDDM_W)."""
        return hasattr(self.detector, "warning_detected")

    def update(self, value: float) -> str | None:
        detector = self.detector
        detector.update(value)
        self.n_updates += 1
        if detector.drift_detected:
            self.n_detections += 1
            return "drift"
        if detector.__class__ not in _NO_WARNINGS and getattr(detector, "warning_detected", False):
            return "warning"
        return None

    def reset(self) -> None:
        """Start the detector afresh (the counters stay)."""
        self.detector = build_detector(self.detector_name)


def positive_score(proba: dict | None, y_pred) -> float | None:
    """The served score: P(True) for a binary classifier, else the top probability, else ``y_pred``.

    >>> positive_score({True: 0.8, False: 0.2}, True), positive_score({"a": 0.3, "b": 0.7}, "b")
    (0.8, 0.7)
    >>> positive_score(None, 3.5), positive_score({}, None)
    (3.5, None)
    """
    if proba is None:
        if isinstance(y_pred, (int, float)) and not isinstance(y_pred, bool):
            return float(y_pred)
        return None
    if not proba:
        return None
    if True in proba and len(proba) <= 2:
        return float(proba[True])
    return float(max(proba.values()))


class InputMonitor:
    """Label-free monitors: the served score and the first ``max_features`` numeric features.

    Parameters
    ----------
    detector
        A detector for real values (:data:`INPUT_DETECTORS`), or ``"none"`` to watch nothing.
    max_features
        How many numeric features to watch (the first ones seen, in order of appearance); ``0``
        watches only the score.

    >>> monitor = InputMonitor("adwin", max_features=1)
    >>> fired = []
    >>> for i in range(3000):
    ...     signals = monitor.update({"a": float(i % 7) + (20.0 if i >= 2000 else 0.0), "b": 1.0}, 0.5)
    ...     fired += [(i, signal) for signal in signals]
    >>> fired[0][1], 2000 <= fired[0][0] < 2100, sorted(monitor.features)
    ('feature:a', True, ['a'])
    """

    def __init__(self, detector: str, max_features: int):
        self.detector_name = detector
        self.max_features = max_features
        self.enabled = detector != "none"
        self.score = DriftMonitor("score", detector) if self.enabled else None
        self.features: dict[str, DriftMonitor] = {}
        self.n_events = 0
        self._considered: set[str] = set()  # feature names already looked at (watched or not)

    def update(self, x: dict, score: float | None) -> list[str]:
        """Update every monitor with this event; returns the signals that detected a drift.

        A feature is watched when its first value is a number (``int`` or ``float``, not ``bool``);
        its later non-numeric or missing values are skipped. This is the per-event hot path: the
        detectors are called directly.
        """
        if not self.enabled:
            return []
        self.n_events += 1
        fired = []
        if score is not None and score == score:
            monitor = self.score
            assert monitor is not None, "enabled monitors watch the score"
            detector = monitor.detector  # DriftMonitor.update, inlined (only drifts matter here)
            detector.update(score)
            monitor.n_updates += 1
            if detector.drift_detected:
                monitor.n_detections += 1
                fired.append("score")
        features = self.features
        if len(features) < self.max_features and not x.keys() <= self._considered:
            for name, value in x.items():
                if name in self._considered:
                    continue
                self._considered.add(name)
                if len(features) < self.max_features and type(value) in (int, float):
                    features[name] = DriftMonitor(f"feature:{name}", self.detector_name)
        for name, monitor in features.items():
            value = x.get(name)
            cls = value.__class__
            if (cls is float or cls is int) and value == value:
                detector = monitor.detector
                detector.update(value)
                if detector.drift_detected:
                    monitor.n_detections += 1
                    fired.append(monitor.signal)
        return fired

    def monitor(self, signal: str) -> DriftMonitor:
        if signal == "score":
            assert self.score is not None, "only an enabled monitor signals 'score'"
            return self.score
        return self.features[signal.split(":", 1)[1]]


# -- notices: small plain objects the service turns into metrics, logs and status entries --------


@dataclasses.dataclass(frozen=True)
class DriftDetected:
    """A detector fired. ``position`` is the number of events seen, ``ts`` the stream's event time."""

    model: str
    detector: str
    signal: str
    position: int
    ts: float | None
    action: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelSwitched:
    """The champion changed: ``kind`` is ``"promotion"`` or ``"rollback"``."""

    kind: str
    from_model: str
    to_model: str
    position: int
    ts: float | None
    metric: str
    from_value: float
    to_value: float

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "from": self.from_model,
            "to": self.to_model,
            "position": self.position,
            "ts": self.ts,
            "metric": self.metric,
            "from_value": self.from_value,
            "to_value": self.to_value,
        }


@dataclasses.dataclass(frozen=True)
class ModelRetrained:
    """``model`` now runs a new learner: its background model (``background=True``) or a fresh one."""

    model: str
    background: bool
    position: int
    ts: float | None


@dataclasses.dataclass(frozen=True)
class ChallengerStarted:
    """A fresh copy of ``source`` started learning as challenger ``model`` after a drift."""

    model: str
    source: str
    position: int
    ts: float | None
