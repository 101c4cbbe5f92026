"""The HTTP API and status page, served on the processor's own asyncio loop.

Endpoints (``[http] host``/``port``, loopback by default):

=====================  ===================================================================
``GET /``              the status page: one self-contained HTML file (no external scripts,
                       styles or fonts; it works offline)
``GET /healthz``       200 while the process is alive
``GET /readyz``        200 when the broker answers a metadata request and the consumer lag
                       is at most ``[http] ready_lag``; 503 with the reason otherwise
``GET /status``        the document of ``riverbed status --json``, computed from the live state
                       (model fingerprints from the live models), plus ``"live": true``,
                       ``"lag"`` per input partition and ``"rates"`` (events, labels,
                       predictions per second over the last 10 s)
``GET /history``       the bounded metrics history (:mod:`stream.engine.history`), drift detections and
                       promotions, for plots
``POST /predict``      score one event ``{"x": {...}, "id"?: ...}`` or a list of them with the
                       serving model. **Read-only**: nothing enters the pending-label store,
                       nothing is learned, nothing is published to Kafka, no counter moves.
                       A ``[features] transform`` applies, as for Kafka events.
``GET /metrics``       the Prometheus text format (same registry as ``[metrics]``)
=====================  ===================================================================

Why on the processor's loop: River models are not thread-safe. The processor handles a fetched
batch synchronously, so a request handler, which runs on the same loop, only ever runs *between*
batches and never sees a model half-way through ``learn_one``. Nothing here runs in a thread.

Robustness: request line and headers are bounded (:data:`MAX_HEADER_BYTES`), bodies by
:data:`MAX_BODY_BYTES` (413 beyond), a request must arrive within :data:`REQUEST_TIMEOUT_S`
(408), each connection serves one request (``Connection: close``). Every error caused by the
request gets a 4xx status and a JSON body ``{"error": ..., "status": ...}``; a 500 means a bug.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.engine.codecs import InvalidMessage, _check_features
from stream.errors import RiverbedError
from stream.ops.status import checkpoint_info, status_document

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 1024 * 1024
#: A too-large body is read and dropped up to this size before the 413 (larger: just closed).
DISCARD_LIMIT_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_REQUEST = 1000
REQUEST_TIMEOUT_S = 10.0
#: A live /status document is rebuilt at most this often (its model fingerprints cost a canonical
#: pickle of every model; checkpoints do not compute them, the readers do).
STATUS_CACHE_S = 1.0
READY_PROBE_TIMEOUT_S = 2.0
#: Rates on /status are over the last this many seconds (counts sampled once a second).
RATE_WINDOW_S = 10

REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request riverbed refuses: becomes ``status`` with a JSON error body."""

    def __init__(self, status: int, message: str, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes):
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body


