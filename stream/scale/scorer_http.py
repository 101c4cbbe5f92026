"""A scorer's HTTP endpoints: liveness, readiness, its status and its metrics.

Served on the scorer's own loop (``[http] host``/``port``, loopback by default; ``[http] enabled =
false`` turns it off), by the same bounded server as the processor's API
(:class:`stream.ops.http_api.HttpServer`):

=================  ====================================================================
``GET /``          a status page (self-contained HTML that reads ``/status`` every 2 s)
``GET /healthz``   200 while the process is alive
``GET /readyz``    200 once the scorer serves a model, owns partitions of its group and its
                   lag is at most ``[http] ready_lag``; 503 with the reason otherwise
``GET /status``    ``{"role": "scorer", "group", "guarantee", "model", "version",
                   "snapshot_age_s", "swaps", "rejected", "partitions", "lag", "counts",
                   "commits"}``
``GET /metrics``   the Prometheus text format of the scorer's registry
=================  ====================================================================

A scorer has no ``/history`` and no ``POST /predict``: it keeps no history, and its predictions
are the ``predictions`` topic.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.config import Config
from stream.ops.http_api import HttpServer, Request, Response, json_response


class ScorerView(Protocol):
    """What the endpoints read of a :class:`~stream.scale.scorer.Scorer` (no import of it: no cycle)."""

    config: Config
    follower: Any
    consumer: Any
    metrics: Any
    counts: dict[str, int]
    lag: int | None

    @property
    def commits(self) -> int: ...


class ScorerHttp(HttpServer):
    """The HTTP endpoints of one :class:`~stream.scale.scorer.Scorer` (see the module docstring)."""

    def __init__(self, scorer: ScorerView, host: str, port: int, *, ready_lag: int = 1000):
        super().__init__(host, port, what="scorer status")
        self.scorer = scorer
        self.ready_lag = ready_lag
        self._page = resources.files("stream.scale").joinpath("scorer_page.html").read_bytes()
        self.routes = {
            "/": {"GET": self.page},
            "/index.html": {"GET": self.page},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/status": {"GET": self.status},
            "/metrics": {"GET": self.metrics},
        }

    def document(self) -> dict:
        """The scorer's status (what ``GET /status`` answers)."""
        scorer = self.scorer
        follower, consumer = scorer.follower, scorer.consumer
        current = None if follower is None else follower.current
        partitions = [] if consumer is None else sorted(f"{tp.topic}:{tp.partition}" for tp in consumer.assignment())
        return {
            "role": "scorer",
            "group": scorer.config.scale.scorer_group_id,
            "guarantee": scorer.config.output.guarantee,
            "model": None if current is None else current.models.serving,
            "version": None if current is None else current.version,
            "snapshot_age_s": None if current is None or current.created is None
            else round(time.time() - current.created, 3),
            "swaps": 0 if follower is None else follower.swaps,
            "rejected": {} if follower is None else dict(follower.rejected),
            "partitions": partitions,
            "lag": scorer.lag if partitions else None,
            "counts": dict(scorer.counts),
            "commits": scorer.commits,
        }

    async def readyz(self, request: Request) -> Response:
        document = self.document()
        if document["version"] is None:
            return json_response(503, {"ready": False, "reason": "starting: no model loaded yet"})
        if not document["partitions"]:
            return json_response(503, {"ready": False, "reason": "no events partition assigned (joining the group, "
                                       "or more scorers than partitions)"})
        if document["lag"] is not None and document["lag"] > self.ready_lag:
            return json_response(503, {"ready": False, "reason": f"lag {document['lag']} > [http] ready_lag "
                                       f"{self.ready_lag}"})
        return json_response(200, {"ready": True, "version": document["version"], "lag": document["lag"]})

    async def status(self, request: Request) -> Response:
        return json_response(200, self.document())

    async def page(self, request: Request) -> Response:
        return Response(200, self._page, "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(self.scorer.metrics.registry), CONTENT_TYPE_LATEST)
