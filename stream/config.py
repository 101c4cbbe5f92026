"""Configuration: the documented defaults, a TOML file, and ``RIVERBED_*`` environment overrides.

Precedence, lowest to highest: the defaults below (mirrored, with comments, in the repository's
``config.toml``), the TOML file named by ``--config`` or ``RIVERBED_CONFIG``, then environment
variables named ``RIVERBED_<SECTION>_<KEY>`` (for example ``RIVERBED_KAFKA_BOOTSTRAP_SERVERS``).
An environment value is parsed as a TOML value when it parses (``5``, ``true``, ``["a", "b"]``)
and taken as a plain string otherwise.

Every value is checked against the type of its default; an unknown section or key, or a value of
the wrong type, raises :class:`~stream.errors.ConfigError` with one line that names the key and
what to do.

>>> cfg = load_config(None, env={"RIVERBED_METRICS_PORT": "0"})
>>> cfg.metrics.port
0
>>> cfg.topics.events
'events'

``[model] metrics = []`` (the default) stands for the task's default metrics
(:data:`TASK_METRICS`); :attr:`Config.metric_names` and ``cfg.model.metrics`` give the resolved
list, while :meth:`Config.as_dict` and :func:`to_toml` keep what was written, so that a config
whose task changes later gets that task's defaults:

>>> load_config(None, env={"RIVERBED_MODEL_TASK": "regression", "RIVERBED_MODEL_PRESET": "linreg"}).metric_names
['mae', 'rmse', 'r2']
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from stream.errors import ConfigError
from stream.settings import (
    SECTIONS,
    BrokerSettings,
    ChallengerSettings,
    CodecSettings,
    DriftSettings,
    FeatureSettings,
    HttpSettings,
    KafkaSettings,
    LabelSettings,
    LogSettings,
    MetricsSettings,
    ModelSettings,
    OutputSettings,
    ProcessorSettings,
    ScaleSettings,
    StateSettings,
    TopicSettings,
    defaults,
)

ENV_PREFIX = "RIVERBED_"
CONFIG_ENV = "RIVERBED_CONFIG"
MODEL_KEY_ENV = "RIVERBED_MODEL_KEY"
SASL_PASSWORD_ENV = "RIVERBED_KAFKA_SASL_PASSWORD"
NOT_SETTINGS = frozenset({CONFIG_ENV, MODEL_KEY_ENV, SASL_PASSWORD_ENV})
"""``RIVERBED_*`` variables that are not config overrides: the config path, the model's HMAC
key and the Kafka SASL password (secrets, read from the environment only and never part of the
config)."""

DEFAULTS: dict[str, dict[str, Any]] = defaults()
"""Every key and its default, by section (derived from the dataclasses of :mod:`stream.settings`)."""

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka", "security_protocol"): ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ("broker", "security"): ("plaintext", "sasl_ssl"),
    ("codec", "output"): ("msgpack", "json"),
    ("output", "guarantee"): ("exactly_once", "at_least_once"),
    ("model", "task"): ("binary", "multiclass", "regression"),
    ("log", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
    ("scale", "role"): ("all", "trainer", "scorer"),
    ("labels", "request_strategy"): ("entropy", "margin", "random"),
    ("drift", "error_action"): ("alert", "reset", "retrain", "challenger"),
    ("drift", "score_action"): ("alert", "reset", "retrain", "challenger"),
    ("drift", "feature_action"): ("alert", "reset", "retrain", "challenger"),
}

#: The metrics of each task when ``[model] metrics`` is empty (learners.metrics.DEFAULT_METRICS, kept
#: here so that reading a config does not import River; a test checks that the two agree).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "logloss", "rocauc"),
    "multiclass": ("accuracy", "macro_f1", "cross_entropy"),
    "regression": ("mae", "rmse", "r2"),
}

#: Drift detectors by name (learners.drift.DETECTORS); a "package.module:factory" spec is also accepted.
DETECTOR_NAMES = ("adwin", "ddm", "eddm", "hddm_a", "hddm_w", "page_hinkley", "kswin", "none")
#: Detectors for real-valued signals (the label-free ones).
INPUT_DETECTOR_NAMES = ("adwin", "page_hinkley", "kswin", "none")

#: Keys whose value is a list of tables (TOML ``[[section.key]]``): allowed keys -> (type, required).
TABLE_LISTS: dict[tuple[str, str], dict[str, tuple[type, bool]]] = {
    ("challengers", "models"): {"name": (str, False), "preset": (str, True)},
}

NON_NEGATIVE = {
    ("kafka", "partitions"),
    ("broker", "port"),
    ("broker", "controller_port"),
    ("broker", "heap_mb"),
    ("codec", "max_message_bytes"),
    ("labels", "ttl_s"),
    ("state", "checkpoint_interval_s"),
    ("state", "checkpoint_max_changes"),
    ("state", "keep"),
    ("processor", "max_batch"),
    ("processor", "poll_timeout_ms"),
    ("processor", "max_wait_ms"),
    ("processor", "max_buffered_records"),
    ("output", "transaction_interval_ms"),
    ("metrics", "port"),
    ("labels", "request_budget"),
    ("labels", "request_window_s"),
    ("http", "port"),
    ("http", "ready_lag"),
    ("model", "window"),
    ("drift", "max_features"),
    ("challengers", "margin"),
    ("challengers", "min_labels"),
}


class Config:
    """The validated configuration: one frozen dataclass of :mod:`stream.settings` per TOML table.

    Build it with :func:`load_config` (or :meth:`replace` on one); the values were checked by then.
    """

    kafka: KafkaSettings
    broker: BrokerSettings
    topics: TopicSettings
    codec: CodecSettings
    model: ModelSettings
    drift: DriftSettings
    challengers: ChallengerSettings
    labels: LabelSettings
    features: FeatureSettings
    state: StateSettings
    output: OutputSettings
    processor: ProcessorSettings
    metrics: MetricsSettings
    http: HttpSettings
    scale: ScaleSettings
    log: LogSettings

    def __init__(self, values: Mapping[str, Mapping[str, Any]], source: str = "defaults"):
        self._values = {name: dict(section) for name, section in values.items()}
        self.source = source
        for name, cls in SECTIONS.items():
            section = self._values[name]
            if name == "model":
                section = {**section, "metrics": resolve_metrics(section)}
            setattr(self, name, cls(**section))

    def __repr__(self) -> str:
        return f"Config(source={self.source!r})"

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._values)

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some keys changed, e.g. ``cfg.replace(state={"dir": "/tmp/x"})``."""
        values = self.as_dict()
        for name, changes in sections.items():
            for key, value in changes.items():
                values.setdefault(name, {})[key] = value
        validated = _validate(values, "override")
        _validate_security(validated, "override", env=None)  # the password source is checked when it is read
        return Config(validated, self.source)

    @property
    def metric_names(self) -> list[str]:
        """``[model] metrics``, or the task's defaults (:data:`TASK_METRICS`) when it is empty."""
        return list(self.model.metrics)

    @property
    def model_name(self) -> str:
        """The champion's name: ``[model] name``, or the last part of its preset (:func:`model_name_of`)."""
        return model_name_of(self._values["model"])

    @property
    def challenger_specs(self) -> list[tuple[str, str]]:
        """``(name, preset)`` of each ``[[challengers.models]]`` entry (name defaults to the preset's)."""
        return [(model_name_of(entry), entry["preset"]) for entry in self.challengers.models]

    def topic_names(self) -> list[str]:
        """Every topic a run with this config reads or writes, in creation order.

        ``[topics]`` events, labels, predictions and deadletter, then ``[labels] request_topic``
        when ``[labels] request_budget > 0`` (only then does riverbed publish label requests).
        ``riverbed topics create`` creates exactly these, like ``riverbed run``.

        >>> load_config(None, env={}).topic_names()
        ['events', 'labels', 'predictions', 'deadletter']
        >>> load_config(None, env={"RIVERBED_LABELS_REQUEST_BUDGET": "10"}).topic_names()[-1]
        'label-requests'
        """
        t = self.topics
        names = [t.events, t.labels, t.predictions, t.deadletter]
        if self.labels.request_budget > 0:
            names.append(self.labels.request_topic)
        return names


