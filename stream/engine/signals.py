"""Clean shutdown on SIGTERM and SIGINT for a long-running role (processor, trainer, scorer).

:class:`StopOnSignal` gives a run ``stop()`` (safe from signal handlers: it only sets an
:class:`asyncio.Event` the loop checks between batches) and ``install_signal_handlers()``; the
signal is logged in one line that says what the run does next (:attr:`StopOnSignal.STOPPING`).
"""

from __future__ import annotations

import asyncio
import logging
import signal

log = logging.getLogger(__name__)


class StopOnSignal:
    """Mixin: ``self._stop`` (an :class:`asyncio.Event`) is set by :meth:`stop` and by SIGTERM/SIGINT."""

    _stop: asyncio.Event
    STOPPING = "finishing the batch, checkpointing and stopping"
    """What the log line says the run does once a signal arrived."""

    def stop(self) -> None:
        """Ask the run to finish its batch and return cleanly (safe from signal handlers)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: %s", sig.name, self.STOPPING)
        self.stop()
