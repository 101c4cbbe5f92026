"""The service in a thread of your program, with a stop handle."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry

from stream.config import Config
from stream.engine.processor import Processor, RunSummary
from stream.ops.status import status_document


class Service:
    """riverbed's processor on its own asyncio loop in a background thread.

    Parameters
    ----------
    config
        The configuration (:func:`riverbed.load_config`).
    registry
        The Prometheus registry to export to (a fresh one by default).
    exit_when_idle
        Stop by itself once the input is caught up and idle for this many seconds.
    serve_http
        Also serve the status page and HTTP API (``[http]``), as ``riverbed run`` does.

    The processor reads and learns on its own thread; :meth:`status` asks that thread for the
    live status document, so no River object is touched from yours. :meth:`stop` (or leaving a
    ``with`` block) finishes the batch, checkpoints and waits for the thread; an error in the
    service is raised again from :meth:`wait`, :meth:`wait_until` and :meth:`stop`.
    """

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 exit_when_idle: float | None = None, serve_http: bool = False):
        self.processor = Processor(
            config, registry=registry or CollectorRegistry(), exit_when_idle=exit_when_idle,
            serve_metrics=False, serve_http=serve_http,
        )
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="riverbed-service", daemon=True)

    def _main(self) -> None:
        async def main() -> RunSummary:
            self._loop = asyncio.get_running_loop()
            self._started.set()
            return await self.processor.run()

        try:
            self.summary = asyncio.run(main())
        except BaseException as exc:  # raised again by wait / wait_until / stop
            self.error = exc
        finally:
            self._started.set()

    def start(self) -> "Service":
        """Start the service thread; returns at once."""
        self._thread.start()
        self._started.wait()
        return self

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def counts(self) -> Mapping[str, int]:
        """The processor's counts (events, labels, predictions, joined, ...), a live view."""
        return self.processor.counts

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def wait_until(self, condition: Callable[[Mapping[str, int]], bool], timeout_s: float = 120.0,
                   what: str = "reach the condition") -> None:
        """Block until ``condition(counts)`` holds; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not condition(self.processor.counts):
            self._raise_error()
            if not self.running:
                raise RuntimeError(f"the service stopped before it could {what}: {dict(self.processor.counts)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service did not {what} within {timeout_s:.0f} s: {dict(self.processor.counts)}")
            time.sleep(0.02)

    def status(self, timeout_s: float = 10.0) -> dict:
        """The live status document (as ``GET /status``), computed on the service's thread."""
        loop = self._loop
        if loop is None or not self.running:
            self._raise_error()
            raise RuntimeError("the service is not running")

        async def build() -> dict:
            return status_document(self.processor.checkpoint_meta(fingerprints=True), None)

        return asyncio.run_coroutine_threadsafe(build(), loop).result(timeout_s)

    def stop(self, timeout_s: float = 120.0) -> RunSummary | None:
        """Finish the batch, checkpoint, stop; returns the run's summary."""
        if self._loop is not None and self.running:
            self._loop.call_soon_threadsafe(self.processor.stop)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> RunSummary | None:
        """Wait for the service to end by itself (e.g. ``exit_when_idle``); returns its summary."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the service did not stop within {timeout_s} s")
        self._raise_error()
        return self.summary
