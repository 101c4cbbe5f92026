"""The record handlers: event -> prediction + pending entry; label -> score + learn; failure -> dead letter.

They are written against small interfaces -- :class:`Sink` for output, the pending and learned
stores of :class:`state.pending.ExpiringStore`, :class:`Observer` for telemetry -- and change a
:class:`~stream.engine.stream_state.StreamState`, so they run in unit tests with in-memory
implementations and no Kafka (``tests/engine/test_handlers.py``).

Per-record failure isolation
----------------------------
No record can stop the stream. A record that cannot be decoded, validated or transformed was
already turned into an :class:`~stream.engine.codecs.InvalidMessage` by the decoder; here:

- an event whose prediction raises (any model of the set, a drift monitor, the label-request
  sampler, packing its features) is dead-lettered with reason ``model_predict_failed``; nothing
  is published or kept for it;
- a label whose learning raises (a metric, a drift monitor, a model's ``learn_one``) is
  dead-lettered with reason ``model_learn_failed``.

The ``detail`` header says ``ExceptionClass: first line of the message``. The failed record is
counted (``invalid``, by ``topic:reason``), its offset is consumed, and processing goes on.

What a failed ``learn`` leaves behind (the rule, the same on every replay): the steps that ran
before the exception stand -- the metrics of the models scored before it, drift monitors already
updated, and the pipeline steps that learned before the failing one (a River pipeline updates
its scaler before its classifier). Undoing them would need a copy of every model for every
label. The pending entry is kept, so a corrected label for the same id is still learned, and
the id is not marked learned. Because the merge releases the same records in the same order,
a replay raises at the same point and leaves exactly the same partial update: the model after
a crash and restart is identical to an uninterrupted run's.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple, Protocol, Sequence

import msgpack

from state.pending import LearnedIds, PendingLabels
from stream.engine.codecs import Event, InvalidMessage, Label, OutputCodec, plain_scalar
from stream.engine.history import model_snapshot
from stream.engine.merge import Item
from stream.engine.messages import (
    challenger_predictions,
    dead_letter_message,
    label_request_message,
    prediction_message,
)
from stream.engine.stream_state import StreamState
from stream.engine.transforms import first_line

log = logging.getLogger(__name__)

#: Sweep expired pending entries every this many events (a stream position, so deterministic).
EXPIRY_SWEEP_EVENTS = 1000

#: Packs pending entries; one reused Packer is ~1.5 µs per event cheaper than ``msgpack.packb``.
_pack_entry = msgpack.Packer(use_bin_type=True, default=plain_scalar).pack


class InputRecord(Protocol):
    """What the handlers read of a Kafka record (aiokafka's ``ConsumerRecord`` has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Decoded(NamedTuple):
    """A merge item's payload: the parsed message (or why it is invalid) and its record."""

    message: Event | Label | InvalidMessage
    record: InputRecord


class Sink(Protocol):
    """Where output messages go (:class:`~stream.engine.output.BatchedOutput`, or a list in tests)."""

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence = ()) -> None: ...


class Observer(Protocol):
    """Telemetry hooks (:class:`~stream.engine.telemetry.Telemetry`); none may raise."""

    def predicted(self, seconds: float) -> None: ...

    def learned(self, seconds: float, label_delay_s: float) -> None: ...

    def dead_lettered(self, topic: str, reason: str) -> None: ...

    def notices(self, notices: Sequence) -> None: ...


class NullObserver:
    """An :class:`Observer` that records nothing (unit tests, tools)."""

    def predicted(self, seconds: float) -> None:
        pass

    def learned(self, seconds: float, label_delay_s: float) -> None:
        pass

    def dead_lettered(self, topic: str, reason: str) -> None:
        pass

    def notices(self, notices: Sequence) -> None:
        pass


class Topics(NamedTuple):
    """The topics the handlers read and write."""

    events: str
    labels: str
    predictions: str
    deadletter: str
    label_requests: str


