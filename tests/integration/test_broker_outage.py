"""A broker outage mid-run: riverbed waits quietly, carries on, and ends with the same model.

A broker of its own (other ports, its own data dir) so that killing it disturbs no other test:
``kill -9`` while the processor still has a backlog, 12 s away (over twice the request
timeout), restart on the same data dir.
The run must end identical (fingerprint, counts) to an uninterrupted run over the same input,
and the outage must cost fewer than 20 log lines (it used to be ~65 aiokafka ERROR lines a second).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.devtools.broker import LocalBroker
from stream.ops.status import read_status
from tests.support import fresh_config, write_config
from tests.support import events_checkpointed, publish

pytestmark = pytest.mark.broker

PORT, CONTROLLER_PORT = 19492, 19493
OUTAGE_S = 12


@pytest.fixture
def own_broker(test_config, tmp_path):
    cfg = test_config.replace(broker={"port": PORT, "controller_port": CONTROLLER_PORT, "dir": str(tmp_path / "broker")})
    broker = LocalBroker(cfg)
    broker.start()
    yield broker
    broker.stop()


def _run(cfg, config_file: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    return subprocess.Popen(
        [sys.executable, "-m", "stream", "--config", str(config_file), "run", "--exit-when-idle", "2"],
        env=env, stderr=subprocess.PIPE, text=True,
    )


def test_a_broker_outage_is_quiet_and_changes_nothing(test_config, own_broker, tmp_path):
    base = fresh_config(test_config, own_broker.bootstrap, tmp_path / "unused",
                        model={"preset": "hoeffding_adaptive", "task": "binary"})
    base = base.replace(state={"checkpoint_interval_s": 0.5}, kafka={"request_timeout_s": 5.0})
    publish(base, "sea", delay=50, limit=30_000)

    outage = base.replace(state={"dir": str(tmp_path / "outage")})
    process = _run(outage, write_config(outage, tmp_path / "outage.toml"))
    deadline = time.monotonic() + 60
    while events_checkpointed(outage) < 2_000:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert events_checkpointed(outage) < 25_000, "the processor caught up before the outage began"
    pid = own_broker.running_pid()
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    time.sleep(OUTAGE_S)
    own_broker.start()
    back_at = time.time()
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]

    lines = stderr.splitlines()
    during = [line for line in lines if _stamp(line) is not None and killed_at - 1 <= _stamp(line) <= back_at + 15]
    assert len(during) < 20, "\n".join(during)
    assert any("unreachable" in line for line in during), "\n".join(during)

    reference = base.replace(state={"dir": str(tmp_path / "reference")}, kafka={"group_id": "reference"})
    ref = _run(reference, write_config(reference, tmp_path / "reference.toml"))
    _, ref_err = ref.communicate(timeout=240)
    assert ref.returncode == 0, ref_err[-3000:]
    a, b = read_status(outage), read_status(reference)
    assert a["counts"] == b["counts"] and a["counts"]["joined"] == 30_000
    assert a["models"]["hoeffding_adaptive"]["fingerprint"] == b["models"]["hoeffding_adaptive"]["fingerprint"]


def _stamp(line: str) -> float | None:
    """The epoch time of a log line ``2026-12-02 15:19:14,139 LEVEL ...``, or None."""
    try:
        return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
    except (ValueError, IndexError):
        return None
