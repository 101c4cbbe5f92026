"""The set of models a processor serves and trains: one champion, challengers in shadow, drift monitors.

The processor talks to a :class:`ModelSet` only: ``predict(x, ts)`` at event time returns the
champion's prediction and a compact *record* of every model's prediction, which the processor
keeps with the event's features until the label arrives; ``learn(x, y, record, ts)`` then scores
each model with the prediction it made at event time and trains it. Both return *notices*
(:mod:`learners.drift`: :class:`~learners.drift.DriftDetected`,
:class:`~learners.drift.ModelSwitched`, :class:`~learners.drift.ModelRetrained`,
:class:`~learners.drift.ChallengerStarted`), small plain objects the service turns into metrics,
logs and status entries.

What happens inside, in this order:

* **predict**: every model predicts (challengers in shadow); the label-free monitors
  (:class:`~learners.drift.InputMonitor`) see the served score and the numeric features;
* **learn**, per model: the prequential metrics (cumulative and rolling) are updated with the
  event-time prediction, the model's error monitor sees the error (a warning trains the
  background model when the action is ``retrain``; a drift runs the action), then the model
  learns; finally the champion/challenger rule runs (:class:`PromotionPolicy`).

Everything is deterministic in the order of calls and picklable as a whole, so replays from a
checkpoint reproduce the same state (:meth:`ModelSet.fingerprint` hashes all of it).

>>> from learners import build_model
>>> models = ModelSet.single("logreg", build_model("logreg", "binary"), "binary", ["accuracy"])
>>> served = models.predict({"a": 1.0})
>>> served.model, served.version, served.y_pred
('logreg', 0, False)
>>> models.learn({"a": 1.0}, True, served.record)
[]
>>> models.serving_model.n_learned
1
"""

from __future__ import annotations

import collections
import dataclasses
import typing

from learners.drift import (
    ACTIONS,
    ChallengerStarted,
    DriftDetected,
    DriftMonitor,
    InputMonitor,
    ModelRetrained,
    ModelSwitched,
    check_detector,
    positive_score,
)
from learners.errors import LearnerError
from learners.fingerprints import fingerprint as _fingerprint
from learners.online_model import OnlineModel

__all__ = ["DriftSettings", "ModelSet", "PromotionPolicy", "Served"]

#: Drift detections and model switches kept for the status document.
HISTORY = 200


class Served(typing.NamedTuple):
    """What the champion predicted, the record of every model's prediction, and notices."""

    model: str
    version: int
    y_pred: typing.Any
    proba: dict | None
    record: list
    notices: tuple = ()


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Which detectors watch which signal and what a detection does (see :mod:`learners.drift`).

    Parameters
    ----------
    detector
        Label-based detector on each model's per-example error (``"none"``: off).
    input_detector
        Label-free detector on the served score and each numeric feature (``"none"``: off).
    max_features
        Numeric features watched by the label-free detector (the first ones seen).
    error_action, score_action, feature_action
        One of :data:`learners.drift.ACTIONS` per signal.
    """

    detector: str = "adwin"
    input_detector: str = "adwin"
    max_features: int = 10
    error_action: str = "alert"
    score_action: str = "alert"
    feature_action: str = "alert"

    def check(self, task: str) -> "DriftSettings":
        check_detector(self.detector, binary_input=task != "regression", what="[drift] detector")
        check_detector(self.input_detector, binary_input=False, what="[drift] input_detector")
        for key in ("error_action", "score_action", "feature_action"):
            value = getattr(self, key)
            if value not in ACTIONS:
                raise LearnerError(f"[drift] {key} = {value!r} is not one of {', '.join(ACTIONS)}")
        if type(self.max_features) is not int or self.max_features < 0:
            raise LearnerError(f"[drift] max_features must be a non-negative integer, got {self.max_features!r}")
        return self

    def action(self, signal: str) -> str:
        if signal == "error":
            return self.error_action
        if signal == "score":
            return self.score_action
        return self.feature_action


@dataclasses.dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger replaces the champion.

    A challenger takes over when its rolling ``metric`` beats the champion's by more than
    ``margin`` on each of ``min_labels`` consecutive labels (hysteresis: one bad label restarts
    the count). If the challenger that takes over is the champion's predecessor, the switch is a
    *rollback*, otherwise a *promotion*.
    """

    metric: str
    margin: float = 0.02
    min_labels: int = 300


