"""Operations, end to end on the real broker: HTTP API, status page in Chromium, a real Prometheus
server scraping riverbed, and the report plot.

One processor runs for the whole module in a background thread (its own asyncio loop, as in
``riverbed run``), with the HTTP API on a free loopback port and ``/metrics`` on another. It
replays ``sea_drift`` in two phases: the first concept, then (after Prometheus has scraped a few
times) the changed concept in chunks, so that drift is detected while Prometheus is watching.

Prometheus (Debian's ``prometheus``) and Chromium (Debian's ``chromium``) are installed by
``make system-deps`` (part of ``make test``) when missing; the tests that need them skip with a
reason when they are still absent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stream.ops.status import read_status
from stream.devtools.datasets import open_dataset
from stream.engine.processor import Processor
from stream.devtools.replay import produce, schedule
from stream.connect.topics import create_topics
from tests.support import fresh_config, riverbed, write_config

pytestmark = pytest.mark.broker

N_EVENTS = 8000
DRIFT_AT = 4000
LABEL_DELAY = 5
METRICS = ["accuracy", "logloss"]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Http:
    """A tiny client that returns (status, headers, body) for any status, 4xx/5xx included."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, document=None, raw: bytes | None = None):
        body = raw if raw is not None else (None if document is None else json.dumps(document).encode())
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, headers, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def raw(self, payload: bytes) -> bytes:
        """Send bytes as they are (malformed requests) and return the whole response."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


class Prometheus:
    """Debian's prometheus on loopback, scraping riverbed every second."""

    def __init__(self, binary: str, workdir: Path, target_port: int):
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: riverbed\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._ready, 60, "Prometheus to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}")
        try:
            return urllib.request.urlopen(self.url + "/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        document = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert document["status"] == "success", document
        return document["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class LiveProcessor:
    """``Processor.run()`` on its own loop in a thread, stopped like SIGTERM would."""

    def __init__(self, cfg):
        self.processor = Processor(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        wait_for(lambda: self.error or self.processor.http_port and self.processor.lag(),
                 120, "the processor to start")
        if self.error:
            raise self.error

    def _main(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            return await self.processor.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the tests
            self.error = exc

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.processor.stop)
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def live(test_config, broker_bootstrap, tmp_path_factory):
    """The running processor after the whole replay, its HTTP client and (if installed) Prometheus."""
    tmp = tmp_path_factory.mktemp("operations")
    metrics_port = free_port()
    cfg = fresh_config(
        test_config, broker_bootstrap, tmp / "state",
        model={"preset": "logreg", "task": "binary", "metrics": METRICS},
        metrics={"enabled": True, "host": "127.0.0.1", "port": metrics_port},
        http={"enabled": True, "host": "127.0.0.1", "port": 0, "ready_lag": 1000},
    )
    t = cfg.topics
    create_topics(broker_bootstrap, [t.events, t.labels, t.predictions, t.deadletter], 1)
    records = list(schedule(open_dataset("sea_drift", limit=N_EVENTS, drift_at=DRIFT_AT, seed=7).rows,
                            label_delay=LABEL_DELAY, id_prefix="sea"))
    split = next(i for i, r in enumerate(records) if r.kind == "event" and r.id == f"sea-{DRIFT_AT}")

    prometheus, prometheus_skip = None, None
    binary = shutil.which("prometheus")
    if binary is None:
        prometheus_skip = "Debian's prometheus is not installed (`make system-deps` installs it as root)"
    else:
        (tmp / "prometheus").mkdir()
        prometheus = Prometheus(binary, tmp / "prometheus", metrics_port)

    live = LiveProcessor(cfg)
    http = Http(live.processor.http_port)
    try:
        produce(broker_bootstrap, t, records[:split], progress=False)
        wait_for(lambda: live.processor.counts["events"] >= DRIFT_AT, 120, "the first concept to be processed")
        if prometheus is not None:  # let Prometheus see the series before the drift
            wait_for(lambda: prometheus.query("riverbed_events_total"), 30, "the first scrape")
            time.sleep(2.5)
        rest = records[split:]
        chunk = len(rest) // 4 + 1
        for i in range(0, len(rest), chunk):  # the new concept arrives over a few scrapes
            produce(broker_bootstrap, t, rest[i:i + chunk], progress=False)
            time.sleep(1.2)
        wait_for(lambda: live.error or (live.processor.counts["events"] >= N_EVENTS
                                        and live.processor.counts["joined"] >= N_EVENTS),
                 120, lambda: f"the whole replay to be processed (counts {live.processor.counts}, "
                              f"buffered {live.processor.merge.buffered()}, error {live.error!r})")
        if live.error:
            raise live.error
        wait_for(lambda: live.processor.checkpointer is not None and live.processor.checkpointer.written >= 2 and live.processor.last_checkpoint.meta["counts"]["events"] == N_EVENTS,
                 30, "a checkpoint covering the whole replay")
        yield {"cfg": cfg, "processor": live.processor, "http": http, "prometheus": prometheus,
               "prometheus_skip": prometheus_skip, "tmp": tmp, "n_events": N_EVENTS}
    finally:
        live.stop()
        if prometheus is not None:
            prometheus.stop()
    assert live.error is None, live.error


# -- HTTP API ----------------------------------------------------------------------------------


def test_health_and_readiness(live):
    http = live["http"]
    status, body = http.json("GET", "/healthz")
    assert status == 200 and body["status"] == "alive"
    status, body = http.json("GET", "/readyz")
    assert status == 200, body
    assert body["ready"] is True and sum(body["lag"].values()) == 0


def test_server_binds_loopback_by_default(live):
    from stream.config import DEFAULTS

    assert DEFAULTS["http"]["host"] == "127.0.0.1"
    assert live["cfg"].http.host == "127.0.0.1"


def test_status_is_the_live_status_document(live):
    http, cfg = live["http"], live["cfg"]
    status, body = http.json("GET", "/status")
    assert status == 200
    on_disk = read_status(cfg)
    assert set(on_disk) <= set(body)  # the same document as `riverbed status --json`, plus live fields
    assert body["live"] is True and body["serving"] == "logreg"
    assert body["role"] == "all" and "snapshots" not in body  # one process, no scale-out trainer
    assert body["counts"]["events"] == N_EVENTS and body["counts"]["joined"] == N_EVENTS
    assert body["counts"] == on_disk["counts"]  # idle: the last checkpoint covers everything
    assert body["models"]["logreg"]["fingerprint"] == on_disk["models"]["logreg"]["fingerprint"]
    assert set(body["models"]["logreg"]["metrics"]) == set(METRICS)
    assert body["checkpoint"]["seq"] >= 1 and body["pending"] == 0
    assert body["lag"] == {f"{cfg.topics.events}:0": 0, f"{cfg.topics.labels}:0": 0}


def test_history_is_bounded_and_position_based(live):
    status, body = live["http"].json("GET", "/history")
    assert status == 200
    points = body["points"]
    assert 2 <= len(points) <= body["max_points"]
    labels = [p["labels"] for p in points]
    assert labels == sorted(labels) and all(n % body["every"] == 0 for n in labels)
    assert points[-1]["position"] <= N_EVENTS and set(points[-1]["models"]["logreg"]["metrics"]) == set(METRICS)
    assert isinstance(body["drift"], list) and isinstance(body["promotions"], list)


def test_predict_scores_with_the_champion_and_changes_nothing(live):
    http, processor = live["http"], live["processor"]
    counts_before = dict(processor.counts)
    pending_before = len(processor.store.pending)
    model = processor.models.serving_model
    learned_before, fingerprint_before = model.n_learned, model.fingerprint()

    status, one = http.json("POST", "/predict", {"id": "q1", "x": {"0": 9.0, "1": 9.0, "2": 1.0}})
    assert status == 200, one
    assert one["id"] == "q1" and one["model"] == "logreg" and one["version"] == learned_before
    assert one["y_pred"] is True and sum(one["proba"].values()) == pytest.approx(1.0)
    expected_pred, expected_proba = model.predict({"0": 9.0, "1": 9.0, "2": 1.0})
    assert one["proba"]["true"] == pytest.approx(expected_proba[True])

    batch = [{"x": {"0": 1.0, "1": 1.0, "2": 5.0}}, {"x": {"0": 9.5, "1": 9.0, "2": 0.0}}]
    status, many = http.json("POST", "/predict", batch)
    assert status == 200 and [p["y_pred"] for p in many] == [False, True]
    assert "id" not in many[0]

    assert processor.counts == counts_before  # not a Kafka event: no count moves
    assert len(processor.store.pending) == pending_before and processor.store.pending.get("q1") is None
    assert model.n_learned == learned_before and model.fingerprint() == fingerprint_before


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"42", 400, None),
        (b'{"id": "a"}', 400, "missing_x"),
        (b'{"x": [1, 2]}', 400, "bad_x"),
        (b'{"x": {"f": NaN}}', 400, None),
        (b'{"x": {"f": [1]}}', 400, "bad_feature_value"),
        (b'{"x": {"f": 1e999}}', 400, "non_finite"),
        (b'[{"x": {"f": 1}}, "nope"]', 400, "not_an_object"),
        (b'{"x": {"f": 1}, "id": {"a": 1}}', 400, "bad_id"),
        (b'\xff\xfe', 400, None),
    ],
)
def test_bad_predict_requests_get_4xx_with_a_json_error(live, body, status, reason):
    got, document = live["http"].json("POST", "/predict", raw=body)
    assert got == status, document
    assert document["status"] == status and document["error"]
    if reason:
        assert document["reason"] == reason


