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
                       ``"lag"`` per input partition, ``"rates"`` (events, labels,
                       predictions per second over the last 10 s) and ``"role"``: ``"all"``
                       (one process), or ``"trainer"`` with ``"snapshots"`` (the models topic,
                       the version and count published, the newest one's age) for a service
                       that is a :class:`SnapshotPublishing` (the scale-out trainer)
``GET /history``       the bounded metrics history (:mod:`stream.engine.history`), drift detections and
                       promotions, for plots
``POST /predict``      score one event ``{"x": {...}, "id"?: ..., "ts"?: ...}`` or a list of them
                       with the serving model. **Read-only**: nothing enters the pending-label
                       store, nothing is learned, nothing is published to Kafka, no counter
                       moves. ``x`` is validated exactly as for Kafka events and the
                       ``[features] transform`` applies. Each answer is the prediction message of
                       the ``predictions`` topic (:mod:`stream.engine.messages`: ``proba`` keys
                       are strings), without ``"id"`` when the request gave none.
``GET /metrics``       the Prometheus text format (same registry as ``[metrics]``)
=====================  ===================================================================

The API sees the service only through :class:`LiveService`, a written interface: it never
reaches into private attributes of the processor.

Why on the processor's loop: River models are not thread-safe. The processor handles a fetched
batch synchronously, so a request handler, which runs on the same loop, only ever runs *between*
batches and never sees a model half-way through ``learn_one``. Nothing here runs in a thread.

Robustness: request line and headers are bounded (:data:`MAX_HEADER_BYTES`), bodies by
:data:`MAX_BODY_BYTES` (413 beyond), a request must arrive within :data:`REQUEST_TIMEOUT_S`
(408), each connection serves one request (``Connection: close``; no pipelining). Every error
caused by the request gets a 4xx status and a JSON body ``{"error": ..., "status": ...}``
(``/predict`` adds ``"reason"``, and ``"index"`` for an event of a list):

- not UTF-8, not JSON, ``NaN``/``Infinity`` literals, an integer literal of more than
  :data:`MAX_INTEGER_DIGITS` digits, arrays or objects nested deeper than Python's recursion
  limit: 400, reason ``undecodable`` (``non_finite`` for the literals);
- an event that breaks the event contract (``x`` not a map of finite scalars, ``1e400``, a bad
  ``id`` or ``ts``, a failing transform): 400 with the Kafka dead-letter reason;
- an event the serving model cannot score (its ``predict_one`` raises): 422, reason
  ``predict_failed``;
- duplicate keys in a JSON object: the last one wins, exactly as on the Kafka path.

The only 5xx answers are 503 (the service is starting; ``/readyz`` not ready), 505 (not
HTTP/1.x) and 500, which is a bug in riverbed: logged once, with its traceback, at ERROR.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.engine.codecs import MAX_ID_LENGTH, InvalidMessage
from stream.engine.messages import prediction_message
from stream.engine.transforms import first_line
from stream.errors import PortInUseError
from stream.ops.status import checkpoint_info, status_document

if TYPE_CHECKING:
    import os

    from prometheus_client import CollectorRegistry

    from learners import ModelSet, OnlineModel
    from state import Checkpoint

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 1024 * 1024
#: A too-large body is read and dropped up to this size before the 413 (larger: just closed).
DISCARD_LIMIT_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_REQUEST = 1000
#: Longest integer literal a body may hold: Python's default ``int`` parsing limit, fixed here so
#: that a process-wide ``sys.set_int_max_str_digits(0)`` never lets a request parse in quadratic time.
MAX_INTEGER_DIGITS = 4300
#: Integer ids are echoed back: they must fit 64 bits.
INTEGER_ID_RANGE = range(-(2**63), 2**64)
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
    422: "Unprocessable Content", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


# -- what the API needs from the service ------------------------------------------------------


class FeaturePreparation(Protocol):
    """Turns an event's ``x`` into the features a model predicts from, as for Kafka events."""

    def prepare(self, x: object) -> dict:
        """Validate ``x`` (event contract) and apply ``[features] transform``.

        Raises :class:`~stream.engine.codecs.InvalidMessage` (``reason``, ``detail``) for bad input.
        """


class MetricsExport(Protocol):
    """The service's Prometheus metrics."""

    @property
    def registry(self) -> CollectorRegistry: ...


class HistoryExport(Protocol):
    """The bounded metrics history (:class:`stream.engine.history.MetricsHistory`)."""

    def to_meta(self) -> dict: ...


class StateDirectory(Protocol):
    """Where the state lives (:class:`state.StateStore`)."""

    @property
    def path(self) -> str | os.PathLike: ...

    def disk_size_bytes(self) -> int: ...


@runtime_checkable
class LiveService(Protocol):
    """Everything the HTTP API reads from the running service, and nothing more.

    Every attribute exists from construction; values may be ``None`` before the run starts. All
    members are called on the service's own asyncio loop, between record batches.
    """

    @property
    def counts(self) -> Mapping[str, int]:
        """Records handled so far: at least ``"events"``, ``"labels"``, ``"predictions"``."""

    @property
    def models(self) -> ModelSet | None:
        """The live models; ``None`` while starting."""

    @property
    def metrics(self) -> MetricsExport: ...

    @property
    def history(self) -> HistoryExport: ...

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The newest durable checkpoint; ``None`` before the first."""

    @property
    def store(self) -> StateDirectory | None:
        """The state store; ``None`` before it is opened."""

    @property
    def refused_checkpoints(self) -> list[dict]:
        """Checkpoints the restore skipped as unreadable, newest first: ``[{"seq": N, "reason": "..."}]``."""

    @property
    def features(self) -> FeaturePreparation: ...

    def checkpoint_meta(self, fingerprints: bool = False) -> dict:
        """The checkpoint metadata of the live state (the source of the status document)."""

    def lag(self) -> dict[str, int | None]:
        """``"topic:partition"`` -> records behind (``None``: no high watermark yet); ``{}`` before consuming."""

    async def broker_reachable(self, timeout_s: float) -> str | None:
        """``None`` when a metadata round trip answered within ``timeout_s``, else the reason, short."""


@runtime_checkable
class SnapshotPublishing(Protocol):
    """A :class:`LiveService` that publishes model snapshots (:class:`stream.scale.trainer.Trainer`):
    its ``/status`` says ``"role": "trainer"`` and carries :meth:`snapshot_status` as ``"snapshots"``."""

    def snapshot_status(self) -> dict:
        """``{"topic", "published_version", "published", "age_s"}`` (version and age None before the first)."""


def missing_members(service: object) -> list[str]:
    """The :class:`LiveService` members ``service`` lacks (``[]``: it implements the interface)."""
    members = [name for name in vars(LiveService) if not name.startswith("_")]
    return sorted(name for name in members if not hasattr(service, name))


# -- requests and responses -------------------------------------------------------------------


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


# -- the /predict body ------------------------------------------------------------------------


def decode_json_body(body: bytes) -> Any:
    """The JSON document of a request body; every way it can fail is a 400 :class:`HttpError`.

    >>> decode_json_body(b'{"x": {"a": 1}, "x": {"a": 2}}')  # duplicate keys: the last one wins
    {'x': {'a': 2}}
    >>> try:
    ...     decode_json_body(b'[' * 100_000 + b']' * 100_000)
    ... except HttpError as exc:
    ...     print(exc.status, exc.extra["reason"], exc.message)
    400 undecodable the body nests arrays or objects too deeply; an event is {"x": {"name": value}}
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the body is not UTF-8 (invalid byte at position {exc.start})",
                        reason="undecodable") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except InvalidMessage as exc:
        raise HttpError(400, exc.detail, reason=exc.reason) from None
    except RecursionError:
        raise HttpError(400, 'the body nests arrays or objects too deeply; an event is {"x": {"name": value}}',
                        reason="undecodable") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise HttpError(400, f"the body is not valid JSON: {str(exc)[:200]}", reason="undecodable") from None


