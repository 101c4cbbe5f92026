"""The bounded metrics history behind the status page chart and `riverbed report`."""

from __future__ import annotations

import msgpack

from stream.engine.history import MetricsHistory, model_snapshot


def fill(history: MetricsHistory, start: int, stop: int) -> None:
    for n in range(start, stop):
        history.maybe_append(n, position=2 * n, ts=float(n), models={"m": {"metrics": {"accuracy": (n % 97) / 97}}})


def test_history_stays_bounded_and_evenly_spaced():
    history = MetricsHistory(every=10, max_points=100)
    fill(history, 1, 1_000_001)
    assert len(history.points) < 100
    labels = [p["labels"] for p in history.points]
    gaps = {b - a for a, b in zip(labels, labels[1:])}
    assert gaps == {history.every}  # one spacing over the whole stream
    assert labels[0] == history.every and labels[-1] > 1_000_000 - history.every
    ratio = history.every // 10
    assert history.every == 10 * ratio and ratio & (ratio - 1) == 0  # doubled at each thinning


def test_history_survives_a_checkpoint_round_trip_deterministically():
    uninterrupted = MetricsHistory(every=3, max_points=50)
    fill(uninterrupted, 1, 5000)

    first = MetricsHistory(every=3, max_points=50)
    fill(first, 1, 2345)
    meta = msgpack.unpackb(msgpack.packb(first.to_meta()), raw=False)  # what the checkpoint stores
    resumed = MetricsHistory.from_meta(meta)
    fill(resumed, 2345, 5000)
    assert resumed.to_meta() == uninterrupted.to_meta()


def test_model_snapshot_reads_cumulative_and_rolling_metrics():
    from learners import build_model
    from learners.online_model import OnlineModel

    for window, rolling_names in ((2, {"accuracy"}), (None, set())):
        model = OnlineModel("logreg", build_model("logreg", "binary"), "binary", ["accuracy"], window=window)
        for y in (False, True, True):
            y_pred, proba = model.predict({"a": 1.0})
            model.learn({"a": 1.0}, y, y_pred, proba)
        snapshot = model_snapshot(model)
        evaluation = model.evaluation
        assert snapshot == {"metrics": evaluation.values(), "rolling_metrics": evaluation.rolling_values()}
        assert snapshot["metrics"]["accuracy"] is not None
        assert set(snapshot["rolling_metrics"]) == rolling_names
