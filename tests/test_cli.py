"""The CLI as a user meets it: help, one-line errors, broker status, tail."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import fresh_config, riverbed, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_every_command():
    out = riverbed("--help").stdout
    for command in ("run", "broker", "topics", "produce", "tail", "status", "demo"):
        assert command in out
    assert "--exit-when-idle" in riverbed("run", "--help").stdout
    assert "--label-delay" in riverbed("produce", "--help").stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--exit-when-idle", "-3"], "must not be negative"),
        (["produce", "--dataset", "phishing", "--label-fraction", "2"], "between 0 and 1"),
        (["produce"], "one of the arguments --dataset --file is required"),
        (["frobnicate"], "invalid choice"),
        (["produce", "--dataset", "no_such_dataset"], "no_such_dataset"),
        (["produce", "--file", "x.csv"], "--target"),
    ],
)
def test_bad_arguments_get_one_clear_line(args, fragment):
    result = riverbed(*args, check=False, env={"RIVERBED_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode != 0
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_gets_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\npreset = 3\n")
    result = riverbed("status", config=bad, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"riverbed: error: {bad}: [model] preset = 3 must be a string (default: 'logreg')"
    )


def test_unknown_preset_gets_one_clear_line(tmp_path, test_config):
    cfg = test_config.replace(model={"preset": "gradient_magic"}, kafka={"bootstrap_servers": "127.0.0.1:1"},
                              state={"dir": str(tmp_path / "s")})
    result = riverbed("run", config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_status_without_state_says_what_to_do(tmp_path, test_config):
    cfg = test_config.replace(state={"dir": str(tmp_path / "nothing")})
    result = riverbed("status", config=write_config(cfg, tmp_path / "c.toml"), check=False)
    assert result.returncode != 0
    assert "run `riverbed run` first" in result.stderr


def test_unreachable_cluster_is_one_line(tmp_path, test_config):
    cfg = test_config.replace(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_s": 5.0})
    result = riverbed("topics", "create", config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.broker
def test_broker_status_and_idempotent_start(tmp_path, test_config, broker_bootstrap):
    config_file = write_config(test_config, tmp_path / "c.toml")
    assert riverbed("broker", "status", config=config_file).returncode == 0
    assert "already running" in riverbed("broker", "start", config=config_file).stdout
    nobody = test_config.replace(broker={"port": free_port(), "controller_port": free_port()})
    assert riverbed("broker", "status", config=write_config(nobody, tmp_path / "n.toml"), check=False).returncode == 1


@pytest.mark.broker
def test_topics_create_produce_run_tail(tmp_path, test_config, broker_bootstrap):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state", codec={"output": "json"})
    config_file = write_config(cfg, tmp_path / "c.toml")
    out = riverbed("topics", "create", config=config_file).stdout
    assert out.count("created") == 4
    assert riverbed("topics", "create", config=config_file).stdout.count("exists") == 4
    riverbed("produce", "--dataset", "bananas", "--limit", "50", "--label-delay", "3", "--format", "json",
             "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    lines = riverbed("tail", "--limit", "5", config=config_file).stdout.splitlines()
    assert len(lines) == 5
    first = json.loads(lines[0])
    assert first["key"] == "bananas-0"
    assert first["value"]["id"] == "bananas-0" and first["value"]["model"] == "logreg"
    human = riverbed("status", config=config_file).stdout
    assert "50 labels learned" in human