def _reject_constant(name: str) -> None:
    raise InvalidMessage("non_finite", f"{name} is not a number JSON allows")


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INTEGER_DIGITS:
        raise InvalidMessage("undecodable", f"an integer literal of {len(digits)} digits; at most {MAX_INTEGER_DIGITS}")
    return int(digits)


def _event_id(event: dict) -> str | int | None:
    event_id = event.get("id")
    if event_id is None:
        return None
    if type(event_id) is str and 0 < len(event_id) <= MAX_ID_LENGTH:
        return event_id
    if type(event_id) is int and event_id in INTEGER_ID_RANGE:
        return event_id
    raise InvalidMessage("bad_id", f"'id' must be a string of 1 to {MAX_ID_LENGTH} characters or a 64-bit integer")


def _event_ts(event: dict) -> float | None:
    ts = event.get("ts")
    if ts is None:
        return None
    if type(ts) is int or type(ts) is float:
        seconds = float(ts) if abs(ts) < 1e300 else math.inf  # an int past float's range is no time either
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise InvalidMessage("bad_ts", "'ts' must be a finite, non-negative number of epoch seconds")


def prepared_event(event: Any, features: FeaturePreparation) -> tuple[str | int | None, float | None, dict]:
    """``(id, ts, features)`` of one event of a request; raises InvalidMessage for bad input."""
    if type(event) is not dict:
        raise InvalidMessage("not_an_object", f"expected an object, got {type(event).__name__}")
    if "x" not in event:
        raise InvalidMessage("missing_x", "no 'x' field")
    return _event_id(event), _event_ts(event), features.prepare(event["x"])


