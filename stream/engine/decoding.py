"""From a Kafka record to a merge item: decode, validate, transform.

:class:`FeaturePipeline` is the one place where an event's features are checked and the
``[features] transform`` is applied -- for Kafka events and for ``POST /predict`` alike.
:class:`RecordDecoder` turns a fetched record into an :class:`~stream.engine.merge.Item` at its
event time (the payload ``ts``, else the Kafka record timestamp), or into an invalid item
(``ts`` None, merge rule 2) that the handlers dead-letter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from learners.labels import LabelParser
from stream.engine.codecs import InvalidMessage, check_features, parse_event, parse_label
from stream.engine.handlers import Decoded
from stream.engine.merge import Item
from stream.engine.transforms import FeatureTransform, load_transform

if TYPE_CHECKING:
    from stream.config import Config


class FeaturePipeline:
    """Validate an event's ``x`` and apply the transform; raises :class:`InvalidMessage`."""

    def __init__(self, transform: FeatureTransform | None = None):
        self.transform = transform
        #: With a transform, feature values may be bytes that only the transform can read.
        self.accepts_bytes = transform is not None

    @classmethod
    def from_config(cls, config: "Config") -> "FeaturePipeline":
        """The pipeline of ``[features] transform`` (none when it is empty)."""
        spec = config.features.transform
        return cls(load_transform(spec) if spec else None)

    def prepare(self, x: object) -> dict:
        """The River features of a raw ``x`` (checked, then transformed)."""
        features = check_features(x, self.accepts_bytes)
        return features if self.transform is None else self.transform(features)


class RecordDecoder:
    """Decode records of the events and labels topics into merge items."""

    def __init__(self, events_topic: str, features: FeaturePipeline, max_bytes: int, task: str, **label_options: str):
        self.events_topic = events_topic
        self.features = features
        self.max_bytes = max_bytes
        self.labels = LabelParser(task, **label_options)

    @classmethod
    def from_config(cls, config: "Config", features: FeaturePipeline, events_topic: str | None = None):
        """A decoder with the config's limits and label settings; events from ``events_topic``
        (default ``[topics] events``)."""
        return cls(
            events_topic or config.topics.events, features, config.codec.max_message_bytes, config.model.task,
            positive_label=config.model.positive_label, negative_label=config.model.negative_label,
        )

    def parse_event(self, raw: bytes | None):
        event = parse_event(raw, self.max_bytes, self.features.accepts_bytes)
        transform = self.features.transform
        return event if transform is None else event._replace(x=transform(event.x))

    def parse_label(self, raw: bytes | None):
        return parse_label(raw, self.max_bytes, self.labels)

    def decode_batch(self, topic: str, records) -> list[Item]:
        """Merge items for records of one partition, in offset order."""
        parse = self.parse_event if topic == self.events_topic else self.parse_label
        items = []
        for record in records:
            try:
                message = parse(record.value)
            except InvalidMessage as exc:
                items.append(Item(None, record.offset, Decoded(exc, record)))
                continue
            ts = message.ts if message.ts is not None else record.timestamp / 1000.0
            items.append(Item(ts, record.offset, Decoded(message, record)))
        return items