def test_protocol_errors_are_4xx_never_500(live):
    http = live["http"]
    assert http.json("GET", "/nope")[0] == 404
    status, headers, body = http.request("GET", "/predict")
    assert status == 405 and headers["Allow"] == "POST" and json.loads(body)["status"] == 405
    assert http.json("POST", "/status", {"a": 1})[0] == 405
    status, _, body = http.request("POST", "/predict", b"x=1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    big = b'{"x": {"f": "' + b"z" * (1024 * 1024 + 10) + b'"}}'
    status, _, body = http.request("POST", "/predict", big, {"Content-Type": "application/json"})
    assert status == 413 and "exceeds" in json.loads(body)["error"]
    status, _, body = http.request("POST", "/predict", json.dumps([{"x": {}}] * 1001).encode(),
                                   {"Content-Type": "application/json"})
    assert status == 413
    for payload, expected in [
        (b"garbage\r\n\r\n", b" 400 "),
        (b"GET /healthz SPDY/3\r\n\r\n", b" 505 "),
        (b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b" 411 "),
        (b"POST /predict HTTP/1.1\r\nContent-Length: -3\r\n\r\n", b" 400 "),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b" 431 "),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", b" 400 "),
    ]:
        response = http.raw(payload)
        assert response.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1") and expected in response[:20], (payload[:40], response[:200])
        assert b'"error"' in response
    assert http.json("GET", "/healthz")[0] == 200  # still serving