class RecordHandlers:
    """Apply released records to a :class:`StreamState` (see the module docstring for the rules).

    Parameters
    ----------
    state
        The models, counts, offsets and watermark the records change.
    pending
        Features, event time and predictions of events waiting for their label, by event id.
    learned
        Ids whose label was learned (duplicates are counted, not learned twice), with event time.
    output
        Where predictions, label requests and dead letters go.
    codec
        Encodes output messages.
    topics
        Topic names.
    ttl_s
        A pending entry older than the watermark minus this (event time) is never learned.
    publish_challengers
        Add the challengers' shadow predictions to each prediction message.
    observer
        Telemetry hooks.
    """

    def __init__(
        self,
        state: StreamState,
        pending: PendingLabels,
        learned: LearnedIds,
        output: Sink,
        codec: OutputCodec,
        topics: Topics,
        *,
        ttl_s: float,
        publish_challengers: bool = False,
        observer: Observer | None = None,
    ):
        self.state = state
        self.pending = pending
        self.learned = learned
        self.output = output
        self.encode = codec.encode
        self.topics = topics
        self.ttl_s = ttl_s
        self.publish_challengers = publish_challengers
        self.observer: Observer = observer or NullObserver()
        self.sliced = False
        """The last :meth:`apply` stopped at its time budget with records still released."""

    # -- the batch ---------------------------------------------------------------------------

    def apply(self, items, until: float = float("inf")) -> int:
        """Apply released merge items in order; stop after the first one past ``until``
        (``time.perf_counter()``): the rest stay buffered in the merge for the next turn."""
        n = 0
        state = self.state
        offsets = state.offsets
        events_topic = self.topics.events
        clock = time.perf_counter
        self.sliced = False
        for item in items:
            message, record = item.payload
            if item.ts is None:
                self.dead_letter(record, message.reason, message.detail)
            else:
                if state.watermark is None or item.ts > state.watermark:
                    state.watermark = item.ts
                if record.topic == events_topic:
                    self.on_event(message, item.ts, record)
                else:
                    self.on_label(message, item.ts, record)
            offsets[(record.topic, record.partition)] = record.offset + 1
            n += 1
            if not n & 63 and clock() > until:
                self.sliced = True  # more may be ready: the next fetch must not wait
                break
        state.applied += n
        return n

    def event_seen(self, item: Item) -> bool:
        """True when a label's event was already predicted (pending) or learned (merge rule 6)."""
        label_id = item.payload[0].id
        return self.pending.get(label_id) is not None or self.learned.get(label_id) is not None

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Event, ts: float, record: InputRecord) -> None:
        state = self.state
        models = state.models
        t0 = time.perf_counter()
        try:
            served = models.predict(event.x, ts)
            message = prediction_message(event.id, served.y_pred, served.proba, served.model, served.version, ts)
            if self.publish_challengers and len(served.record) > 1:
                message["challengers"] = challenger_predictions(served.record, served.model)
            encoded = self.encode(message)
            request = self._label_request(event.id, served, ts)
            entry = _pack_entry([event.x, ts, served.record])
        except Exception as exc:  # the model (or a monitor) cannot take this event: dead letter
            self.dead_letter(record, "model_predict_failed", first_line(exc))
            return
        self.observer.predicted(time.perf_counter() - t0)
        if served.notices:
            self.observer.notices(served.notices)
        self.output.add(self.topics.predictions, record.key, encoded)
        if request is not None:
            self.output.add(self.topics.label_requests, record.key, request)
            state.counts["label_requests"] += 1
        self.pending.put(event.id, ts, entry)
        counts = state.counts
        counts["events"] += 1
        counts["predictions"] += 1
        state.events_since_sweep += 1
        if state.events_since_sweep >= EXPIRY_SWEEP_EVENTS:
            self.sweep_expired()

    def _label_request(self, event_id: str, served: Any, ts: float) -> bytes | None:
        """The encoded label request when the sampler picks this event (within the window's budget)."""
        sampler = self.state.sampler
        if sampler is None:
            return None
        ask, score = sampler.offer(ts, served.proba)
        if not ask:
            return None
        return self.encode(
            label_request_message(event_id, served.y_pred, served.proba, score, served.model, served.version, ts)
        )

    # -- labels ------------------------------------------------------------------------------

    def on_label(self, label: Label, ts: float, record: InputRecord) -> None:
        state = self.state
        counts = state.counts
        counts["labels"] += 1
        raw = self.pending.get(label.id)
        if raw is None:
            if self.learned.get(label.id) is not None:
                counts["duplicate_labels"] += 1
            else:
                counts["unmatched_labels"] += 1
            return
        entry = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        x, event_ts, predictions = entry[0], entry[1], entry[2]  # a trainer's entry has a 4th element
        assert state.watermark is not None, "apply() advanced it to this label's time"
        if event_ts < state.watermark - self.ttl_s:
            self.pending.delete(label.id)
            counts["expired"] += 1
            return
        t0 = time.perf_counter()
        try:
            notices = state.models.learn(x, label.y, predictions, ts)
        except Exception as exc:  # see "What a failed learn leaves behind" in the module docstring
            self.dead_letter(record, "model_learn_failed", first_line(exc))
            return
        self.pending.delete(label.id)
        self.observer.learned(time.perf_counter() - t0, max(0.0, ts - event_ts))
        if notices:
            self.observer.notices(notices)
        self.learned.put(label.id, event_ts, b"")
        self.joined(entry, counts["joined"])
        counts["joined"] += 1
        history = state.history
        if counts["joined"] % history.every == 0:
            history.append(
                counts["joined"],
                position=counts["events"],
                ts=state.watermark,
                models={name: model_snapshot(model) for name, model in state.models.models.items()},
            )

    def joined(self, entry: list, learned_before: int) -> None:
        """Hook: the pending ``entry`` of a label was just learned; ``learned_before`` labels had
        been learned before it (the scale-out trainer observes the served staleness here)."""

    def sweep_expired(self) -> None:
        """Drop pending entries and learned ids older than the watermark minus the TTL."""
        state = self.state
        state.events_since_sweep = 0
        assert state.watermark is not None, "swept after an event, which advanced it"
        cutoff = state.watermark - self.ttl_s
        expired = self.pending.expire(cutoff)
        self.learned.expire(cutoff)
        if expired:
            state.counts["expired"] += expired
            log.info("dropped %d pending events older than %.0f s of event time", expired, self.ttl_s)

    # -- failures ----------------------------------------------------------------------------

    def dead_letter(self, record: InputRecord, reason: str, detail: str) -> None:
        """Copy ``record`` unchanged to the dead-letter topic, with where it came from and why."""
        value, headers = dead_letter_message(record, reason, detail)
        self.output.add(self.topics.deadletter, record.key, value, headers)
        state = self.state
        state.counts["invalid"] += 1
        key = f"{record.topic}:{reason}"
        state.invalid_by_reason[key] = state.invalid_by_reason.get(key, 0) + 1
        self.observer.dead_lettered(record.topic, reason)
        log.debug("dead-lettered %s:%d@%d: %s %s", record.topic, record.partition, record.offset, reason, detail)