def model_name_of(entry: Mapping[str, Any]) -> str:
    """The name a ``[model]`` table or ``[[challengers.models]]`` entry goes by.

    Its ``name``, or else the last part of its ``preset`` (the factory of a ``module:factory`` spec).

    >>> model_name_of({"name": "", "preset": "mymodels:fast"}), model_name_of({"name": "b", "preset": "logreg"})
    ('fast', 'b')
    """
    return entry.get("name") or entry["preset"].rsplit(":", 1)[-1]


def resolve_metrics(model: Mapping[str, Any]) -> list[str]:
    """The metric names of a ``[model]`` table: its ``metrics``, or its task's defaults when empty."""
    return list(model["metrics"]) or list(TASK_METRICS[model["task"]])


def _type_name(value: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list"}[
        type(value)
    ]


def _coerce(section: str, key: str, value: Any, where: str) -> Any:
    default = DEFAULTS[section][key]
    expected = type(default)
    if expected is float and type(value) is int:
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(
            f"{where}: [{section}] {key} = {value!r} must be {_type_name(default)} "
            f"(default: {default!r})"
        )
    table_keys = TABLE_LISTS.get((section, key))
    if table_keys is not None:
        return [_coerce_table(section, key, index, item, table_keys, where) for index, item in enumerate(value)]
    if expected is list and not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: [{section}] {key} must be a list of strings, got {value!r}")
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(
            f"{where}: [{section}] {key} = {value!r} is not one of {', '.join(choices)}"
        )
    if (section, key) in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where}: [{section}] {key} = {value!r} must not be negative")
    return value


