"""A seeded fuzz of ``POST /predict``: no body a client can send gets a 5xx answer.

Over 10,000 generated requests (random JSON-like documents, mutated valid events and batches,
random bytes, deep nesting, huge numbers, wrong content types, truncated bodies, odd headers) go
over real TCP, one request per connection, to an :class:`~stream.ops.http_api.HttpApi` on
127.0.0.1 backed by an in-memory service with the real model set of the test configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
import time
from collections import Counter
from typing import Callable

import pytest

from stream.engine.processor import build_model_set
from stream.ops.http_api import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST, HttpApi
from tests.support import StaticService

SEED = 20240611
N_REQUESTS = 10_000
CONCURRENCY = 32
FEATURES = ("0", "1", "2")


class Probe:
    """One generated request: the raw bytes, and whether the client ends its side early (EOF)."""

    def __init__(self, kind: str, raw: bytes, eof: bool = False):
        self.kind, self.raw, self.eof = kind, raw, eof


def http_post(body: bytes, content_type: str | None = "application/json", length: str | None = None,
              path: str = "/predict", method: str = "POST") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body  # non-ASCII headers on purpose


def valid_event(rng: random.Random) -> dict:
    event: dict = {"x": {name: round(rng.uniform(-10, 10), 3) for name in FEATURES}}
    if rng.random() < 0.5:
        event["id"] = f"e{rng.randrange(10**6)}"
    if rng.random() < 0.3:
        event["ts"] = rng.uniform(0, 2e9)
    return event


SCALARS: tuple[Callable[[random.Random], object], ...] = (
    lambda rng: rng.randint(-(2**70), 2**70),
    lambda rng: rng.uniform(-1e308, 1e308),
    lambda rng: rng.choice([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 5e-324]),
    lambda rng: "".join(rng.choice(string.printable) for _ in range(rng.randrange(12))),
    lambda rng: "".join(chr(rng.randrange(0x20, 0x110000)) for _ in range(rng.randrange(6))).encode(
        "utf-8", "surrogatepass").decode("utf-8", "replace"),
    lambda rng: rng.choice([True, False, None]),
)


def random_document(rng: random.Random, depth: int = 0) -> object:
    """A random JSON-like value: objects, lists and scalars, sometimes event-shaped."""
    roll = rng.random()
    if depth > 4 or roll < 0.4:
        return rng.choice(SCALARS)(rng)
    if roll < 0.7:
        keys = ["x", "id", "ts", "y", *FEATURES, ""] + [rng.choice(string.ascii_letters)]
        return {rng.choice(keys): random_document(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_document(rng, depth + 1) for _ in range(rng.randrange(5))]


def random_json(rng: random.Random) -> Probe:
    return Probe("random_json", http_post(json.dumps(random_document(rng)).encode()))


TOKENS = [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-", b'"', b"\\", b"\\ud800", b"\\u00", b"{", b"}", b"[", b"]",
          b",", b":", b"null", b"true", b"\xff", b"\xc3", b"\x00", b"1" + b"0" * 5000, b"1" + b"0" * 400, b"0" * 30]


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.35:
            data[at:at] = rng.choice(TOKENS)
        elif op < 0.6 and data:
            del data[at:at + rng.randrange(1, 8)]
        elif op < 0.8 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        else:
            start = rng.randrange(len(data) + 1)
            data[at:at] = data[start:start + rng.randrange(1, 30)]
    return bytes(data)


def mutated_event(rng: random.Random) -> Probe:
    document = valid_event(rng) if rng.random() < 0.7 else [valid_event(rng) for _ in range(rng.randrange(1, 20))]
    return Probe("mutated_event", http_post(mutate(rng, json.dumps(document).encode())))


def batch_with_one_bad_event(rng: random.Random) -> Probe:
    events = [valid_event(rng) for _ in range(rng.choice([2, 10, 100, MAX_EVENTS_PER_REQUEST]))]
    bad = rng.choice([{"x": [1]}, {"x": {"0": {"a": 1}}}, {"x": {"0": "text"}}, {"id": "a"}, "nope", None,
                      {"x": {}, "id": True}, {"x": {"0": None}}])
    events[rng.randrange(len(events))] = bad
    return Probe("bad_batch", http_post(json.dumps(events).encode()))


def random_bytes(rng: random.Random) -> Probe:
    return Probe("random_bytes", http_post(rng.randbytes(rng.randrange(0, 2048))))


def deep_nesting(rng: random.Random) -> Probe:
    depth = rng.choice([100, 900, 1100, 5000, 100_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'{"x":', b"}"), (b'[{"x":', b"}]")])
    inner = rng.choice([b"1", b"{}", b"[]", b'{"0": 1}'])
    balanced = rng.random() < 0.8
    body = opener * depth + inner + (closer * depth if balanced else closer * rng.randrange(depth))
    return Probe("deep_nesting", http_post(body[:MAX_BODY_BYTES]))


def huge_numbers(rng: random.Random) -> Probe:
    digits = rng.choice([20, 309, 400, 4299, 4300, 4301, 10_000, 100_000])
    number = rng.choice([b"1" + b"0" * digits, b"-" + b"9" * digits, b"0." + b"0" * digits + b"1",
                         b"1e" + str(digits).encode(), b"1e-" + str(digits).encode(), b"1" * digits + b".5e3"])
    where = rng.choice([b'{"x": {"0": %s}}', b'{"x": {}, "id": %s}', b'{"x": {}, "ts": %s}', b"[%s]", b"%s"])
    return Probe("huge_numbers", http_post(where.replace(b"%s", number)))


def wrong_content_type(rng: random.Random) -> Probe:
    content_type = rng.choice(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                               "application/msgpack", "\u00e9/\u00e8", "application/json; charset=utf-16", "*/*",
                               ";", "application/json;;;", None])
    return Probe("content_type", http_post(json.dumps(valid_event(rng)).encode(), content_type))


def truncated_body(rng: random.Random) -> Probe:
    body = json.dumps([valid_event(rng) for _ in range(rng.randrange(1, 5))]).encode()
    cut = body[:rng.randrange(len(body))]
    if rng.random() < 0.8:
        return Probe("truncated", http_post(cut))
    # The client promises the whole body but stops sending: the server must just hang up.
    return Probe("truncated_eof", http_post(cut, length=str(len(body))), eof=True)


def odd_headers(rng: random.Random) -> Probe:
    body = json.dumps(valid_event(rng)).encode()
    length = rng.choice(["", "-1", "+5", "0x10", "1e3", "١٢", "9" * 30, "5_0", " ", str(MAX_BODY_BYTES + 1)])
    if length == str(MAX_BODY_BYTES + 1):
        return Probe("odd_headers", http_post(b" " * (MAX_BODY_BYTES + 1), length=length))
    path = rng.choice(["/predict", "/predict/", "/predict?x=1", "/PREDICT", "/predict/../status", "/%00"])
    method = rng.choice(["POST", "POST", "PUT", "GET", "HEAD", "DELETE", "X" * 100])
    return Probe("odd_headers", http_post(body, length=length if rng.random() < 0.5 else None, path=path,
                                          method=method))


GENERATORS = [
    (random_json, 0.25), (mutated_event, 0.25), (random_bytes, 0.1), (huge_numbers, 0.08), (batch_with_one_bad_event, 0.05),
    (deep_nesting, 0.03), (wrong_content_type, 0.08), (truncated_body, 0.08), (odd_headers, 0.08),
]


def generated_probes(seed: int, n: int) -> list[Probe]:
    rng = random.Random(seed)
    generators, weights = zip(*GENERATORS)
    return [rng.choices(generators, weights)[0](rng) for _ in range(n)]


async def send(port: int, probe: Probe) -> tuple[int | None, bytes]:
    """``(status, body)`` of the answer; ``status`` is ``None`` when the server hung up without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(probe.raw)
        if probe.eof:
            writer.write_eof()
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def fuzz(service: StaticService, probes: list[Probe]) -> tuple[list, tuple, tuple]:
    api = HttpApi(service, "127.0.0.1", 0)
    port = await api.start()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(probe: Probe):
        async with gate:
            return await send(port, probe)

    try:
        answers = await asyncio.gather(*(bounded(p) for p in probes))
        health = await send(port, Probe("after", b"GET /healthz HTTP/1.1\r\n\r\n"))
        valid = await send(port, Probe("after", http_post(b'{"id": "q", "x": {"0": 1.0, "1": 2.0, "2": 3.0}}')))
    finally:
        await api.stop()
    return answers, health, valid


