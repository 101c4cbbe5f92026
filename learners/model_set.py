"""The set of models a processor serves and trains: one serving model, possibly others in shadow.

The processor talks to a :class:`ModelSet` only: ``predict(x)`` at event time returns the serving
model's prediction and a compact *record* of every model's prediction, which the processor keeps
with the event's features until the label arrives; ``learn(x, y, record)`` then scores each model
with the prediction it made at event time and trains it. Everything is deterministic in the
order of calls, so replays from a checkpoint reproduce the same state.

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

import typing

from learners.online_model import OnlineModel


class Served(typing.NamedTuple):
    """What the serving model predicted, plus the record of every model's prediction."""

    model: str
    version: int
    y_pred: typing.Any
    proba: dict | None
    record: list


class ModelSet:
    """Models trained on the same labels; ``serving`` names the one whose predictions are published."""

    def __init__(self, models: typing.Sequence[OnlineModel], serving: str):
        self.models: dict[str, OnlineModel] = {m.name: m for m in models}
        if serving not in self.models:
            raise ValueError(f"serving model {serving!r} is not in the set")
        self.serving = serving

    @classmethod
    def single(cls, name: str, model, task: str, metric_names: typing.Sequence[str]) -> "ModelSet":
        return cls([OnlineModel(name, model, task, list(metric_names))], name)

    @property
    def serving_model(self) -> OnlineModel:
        return self.models[self.serving]

    def predict(self, x: dict) -> Served:
        """Predict with every model; the record is msgpack-friendly (lists, no tuples needed)."""
        record = []
        served = None
        for name, model in self.models.items():
            y_pred, proba = model.predict(x)
            record.append([name, y_pred, None if proba is None else list(proba.items())])
            if name == self.serving:
                served = (y_pred, proba, model.n_learned)
        y_pred, proba, version = served
        return Served(self.serving, version, y_pred, proba, record)

    def learn(self, x: dict, y, record: list) -> list:
        """Score every model with its event-time prediction, then train it; returns notable events."""
        predictions = {name: (y_pred, proba) for name, y_pred, proba in record}
        for name, model in self.models.items():
            made = predictions.get(name)
            if made is None:  # a model that did not exist when the event was predicted
                model.learn_unscored(x, y)
                continue
            y_pred, proba_items = made
            model.learn(x, y, y_pred, None if proba_items is None else dict(proba_items))
        return []

    def describe(self) -> dict:
        """Per model: labels learned, canonical fingerprint, cumulative metrics."""
        return {
            name: {
                "n_learned": m.n_learned,
                "fingerprint": m.fingerprint(),
                "metrics": m.evaluation.values(),
                "task": m.task,
            }
            for name, m in self.models.items()
        }
