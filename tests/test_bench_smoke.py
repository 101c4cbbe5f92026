"""Smoke run of the benchmark code (``make bench``) with tiny sizes: every row runs, no targets.

Speed is measured by ``make bench``, never here: this only checks that every row of the
benchmark still works against the real broker and that its JSON has the fields the README's
table is built from.
"""

from __future__ import annotations

import json

import pytest

from bench import suite

pytestmark = pytest.mark.broker


def test_every_row_runs_and_reports_sane_fields(broker_bootstrap, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert suite.main([
        "--bootstrap", broker_bootstrap, "--events", "300", "--models", "logreg",
        "--loads", "0.5", "--latency-seconds", "1", "--out", str(out),
    ]) == 0
    results = json.loads(out.read_text())
    entry = results["models"]["logreg"]
    assert set(entry["rows"]) == {"bare", "riverbed", "lean", "faust", "naive"}
    for name, row in entry["rows"].items():
        assert row["events"] == 300, name  # --faust-events is capped at --events
        assert row["rate"] > 0 and row["seconds"] > 0, name
        assert row["peak_rss_bytes"] > 10 * 2**20, name
        assert row["eta"] == pytest.approx(row["rate"] / entry["rows"]["bare"]["rate"]), name
    for name in ("riverbed", "lean", "faust", "naive"):
        assert entry["rows"][name]["joined"] == 300, name  # every label learned once
    riverbed = entry["rows"]["riverbed"]
    assert riverbed["checkpoints"] >= 1 and 0 < riverbed["checkpoint_duty"] < 1
    assert "errors" not in entry, entry.get("errors")
    (latency,) = entry["latency"]
    assert latency["load"] == 0.5 and latency["latency"]["n"] > 0
    assert 0 <= latency["latency"]["p50"] <= latency["latency"]["p99"] < 60
    assert latency["freshness"]["n"] > 0
    cores = latency["cpu_cores"]
    assert 0 < cores["riverbed"] < 3 and 0 < cores["load_generator"] < 3
    assert cores["broker"] is None  # --bootstrap: a broker the bench did not start is not measured
    assert 0 < entry["recovery"]["seconds"] < 60
    assert set(entry["targets"]) >= {"riverbed >= 5x faust", "riverbed >= 3x naive", "recovery <= 3 s"}
    table = capsys.readouterr().out
    assert "| logreg | riverbed (default config) |" in table and "faust-streaming agents" in table
