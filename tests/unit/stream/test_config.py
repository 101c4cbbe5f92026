"""Config: defaults, file, environment overrides and one-line errors."""

from __future__ import annotations

from tests.support import ROOT


import pytest

from learners import DEFAULT_METRICS, PRESETS, OnlineModel, build_model
from stream.config import DEFAULTS, TASK_METRICS, env_overrides, load_config, to_toml
from stream.errors import ConfigError



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
        ("[model]\npositive_label = 'yes'\n", "go together: set both"),
        ("[model]\npositive_label = 'a'\nnegative_label = 'a'\n", "both 'a'"),
        ("[model]\ntask = 'multiclass'\npreset = 'arf'\npositive_label = 'a'\nnegative_label = 'b'\n",
         "leave them empty for task 'multiclass'"),
        ("[challengers]\nmetric = 'mae'\n", "(accuracy, logloss, rocauc, the defaults of task 'binary')"),
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
    env = {"RIVERBED_MODEL_KEY": "s3cret", "RIVERBED_KAFKA_SASL_PASSWORD": "pw", "RIVERBED_CONFIG": str(path)}
    cfg = load_config(None, env=env)
    assert cfg.model.preset == "naive_bayes" and cfg.source == str(path)
    assert env_overrides(env) == {}


def test_topic_names_are_every_topic_a_run_uses():
    cfg = load_config(None, env={"RIVERBED_TOPICS_EVENTS": "in"})
    assert cfg.topic_names() == ["in", "labels", "predictions", "deadletter"]
    asking = cfg.replace(labels={"request_budget": 5, "request_topic": "ask"})
    assert asking.topic_names() == ["in", "labels", "predictions", "deadletter", "ask"]


def test_a_model_is_named_by_its_name_or_its_presets_last_part():
    cfg = load_config(None, env={"RIVERBED_MODEL_PRESET": "tests.custom_model:scaled_logreg",
                                 "RIVERBED_CHALLENGERS_MODELS": '[{preset = "naive_bayes"}, '
                                                                '{preset = "mod:fast", name = "quick"}]'})
    assert cfg.model_name == "scaled_logreg"
    assert cfg.challenger_specs == [("naive_bayes", "naive_bayes"), ("quick", "mod:fast")]
    assert cfg.replace(model={"name": "champ"}).model_name == "champ"


def test_to_toml_round_trips(tmp_path):
    cfg = load_config(None, env={}).replace(model={"metrics": ["mae", "rmse"], "task": "regression"})
    path = tmp_path / "out.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path, env={}).as_dict() == cfg.as_dict()


def test_empty_metrics_are_the_tasks_defaults_and_follow_a_changed_task():
    assert DEFAULTS["model"]["metrics"] == []
    binary = load_config(None, env={})
    assert binary.metric_names == binary.model.metrics == ["accuracy", "logloss", "rocauc"]
    regression = load_config(None, env={"RIVERBED_MODEL_TASK": "regression", "RIVERBED_MODEL_PRESET": "linreg"})
    assert regression.metric_names == regression.model.metrics == ["mae", "rmse", "r2"]
    assert regression.as_dict()["model"]["metrics"] == []  # what was written: "the task's defaults"
    multiclass = binary.replace(model={"task": "multiclass", "preset": "softmax"})
    assert multiclass.metric_names == ["accuracy", "macro_f1", "cross_entropy"]
    chosen = binary.replace(model={"metrics": ["f1"]})
    assert chosen.metric_names == ["f1"]


def test_the_task_defaults_here_are_the_learners_defaults():
    assert {task: tuple(names) for task, names in TASK_METRICS.items()} == DEFAULT_METRICS


def test_challengers_metric_is_checked_against_the_resolved_metrics():
    cfg = load_config(None, env={"RIVERBED_CHALLENGERS_METRIC": "rocauc"})
    assert cfg.challengers.metric == "rocauc"
    cfg = load_config(None, env={"RIVERBED_MODEL_TASK": "regression", "RIVERBED_MODEL_PRESET": "linreg",
                                 "RIVERBED_CHALLENGERS_METRIC": "rmse"})
    assert cfg.challengers.metric == "rmse"
    with pytest.raises(ConfigError, match="not one of \\[model\\] metrics \\(mae, rmse, r2, the defaults"):
        load_config(None, env={"RIVERBED_MODEL_TASK": "regression", "RIVERBED_MODEL_PRESET": "linreg",
                               "RIVERBED_CHALLENGERS_METRIC": "rocauc"})


def test_binary_class_names_are_read_together():
    cfg = load_config(None, env={"RIVERBED_MODEL_POSITIVE_LABEL": "fraud", "RIVERBED_MODEL_NEGATIVE_LABEL": "ok"})
    assert (cfg.model.positive_label, cfg.model.negative_label) == ("fraud", "ok")
    assert DEFAULTS["model"]["positive_label"] == DEFAULTS["model"]["negative_label"] == ""


@pytest.mark.parametrize("preset, task", [(name, task) for name, spec in PRESETS.items() for task in spec.tasks])
def test_every_preset_builds_with_the_default_metrics_of_each_of_its_tasks(preset, task):
    cfg = load_config(None, env={"RIVERBED_MODEL_TASK": task, "RIVERBED_MODEL_PRESET": preset})
    online = OnlineModel(cfg.model_name, build_model(cfg.model.preset, cfg.model.task), cfg.model.task,
                         cfg.metric_names, cfg.model.window)
    assert list(online.evaluation.metrics) == list(DEFAULT_METRICS[task])
