"""The configuration's sections as frozen dataclasses: one per TOML table, defaults included.

These classes are the single place where a key and its default are written down:
:data:`stream.config.DEFAULTS` is derived from them, :func:`stream.config.load_config` validates
a TOML file and ``RIVERBED_*`` variables against those defaults (one pass, one-line errors), and a
:class:`stream.config.Config` holds one instance of each, so ``config.kafka.bootstrap_servers`` is
a typed attribute. The repository's ``config.toml`` mirrors the defaults with comments (a test
keeps the two equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = ""
    group_id: str = "riverbed"
    client_id: str = "riverbed"
    partitions: int = 1
    request_timeout_s: float = 30.0
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True


@dataclass(frozen=True)
class BrokerSettings:
    port: int = 9092
    controller_port: int = 9093
    dir: str = ""
    kafka_version: str = "4.1.1"
    heap_mb: int = 768
    start_timeout_s: float = 120.0
    security: str = "plaintext"


@dataclass(frozen=True)
class TopicSettings:
    events: str = "events"
    labels: str = "labels"
    predictions: str = "predictions"
    deadletter: str = "deadletter"


@dataclass(frozen=True)
class CodecSettings:
    output: str = "msgpack"
    max_message_bytes: int = 1_048_576


@dataclass(frozen=True)
class ModelSettings:
    name: str = ""
    preset: str = "logreg"
    task: str = "binary"
    metrics: list[str] = field(default_factory=list)
    window: int = 1000
    positive_label: str = ""
    negative_label: str = ""


@dataclass(frozen=True)
class DriftSettings:
    detector: str = "adwin"
    input_detector: str = "adwin"
    max_features: int = 10
    error_action: str = "alert"
    score_action: str = "alert"
    feature_action: str = "alert"


@dataclass(frozen=True)
class ChallengerSettings:
    publish: bool = False
    metric: str = ""
    margin: float = 0.02
    min_labels: int = 500
    models: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LabelSettings:
    ttl_s: float = 604_800.0
    request_budget: int = 0
    request_window_s: float = 86_400.0
    request_strategy: str = "entropy"
    request_topic: str = "label-requests"


@dataclass(frozen=True)
class FeatureSettings:
    transform: str = ""


@dataclass(frozen=True)
class StateSettings:
    dir: str = "riverbed-state"
    checkpoint_interval_s: float = 5.0
    checkpoint_max_changes: int = 0
    keep: int = 3


@dataclass(frozen=True)
class OutputSettings:
    guarantee: str = "at_least_once"
    transaction_interval_ms: int = 100


@dataclass(frozen=True)
class ProcessorSettings:
    max_batch: int = 2000
    poll_timeout_ms: int = 100
    max_wait_ms: int = 500
    max_buffered_records: int = 20_000


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass(frozen=True)
class HttpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    ready_lag: int = 1000


@dataclass(frozen=True)
class ScaleSettings:
    role: str = "all"
    served_topic: str = "served"
    models_topic: str = "models"
    snapshot_every_labels: int = 1000
    snapshot_interval_s: float = 10.0
    snapshot_chunk_bytes: int = 524_288
    scorer_group_id: str = "riverbed-scorers"
    trainer_max_wait_ms: int = 30_000


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"


#: Every section by its TOML table name, in the order of ``config.toml``.
SECTIONS: dict[str, type] = {
    "kafka": KafkaSettings,
    "broker": BrokerSettings,
    "topics": TopicSettings,
    "codec": CodecSettings,
    "model": ModelSettings,
    "drift": DriftSettings,
    "challengers": ChallengerSettings,
    "labels": LabelSettings,
    "features": FeatureSettings,
    "state": StateSettings,
    "output": OutputSettings,
    "processor": ProcessorSettings,
    "metrics": MetricsSettings,
    "http": HttpSettings,
    "scale": ScaleSettings,
    "log": LogSettings,
}


def defaults() -> dict[str, dict[str, Any]]:
    """``{section: {key: default}}`` from the dataclasses above."""
    return {name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()}


def section_as_dict(section: Any) -> dict[str, Any]:
    """One section's values as a plain dict (copies of lists)."""
    return dataclasses.asdict(section)
