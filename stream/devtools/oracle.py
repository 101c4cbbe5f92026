"""The oracle: a simulated human labeller that answers riverbed's label requests.

In production a person (or a slow process: a fraud investigation, a delivery confirmation)
supplies the true label of the events riverbed asked about on ``[labels] request_topic``. For
simulations and tests, :class:`Oracle` plays that person: it reads the label requests, looks the
true label of each requested event up in a table (the dataset the events were replayed from),
and publishes ``{"id", "y", "ts"}`` to the labels topic, keyed by the event id.

The label's event time carries the labeller's delay:

- ``delay_s=S``: ``ts = request ts + S`` (an answer S seconds of event time later);
- ``delay_events=N``: the answer comes after N further events of a stream spaced
  ``interval_s`` apart, with the same rule as ``riverbed produce --label-delay N``:
  ``ts = request ts + (N - 1/2) * interval_s`` (just before event ``i + N``), or
  ``+ interval_s / 2`` for ``N = 0`` (just after the event).

Each requested id is answered once (a request re-emitted by a processor that restarted from a
checkpoint is a byte-identical duplicate and is skipped). Ids missing from the table, or whose
label is ``None``, are counted and left unanswered.

Determinism: the oracle publishes its answers in the order it reads the requests. When the
events are all published before the processor runs, whether an answer reaches the processor
before or after a given event depends on timing; a reproducible simulation therefore alternates
(as ``examples/digits`` does): publish a day of events, wait until the processor has predicted
them, let the oracle answer the day's requests (:meth:`Oracle.answer` with ``expect``), repeat.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Mapping

from stream.errors import KafkaUnavailableError, RiverbedError

log = logging.getLogger(__name__)


def truth_from_samples(rows, id_prefix: str) -> dict[str, Any]:
    """The label of every replayed event, by the id ``riverbed produce`` gives it: ``<prefix>-<i>``.

    >>> truth_from_samples([({"a": 1}, True), ({"a": 2}, None)], "phishing")
    {'phishing-0': True, 'phishing-1': None}
    """
    return {f"{id_prefix}-{i}": y for i, (_x, y) in enumerate(rows)}


def label_ts(request_ts: float, *, delay_s: float | None = None, delay_events: int | None = None,
             interval_s: float = 1.0) -> float:
    """Event time of the answer to a request made at ``request_ts``.

    >>> label_ts(100.0, delay_s=3600.0)
    3700.0
    >>> label_ts(100.0, delay_events=10, interval_s=2.0), label_ts(100.0, delay_events=0)
    (119.0, 100.5)
    """
    if delay_events is not None:
        return request_ts + (delay_events - 0.5 if delay_events >= 1 else 0.5) * interval_s
    return request_ts + (delay_s or 0.0)


class Oracle:
    """Answers label requests from ``request_topic`` with true labels on ``labels_topic``.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    request_topic, labels_topic
        Where the requests are read and the labels written (both must exist).
    truth
        The true label of every event id the oracle may be asked about.
    delay_s, delay_events, interval_s
        The labeller's delay (see :func:`label_ts`); at most one of ``delay_s``/``delay_events``.
    fmt
        Encoding of the labels: ``"msgpack"`` or ``"json"``.
    group_id
        Consumer group whose committed offsets say which requests were answered already (so a
        restarted oracle continues where it stopped); ``None`` reads from the beginning.
    """

    def __init__(
        self,
        bootstrap: str,
        request_topic: str,
        labels_topic: str,
        truth: Mapping[str, Any],
        *,
        delay_s: float | None = None,
        delay_events: int | None = None,
        interval_s: float = 1.0,
        fmt: str = "msgpack",
        group_id: str | None = None,
    ):
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.errors import KafkaError

        from stream.connect.security import carried_security
        from stream.devtools.replay import encoder

        if delay_s is not None and delay_events is not None:
            raise RiverbedError("give the oracle's delay in seconds or in events, not both")
        if (delay_s is not None and delay_s < 0) or (delay_events is not None and delay_events < 0):
            raise RiverbedError("the oracle's delay must not be negative")
        self.truth = truth
        self.labels_topic = labels_topic
        self.request_topic = request_topic
        self._answer_ts = functools.partial(label_ts, delay_s=delay_s, delay_events=delay_events, interval_s=interval_s)
        self._encode = encoder(fmt)
        self.answered: set[str] = set()
        self.counts = {"requests": 0, "labels": 0, "duplicate": 0, "unknown": 0}
        try:
            security = carried_security(bootstrap)  # TLS and SASL of a SecuredBootstrap
            self._consumer = KafkaConsumer(
                **security,
                bootstrap_servers=bootstrap,
                client_id="riverbed-oracle",
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
            )
            self._producer = KafkaProducer(
                **security,
                bootstrap_servers=bootstrap,
                client_id="riverbed-oracle",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"no Kafka broker answers at {bootstrap} ({exc}); start one first") from exc
        partitions = self._consumer.partitions_for_topic(request_topic)
        if not partitions:
            self.close()
            raise RiverbedError(f"topic {request_topic!r} does not exist at {bootstrap}; "
                               "`riverbed topics create` or `riverbed run` creates it when [labels] request_budget > 0")
        self._consumer.assign([TopicPartition(request_topic, p) for p in sorted(partitions)])
        self._group = group_id

    def _answer_one(self, value: bytes) -> None:
        from stream.engine.codecs import decode_any

        request = decode_any(value)
        self.counts["requests"] += 1
        if not isinstance(request, dict) or not isinstance(request.get("id"), str):
            self.counts["unknown"] += 1
            return
        event_id = request["id"]
        if event_id in self.answered:
            self.counts["duplicate"] += 1
            return
        y = self.truth.get(event_id)
        if y is None:
            self.counts["unknown"] += 1
            log.warning("no true label for requested event %r: left unanswered", event_id)
            return
        self.answered.add(event_id)
        ts = self._answer_ts(float(request.get("ts") or 0.0))
        label = {"id": event_id, "y": y, "ts": ts}
        self._producer.send(self.labels_topic, key=event_id.encode(), value=self._encode(label))
        self.counts["labels"] += 1

    def answer(self, *, expect: int | None = None, idle_s: float = 1.0, timeout_s: float = 120.0) -> dict:
        """Answer requests until ``expect`` requests were read in total (or, without ``expect``,
        until nothing arrives for ``idle_s``); flush the labels; return the running counts.

        Raises
        ------
        RiverbedError
            When ``expect`` requests have not arrived within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while True:
            if expect is not None and self.counts["requests"] >= expect:
                break
            batch = self._consumer.poll(timeout_ms=100)
            now = time.monotonic()
            if batch:
                last = now
                for tp in sorted(batch, key=lambda tp: tp.partition):
                    for record in batch[tp]:
                        self._answer_one(record.value)
            elif expect is None and now - last >= idle_s:
                break
            if expect is not None and now > deadline:
                raise RiverbedError(
                    f"the oracle read {self.counts['requests']} label requests on {self.request_topic!r} "
                    f"but expected {expect} within {timeout_s:.0f} s"
                )
        self._producer.flush()
        if self._group is not None:
            self._consumer.commit()
        return dict(self.counts)

    def close(self) -> None:
        self._consumer.close()
        self._producer.close()

    def __enter__(self) -> "Oracle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
