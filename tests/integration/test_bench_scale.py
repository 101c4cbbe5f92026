"""Smoke run of the benchmark's scale rows (``make bench-scale``) with tiny sizes, on the real broker.

Speed is measured by ``make bench-scale``, never here: this checks that one trainer and 1 or 2
scorers run as ``riverbed run --role ...`` subprocesses, that every event of both phases (the
burst and the steady stream) is predicted once and every label learned once, and that the
JSON has the fields the table is built from, with sane values: the staleness computed from the
served versions agrees with the trainer's own histogram.
"""

from __future__ import annotations

import json
import shutil

import pytest

from bench import scale, suite

N = 600


@pytest.mark.broker
def test_scale_rows_run_one_trainer_and_scorers_and_report_sane_fields(broker_bootstrap, tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert suite.main([
        "--bootstrap", broker_bootstrap, "--rows", "scale", "--models", "logreg", "--scale-events", str(N),
        "--scale-scorers", "1,2", "--scale-rate", "1000", "--scale-label-lag", "1.0", "--out", str(out),
    ]) == 0
    results = json.loads(out.read_text())
    entry = results["models"]["logreg"]
    assert "errors" not in entry, entry.get("errors")
    found = entry["scale"]
    assert (found["events"], found["partitions"], found["steady_rate"]) == (N, 6, 1000)
    assert "published" not in results["workload"]  # only the scale rows ran: no shared backlog was published
    rows = found["rows"]
    assert [r["scorers"] for r in rows] == [1, 2]
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] == pytest.approx(rows[1]["rate"] / rows[0]["rate"])
    for row in rows:
        assert row["exit_codes"] == [0] * (1 + row["scorers"]), row["exit_codes"]  # SIGTERM: a clean stop
        for phase in (row, row["steady"]):
            assert phase["predictions"] == phase["distinct_predicted"] == N  # every event predicted once
            assert (phase["joined"], phase["unmatched"]) == (N, 0)  # every label learned once
            assert phase["rate"] > 0 and phase["seconds"] > 0 and phase["offered_rate"] > 0
            assert phase["cpu_seconds"]["broker"] is None  # --bootstrap: a broker the bench did not start
            assert phase["cpu_per_1000"]["trainer"] > 0 and phase["cpu_per_1000"]["scorers"] > 0
            assert phase["cpu_per_1000"]["scorers"] == pytest.approx(phase["cpu_seconds"]["scorers"] * 1000 / N)
            q = phase["latency"]
            assert q["n"] == N and 0 <= q["p50"] <= q["p99"] < 60
            stale, hist = phase["staleness"], phase["staleness_histogram"]
            assert stale["n"] == N == hist["count"] and 0 <= stale["p50"] <= stale["p99"] <= 2 * N
            assert stale["mean"] == pytest.approx(hist["mean"], rel=1e-6)  # computed = the trainer's histogram
        assert row["steady"]["offered_rate"] < 1100  # the steady phase was rate limited
        assert row["offered_rate"] > row["steady"]["offered_rate"]  # the burst was not
        assert row["snapshots"] >= 2 and 0 < row["published_version"] <= 2 * N
        if scale.pinning():
            assert row["pinning"].startswith("core 0: trainer, producer") and "core 1:" in row["pinning"]
    table = capsys.readouterr().out
    assert "| logreg | 1 |" in table and "| logreg | 2 |" in table and "Pinning (taskset):" in table


def test_pinning_puts_scorers_beside_the_trainer_core():
    if shutil.which("taskset") is None:
        assert scale.pinning(8) == {}
        return
    assert scale.pinning(1) == {}
    assert scale.pinning(2)["scorers"] == [1] and scale.pinning(2)["trainer"] == [0]
    assert scale.pinning(4)["scorers"] == [1, 2, 3]
    assert scale.describe_pinning(scale.pinning(4), 2, True) == "core 0: trainer, producer, broker; core 1,2: 2 scorers"
    assert scale.pinned(["python"], [1]) == ["taskset", "-c", "1", "python"]


def test_histogram_quantiles_are_bucket_upper_bounds():
    name = "riverbed_served_staleness_labels"
    samples = {f"{name}_bucket{{le=0.0}}": 1.0, f"{name}_bucket{{le=10.0}}": 5.0, f"{name}_bucket{{le=100.0}}": 9.0,
               f"{name}_bucket{{le=+Inf}}": 10.0, f"{name}_count": 10.0, f"{name}_sum": 300.0}
    assert scale.histogram_quantile(samples, name, 0.5) == 10.0
    assert scale.histogram_quantile(samples, name, 0.9) == 100.0
    assert scale.histogram_quantile(samples, name, 0.99) == float("inf")
    assert scale.histogram_quantile({}, name, 0.5) is None


class Logged:
    """A stand-in for a scorer subprocess: only its log lines."""

    def __init__(self, *lines: str):
        self.lines = list(lines)

    assignment = scale._Child.assignment


def test_the_group_is_stable_once_the_latest_assignments_split_every_partition():
    every = {("ev", p) for p in range(3)}
    whole, first, rest = "scoring ev:0, ev:1, ev:2", "scoring ev:0", "scoring ev:1, ev:2"
    assert not scale._group_stable([Logged(whole), Logged()], every)  # the second has not joined yet
    assert not scale._group_stable([Logged(whole), Logged(rest)], every)  # the first still owns everything
    assert scale._group_stable([Logged(whole, first), Logged(rest)], every)
    assert not scale._group_stable([Logged(first), Logged("scoring no partition")], every)  # ev:1, ev:2 unowned
    idle = [Logged("scoring ev:0"), Logged("scoring ev:1"), Logged("scoring ev:2"), Logged("scoring no partition")]
    assert scale._group_stable(idle, every)  # more scorers than partitions: one idles