class ModelSet:
    """Models trained on the same labels; ``serving`` names the champion, whose predictions are published.

    Parameters
    ----------
    models
        The champion and its challengers (all for the same task).
    serving
        The champion's name.
    drift
        Drift monitors and actions; ``None``: no drift detection.
    promotion
        Champion/challenger rule; ``None``: the champion never changes. Needs rolling metrics
        (models built with a ``window``).
    """

    def __init__(
        self,
        models: typing.Sequence[OnlineModel],
        serving: str,
        *,
        drift: DriftSettings | None = None,
        promotion: PromotionPolicy | None = None,
    ):
        self.models: dict[str, OnlineModel] = {}
        for m in models:
            if m.name in self.models:
                raise LearnerError(f"two models are named {m.name!r}; give every challenger its own name")
            self.models[m.name] = m
        if serving not in self.models:
            raise ValueError(f"serving model {serving!r} is not in the set")
        self.serving = serving
        self.task = self.models[serving].task
        self.configured: list[str] = list(self.models)
        self.drift = drift.check(self.task) if drift is not None else None
        self.error_monitors: dict[str, DriftMonitor] = {}
        self.background: dict[str, typing.Any] = {}
        self.inputs: InputMonitor | None = None
        if self.drift is not None:
            if self.drift.detector != "none":
                for name in self.models:
                    self.error_monitors[name] = DriftMonitor("error", self.drift.detector)
            if self.drift.input_detector != "none":
                self.inputs = InputMonitor(self.drift.input_detector, self.drift.max_features)
        self.promotion = promotion
        self._bigger_is_better = True
        if promotion is not None:
            self._check_promotion_policy(promotion)
        self.streaks: dict[str, int] = dict.fromkeys(self.models, 0)
        self.predecessor: str | None = None
        self.spawned: str | None = None
        self.n_spawned = 0
        self.events_seen = 0
        self.drift_log: collections.deque = collections.deque(maxlen=HISTORY)
        self.switch_log: collections.deque = collections.deque(maxlen=HISTORY)

    def _check_promotion_policy(self, policy: PromotionPolicy) -> None:
        champion = self.models[self.serving]
        if policy.metric not in champion.evaluation.metrics:
            raise LearnerError(
                f"[challengers] metric {policy.metric!r} is not one of [model] metrics "
                f"({', '.join(champion.evaluation.metrics)}); list it there or choose one of those"
            )
        if champion.evaluation.window is None:
            raise LearnerError("champion/challenger needs rolling metrics: set [model] window")
        if policy.min_labels < 1 or policy.margin < 0:
            raise LearnerError("[challengers] min_labels must be at least 1 and margin not negative")
        metric = champion.evaluation.metrics[policy.metric]
        self._bigger_is_better = bool(getattr(metric, "bigger_is_better", True))

    @classmethod
    def single(cls, name: str, model, task: str, metric_names: typing.Sequence[str]) -> "ModelSet":
        return cls([OnlineModel(name, model, task, list(metric_names))], name)

    @classmethod
    def build(
        cls,
        champion: tuple[str, typing.Any],
        challengers: typing.Sequence[tuple[str, typing.Any]],
        task: str,
        metric_names: typing.Sequence[str],
        *,
        window: int | None = None,
        drift: DriftSettings | None = None,
        promotion: PromotionPolicy | None = None,
    ) -> "ModelSet":
        """A champion and challengers, each ``(name, River model)``, sharing metrics and window."""
        models = [
            OnlineModel(name, model, task, list(metric_names), window)
            for name, model in [champion, *challengers]
        ]
        return cls(models, champion[0], drift=drift, promotion=promotion)

    @property
    def serving_model(self) -> OnlineModel:
        return self.models[self.serving]

    def role(self, name: str) -> str:
        return "champion" if name == self.serving else "challenger"

    # -- the two calls -------------------------------------------------------------------------

    def predict(self, x: dict, ts: float | None = None) -> Served:
        """Predict with every model; the record is msgpack-friendly (lists, no tuples needed)."""
        record = []
        served = None
        for name, model in self.models.items():
            y_pred, proba = model.predict(x)
            record.append([name, y_pred, None if proba is None else list(proba.items())])
            if name == self.serving:
                served = (y_pred, proba, model.n_learned)
        assert served is not None, "the serving model is one of the models"
        y_pred, proba, version = served
        notices = self.observe(x, y_pred, proba, ts)
        return Served(self.serving, version, y_pred, proba, record, tuple(notices))

    def observe(self, x: dict, y_pred, proba: dict | None, ts: float | None = None) -> list:
        """Count an event served with ``(y_pred, proba)`` and update the label-free input monitors.

        :meth:`predict` calls it; a trainer whose events were predicted elsewhere (by a scorer
        replica) calls it with the served champion's prediction. Returns drift notices.
        """
        self.events_seen += 1
        notices: list = []
        if self.inputs is not None:
            for signal in self.inputs.update(x, positive_score(proba, y_pred)):
                notices += self._on_drift(self.serving, signal, self.inputs.monitor(signal), ts)
        return notices

    def learn(self, x: dict, y, record: list, ts: float | None = None) -> list:
        """Score every model with its event-time prediction, watch its error, train it; returns notices."""
        predictions = {name: (y_pred, proba) for name, y_pred, proba in record}
        notices: list = []
        scored: set[str] = set()
        retrain = self.drift is not None and self.drift.error_action == "retrain"
        for name, model in list(self.models.items()):
            made = predictions.get(name)
            if made is None:  # a model that did not exist when the event was predicted
                model.learn_unscored(x, y)
                continue
            y_pred, proba_items = made
            model.evaluation.update(y, y_pred, None if proba_items is None else dict(proba_items))
            scored.add(name)
            monitor = self.error_monitors.get(name)
            if monitor is not None and y_pred is not None:
                state = monitor.update(_error(y, y_pred, self.task))
                if state == "warning" and retrain:
                    background = self.background.get(name)
                    if background is None:
                        background = self.background[name] = model.model.clone()
                    background.learn_one(x, y)
                elif state == "drift":
                    notices += self._on_drift(name, "error", monitor, ts)
            if name in self.models:
                model.learn_unscored(x, y)
        if self.promotion is not None and len(self.models) > 1:
            notices += self._check_challengers(self.promotion, scored, ts)
        return notices

    # -- drift actions -------------------------------------------------------------------------

    def _on_drift(self, name: str, signal: str, monitor: DriftMonitor, ts) -> list:
        assert self.drift is not None, "drift monitors exist only with drift settings"
        action = self.drift.action(signal)
        notice = DriftDetected(name, monitor.detector_name, signal, self.events_seen, ts, action)
        self.drift_log.append(notice.as_dict())
        notices: list = [notice]
        if action == "reset":
            monitor.reset()
        elif action == "retrain":
            notices.append(self._retrain(name, ts))
        elif action == "challenger" and name == self.serving:
            started = self._spawn_challenger(ts)
            if started is not None:
                notices.append(started)
        return notices

    def _retrain(self, name: str, ts) -> ModelRetrained:
        """River's ``DriftRetrainingClassifier``: swap in the background model, or a fresh one."""
        model = self.models[name]
        background = self.background.pop(name, None)
        model.replace_model(background if background is not None else model.model.clone())
        if name == self.serving and self.inputs is not None and self.inputs.score is not None:
            self.inputs.score.reset()  # a new learner scores differently: start the score baseline afresh
        return ModelRetrained(name, background is not None, self.events_seen, ts)

    def _spawn_challenger(self, ts) -> ChallengerStarted | None:
        """A fresh copy of the champion as a challenger, unless one started by drift is still running.

        A running one that already had its chance (it learned ``window + min_labels`` labels, enough
        to fill its rolling window and hold a lead, without winning) is replaced by the new one.
        """
        if self.spawned is not None:
            running = self.models[self.spawned]
            chance = (running.evaluation.window or 0) + (self.promotion.min_labels if self.promotion else 0)
            if self.promotion is None or running.n_learned < chance:
                return None
            self._drop(self.spawned)
            self.spawned = None
        champion = self.serving_model
        self.n_spawned += 1
        name = f"{self.serving.split('~')[0]}~{self.n_spawned}"
        while name in self.models:
            self.n_spawned += 1
            name = f"{self.serving.split('~')[0]}~{self.n_spawned}"
        evaluation = champion.evaluation
        fresh = OnlineModel(name, champion.model.clone(), self.task, list(evaluation.metrics), evaluation.window)
        self.models[name] = fresh
        self.streaks[name] = 0
        if self.drift is not None and self.drift.detector != "none":
            self.error_monitors[name] = DriftMonitor("error", self.drift.detector)
        self.spawned = name
        return ChallengerStarted(name, self.serving, self.events_seen, ts)

    # -- champion / challenger -----------------------------------------------------------------

    def _check_challengers(self, policy: PromotionPolicy, scored: set[str], ts) -> list:
        metric = policy.metric
        champion = self.serving
        if champion not in scored:
            return []
        champion_value = self.models[champion].evaluation.rolling_value(metric)
        bigger = self._bigger_is_better
        ready = []
        for name, model in self.models.items():
            if name == champion:
                continue
            if name not in scored:
                self.streaks[name] = 0
                continue
            value = model.evaluation.rolling_value(metric)
            gain = value - champion_value if bigger else champion_value - value
            self.streaks[name] = self.streaks[name] + 1 if gain > policy.margin else 0
            if self.streaks[name] >= policy.min_labels:
                ready.append((gain, name, value))
        if not ready:
            return []
        ready.sort(key=lambda item: (-item[0], item[1]))
        _, winner, value = ready[0]
        return [self._switch(winner, metric, champion_value, value, ts)]

    def _switch(self, winner: str, metric: str, from_value: float, to_value: float, ts) -> ModelSwitched:
        old = self.serving
        kind = "rollback" if winner == self.predecessor else "promotion"
        self.serving = winner
        self.predecessor = old
        if winner == self.spawned:
            self.spawned = None
        self.streaks = dict.fromkeys(self.models, 0)
        if self.inputs is not None and self.inputs.score is not None:
            self.inputs.score.reset()  # another model's scores: start the score baseline afresh
        notice = ModelSwitched(kind, old, winner, self.events_seen, ts, metric, from_value, to_value)
        self.switch_log.append(notice.as_dict())
        self._prune()
        return notice

    def _prune(self) -> None:
        """Drop models started by drift that are neither champion, predecessor nor the running one."""
        keep = set(self.configured) | {self.serving, self.predecessor, self.spawned}
        for name in [n for n in self.models if n not in keep]:
            self._drop(name)

    def _drop(self, name: str) -> None:
        del self.models[name]
        self.streaks.pop(name, None)
        self.error_monitors.pop(name, None)
        self.background.pop(name, None)

    # -- configuration changes between runs ----------------------------------------------------

    def reconfigure(
        self,
        challengers: typing.Mapping[str, typing.Callable[[], typing.Any]],
        *,
        window: int | None,
        drift: DriftSettings | None,
        promotion: PromotionPolicy | None,
    ) -> list[str]:
        """Apply the current configuration to a restored set; returns what changed (for the log).

        ``challengers`` maps each configured challenger's name to a factory of a new, untrained
        model. New challengers start untrained (they are scored from the next event on); removed
        ones are dropped unless they are the champion or its predecessor. A changed window starts
        new, empty rolling windows; changed detectors start new detectors; changed actions and
        promotion settings apply from the next label. With an unchanged configuration nothing
        changes, so restoring stays deterministic.
        """
        changes: list[str] = []
        for model in self.models.values():
            if model.evaluation.window != window:
                model.evaluation.set_window(window)
                changes.append(f"model {model.name}: rolling window now {window}")
        metric_names = list(self.serving_model.evaluation.metrics)
        for name, factory in challengers.items():
            if name not in self.models:
                self.models[name] = OnlineModel(name, factory(), self.task, metric_names, window)
                self.streaks[name] = 0
                if self.drift is not None and self.drift.detector != "none":
                    self.error_monitors[name] = DriftMonitor("error", self.drift.detector)
                changes.append(f"challenger {name} added")
        self.configured = [self.configured[0], *challengers]
        before = set(self.models)
        self._prune()
        changes += [f"challenger {name} removed" for name in sorted(before - set(self.models))]
        if drift != self.drift:
            old = self.drift or DriftSettings(detector="none", input_detector="none", max_features=0)
            new = drift.check(self.task) if drift is not None else DriftSettings("none", "none", 0)
            if new.detector != old.detector:
                self.error_monitors = (
                    {} if new.detector == "none" else {n: DriftMonitor("error", new.detector) for n in self.models}
                )
                self.background = {}
            if (new.input_detector, new.max_features) != (old.input_detector, old.max_features):
                self.inputs = None if new.input_detector == "none" else InputMonitor(new.input_detector, new.max_features)
            self.drift = drift
            changes.append(f"drift settings now {drift}")
        if promotion != self.promotion:
            if promotion is not None:
                self._check_promotion_policy(promotion)
            self.promotion = promotion
            self.streaks = dict.fromkeys(self.models, 0)
            changes.append(f"promotion policy now {promotion}")
        return changes

    # -- reporting -----------------------------------------------------------------------------

    def describe(self, fingerprints: bool = True) -> dict:
        """Per model: role, labels learned, canonical fingerprint, cumulative and rolling metrics.

        ``fingerprints=False`` leaves the ``"fingerprint"`` key out: it costs a canonical pickle of
        each model (tens of milliseconds for a large tree), so checkpoints do not store it and the
        readers (``riverbed status``, the live ``/status``) compute it when they are asked.
        """
        described = {}
        for name, m in self.models.items():
            entry = {"role": self.role(name), "n_learned": m.n_learned}
            if fingerprints:
                entry["fingerprint"] = m.fingerprint()
            entry["metrics"] = m.evaluation.values()
            entry["rolling_metrics"] = m.evaluation.rolling_values()
            entry["task"] = m.task
            entry["retrains"] = m.retrains
            described[name] = entry
        return described

    def fingerprint(self) -> str:
        """The canonical sha256 of the whole set: models, metrics, monitors, roles and logs."""
        return _fingerprint(self)


def _error(y, y_pred, task: str) -> float:
    """The per-example error the label-based detector watches: 0/1, or the absolute error."""
    if task == "regression":
        return abs(float(y) - float(y_pred))
    return 1 if y_pred != y else 0

