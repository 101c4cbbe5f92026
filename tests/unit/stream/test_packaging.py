"""Packaging and deployment files that a user runs without reading the code."""

from __future__ import annotations

from tests.support import ROOT

import re
import shutil
import subprocess
import tomllib

import pytest



def test_dependencies_are_pinned_and_kafka_python_has_crc32c():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert "==" in requirement, requirement
    assert any(r.startswith("kafka-python[crc32c]==") for r in project["dependencies"])
    assert project["scripts"]["riverbed"] == "stream.cli.main:main"


def compose_command() -> tuple[list[str] | None, str]:
    """``docker compose`` (the v2 plugin, or a v2 ``docker-compose``), else why there is none.

    ``docker compose config`` needs only the client, no engine. Compose v1 (``docker-compose``
    1.x, the only one Debian packages) does not read the Compose Specification (top-level
    ``name``, ``service_completed_successfully``), so it cannot validate this file.
    """
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"], ""
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and not probe.stdout.strip().startswith("1."):
            return ["docker-compose"], ""
        return None, f"only docker-compose {probe.stdout.strip()} (v1) is installed; it cannot read the Compose Specification"
    return None, "no Docker Compose v2 here (`docker compose` plugin or docker-compose 2.x); it is needed to validate docker-compose.yml"


def test_compose_file_is_valid():
    command, reason = compose_command()
    if command is None:
        pytest.skip(reason)
    result = subprocess.run(command + ["-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(command + ["-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
                              capture_output=True, text=True, timeout=60)
    assert set(services.stdout.split()) == DEFAULT_SERVICES  # a plain `docker compose up` is unchanged
    scaled = subprocess.run(command + ["-f", str(ROOT / "docker-compose.yml"), "--profile", "scale", "config", "--services"],
                            capture_output=True, text=True, timeout=60)
    assert set(scaled.stdout.split()) == DEFAULT_SERVICES | SCALE_SERVICES, scaled.stderr


DEFAULT_SERVICES = {"kafka", "topics", "riverbed", "prometheus", "grafana"}
SCALE_SERVICES = {"scale-topics", "trainer", "scorer"}


def test_compose_stack_structure():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads docker-compose.yml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == DEFAULT_SERVICES | SCALE_SERVICES
    for name in DEFAULT_SERVICES:
        assert "profiles" not in services[name], f"{name}: the default stack must start without a profile"
    for name in SCALE_SERVICES:
        assert services[name]["profiles"] == ["scale"], f"{name}: only `--profile scale` starts it"
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image!r})"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: publish {port} on the host's loopback only"
    kafka = services["kafka"]["environment"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "INTERNAL://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"] and "HOST://127.0.0.1:" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR"):
        assert kafka[key] == "1", key
    assert len(kafka["CLUSTER_ID"]) == 22
    topics = services["topics"]
    assert topics["restart"] == "no" and topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert all(t in topics["command"][0] for t in ("events", "labels", "predictions", "deadletter"))
    riverbed = services["riverbed"]
    assert riverbed["build"] == "." and riverbed["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    env = riverbed["environment"]
    assert env["RIVERBED_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["RIVERBED_METRICS_HOST"] == "0.0.0.0" and env["RIVERBED_HTTP_HOST"] == "0.0.0.0"
    assert "riverbed-state:/var/lib/riverbed" in riverbed["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/riverbed:ro" in grafana
    scale_topics = services["scale-topics"]
    assert scale_topics["restart"] == "no" and scale_topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert all(t in scale_topics["command"][0] for t in ("events", "labels", "predictions", "deadletter", "served"))
    assert "--alter" in scale_topics["command"][0]  # topics of the single-process stack get enough partitions
    for role in ("trainer", "scorer"):
        service = services[role]
        assert service["command"] == ["run", "--role", role]
        assert service["image"] == riverbed["image"] and service["build"] == "."
        assert service["depends_on"]["scale-topics"]["condition"] == "service_completed_successfully"
        assert service["environment"]["RIVERBED_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    scorer = services["scorer"]
    # `docker compose up --scale scorer=N`: replicas cannot share a host port or a container name
    assert "ports" not in scorer and "container_name" not in scorer
    assert "volumes" not in scorer  # scorers keep no state
    assert "9108/metrics" in " ".join(scorer["healthcheck"]["test"])  # no HTTP API: the image's /healthz check would fail
    trainer = services["trainer"]
    assert "trainer-state:/var/lib/riverbed" in trainer["volumes"] and "trainer-state" in compose["volumes"]
    host_ports = [str(port).rsplit(":", 1)[0] for service in services.values() for port in service.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    for mount in grafana + services["prometheus"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_dockerfile_runs_as_non_root_with_state_on_a_volume():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.match(r"FROM python:3\.11\.\d+-slim", base), base
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert "RIVERBED_STATE_DIR=/var/lib/riverbed" in text and 'VOLUME ["/var/lib/riverbed"]' in text
    assert "RIVERBED_METRICS_HOST=0.0.0.0" in text and "RIVERBED_HTTP_HOST=0.0.0.0" in text


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
