"""The topics of a scaled-out deployment, created the same way by the trainer and every scorer.

- ``[topics] events, labels, predictions, deadletter`` (and label requests) as in one process,
  with ``[kafka] partitions`` partitions: scorers share the events' partitions in their group;
- ``[scale] served_topic`` with the same partition count (scorers write, the trainer reads);
- ``[scale] models_topic``: one partition, ``cleanup.policy=compact`` (only the newest chunk per
  key is kept, see :mod:`stream.scale.snapshots`), ``max.message.bytes`` large enough for one
  chunk plus its headers, and for a whole producer batch: the broker limits record *batches*, and
  the output packs consecutive chunks into one batch of up to :data:`PRODUCER_BATCH_BYTES`.
"""

from __future__ import annotations

from stream.config import Config
from stream.connect.topics import create_topics

#: Room for a chunk's headers above ``[scale] snapshot_chunk_bytes``.
HEADER_ROOM_BYTES = 64 * 1024
#: The producer's ``max_batch_size`` (:class:`stream.engine.kafka_io.KafkaIO`): small chunks share a batch.
PRODUCER_BATCH_BYTES = 512 * 1024


def models_topic_configs(cfg: Config) -> dict[str, str]:
    """Topic configs of the compacted models topic."""
    return {
        "cleanup.policy": "compact",
        "max.message.bytes": str(max(cfg.scale.snapshot_chunk_bytes, PRODUCER_BATCH_BYTES) + HEADER_ROOM_BYTES),
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": "600000",
    }


def scale_topic_names(cfg: Config) -> list[str]:
    """Every partitioned topic of a scaled-out deployment (the models topic apart)."""
    return [*cfg.topic_names(), cfg.scale.served_topic]


def create_scale_topics(bootstrap: str, cfg: Config) -> list[str]:
    """Create what is missing of :func:`scale_topic_names` and the models topic; returns the created names."""
    created = create_topics(bootstrap, scale_topic_names(cfg), cfg.kafka.partitions)
    created += create_topics(bootstrap, [cfg.scale.models_topic], 1, configs=models_topic_configs(cfg))
    return created
