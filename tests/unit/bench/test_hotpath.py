"""``python -m bench.hotpath``: the in-memory processing loop does the same work as the real one.

Its figures are only worth something if the loop it times predicts every event once, publishes
every prediction, learns every label once, checkpoints, and reaches River's own prequential
accuracy on the workload (the parity riverbed guarantees). Speed is not asserted here.
"""

from __future__ import annotations

from bench import hotpath
from bench.workload import Workload, reference_accuracy


def test_the_in_memory_loop_predicts_learns_and_scores_like_river(tmp_path):
    n = 1500
    records = hotpath.workload_records(n)
    result = hotpath.run_once("logreg", records, tmp_path / "state", lean=False, chunk=200, checkpoint_every=1000)
    assert result["events"] == result["joined"] == result["published"] == n
    assert result["checkpoints"] >= 2  # at least one during the run (the loop applies time slices), and the final one
    ops = [(r.kind == "event", r.id, r.value["x"] if r.kind == "event" else r.value["y"])
           for r in Workload("sea", n).records()]
    assert result["accuracy"] == reference_accuracy(ops, "logreg")


def test_the_cli_reports_the_overhead(capsys):
    assert hotpath.main(["--models", "logreg", "--events", "300", "--repeat", "1", "--json"]) == 0
    out = capsys.readouterr()
    assert "overhead" in out.err
    assert '"overhead_us"' in out.out
