"""Config: defaults, file, environment overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import DEFAULTS, load_config, to_toml
from stream.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_repository_config_toml_documents_exactly_the_defaults():
    assert load_config(ROOT / "config.toml", env={}).as_dict() == DEFAULTS


def test_topics_section_has_exactly_the_four_contract_keys():
    assert set(DEFAULTS["topics"]) == {"events", "labels", "predictions", "deadletter"}


def test_file_then_environment_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\npreset = "arf"\ntask = "multiclass"\n[state]\ncheckpoint_interval_s = 2\n')
    cfg = load_config(path, env={"RIVERBED_MODEL_PRESET": "naive_bayes", "RIVERBED_METRICS_PORT": "0",
                                 "RIVERBED_MODEL_METRICS": '["accuracy"]'})
    assert cfg.model.preset == "naive_bayes"
    assert cfg.model.task == "multiclass"
    assert cfg.state.checkpoint_interval_s == 2.0
    assert cfg.metrics.port == 0
    assert cfg.model.metrics == ["accuracy"]


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[topics]\nevents = "in"\n')
    assert load_config(None, env={"RIVERBED_CONFIG": str(path)}).topics.events == "in"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[modle]\npreset = 'x'\n", "unknown section [modle]"),
        ("[model]\npresett = 'x'\n", "unknown key 'presett' in [model]"),
        ("[metrics]\nport = 'abc'\n", "[metrics] port = 'abc' must be an integer"),
        ("[codec]\noutput = 'xml'\n", "is not one of msgpack, json"),
        ("[state]\ncheckpoint_interval_s = -1\n", "must not be negative"),
        ("[model]\nmetrics = []\n", "at least one metric"),
        ("not toml at all [", "is not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_file_and_bad_environment_variable(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="RIVERBED_KAFKA_BOOTSTRAP names no key"):
        load_config(None, env={"RIVERBED_KAFKA_BOOTSTRAP": "x"})
    with pytest.raises(ConfigError, match="environment"):
        load_config(None, env={"RIVERBED_METRICS_PORT": "many"})


def test_the_model_key_and_config_path_variables_are_not_settings(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\npreset = \"naive_bayes\"\n")
    cfg = load_config(None, env={"RIVERBED_MODEL_KEY": "s3cret", "RIVERBED_CONFIG": str(path)})
    assert cfg.model.preset == "naive_bayes"
    assert "s3cret" not in to_toml(cfg)


def test_to_toml_round_trips(tmp_path):
    cfg = load_config(None, env={}).replace(model={"metrics": ["mae", "rmse"], "task": "regression"})
    path = tmp_path / "out.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path, env={}).as_dict() == cfg.as_dict()