def _coerce_table(section: str, key: str, index: int, item: Any, keys: Mapping[str, tuple[type, bool]],
                  where: str) -> dict[str, Any]:
    """One entry of a list of tables (``[[section.key]]``), checked key by key."""
    name = f"[[{section}.{key}]] entry {index + 1}"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: {name} must be a table with keys {', '.join(keys)}, got {item!r}")
    for k, v in item.items():
        if k not in keys:
            raise ConfigError(f"{where}: {name} has unknown key {k!r}; known keys: {', '.join(keys)}")
        if type(v) is not keys[k][0] or (isinstance(v, str) and not v):
            raise ConfigError(f"{where}: {name} {k} = {v!r} must be a non-empty string")
    for k, (_, required) in keys.items():
        if required and k not in item:
            raise ConfigError(f"{where}: {name} needs a {k!r} key")
    return dict(item)


def _validate(values: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    result = copy.deepcopy(DEFAULTS)
    for section, table in values.items():
        if section not in DEFAULTS:
            raise ConfigError(
                f"{where}: unknown section [{section}]; known sections: {', '.join(DEFAULTS)}"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table of keys")
        for key, value in table.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"{where}: unknown key {key!r} in [{section}]; "
                    f"known keys: {', '.join(DEFAULTS[section])}"
                )
            result[section][key] = _coerce(section, key, value, where)
    if result["state"]["checkpoint_interval_s"] == 0:
        raise ConfigError(f"{where}: [state] checkpoint_interval_s must be greater than 0")
    if result["state"]["keep"] < 1:
        raise ConfigError(f"{where}: [state] keep must be at least 1")
    if not 10 <= result["output"]["transaction_interval_ms"] <= 30_000:
        raise ConfigError(
            f"{where}: [output] transaction_interval_ms must be between 10 and 30000 "
            f"(got {result['output']['transaction_interval_ms']}); 100 is a good start"
        )
    if result["kafka"]["partitions"] < 1:
        raise ConfigError(f"{where}: [kafka] partitions must be at least 1")
    scale = result["scale"]
    if scale["snapshot_every_labels"] < 1 or scale["snapshot_interval_s"] <= 0:
        raise ConfigError(f"{where}: [scale] snapshot_every_labels must be at least 1 and snapshot_interval_s "
                          "greater than 0 (a snapshot goes out at whichever comes first)")
    if scale["trainer_max_wait_ms"] < 0:
        raise ConfigError(f"{where}: [scale] trainer_max_wait_ms must be 0 or more (30000 covers a scorer failover)")
    if not 1024 <= scale["snapshot_chunk_bytes"] <= 16 * 1024 * 1024:
        raise ConfigError(f"{where}: [scale] snapshot_chunk_bytes must be between 1024 and 16777216 "
                          f"(got {scale['snapshot_chunk_bytes']}); keep it under the broker's message.max.bytes")
    _validate_labels(result["model"], where)
    _validate_learners(result, where)
    return result


def _validate_labels(model: Mapping[str, Any], where: str) -> None:
    """[model] positive_label / negative_label: both or neither, two different strings, binary tasks only."""
    positive, negative = model["positive_label"], model["negative_label"]
    if not positive and not negative:
        return
    if model["task"] != "binary":
        raise ConfigError(f"{where}: [model] positive_label and negative_label name the two classes of a binary task; "
                          f"leave them empty for task {model['task']!r}")
    if not positive or not negative:
        raise ConfigError(f"{where}: [model] positive_label and negative_label go together: set both "
                          "(the label strings of your two classes) or neither")
    if positive == negative:
        raise ConfigError(f"{where}: [model] positive_label and negative_label are both {positive!r}; "
                          "name two different classes")


def _validate_learners(result: dict[str, dict[str, Any]], where: str) -> None:
    """Cross-key checks of [model] window, [drift] and [challengers]."""
    model, drift, challengers = result["model"], result["drift"], result["challengers"]
    if model["window"] < 1:
        raise ConfigError(f"{where}: [model] window must be at least 1 (labels in the rolling window)")
    for key, allowed in (("detector", DETECTOR_NAMES), ("input_detector", INPUT_DETECTOR_NAMES)):
        value = drift[key]
        if value not in allowed and ":" not in value:
            raise ConfigError(f"{where}: [drift] {key} = {value!r} is not one of {', '.join(allowed)} "
                              "(or a 'package.module:factory' spec)")
    if drift["detector"] in ("ddm", "eddm", "hddm_a", "hddm_w") and model["task"] == "regression":
        raise ConfigError(f"{where}: [drift] detector = {drift['detector']!r} watches 0/1 errors of a classifier; "
                          "for regression use adwin, page_hinkley or kswin")
    metrics = resolve_metrics(model)
    if challengers["metric"] and challengers["metric"] not in metrics:
        defaults = "" if model["metrics"] else f", the defaults of task {model['task']!r}"
        raise ConfigError(f"{where}: [challengers] metric = {challengers['metric']!r} is not one of [model] metrics "
                          f"({', '.join(metrics)}{defaults}); add it there or leave it empty for the first one")
    if challengers["min_labels"] < 1:
        raise ConfigError(f"{where}: [challengers] min_labels must be at least 1")
    seen = {model_name_of(model)}
    for index, entry in enumerate(challengers["models"]):
        name = model_name_of(entry)
        if "~" in name:
            raise ConfigError(f"{where}: [[challengers.models]] entry {index + 1} name {name!r} must not contain '~' "
                              "(reserved for challengers started by drift)")
        if name in seen:
            raise ConfigError(f"{where}: [[challengers.models]] entry {index + 1} is named {name!r} like another model; "
                              "give it a unique name = \"...\"")
        seen.add(name)


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SSL_FILE_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _validate_security(result: Mapping[str, Mapping[str, Any]], where: str, env: Mapping[str, str] | None) -> None:
    """Cross-key checks of the [kafka] security keys (and [broker] security, which logs in with them).

    The password itself is never part of the config: it comes from ``$RIVERBED_KAFKA_SASL_PASSWORD``
    or the file named by ``sasl_password_file``; here only its source is checked (not at all when
    ``env`` is None: :func:`stream.connect.security.read_sasl_password` refuses a missing one).
    """
    kafka = result["kafka"]
    protocol = kafka["security_protocol"]
    needs_sasl = protocol.startswith("SASL_") or result["broker"]["security"] == "sasl_ssl"
    mechanism = kafka["sasl_mechanism"]
    if mechanism and mechanism not in SASL_MECHANISMS:
        raise ConfigError(f"{where}: [kafka] sasl_mechanism = {mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
    if needs_sasl:
        why = (f"security_protocol = {protocol!r}" if protocol.startswith("SASL_")
               else "[broker] security = 'sasl_ssl'")
        if not mechanism:
            raise ConfigError(f"{where}: [kafka] {why} needs [kafka] sasl_mechanism ({', '.join(SASL_MECHANISMS)})")
        if not kafka["sasl_username"]:
            raise ConfigError(f"{where}: [kafka] {why} needs [kafka] sasl_username")
        if env is not None and not env.get(SASL_PASSWORD_ENV) and not kafka["sasl_password_file"]:
            raise ConfigError(f"{where}: [kafka] {why} needs a password: set {SASL_PASSWORD_ENV} or "
                              "[kafka] sasl_password_file (never the config file itself)")
    for key in ("sasl_password_file", *SSL_FILE_KEYS):
        _check_readable(kafka[key], key, where)
    if kafka["ssl_keyfile"] and not kafka["ssl_certfile"]:
        raise ConfigError(f"{where}: [kafka] ssl_keyfile is set without ssl_certfile; set the client certificate too")


def _check_readable(path: str, key: str, where: str) -> None:
    """A one-line ConfigError unless ``path`` (when set) is a readable file."""
    if not path:
        return
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{where}: [kafka] {key} = {path!r} does not exist or is not a file; fix the path")
    if not os.access(file, os.R_OK):
        raise ConfigError(f"{where}: [kafka] {key} = {path!r} is not readable by this user; fix its permissions")


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The ``RIVERBED_<SECTION>_<KEY>`` variables of ``env`` as nested config values."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        for section in DEFAULTS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                if key not in DEFAULTS[section]:
                    raise ConfigError(
                        f"environment: {name} names no key of [{section}]; "
                        f"known keys: {', '.join(DEFAULTS[section])}"
                    )
                value = raw if isinstance(DEFAULTS[section][key], str) else _parse_env_value(raw)
                overrides.setdefault(section, {})[key] = value
                break
    return overrides


def load_config(path: str | os.PathLike | None, env: Mapping[str, str] | None = None) -> Config:
    """Load defaults, then ``path`` (or ``$RIVERBED_CONFIG``), then environment overrides."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    values: dict[str, dict[str, Any]] = {}
    source = "defaults"
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"config file {str(file)!r} does not exist; pass an existing file with --config "
                "or unset RIVERBED_CONFIG"
            ) from None
        except OSError as exc:
            raise ConfigError(f"config file {str(file)!r} cannot be read: {exc.strerror}") from exc
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(file)!r} is not valid TOML: {exc}") from exc
        values = _validate(values, str(file))
        source = str(file)
    merged = _validate(values, source)
    overrides = env_overrides(env)
    if overrides:
        for section, table in overrides.items():
            merged[section].update(table)
        merged = _validate(merged, "environment")
    _validate_security(merged, f"{source} + environment" if overrides else source, env)
    return Config(merged, source)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(config: Config) -> str:
    """The whole configuration as a TOML document that :func:`load_config` reads back."""
    lines: list[str] = []
    for section, table in config.as_dict().items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
        lines.append("")
    return "\n".join(lines)
