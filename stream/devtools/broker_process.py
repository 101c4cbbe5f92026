"""The broker's process seen from outside: whether a pid is alive, its command line, waiting, signals.

The state and the command line of a pid come from ``/proc``. A broker this interpreter launched
is registered in ``_LAUNCHED`` by :class:`~stream.devtools.broker.LocalBroker`, and is then
polled and waited on through its :class:`subprocess.Popen`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

# Popen objects of brokers this interpreter launched, kept so that they are reaped (no
# zombies, no "still running" ResourceWarning) and so that stop() can wait on them.
_LAUNCHED: dict[int, subprocess.Popen] = {}


# -- processes ----------------------------------------------------------------------------------


def _process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc``, or ``None`` if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _pid_alive(pid: int) -> bool:
    launched = _LAUNCHED.get(pid)
    if launched is not None:
        return launched.poll() is None
    return _process_state(pid) not in (None, "Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    launched = _LAUNCHED.get(pid)
    if launched is not None:
        try:
            launched.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        _LAUNCHED.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
