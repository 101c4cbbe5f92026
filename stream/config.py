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

ENV_PREFIX = "RIVERBED_"
CONFIG_ENV = "RIVERBED_CONFIG"
MODEL_KEY_ENV = "RIVERBED_MODEL_KEY"
NOT_SETTINGS = frozenset({CONFIG_ENV, MODEL_KEY_ENV})
"""``RIVERBED_*`` variables that are not config overrides: the config path and the model's HMAC
key (a secret, read from the environment only and never part of the config)."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "kafka": {
        "bootstrap_servers": "",
        "group_id": "riverbed",
        "client_id": "riverbed",
        "partitions": 1,
        "request_timeout_s": 30.0,
    },
    "broker": {
        "port": 9092,
        "controller_port": 9093,
        "dir": "",
        "kafka_version": "4.1.1",
        "heap_mb": 768,
        "start_timeout_s": 120.0,
    },
    "topics": {
        "events": "events",
        "labels": "labels",
        "predictions": "predictions",
        "deadletter": "deadletter",
    },
    "codec": {
        "output": "msgpack",
        "max_message_bytes": 1_048_576,
    },
    "model": {
        "name": "",
        "preset": "logreg",
        "task": "binary",
        "metrics": [],
        "window": 1000,
        "positive_label": "",
        "negative_label": "",
    },
    "drift": {
        "detector": "adwin",
        "input_detector": "adwin",
        "max_features": 10,
        "error_action": "alert",
        "score_action": "alert",
        "feature_action": "alert",
    },
    "challengers": {
        "publish": False,
        "metric": "",
        "margin": 0.02,
        "min_labels": 500,
        "models": [],
    },
    "labels": {
        "ttl_s": 604_800.0,
        "request_budget": 0,
        "request_window_s": 86_400.0,
        "request_strategy": "entropy",
        "request_topic": "label-requests",
    },
    "features": {
        "transform": "",
    },
    "state": {
        "dir": "riverbed-state",
        "checkpoint_interval_s": 5.0,
        "keep": 3,
    },
    "processor": {
        "max_batch": 2000,
        "poll_timeout_ms": 100,
        "max_wait_ms": 500,
    },
    "metrics": {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 9108,
    },
    "http": {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 8080,
        "ready_lag": 1000,
    },
    "log": {
        "level": "INFO",
    },
}

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("codec", "output"): ("msgpack", "json"),
    ("model", "task"): ("binary", "multiclass", "regression"),
    ("log", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
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
    ("state", "keep"),
    ("processor", "max_batch"),
    ("processor", "poll_timeout_ms"),
    ("processor", "max_wait_ms"),
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


class Section:
    """Read-only attribute access to one ``[section]`` of the config."""

    def __init__(self, name: str, values: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("config sections are read-only; use Config.replace()")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class Config:
    """The validated configuration, one :class:`Section` per TOML table."""

    def __init__(self, values: Mapping[str, Mapping[str, Any]], source: str = "defaults"):
        self._values = {name: dict(section) for name, section in values.items()}
        self.source = source
        for name, section in self._values.items():
            if name == "model":
                section = {**section, "metrics": resolve_metrics(section)}
            setattr(self, name, Section(name, section))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._values)

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some keys changed, e.g. ``cfg.replace(state={"dir": "/tmp/x"})``."""
        values = self.as_dict()
        for name, changes in sections.items():
            for key, value in changes.items():
                values.setdefault(name, {})[key] = value
        return Config(_validate(values, "override"), self.source)

    @property
    def metric_names(self) -> list[str]:
        """``[model] metrics``, or the task's defaults (:data:`TASK_METRICS`) when it is empty."""
        return list(self.model.metrics)

    @property
    def model_name(self) -> str:
        return self.model.name or self.model.preset.rsplit(":", 1)[-1]

    @property
    def challenger_specs(self) -> list[tuple[str, str]]:
        """``(name, preset)`` of each ``[[challengers.models]]`` entry (name defaults to the preset's)."""
        return [
            (entry.get("name") or entry["preset"].rsplit(":", 1)[-1], entry["preset"])
            for entry in self.challengers.models
        ]


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
    if result["kafka"]["partitions"] < 1:
        raise ConfigError(f"{where}: [kafka] partitions must be at least 1")
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
    champion = model["name"] or model["preset"].rsplit(":", 1)[-1]
    seen = {champion}
    for index, entry in enumerate(challengers["models"]):
        name = entry.get("name") or entry["preset"].rsplit(":", 1)[-1]
        if "~" in name:
            raise ConfigError(f"{where}: [[challengers.models]] entry {index + 1} name {name!r} must not contain '~' "
                              "(reserved for challengers started by drift)")
        if name in seen:
            raise ConfigError(f"{where}: [[challengers.models]] entry {index + 1} is named {name!r} like another model; "
                              "give it a unique name = \"...\"")
        seen.add(name)


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