@pytest.fixture
def trained_service(test_config) -> StaticService:
    models = build_model_set(test_config)
    model = models.serving_model
    rng = random.Random(SEED)
    for _ in range(200):
        x = {name: rng.uniform(-10, 10) for name in FEATURES}
        y_pred, proba = model.predict(x)
        model.learn(x, x["0"] + x["1"] > 0, y_pred, proba)  # trained: a 400-digit integer now makes predict raise
    return StaticService(models, {"events:0": 0, "labels:0": 0})


@pytest.mark.timeout(180)
def test_no_generated_request_gets_a_5xx_and_the_service_keeps_serving(trained_service, caplog):
    probes = generated_probes(SEED, N_REQUESTS)
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="stream.ops.http_api"):
        answers, health, valid = asyncio.run(fuzz(trained_service, probes))
    elapsed = time.perf_counter() - started

    by_kind: dict[str, Counter] = {}
    for probe, (status, body) in zip(probes, answers):
        by_kind.setdefault(probe.kind, Counter())[status] += 1
        assert status is None or status < 500, (probe.kind, probe.raw[:300], status, body[:300])
        assert status is not None or probe.eof, (probe.kind, probe.raw[:300])
        if status is not None and status >= 400 and probe.raw.split(b" ", 1)[0] != b"HEAD":
            assert json.loads(body)["status"] == status
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert health[0] == 200
    assert valid[0] == 200 and json.loads(valid[1])["id"] == "q"

    statuses = Counter(status for status, _ in answers)
    assert len(probes) >= 10_000 and statuses[200] > 200, statuses  # the fuzz also reaches the model
    assert {400, 413, 415, 422} <= set(statuses), statuses
    print(f"\n{len(probes)} requests in {elapsed:.1f} s:", {k: dict(v) for k, v in sorted(by_kind.items())})
