"""Every user error of the CLI is one line on stderr and a documented exit code.

Each test runs the real CLI (``python -m stream``) in a subprocess, against the real test broker
where a broker is needed, and asserts the whole of stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import fresh_config, riverbed, write_config

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``riverbed: error: ...`` line of ``result``'s stderr (asserted)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("riverbed: error: "), result.stderr
    return result.stderr.strip()


def cli_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "stream", "--config", str(config), *args]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}


def create_topics_with(cfg, names: list[str]) -> None:
    from stream.connect.topics import create_topics

    create_topics(cfg.kafka.bootstrap_servers, names, cfg.kafka.partitions)


# -- no broker needed ------------------------------------------------------------------------


def test_cli_module_imports_nothing_heavy():
    """``riverbed --help`` must not wait for River, SciPy, a Kafka client or RocksDB to import."""
    probe = (
        "import sys, stream.cli.main; "
        "print(sorted(m for m in ('river', 'scipy', 'numpy', 'kafka', 'aiokafka', 'rocksdict', "
        "'learners', 'state', 'prometheus_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=clean_env())
    assert out.stdout.strip() == "[]"


def test_tail_with_the_broker_down_is_one_quick_line(tmp_path, test_config):
    cfg = test_config.replace(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_s": 5.0})
    started = time.monotonic()
    result = riverbed("tail", config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=60)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "does not answer" in one_error_line(result)


@pytest.mark.parametrize("command", ["run", "demo"])
def test_unknown_preset_is_refused_before_any_broker_starts(tmp_path, test_config, command):
    broker_port = free_port()
    cfg = test_config.replace(
        broker={"port": broker_port, "controller_port": free_port(), "dir": str(tmp_path / "broker")},
        state={"dir": str(tmp_path / "state")},
    )
    result = riverbed(command, config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=60,
                      env={"RIVERBED_MODEL_PRESET": "forest"})
    assert result.returncode == 2
    assert "unknown model preset 'forest'" in one_error_line(result)
    assert not (tmp_path / "broker").exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", broker_port)) != 0  # nothing was started there


def test_broken_pipe_exits_quietly_with_141(tmp_path, test_config):
    cfg = test_config.replace(broker={"port": free_port(), "controller_port": free_port()})
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before riverbed prints, as after `| head` has quit
    try:
        result = subprocess.run(cli_command(write_config(cfg, tmp_path / "c.toml"), "broker", "status"),
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, env=clean_env())
    finally:
        os.close(write_end)
    assert result.returncode == EXIT_BROKEN_PIPE
    assert result.stderr == ""


def test_file_with_own_ids_refuses_an_id_prefix(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,ts,a,label\nu1,1700000000,1,true\n", encoding="utf-8")
    result = riverbed("produce", "--file", str(path), "--target", "label", "--id-prefix", "p", check=False,
                      env={"RIVERBED_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 2
    assert "has its own event ids" in one_error_line(result)


# -- the real test broker --------------------------------------------------------------------


@pytest.mark.broker
def test_tail_of_a_missing_topic_is_one_line(tmp_path, service_config):
    config_file = write_config(service_config, tmp_path / "c.toml")
    result = riverbed("tail", "--topic", "no-such-topic-here", config=config_file, check=False, timeout=60)
    assert result.returncode == 1
    assert "topic no-such-topic-here does not exist" in one_error_line(result)


@pytest.mark.broker
def test_metrics_port_in_use_is_one_line(tmp_path, test_config, broker_bootstrap):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state",
                           metrics={"enabled": True, "host": "127.0.0.1", "port": port})
        result = riverbed("run", "--exit-when-idle", "1", config=write_config(cfg, tmp_path / "c.toml"),
                          check=False, timeout=120)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "[metrics] port" in line and "RIVERBED_METRICS_PORT" in line


@pytest.mark.broker
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, service_config):
    create_topics_with(service_config, [service_config.topics.predictions])
    config_file = write_config(service_config, tmp_path / "c.toml")
    proc = subprocess.Popen(cli_command(config_file, "tail", "--idle-timeout", "0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    time.sleep(4)  # started, found the topic, waiting for messages that never come
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED
    assert err == "riverbed: interrupted\n"
    assert out == ""


@pytest.mark.broker
def test_tail_into_a_closed_pipe_exits_quietly_with_141(tmp_path, service_config):
    from stream.devtools.replay import produce, schedule

    t = service_config.topics
    create_topics_with(service_config, [t.events, t.labels])
    produce(service_config.kafka.bootstrap_servers, t, schedule([({"a": i}, i % 2 == 0) for i in range(50)]),
            progress=False)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            cli_command(write_config(service_config, tmp_path / "c.toml"), "tail", "--topic", t.events),
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, env=clean_env(),
        )
    finally:
        os.close(write_end)
    assert result.returncode == EXIT_BROKEN_PIPE
    assert result.stderr == ""
