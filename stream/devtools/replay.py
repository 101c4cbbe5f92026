"""Replay samples to Kafka as events and delayed labels, in River's question/answer order.

:func:`schedule` turns ``(x, y)`` samples into a stream of :class:`Record` s: one event per
sample and, later, its label. The order is exactly the order in which
``river.stream.simulate_qa(samples, moment=None, delay=label_delay)`` yields questions and
answers, and ``ts`` grows strictly along it, so a consumer that merges events and labels by
``ts`` reproduces River's order, and riverbed's prequential metrics equal
``river.evaluate.progressive_val_score(..., delay=label_delay)``.

:func:`produce` publishes the records with kafka-python: events to ``topics.events``, labels to
``topics.labels``, each keyed by the event id, order kept within a partition.

>>> records = list(schedule([({"a": 1}, True), ({"a": 2}, False)], label_delay=1))
>>> [(r.kind, r.id, r.ts) for r in records]
[('event', 'e-0', 1700000000.0), ('label', 'e-0', 1700000000.5), ('event', 'e-1', 1700000001.0), ('label', 'e-1', 1700000001.5)]
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from stream.devtools.datasets import message_features, message_target
from stream.errors import KafkaUnavailableError, RiverbedError

EVENT = "event"
LABEL = "label"
FORMATS = ("msgpack", "json")


@dataclass(frozen=True)
class Record:
    """One message to publish.

    Attributes
    ----------
    kind
        ``"event"`` or ``"label"``.
    id
        The event id, also the Kafka key.
    value
        The message: ``{"id", "x", "ts"}`` for an event, ``{"id", "y", "ts"}`` for a label.
    ts
        Event time in epoch seconds (the same as ``value["ts"]``).
    """

    kind: str
    id: str
    value: dict
    ts: float


def _check_schedule_arguments(label_delay: int, label_fraction: float, interval_s: float) -> None:
    if type(label_delay) is not int or label_delay < 0:
        raise RiverbedError(
            f"label delay must be a whole number of events >= 0, got {label_delay!r}"
        )
    if not 0.0 <= label_fraction <= 1.0:
        raise RiverbedError(f"label fraction must be between 0 and 1, got {label_fraction!r}")
    if not interval_s > 0:
        raise RiverbedError(f"interval between events must be > 0 seconds, got {interval_s!r}")


def schedule(
    samples: Iterable[tuple[dict, Any]],
    *,
    label_delay: int = 0,
    label_fraction: float = 1.0,
    seed: int = 42,
    start_ts: float = 1_700_000_000.0,
    interval_s: float = 1.0,
    id_prefix: str = "e",
    stamps: Iterable[tuple[str | None, float | None]] | None = None,
) -> Iterator[Record]:
    """Events and labels of ``samples`` in the order River's ``simulate_qa`` reveals them.

    Event ``i`` has id ``f"{id_prefix}-{i}"`` and ``ts = start_ts + i * interval_s``. With a
    delay of ``N >= 1`` events its label is revealed just before event ``i + N``, at
    ``ts = start_ts + (i + N - 0.5) * interval_s``; with ``N == 0`` just after event ``i``,
    at ``start_ts + (i + 0.5) * interval_s``. Labels still pending after the last event follow
    it in index order. This is ``river.stream.simulate_qa(samples, moment=None, delay=N)``:
    at question ``j`` it first answers every ``i`` with ``i + N <= j``.

    Parameters
    ----------
    samples
        ``(x, y)`` pairs, e.g. :attr:`stream.devtools.datasets.Samples.rows` or a River dataset. ``x`` is
        converted to message form (string keys, scalar values); a ``y`` of ``None`` means the
        event is never labelled.
    label_delay
        ``N``, the delay of every label, counted in events.
    label_fraction
        Keep each label with this probability; the draws come from ``random.Random(seed)``,
        one per sample in order, so the same seed keeps the same labels whatever the delay.
    seed
        Seed of the label draws.
    start_ts, interval_s
        Event time of the first event and the spacing between events, in seconds.
        ``interval_s / 2`` must be representable at the magnitude of ``start_ts`` (anything
        from a microsecond up is) for ``ts`` to grow strictly.
    id_prefix
        Prefix of the event ids.
    stamps
        Optional ``(id, ts)`` per sample, in step with ``samples`` (a file's own ids and event
        times, :attr:`stream.devtools.datasets.Samples.stamps`); a ``None`` in either place
        keeps the generated id (time). With the samples' own times a label is revealed
        halfway between the event before which it is due and the one preceding it (the same
        rule as for generated times), and labels still pending after the last event
        ``interval_s`` apart after it.

    >>> [(r.kind, r.id) for r in schedule([({}, 1), ({}, 2), ({}, 3)], label_delay=0)]
    [('event', 'e-0'), ('label', 'e-0'), ('event', 'e-1'), ('label', 'e-1'), ('event', 'e-2'), ('label', 'e-2')]
    """
    _check_schedule_arguments(label_delay, label_fraction, interval_s)
    keep_label = random.Random(seed).random
    reveal_after = max(label_delay, 1)  # in events; 0 reveals between event i and event i + 1
    pending: collections.deque[tuple[int, str, Any]] = collections.deque()
    previous_ts = None
    last, last_was_generated = -1, True
    for i, ((x, y), (own_id, own_ts)) in enumerate(zip(samples, _stamps_or_none(stamps))):
        if own_ts is None:  # generated times: the closed form, bit for bit as River's order needs
            ts, label_ts = start_ts + i * interval_s, start_ts + (i - 0.5) * interval_s
        else:
            ts = own_ts
            label_ts = ts - interval_s / 2 if previous_ts is None else (previous_ts + ts) / 2
        while pending and pending[0][0] + reveal_after <= i:
            yield _label(*pending.popleft()[1:], label_ts)

        event_id = f"{id_prefix}-{i}" if own_id is None else own_id
        yield Record(EVENT, event_id, {"id": event_id, "x": message_features(x), "ts": ts}, ts)
        previous_ts, last, last_was_generated = ts, i, own_ts is None

        y = message_target(y)
        if keep_label() < label_fraction and y is not None:
            pending.append((i, event_id, y))

    for i, event_id, y in pending:  # due after the last event: as if the stream went on
        if last_was_generated:
            label_ts = start_ts + (i + reveal_after - 0.5) * interval_s
        else:
            assert previous_ts is not None, "a label is pending only after its event"
            label_ts = previous_ts + (i + reveal_after - last - 0.5) * interval_s
        yield _label(event_id, y, label_ts)


def _stamps_or_none(stamps):
    """``stamps``, or endless ``(None, None)`` when there are none."""
    return itertools.repeat((None, None)) if stamps is None else stamps


def _label(event_id: str, y: Any, ts: float) -> Record:
    return Record(LABEL, event_id, {"id": event_id, "y": y, "ts": ts}, ts)


def encoder(fmt: str) -> Callable[[dict], bytes]:
    """The function that encodes a message as ``fmt`` (``"msgpack"`` or ``"json"``).

    >>> encoder("json")({"id": "e-0", "ts": 1.5})
    b'{"id":"e-0","ts":1.5}'
    """
    if fmt == "msgpack":
        import msgpack

        packer = msgpack.Packer(use_bin_type=True)
        return packer.pack
    if fmt == "json":
        dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
        return lambda value: dumps(value).encode()
    raise RiverbedError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


class _InFlightWindow:
    """Keeps at most about ``limit`` sent messages unacknowledged.

    kafka-python 3 has no ``buffer_memory`` bound: a replay loop can queue a whole dataset in
    the producer before the first batch is acknowledged. Millions of live futures then make each
    full garbage collection take long enough (100 ms and more) for kafka-python's I/O thread to
    log "Task ... is blocking the event loop". Waiting, every ``every`` messages, for the
    message sent ``limit`` messages earlier bounds the heap without stalling the pipeline.
    """

    def __init__(self, limit: int = 20_000, every: int = 1_000):
        self._every = every
        self._keep = max(1, limit // every)
        self._sent = 0
        self._marks: collections.deque = collections.deque()

    def sent(self, future) -> None:
        """Note one sent message; may block until an older one is acknowledged."""
        from kafka.errors import KafkaError

        self._sent += 1
        if self._sent % self._every:
            return
        self._marks.append(future)
        if len(self._marks) > self._keep:
            try:
                self._marks.popleft().get()
            except KafkaError:
                pass  # counted by _DeliveryFailures, reported after the flush


class _DeliveryFailures:
    """Counts failed sends and remembers the first, from the producer's I/O thread."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{type(exc).__name__}: {exc}"


