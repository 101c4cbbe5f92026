"""The Grafana dashboard and Prometheus config query only what riverbed really exports."""

from __future__ import annotations

from tests.support import ROOT

import json
import re

import pytest
from prometheus_client import CollectorRegistry

from stream.engine.metrics import ServiceMetrics

DASHBOARD = ROOT / "grafana" / "dashboards" / "riverbed.json"
METRIC_NAME = re.compile(r"\b(riverbed_[a-zA-Z0-9_]+)")


def exported_metric_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` exposes (``_total``, ``_bucket``/``_count``/``_sum``, ...)."""
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.update({family.name + "_total", family.name + "_created"})
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum", "_created"))
        elif family.type == "info":
            names.add(family.name + "_info")
        else:
            names.add(family.name)
    return names


def dashboard_expressions(node) -> list[str]:
    """Every PromQL expression in a dashboard: panel targets, annotations, template variables."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(dashboard_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(dashboard_expressions(item))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_dashboard_metric_is_exported(dashboard):
    exported = exported_metric_names(ServiceMetrics(CollectorRegistry()).registry)
    used = {name for expr in dashboard_expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    assert len(used) >= 15, used
    assert used - exported == set(), f"the dashboard queries metrics riverbed does not export: {sorted(used - exported)}"


def test_dashboard_covers_the_operational_questions(dashboard):
    exprs = "\n".join(dashboard_expressions(dashboard))
    for needle in (
        "rate(riverbed_events_total", "riverbed_predictions_total", "rate(riverbed_labels_total",
        "riverbed_consumer_lag_messages", 'window="rolling"', 'window="cumulative"', "riverbed_promotions_total",
        "histogram_quantile(0.9, sum by (le) (rate(riverbed_label_delay_seconds_bucket", "riverbed_pending_entries",
        "time() - riverbed_checkpoint_last_success_timestamp_seconds", "riverbed_checkpoint_size_bytes",
        "sum by (topic, reason) (rate(riverbed_invalid_messages_total",
    ):
        assert needle in exprs, needle
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert "riverbed_drift_last_detected_timestamp_seconds" in annotations["Drift detections"]["expr"]
    assert "riverbed_promotions_total" in annotations["Promotions"]["expr"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    uid = "riverbed-prometheus"
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"] if p["type"] != "row")


def test_provisioning_points_at_the_dashboard_and_prometheus():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads the provisioning files")
    datasources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "riverbed-prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/riverbed.yml").read_text())["providers"]
    assert providers[0]["folder"] == "riverbed"
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/riverbed"
    prometheus = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["riverbed:9108"]