class Response:
    def __init__(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``None``, numpy scalars as Python, keys as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return jsonable(item())
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(jsonable(key))


def json_response(status: int, document: Any, headers: dict | None = None) -> Response:
    body = json.dumps(jsonable(document), allow_nan=False, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers)


def error_response(exc: HttpError) -> Response:
    return json_response(exc.status, {"error": exc.message, "status": exc.status, **exc.extra}, exc.headers)


def status_page_html() -> bytes:
    return resources.files("stream.ops").joinpath("status_page.html").read_bytes()


class HttpApi:
    """The HTTP server of one :class:`~stream.engine.processor.Processor` (see the module docstring)."""

    def __init__(self, processor: Any, host: str, port: int, *, ready_lag: int = 1000,
                 max_body_bytes: int = MAX_BODY_BYTES):
        self.processor = processor
        self.host = host
        self.port = port
        self.ready_lag = ready_lag
        self.max_body_bytes = max_body_bytes
        self.server: asyncio.base_events.Server | None = None
        self._status_cache: tuple[float, dict] | None = None
        self._page = status_page_html()
        self.started_at = time.time()
        self._samples: collections.deque = collections.deque(maxlen=RATE_WINDOW_S + 1)
        self._sampler: asyncio.Task | None = None
        self.routes = {
            "/": {"GET": self.page},
            "/index.html": {"GET": self.page},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/status": {"GET": self.status},
            "/history": {"GET": self.history},
            "/predict": {"POST": self.predict},
            "/metrics": {"GET": self.metrics},
        }

    async def start(self) -> int:
        """Listen; returns the bound port (``port = 0`` picks a free one)."""
        try:
            self.server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEADER_BYTES)
        except OSError as exc:
            raise RiverbedError(
                f"cannot serve the HTTP API on {self.host}:{self.port}: {exc.strerror or exc}; set [http] port "
                "(0 = any free port) or [http] enabled = false"
            ) from exc
        self.port = self.server.sockets[0].getsockname()[1]
        self._sampler = asyncio.get_running_loop().create_task(self._sample_counts())
        log.info("status page and HTTP API on http://%s:%d/", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except asyncio.TimeoutError:  # a client holding its connection open: it is closed anyway
                pass
            self.server = None

    async def _sample_counts(self) -> None:
        """Once a second, remember the counters (for the rates on /status)."""
        while True:
            counts = self.processor.counts
            self._samples.append((time.monotonic(), counts["events"], counts["labels"], counts["predictions"]))
            await asyncio.sleep(1.0)

    def rates(self) -> dict:
        """Events, labels and predictions per second over the last :data:`RATE_WINDOW_S` seconds."""
        if len(self._samples) < 2:
            return {"events_per_s": None, "labels_per_s": None, "predictions_per_s": None, "window_s": 0.0}
        (t0, e0, l0, p0), (t1, e1, l1, p1) = self._samples[0], self._samples[-1]
        dt = max(t1 - t0, 1e-9)
        return {"events_per_s": round((e1 - e0) / dt, 3), "labels_per_s": round((l1 - l0) / dt, 3),
                "predictions_per_s": round((p1 - p0) / dt, 3), "window_s": round(dt, 3)}

    # -- connection handling ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            try:
                request = await asyncio.wait_for(self._read_request(reader), REQUEST_TIMEOUT_S)
            except HttpError as exc:
                response = error_response(exc)
            except asyncio.TimeoutError:
                response = error_response(HttpError(408, f"the request did not arrive within {REQUEST_TIMEOUT_S:.0f} s"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the client went away
            else:
                head_only = request.method == "HEAD"
                response = await self._dispatch(request)
            await self._write(writer, response, head_only)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # pragma: no cover - a bug; never let it kill the loop
            log.exception("HTTP connection failed")
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"request line longer than {MAX_HEADER_BYTES} bytes") from None
        parts = line.decode("latin-1").strip().split(" ")
        if len(parts) != 3 or not parts[1].startswith("/"):
            raise HttpError(400, "malformed request line; expected 'METHOD /path HTTP/1.1'")
        method, target, version = parts
        if not version.startswith("HTTP/1."):
            raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        headers: dict[str, str] = {}
        total = len(line)
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise HttpError(431, f"header line longer than {MAX_HEADER_BYTES} bytes") from None
            total += len(line)
            if total > MAX_HEADER_BYTES or len(headers) >= MAX_HEADERS:
                raise HttpError(431, f"headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} lines")
            text = line.decode("latin-1").strip()
            if not text:
                break
            name, sep, value = text.partition(":")
            if not sep:
                raise HttpError(400, f"malformed header line {text[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "transfer-encoding" in headers:
            raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
                if length < 0:
                    raise ValueError
            except ValueError:
                raise HttpError(400, "Content-Length must be a non-negative integer") from None
            if length > self.max_body_bytes:
                await _discard(reader, min(length, DISCARD_LIMIT_BYTES))  # so the client reads the 413
                raise HttpError(413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes")
            body = await reader.readexactly(length)
        return Request(method.upper(), target, headers, body)

    async def _dispatch(self, request: Request) -> Response:
        route = self.routes.get(request.path.rstrip("/") or "/")
        try:
            if route is None:
                raise HttpError(404, f"no such path {request.path[:200]!r}; see GET / for the status page",
                                paths=sorted(self.routes))
            method = "GET" if request.method == "HEAD" else request.method
            handler = route.get(method)
            if handler is None:
                allowed = ", ".join(sorted(route))
                raise HttpError(405, f"{request.method} is not allowed on {request.path}; use {allowed}",
                                headers={"Allow": allowed})
            return await handler(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            return error_response(HttpError(500, "internal error; see the riverbed log"))

    async def _write(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        reason = REASONS.get(response.status, "")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)
        await writer.drain()

    # -- handlers ----------------------------------------------------------------------------

    def _require_models(self):
        models = getattr(self.processor, "models", None)
        if models is None:
            raise HttpError(503, "the model is not loaded yet (riverbed is starting)", headers={"Retry-After": "1"})
        return models

    async def page(self, request: Request) -> Response:
        return Response(200, self._page, "text/html; charset=utf-8",
                        {"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                    "style-src 'unsafe-inline'; img-src 'self' data:"})

    async def healthz(self, request: Request) -> Response:
        return json_response(200, {"status": "alive", "uptime_s": round(time.time() - self.started_at, 3)})

    async def readyz(self, request: Request) -> Response:
        p = self.processor
        consumer = getattr(p, "consumer", None)
        if consumer is None or getattr(p, "models", None) is None:
            return json_response(503, {"ready": False, "reason": "starting: model or consumer not ready yet"})
        try:
            await asyncio.wait_for(consumer.topics(), READY_PROBE_TIMEOUT_S)
        except Exception as exc:
            return json_response(503, {"ready": False, "reason": f"broker unreachable: {type(exc).__name__} {exc}"[:300]})
        lag = self._lag()
        if None in lag.values():
            return json_response(503, {"ready": False, "reason": "no high watermark fetched yet", "lag": lag})
        total = sum(lag.values())
        if total > self.ready_lag:
            return json_response(503, {"ready": False, "reason": f"consumer lag {total} > [http] ready_lag {self.ready_lag}",
                                       "lag": lag})
        return json_response(200, {"ready": True, "lag": lag})

    def _lag(self) -> dict[str, int | None]:
        p = self.processor
        lag: dict[str, int | None] = {}
        for tp in getattr(p, "_inputs", []):
            high = p.consumer.highwater(tp)
            done = p.offsets.get((tp.topic, tp.partition), 0)
            lag[f"{tp.topic}:{tp.partition}"] = None if high is None else max(0, high - done)
        return lag

    def live_status(self) -> dict:
        """The ``status --json`` document from the live state, cached for :data:`STATUS_CACHE_S`."""
        now = time.monotonic()
        if self._status_cache is not None and now - self._status_cache[0] < STATUS_CACHE_S:
            return self._status_cache[1]
        self._require_models()
        p = self.processor
        meta = p.checkpoint_meta(fingerprints=True)  # here, on request and cached; never per checkpoint
        last = p.last_checkpoint
        store = getattr(p, "store", None)
        info = None
        if last is not None and store is not None:
            info = checkpoint_info(last, store.path, store.disk_size_bytes())
        document = status_document(meta, info)
        document["live"] = True
        document["lag"] = self._lag() if getattr(p, "consumer", None) is not None else {}
        document["rates"] = self.rates()
        self._status_cache = (now, document)
        return document

    async def status(self, request: Request) -> Response:
        return json_response(200, self.live_status())

    async def history(self, request: Request) -> Response:
        self._require_models()
        p = self.processor
        document = dict(p.history.to_meta())
        status = self.live_status()
        document["drift"] = status.get("drift", [])
        document["promotions"] = status.get("promotions", [])
        document["serving"] = status.get("serving")
        return json_response(200, document)

    async def metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(self.processor.metrics.registry), CONTENT_TYPE_LATEST)

    async def predict(self, request: Request) -> Response:
        """Score events with the serving model; read-only (see the module docstring)."""
        models = self._require_models()
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", "text/json", ""):
            raise HttpError(415, f"send JSON (Content-Type: application/json), not {content_type!r}")
        if not request.body:
            raise HttpError(400, 'empty body; send {"x": {"feature": value, ...}} or a list of such events')
        try:
            document = json.loads(request.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
        single = isinstance(document, dict)
        events = [document] if single else document
        if not isinstance(events, list):
            raise HttpError(400, 'send an event object {"x": {...}} or a list of them')
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise HttpError(413, f"{len(events)} events in one request; at most {MAX_EVENTS_PER_REQUEST}")
        transform = getattr(self.processor, "transform", None)  # [features] transform, as for Kafka events
        checked = []
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise InvalidMessage("not_an_object", f"expected an object, got {type(event).__name__}")
                if "x" not in event:
                    raise InvalidMessage("missing_x", "no 'x' field")
                x = _check_features(event["x"])
                event_id = event.get("id")
                if event_id is not None and not isinstance(event_id, (str, int)):
                    raise InvalidMessage("bad_id", "'id' must be a string or an integer")
                if transform is not None:
                    x = transform(x)
            except InvalidMessage as exc:
                extra = {"reason": exc.reason} if single else {"reason": exc.reason, "index": index}
                raise HttpError(400, exc.detail or exc.reason, **extra) from None
            checked.append((event_id, x))
        model = models.serving_model
        results = []
        for event_id, x in checked:
            try:
                y_pred, proba = model.predict(dict(x))
            except Exception as exc:
                raise HttpError(400, f"the model could not score this event: {type(exc).__name__}: {str(exc)[:200]}") from None
            result = {"y_pred": y_pred}
            if event_id is not None:
                result = {"id": event_id, **result}
            if proba is not None:
                result["proba"] = proba
            result["model"] = model.name
            result["version"] = model.n_learned
            results.append(result)
        return json_response(200, results[0] if single else results)


async def _discard(reader: asyncio.StreamReader, n: int) -> None:
    while n > 0:
        chunk = await reader.read(min(n, 65536))
        if not chunk:
            return
        n -= len(chunk)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")