def _connect(bootstrap: str):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from stream.connect.security import carried_security

    try:
        return KafkaProducer(
            **carried_security(bootstrap),  # TLS and SASL of a SecuredBootstrap
            bootstrap_servers=bootstrap,
            client_id="riverbed-replay",
            acks="all",
            enable_idempotence=True,  # with retries, keeps order within a partition
            linger_ms=20,
            batch_size=256 * 1024,
            compression_type=None,
            allow_auto_create_topics=False,
            max_block_ms=30_000,
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"no Kafka broker answers at {bootstrap} ({exc}); start one or fix the bootstrap address"
        ) from exc


def _require_topics(producer, bootstrap: str, names: Iterable[str]) -> None:
    from kafka.errors import KafkaError

    for name in names:
        try:
            partitions = producer.partitions_for(name)
        except KafkaError:
            partitions = None
        if not partitions:
            raise RiverbedError(
                f"topic {name!r} does not exist at {bootstrap}; create it first "
                "(riverbed creates the events and labels topics before replaying)"
            )


def _started(records: Iterable[Record]) -> Iterator[Record]:
    """``records`` with the first one already made: a lazy dataset imports its library now."""
    records = iter(records)
    first = next(records, None)
    return records if first is None else itertools.chain([first], records)


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Leave the objects alive now (modules, the dataset) out of garbage collection meanwhile.

    River, SciPy and the Kafka client make a heap whose full collection takes tens of
    milliseconds, often more than the 0.1 s after which kafka-python's I/O thread logs "Task
    ... is blocking the event loop", and a replay triggers such collections again and again.
    :func:`gc.freeze` moves those objects where the collector does not look, until
    :func:`gc.unfreeze` on exit. A heap that was already frozen (a processor in the same process
    froze its start-up objects, see :mod:`stream.engine.runtime`) stays frozen: CPython can only
    unfreeze everything.
    """
    already_frozen = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not already_frozen:
            gc.unfreeze()


def _send_all(producer, records: Iterable[Record], topic_of: dict, encode, counts: dict,
              failures: _DeliveryFailures, bar) -> None:
    """Send every record to its topic, counting by kind and advancing ``bar`` by events."""
    from kafka.errors import KafkaError

    window = _InFlightWindow()
    unshown = 0
    for record in records:
        try:
            future = producer.send(topic_of[record.kind], value=encode(record.value), key=record.id.encode())
        except KafkaError as exc:
            raise RiverbedError(
                f"cannot send {record.kind} {record.id!r} to {topic_of[record.kind]!r}: {exc}"
            ) from exc
        future.add_errback(failures)
        window.sent(future)
        counts[record.kind] += 1
        if record.kind == EVENT:
            unshown += 1
            if unshown == 1000:
                bar.update(unshown)
                unshown = 0
    bar.update(unshown)


def produce(
    bootstrap: str,
    topics: Any,
    records: Iterable[Record],
    *,
    fmt: str = "msgpack",
    total: int | None = None,
    progress: bool = True,
) -> dict:
    """Publish ``records``: events to ``topics.events``, labels to ``topics.labels``.

    Each message is keyed by the event id (UTF-8) and encoded as ``fmt``. The producer is
    idempotent with ``acks="all"``, so retries neither duplicate nor reorder messages within a
    partition. The Kafka record timestamp is left to the producer (replayed event times can lie
    far in the future, which Kafka 4 rejects); the event time travels in the payload ``ts``.
    Topics are not created here: both must exist.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers, e.g. ``"127.0.0.1:9092"``.
    topics
        Anything with ``.events`` and ``.labels`` topic names, e.g. ``config.topics``.
    records
        What to publish, usually from :func:`schedule`.
    fmt
        ``"msgpack"`` or ``"json"``.
    total
        Number of events expected, for the progress bar.
    progress
        Show a progress bar of events on stderr.

    Returns
    -------
    dict
        ``{"events": n, "labels": n, "seconds": t}``, every message acknowledged.

    Raises
    ------
    RiverbedError
        When no broker answers, a topic is missing, or any message was not acknowledged.
    """
    from tqdm import tqdm

    encode = encoder(fmt)
    topic_of = {EVENT: topics.events, LABEL: topics.labels}
    started = time.perf_counter()
    producer = _connect(bootstrap)
    failures = _DeliveryFailures()
    counts = {EVENT: 0, LABEL: 0}
    bar = tqdm(total=total, unit="event", file=sys.stderr, disable=not progress, desc="replay")
    flushed = False
    try:
        _require_topics(producer, bootstrap, topic_of.values())
        records = _started(records)
        with _frozen_heap():
            _send_all(producer, records, topic_of, encode, counts, failures, bar)
            producer.flush()
        flushed = True
    finally:
        bar.close()
        producer.close(timeout=None if flushed else 5)
    if failures.count:
        raise RiverbedError(
            f"{failures.count} of {counts[EVENT] + counts[LABEL]} messages were not acknowledged "
            f"by {bootstrap} (first: {failures.first}); check the broker and replay again into "
            "fresh topics"
        )
    return {
        "events": counts[EVENT],
        "labels": counts[LABEL],
        "seconds": time.perf_counter() - started,
    }
