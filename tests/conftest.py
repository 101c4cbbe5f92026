"""Shared fixtures: one real Kafka broker per test session, fresh topics and state per test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from stream.config import Config, load_config, to_toml

TESTS = Path(__file__).parent
TEST_CONFIG = TESTS / "config.toml"


@pytest.fixture(scope="session")
def test_config() -> Config:
    """The suite's config (its own broker ports), ignoring RIVERBED_* variables of the caller."""
    return load_config(TEST_CONFIG, env={})


@pytest.fixture(scope="session")
def broker_bootstrap(test_config: Config) -> str:
    """A running real Apache Kafka broker: started if none answers, stopped if this session started it.

    Set ``RIVERBED_TEST_KEEP_BROKER=1`` to leave it running (several sessions sharing one broker).
    """
    from stream.devtools.broker import LocalBroker

    broker = LocalBroker(test_config)
    started = broker.start()
    yield broker.bootstrap
    if started and not os.environ.get("RIVERBED_TEST_KEEP_BROKER"):
        broker.stop()


def fresh_config(base: Config, bootstrap: str, state_dir: Path, **sections) -> Config:
    """``base`` with unique topic names, its own state dir and no metrics or HTTP server."""
    suffix = uuid.uuid4().hex[:10]
    cfg = base.replace(
        kafka={"bootstrap_servers": bootstrap},
        topics={name: f"t{suffix}-{name}" for name in ("events", "labels", "predictions", "deadletter")},
        state={"dir": str(state_dir), "checkpoint_interval_s": 1.0},
        metrics={"enabled": False},
        http={"enabled": False},
    )
    return cfg.replace(**sections) if sections else cfg


@pytest.fixture
def service_config(test_config: Config, broker_bootstrap: str, tmp_path: Path) -> Config:
    return fresh_config(test_config, broker_bootstrap, tmp_path / "state")


def write_config(cfg: Config, path: Path) -> Path:
    path.write_text(to_toml(cfg), encoding="utf-8")
    return path


def riverbed(*args: str, config: Path | None = None, timeout: float = 300, env: dict | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI (``python -m stream``) in a subprocess."""
    cmd = [sys.executable, "-m", "stream"]
    if config is not None:
        cmd += ["--config", str(config)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    full_env.update(env or {})
    result = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"riverbed {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def spawn_processor(config_file: Path, *args: str, log_level: str = "INFO") -> subprocess.Popen:
    """``riverbed run`` as a subprocess, returned once its loop consumes; the rest of its stderr is
    collected in ``proc.captured`` (join ``proc.drain`` after it exited).

    Raises
    ------
    AssertionError
        When the processor exits before it logs that it is consuming.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "--config", str(config_file), "--log-level", log_level, "run", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    proc.captured = []  # stderr lines after "consuming", read by a thread so the pipe never fills up
    for line in proc.stderr:  # wait until the model is restored and the loop starts
        if "consuming" in line:
            proc.drain = threading.Thread(target=_drain, args=(proc,), daemon=True)
            proc.drain.start()
            return proc
    raise AssertionError(f"processor exited early with {proc.wait()}")


def _drain(proc: subprocess.Popen) -> None:
    for line in proc.stderr:
        proc.captured.append(line)