def test_metrics_on_the_same_server(live):
    status, headers, body = live["http"].request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert f"riverbed_events_total {float(N_EVENTS)}" in body.decode()


# -- status page in Chromium -------------------------------------------------------------------


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_status_page_renders_offline_in_chromium(live, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (`make system-deps` installs it as root)")
    http = live["http"]
    status, headers, page = http.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    for external in ("<script src", "<link", "@import", "url(http", "https://", "http://"):
        assert external not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
            '"http://www.w3.org/2000/svg"', ""), external  # self-contained: works offline

    url = http.base + "/"
    dom = run_chromium(binary, tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    assert 'data-chart="rendered"' in text, text[:3000]
    assert 'class="series"' in text and 'data-model="logreg"' in text
    assert "serving logreg" in text and "version 8,000" in text and "role all" in text

    shot = tmp_path / "status-page.png"
    result = run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,900",
                          "--hide-scrollbars", "--virtual-time-budget=5000", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert png_size(shot) == (1280, 900)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


# -- report ------------------------------------------------------------------------------------


def test_report_plots_the_checkpointed_history(live, tmp_path):
    config = write_config(live["cfg"].replace(metrics={"enabled": False}, http={"enabled": False}),
                          tmp_path / "riverbed.toml")
    out = tmp_path / "report.png"
    result = riverbed("report", "--out", str(out), config=config)
    assert "wrote" in result.stdout
    width, height = png_size(out)
    assert width >= 800 and height >= 300 and out.stat().st_size > 20_000
    bad = riverbed("report", "--out", str(tmp_path / "x.png"), "--metric", "nope", config=config, check=False)
    assert bad.returncode != 0 and "no history of metric(s) nope" in bad.stderr


# -- a real Prometheus -------------------------------------------------------------------------


def _prometheus(live):
    if live["prometheus"] is None:
        pytest.skip(live["prometheus_skip"])
    prometheus = live["prometheus"]
    wait_for(lambda: prometheus.query(f"riverbed_events_total == {N_EVENTS}"), 30,
             "Prometheus to scrape the final event count")
    return prometheus


def test_prometheus_counts_every_event(live):
    prometheus = _prometheus(live)
    result = prometheus.query("riverbed_events_total")
    assert len(result) == 1 and float(result[0]["value"][1]) == N_EVENTS
    assert float(prometheus.query("riverbed_labels_joined_total")[0]["value"][1]) == N_EVENTS


def test_prometheus_has_the_model_metric_series(live):
    prometheus = _prometheus(live)
    series = prometheus.query("riverbed_model_metric")
    labels = [{k: v for k, v in s["metric"].items() if k not in ("__name__", "job", "instance")} for s in series]
    expected = {("logreg", m, w) for m in METRICS for w in ("cumulative", "rolling")}
    assert {(lab["model"], lab["metric"], lab.get("window")) for lab in labels} == expected


def test_prometheus_sees_drift_detections(live):
    prometheus = _prometheus(live)
    assert live["processor"].models.drift_log, "the replay's concept change was not detected"
    result = wait_for(lambda: prometheus.query("increase(riverbed_drift_detections_total[5m]) > 0"), 15,
                      "a drift detection in Prometheus")
    assert {s["metric"]["model"] for s in result} == {"logreg"}
    assert float(prometheus.query("max(riverbed_drift_last_detected_timestamp_seconds)")[0]["value"][1]) > 0