def _refusal(status: int, message: str, reason: str, index: int | None) -> HttpError:
    if index is None:
        return HttpError(status, message, reason=reason)
    return HttpError(status, f"event {index}: {message}", reason=reason, index=index)


def prepared_events(events: list, features: FeaturePreparation, single: bool) -> list[tuple]:
    """Every event prepared, or a 400 naming the first bad one (its ``index`` in a list)."""
    prepared = []
    for index, event in enumerate(events):
        try:
            prepared.append(prepared_event(event, features))
        except InvalidMessage as exc:
            raise _refusal(400, exc.detail or exc.reason, exc.reason, None if single else index) from None
    return prepared


def score(model: OnlineModel, prepared: list[tuple], single: bool) -> list[dict]:
    """The prediction message of each prepared event, or a 422 naming the first the model refused."""
    results = []
    for index, (event_id, ts, x) in enumerate(prepared):
        try:
            y_pred, proba = model.predict(dict(x))
        except Exception as exc:  # the model refuses this input: the client's problem, like a dead letter
            message = f"model {model.name!r} could not score this event: {first_line(exc, 200)}"
            raise _refusal(422, message, "predict_failed", None if single else index) from None
        result = prediction_message(event_id, y_pred, proba, model.name, model.n_learned, ts)
        if event_id is None:
            del result["id"]
        results.append(result)
    return results


def _request_content_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


# -- the server -------------------------------------------------------------------------------


