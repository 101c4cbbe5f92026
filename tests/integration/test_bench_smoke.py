"""Smoke run of the benchmark code (``make bench``) with tiny sizes: every row runs, no targets.

Speed is measured by ``make bench``, never here: this only checks that every row of the
benchmark still works against the real broker and that its JSON has the fields the README's
table is built from; and that the bench hands the caller's ``[kafka]`` security settings (never
the password) to the processes it starts.
"""

from __future__ import annotations

import json

import pytest

from bench import suite


@pytest.mark.broker
def test_every_row_runs_and_reports_sane_fields(broker_bootstrap, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert suite.main([
        "--bootstrap", broker_bootstrap, "--events", "300", "--models", "logreg",
        "--loads", "0.5", "--latency-seconds", "1", "--latency-warmup-seconds", "1", "--out", str(out),
    ]) == 0
    results = json.loads(out.read_text())
    entry = results["models"]["logreg"]
    assert set(entry["rows"]) == {"bare", "riverbed", "lean", "faust", "bytewax", "quix", "quix_eos", "naive"}
    for name, row in entry["rows"].items():
        assert row["events"] == 300, name  # --faust-events is capped at --events
        assert row["rate"] > 0 and row["seconds"] > 0, name
        assert row["peak_rss_bytes"] > 10 * 2**20, name
        assert row["eta"] == pytest.approx(row["rate"] / entry["rows"]["bare"]["rate"]), name
    for name in ("riverbed", "lean", "faust", "bytewax", "quix", "quix_eos", "naive"):
        assert entry["rows"][name]["joined"] == 300, name  # every label learned once
    for peer in ("bytewax", "quix", "quix_eos"):  # every event predicted once, every label learned once
        assert entry["rows"][peer]["check"] == "ok" and 0 <= entry["rows"][peer]["accuracy"] <= 1, peer
    assert 0.5 < entry["rows"]["bare"]["accuracy"] <= 1
    riverbed = entry["rows"]["riverbed"]
    assert riverbed["checkpoints"] >= 1 and 0 < riverbed["checkpoint_duty"] < 1
    assert "errors" not in entry, entry.get("errors")
    (latency,) = entry["latency"]  # the warm-up run before it is not recorded
    assert latency["load"] == 0.5 and latency["latency"]["n"] > 0
    assert latency["load_generator"] == "librdkafka"  # plaintext broker: the C client, not aiokafka
    base = entry["latency_base"]  # loads are fractions of riverbed's rate on the latency runs' core
    assert base["rate"] > 0 and base["unpinned_rate"] == riverbed["rate"]
    assert latency["target_rate"] == pytest.approx(0.5 * base["rate"])
    assert 0 <= latency["latency"]["p50"] <= latency["latency"]["p99"] < 60
    assert latency["freshness"]["n"] > 0
    cores = latency["cpu_cores"]
    assert 0 < cores["riverbed"] < 3 and 0 < cores["load_generator"] < 3
    assert cores["broker"] is None  # --bootstrap: a broker the bench did not start is not measured
    assert 0 < entry["recovery"]["seconds"] < 60
    assert set(entry["targets"]) >= {"riverbed >= 5x faust", "riverbed >= 3x naive", "recovery <= 3 s",
                                   "overhead <= 20 us", "p99 <= 20 ms at 50% load"}
    assert entry["ratio_to_fastest_peer"]["peer"] in {"faust", "bytewax", "quix", "quix_eos"}
    assert any(name.startswith("riverbed >= 1.5x fastest peer (") for name in entry["targets"])
    table = capsys.readouterr().out
    assert "| logreg | riverbed (default config) |" in table and "faust-streaming agents" in table and "bytewax 0.21" in table
    assert "Quix Streams 3.28 application (exactly-once)" in table


@pytest.mark.broker
def test_soak_row_samples_memory_pending_state_and_gc(broker_bootstrap, tmp_path, capsys):
    out = tmp_path / "soak.json"
    assert suite.main([
        "--bootstrap", broker_bootstrap, "--rows", "soak", "--events", "300", "--models", "logreg",
        "--soak-events", "1200", "--soak-rate", "400", "--soak-sample-s", "0.5", "--out", str(out),
    ]) == 0
    entry = json.loads(out.read_text())["models"]["logreg"]
    assert "errors" not in entry, entry.get("errors")
    soak = entry["soak"]
    assert soak["events"] == 1200 and soak["rss_mark_events"] == 600  # short runs: the mark is half way
    assert soak["rss_at_mark_bytes"] > 10 * 2**20 and soak["rss_at_end_bytes"] > 10 * 2**20
    assert soak["rss_growth"] == pytest.approx(soak["rss_at_end_bytes"] / soak["rss_at_mark_bytes"] - 1)
    # labels follow their events 100 events later; the load generator's client sends the two topics
    # in separate requests, so an event may reach the broker (and be predicted) a moment before the
    # label produced just ahead of it: a few more pending entries, never a growing number
    assert 0 < soak["pending_max"] <= 110
    assert soak["learned_ids_end"] == 1200 and soak["state_dir_end_bytes"] > 0
    samples = soak["samples"]
    assert len(samples) >= 3
    assert [s["events"] for s in samples] == sorted(s["events"] for s in samples)
    assert samples[-1]["events"] == 1200
    assert {"n", "total_seconds", "by_generation"} <= set(soak["gc_pauses"])
    assert "soak RSS growth <= 10%" in entry["targets"]
    assert "| logreg | 1,200 |" in capsys.readouterr().out


SASL_ENV = {"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RIVERBED_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "RIVERBED_KAFKA_SASL_USERNAME": "bench", "RIVERBED_KAFKA_SASL_PASSWORD": "pw-not-in-any-spec"}


def test_security_keys_come_from_the_callers_environment_without_the_password(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")  # only its existence is checked here
    for name, value in {**SASL_ENV, "RIVERBED_KAFKA_SSL_CAFILE": str(ca)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RIVERBED_CONFIG", raising=False)
    keys = suite.security_keys(None)
    assert keys["security_protocol"] == "SASL_SSL" and keys["sasl_username"] == "bench"
    assert keys["ssl_cafile"] == str(ca) and "pw-not-in-any-spec" not in json.dumps(keys)
    ctx = {"bootstrap": "127.0.0.1:1", "security": keys}
    sections = suite.riverbed_sections(ctx, suite.topic_names("t"), "/tmp/x", "logreg")
    assert sections["kafka"]["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "pw-not-in-any-spec" not in json.dumps(sections)
    env = suite.child_env()  # the worker processes' environment
    assert env["RIVERBED_KAFKA_SASL_PASSWORD"] == "pw-not-in-any-spec"
    assert "RIVERBED_KAFKA_SECURITY_PROTOCOL" not in env  # the specs carry the settings


def test_a_sasl_config_without_a_password_ends_the_bench_in_one_line(monkeypatch):
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RIVERBED_KAFKA_SASL_PASSWORD")
    monkeypatch.delenv("RIVERBED_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        suite.security_keys(None)
    assert str(exit_info.value).startswith("riverbed: error: ") and "\n" not in str(exit_info.value)


def test_the_plaintext_only_faust_row_is_skipped_with_a_reason_under_security(tmp_path):
    entry: dict = {"rows": {}}
    base = {"dataset": "sea", "preset": "logreg", "kafka": {"security_protocol": "SASL_SSL"}}
    suite.run_comparator(entry, base, "faust", 10, "127.0.0.1:1", suite.topic_names("t"), tmp_path)
    assert entry["rows"] == {} and "errors" not in entry
    (reason,) = entry["skipped"]
    assert "plaintext only" in reason and "SASL_SSL" in reason
