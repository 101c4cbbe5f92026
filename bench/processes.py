"""What every benchmark row shares: the children's environment, riverbed configs, CPU time, cores.

:mod:`bench.suite` (the rows) and :mod:`bench.scale` (the scale-out rows) both use these; neither
imports the other for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict:
    """The children's environment: no ``RIVERBED_*`` settings (the specs say everything), but the SASL password."""
    from stream.config import SASL_PASSWORD_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_") or k == SASL_PASSWORD_ENV}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def topic_names(prefix: str) -> dict:
    return {name: f"{prefix}-{name}" for name in ("events", "labels", "predictions", "deadletter")}


def riverbed_sections(ctx: dict, topics: dict, state_dir: Path, preset: str, **extra) -> dict:
    """A riverbed config for ``ctx``'s Kafka (bootstrap and security keys) with ``extra`` sections merged in."""
    sections = {
        "kafka": {"bootstrap_servers": str(ctx["bootstrap"]), "group_id": f"riverbed-{uuid.uuid4().hex[:6]}",
                  **ctx["security"]},
        "topics": topics,
        "state": {"dir": str(state_dir)},
        "model": {"preset": preset, "task": "binary"},
        "metrics": {"enabled": False},
        "http": {"enabled": False},
        "log": {"level": "WARNING"},
    }
    for section, values in extra.items():
        sections[section] = {**sections.get(section, {}), **values}
    return sections


def load_sections(sections: dict):
    from stream.config import load_config

    return load_config(None, env={}).replace(**sections)


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (all threads), from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def pinning(cores: int | None = None) -> dict:
    """Which cores each process gets: ``{"trainer": [0], "scorers": [1, ...]}``, or {} when not pinned."""
    cores = os.cpu_count() if cores is None else cores
    if not cores or cores < 2 or shutil.which("taskset") is None:
        return {}
    return {"trainer": [0], "producer": [0], "broker": [0], "scorers": list(range(1, cores))}


def pinned(command: list[str], cores: list[int] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cores)), *command] if cores else command


def pin_broker(pid: int | None, cores: dict) -> bool:
    """Pin every thread of the bench's own broker to the trainer's cores; True when it did."""
    if pid is None or not cores:
        return False
    result = subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, cores["broker"])), str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return result.returncode == 0


def unpin_broker(pid: int | None) -> None:
    """Give every thread of the bench's own broker all cores again (after a pinned measurement)."""
    cores = os.cpu_count() or 1
    if pid is not None and shutil.which("taskset") is not None:
        subprocess.run(["taskset", "-a", "-p", "-c", f"0-{cores - 1}", str(pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