class HttpServer:
    """One request per connection over asyncio, bounded and never 5xx on bad input (see the module
    docstring); subclasses fill :attr:`routes` (``{path: {method: handler}}``).

    :class:`HttpApi` serves a :class:`LiveService`; the scale-out scorer serves its own status with
    the same server (:mod:`stream.scale.scorer_http`).
    """

    def __init__(self, host: str, port: int, *, max_body_bytes: int = MAX_BODY_BYTES,
                 what: str = "status page and HTTP API"):
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.what = what
        self.server: asyncio.base_events.Server | None = None
        self.started_at = time.time()
        self.routes: dict[str, dict[str, Any]] = {}

    async def start(self) -> int:
        """Listen; returns the bound port (``port = 0`` picks a free one)."""
        try:
            self.server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEADER_BYTES)
        except OSError as exc:
            raise PortInUseError(
                f"cannot serve the HTTP API on {self.host}:{self.port}: {exc.strerror or exc}; set [http] port "
                "(0 = any free port) or [http] enabled = false"
            ) from exc
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("%s on http://%s:%d/", self.what, self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except asyncio.TimeoutError:  # a client holding its connection open: it is closed anyway
                pass
            self.server = None

    async def healthz(self, request: Request) -> Response:
        return json_response(200, {"status": "alive", "uptime_s": round(time.time() - self.started_at, 3)})

    # -- connection handling ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader)
            if answer is not None:
                response, head_only = answer
                await self._write(writer, response, head_only)
        except ConnectionError:
            pass  # the client went away before reading the answer
        except Exception:  # a bug; the loop goes on either way, the log says what happened
            log.exception("HTTP answer could not be written")
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Response, bool] | None:
        """The response to the connection's one request and whether it is a HEAD (``None``: no request)."""
        try:
            request = await asyncio.wait_for(self._read_request(reader), REQUEST_TIMEOUT_S)
        except HttpError as exc:
            return error_response(exc), False
        except asyncio.TimeoutError:
            return error_response(HttpError(408, f"the request did not arrive within {REQUEST_TIMEOUT_S:.0f} s")), False
        except (asyncio.IncompleteReadError, ConnectionError):
            return None  # the client went away
        except Exception:
            log.exception("HTTP request could not be read")
            return error_response(HttpError(500, "internal error; see the riverbed log")), False
        return await self._dispatch(request), request.method == "HEAD"

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
        headers = await self._read_headers(reader, len(line))
        return Request(method.upper(), target, headers, await self._read_body(reader, headers))

    @staticmethod
    async def _read_headers(reader: asyncio.StreamReader, total: int) -> dict[str, str]:
        headers: dict[str, str] = {}
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
                return headers
            name, sep, value = text.partition(":")
            if not sep:
                raise HttpError(400, f"malformed header line {text[:80]!r}")
            headers[name.strip().lower()] = value.strip()

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
        if "content-length" not in headers:
            return b""
        declared = headers["content-length"]
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
            raise HttpError(400, "Content-Length must be a non-negative integer of at most 18 digits")
        length = int(declared)
        if length > self.max_body_bytes:
            await _discard(reader, min(length, DISCARD_LIMIT_BYTES))  # so the client reads the 413
            raise HttpError(413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes")
        return await reader.readexactly(length)

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
                raise HttpError(405, f"{request.method[:20]} is not allowed on {request.path}; use {allowed}",
                                headers={"Allow": allowed})
            return await handler(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:  # a bug in riverbed, never the client's input
            log.exception("HTTP %s %s failed", request.method[:20], request.path[:200])
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


class HttpApi(HttpServer):
    """The HTTP server of one live service (see the module docstring).

    Parameters
    ----------
    service
        What the API reads: anything that implements :class:`LiveService`.
    host, port
        Where to listen (``port = 0``: any free port; :meth:`start` returns it).
    ready_lag
        ``/readyz`` answers 200 only while the total consumer lag is at most this.
    max_body_bytes
        Larger request bodies are refused with 413.
    """

    def __init__(self, service: LiveService, host: str, port: int, *, ready_lag: int = 1000,
                 max_body_bytes: int = MAX_BODY_BYTES):
        missing = missing_members(service)
        if missing:
            raise TypeError(f"{type(service).__name__} does not implement LiveService: no {', '.join(missing)}")
        super().__init__(host, port, max_body_bytes=max_body_bytes)
        self.service = service
        self.ready_lag = ready_lag
        self._status_cache: tuple[float, dict] | None = None
        self._page = status_page_html()
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
        port = await super().start()
        self._sampler = asyncio.get_running_loop().create_task(self._sample_counts())
        return port

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        await super().stop()

    async def _sample_counts(self) -> None:
        """Once a second, remember the counters (for the rates on /status)."""
        while True:
            counts = self.service.counts
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

    # -- handlers ----------------------------------------------------------------------------

    def _require_models(self) -> ModelSet:
        models = self.service.models
        if models is None:
            raise HttpError(503, "the model is not loaded yet (riverbed is starting)", headers={"Retry-After": "1"})
        return models

    async def page(self, request: Request) -> Response:
        return Response(200, self._page, "text/html; charset=utf-8",
                        {"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                    "style-src 'unsafe-inline'; img-src 'self' data:"})

    async def readyz(self, request: Request) -> Response:
        if self.service.models is None:
            return json_response(503, {"ready": False, "reason": "starting: the model is not loaded yet"})
        problem = await self.service.broker_reachable(READY_PROBE_TIMEOUT_S)
        if problem is not None:
            return json_response(503, {"ready": False, "reason": f"broker unreachable: {problem}"[:300]})
        lag = self.service.lag()
        if not lag:
            return json_response(503, {"ready": False, "reason": "starting: no input partition consumed yet"})
        if None in lag.values():
            return json_response(503, {"ready": False, "reason": "no high watermark fetched yet", "lag": lag})
        total = sum(value for value in lag.values() if value is not None)  # all are, as just checked
        if total > self.ready_lag:
            return json_response(503, {"ready": False, "reason": f"consumer lag {total} > [http] ready_lag {self.ready_lag}",
                                       "lag": lag})
        return json_response(200, {"ready": True, "lag": lag})

    def live_status(self) -> dict:
        """The ``status --json`` document from the live state, cached for :data:`STATUS_CACHE_S`."""
        now = time.monotonic()
        if self._status_cache is not None and now - self._status_cache[0] < STATUS_CACHE_S:
            return self._status_cache[1]
        self._require_models()
        service = self.service
        meta = service.checkpoint_meta(fingerprints=True)  # here, on request and cached; never per checkpoint
        last, store = service.last_checkpoint, service.store
        info = None
        if last is not None and store is not None:
            info = checkpoint_info(last, store.path, store.disk_size_bytes())
        document = status_document(meta, info)
        document["refused"] = list(service.refused_checkpoints)  # as in `riverbed status --json`
        document["live"] = True
        document["lag"] = service.lag()
        document["rates"] = self.rates()
        if isinstance(service, SnapshotPublishing):
            document["role"] = "trainer"
            document["snapshots"] = service.snapshot_status()
        else:
            document["role"] = "all"
        self._status_cache = (now, document)
        return document

    async def status(self, request: Request) -> Response:
        return json_response(200, self.live_status())

    async def history(self, request: Request) -> Response:
        self._require_models()
        document = dict(self.service.history.to_meta())
        status = self.live_status()
        document["drift"] = status.get("drift", [])
        document["promotions"] = status.get("promotions", [])
        document["serving"] = status.get("serving")
        return json_response(200, document)

    async def metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(self.service.metrics.registry), CONTENT_TYPE_LATEST)

    async def predict(self, request: Request) -> Response:
        """Score events with the serving model; read-only (see the module docstring)."""
        models = self._require_models()
        content_type = _request_content_type(request)
        if content_type not in ("application/json", "text/json", ""):
            raise HttpError(415, f"send JSON (Content-Type: application/json), not {content_type[:100]!r}")
        if not request.body:
            raise HttpError(400, 'empty body; send {"x": {"feature": value, ...}} or a list of such events',
                            reason="empty")
        document = decode_json_body(request.body)
        single = type(document) is dict
        events = [document] if single else document
        if type(events) is not list:
            raise HttpError(400, 'send an event object {"x": {...}} or a list of them', reason="not_an_object")
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise HttpError(413, f"{len(events)} events in one request; at most {MAX_EVENTS_PER_REQUEST}")
        prepared = prepared_events(events, self.service.features, single)
        results = score(models.serving_model, prepared, single)
        return json_response(200, results[0] if single else results)


async def _discard(reader: asyncio.StreamReader, n: int) -> None:
    while n > 0:
        chunk = await reader.read(min(n, 65536))
        if not chunk:
            return
        n -= len(chunk)
