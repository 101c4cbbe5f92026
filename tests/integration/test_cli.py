"""The CLI as a user meets it: help, one-line errors, broker status, tail."""

from __future__ import annotations

import json
import pickle
import socket
import types

import pytest

from tests.support import fresh_config, riverbed, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_every_command():
    out = riverbed("--help").stdout
    for command in ("run", "broker", "topics", "produce", "tail", "status", "demo"):
        assert command in out
    assert "--exit-when-idle" in riverbed("run", "--help").stdout
    assert "--label-delay" in riverbed("produce", "--help").stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--exit-when-idle", "-3"], "must not be negative"),
        (["produce", "--dataset", "phishing", "--label-fraction", "2"], "between 0 and 1"),
        (["produce"], "one of the arguments --dataset --file is required"),
        (["frobnicate"], "invalid choice"),
        (["produce", "--dataset", "no_such_dataset"], "no_such_dataset"),
        (["produce", "--file", "x.csv"], "--target"),
    ],
)
def test_bad_arguments_get_one_clear_line(args, fragment):
    result = riverbed(*args, check=False, env={"RIVERBED_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode != 0
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_gets_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\npreset = 3\n")
    result = riverbed("status", config=bad, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"riverbed: error: {bad}: [model] preset = 3 must be a string (default: 'logreg')"
    )


def test_unknown_preset_gets_one_clear_line(tmp_path, test_config):
    cfg = test_config.replace(model={"preset": "gradient_magic"}, kafka={"bootstrap_servers": "127.0.0.1:1"},
                              state={"dir": str(tmp_path / "s")})
    result = riverbed("run", config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_status_without_state_says_what_to_do(tmp_path, test_config):
    cfg = test_config.replace(state={"dir": str(tmp_path / "nothing")})
    result = riverbed("status", config=write_config(cfg, tmp_path / "c.toml"), check=False)
    assert result.returncode != 0
    assert "run `riverbed run` first" in result.stderr


def write_checkpoint(cfg, *, key: bytes | None = None, producer_version: str | None = None, damage: bool = False):
    """A trained model set checkpointed into ``[state] dir`` as ``Processor.checkpoint`` does (no Kafka).

    Returns the live model set and the sealed model bytes.
    """
    from state import StateStore, seal
    from stream.devtools.datasets import open_dataset
    from stream.engine.model_bytes import MODEL_FORMAT
    from stream.engine.processor import Processor, build_model_set

    from stream.engine.stream_state import StreamState

    processor = Processor(cfg, serve_metrics=False, serve_http=False)
    models = build_model_set(cfg)
    processor.state = StreamState(models=models, sampler=processor.sampler)
    for i, (x, y) in enumerate(open_dataset("phishing", limit=400).rows):
        models.learn(x, y, models.predict(x, float(i)).record, float(i))
    payload = pickle.dumps({"models": models, "sampler": processor.sampler}, protocol=5)
    blob = seal(payload, producer_version=producer_version or MODEL_FORMAT, key=key)
    if damage:
        blob = blob[:-1] + bytes([blob[-1] ^ 0xFF])
    with StateStore(cfg.state.dir) as store:
        processor.store = store
        store.commit(processor.checkpoint_meta(), blob)
    return models, blob


def model_state_config(test_config, tmp_path):
    return test_config.replace(
        state={"dir": str(tmp_path / "state")},
        model={"preset": "hoeffding_adaptive", "task": "binary", "metrics": ["accuracy", "logloss"]},
    )


def test_checkpoint_meta_computes_no_fingerprints(monkeypatch, tmp_path, test_config):
    """The checkpoint path leaves fingerprints out; the live /status asks for them explicitly."""
    import learners.model_set
    import learners.online_model
    from stream.engine.processor import Processor, build_model_set
    from stream.engine.stream_state import StreamState

    cfg = model_state_config(test_config, tmp_path)
    processor = Processor(cfg, serve_metrics=False, serve_http=False)
    processor.state = StreamState(models=build_model_set(cfg))
    processor.store = types.SimpleNamespace(pending={})
    expected = processor.models.models["hoeffding_adaptive"].fingerprint()
    assert processor.checkpoint_meta(fingerprints=True)["models"]["hoeffding_adaptive"]["fingerprint"] == expected

    def forbidden(model):
        raise AssertionError("a fingerprint was computed")

    monkeypatch.setattr(learners.model_set, "_fingerprint", forbidden)
    monkeypatch.setattr(learners.online_model, "_fingerprint", forbidden)
    meta = processor.checkpoint_meta()
    assert "fingerprint" not in meta["models"]["hoeffding_adaptive"]
    assert meta["models"]["hoeffding_adaptive"]["role"] == "champion"
    with pytest.raises(AssertionError, match="a fingerprint was computed"):
        processor.checkpoint_meta(fingerprints=True)


def read_status_as_user(cfg, config_file, monkeypatch, model_key: str | None = None) -> tuple[dict, str]:
    """``riverbed status --json`` and ``riverbed status`` of ``cfg``, run as a user runs them."""
    env = {} if model_key is None else {"RIVERBED_MODEL_KEY": model_key}
    document = json.loads(riverbed("status", "--json", config=config_file, env=env).stdout)
    human = riverbed("status", config=config_file, env=env)
    assert "Traceback" not in human.stderr
    return document, human.stdout


@pytest.mark.parametrize("key", [None, "s3cret"], ids=["unsigned", "signed"])
def test_status_fingerprints_come_from_the_verified_model_bytes(monkeypatch, tmp_path, test_config, key):
    from state import StateStore, unseal

    cfg = model_state_config(test_config, tmp_path)
    config_file = write_config(cfg, tmp_path / "c.toml")
    live, blob = write_checkpoint(cfg, key=key.encode() if key else None)
    with StateStore(cfg.state.dir, read_only=True) as store:
        assert "fingerprint" not in store.load().meta["models"]["hoeffding_adaptive"]  # not stored: computed on read
    restored = pickle.loads(unseal(blob, key=key.encode() if key else None))["models"]
    expected = restored.models["hoeffding_adaptive"].fingerprint()
    assert expected == restored.describe()["hoeffding_adaptive"]["fingerprint"]
    assert expected == live.models["hoeffding_adaptive"].fingerprint()  # as the live model that was checkpointed

    status, human = read_status_as_user(cfg, config_file, monkeypatch, key)
    model = status["models"]["hoeffding_adaptive"]
    assert model["fingerprint"] == expected and "fingerprint_error" not in model
    assert model["n_learned"] == 400
    assert f"fingerprint {expected}" in human


@pytest.mark.parametrize(
    ("written", "model_key", "fragment"),
    [
        ({"damage": True}, None, "SHA-256"),
        ({"key": b"s3cret"}, "another", "HMAC"),
        ({}, "s3cret", "not signed"),
        ({"producer_version": "riverbed-models 1; river 0.0.1"}, None, "river 0.0.1"),
    ],
    ids=["damaged", "wrong-key", "unsigned-with-key", "other-river"],
)
def test_status_says_why_a_fingerprint_is_unavailable(monkeypatch, tmp_path, test_config, written, model_key, fragment):
    cfg = model_state_config(test_config, tmp_path)
    config_file = write_config(cfg, tmp_path / "c.toml")
    write_checkpoint(cfg, **written)
    status, human = read_status_as_user(cfg, config_file, monkeypatch, model_key)
    model = status["models"]["hoeffding_adaptive"]
    assert model["fingerprint"] is None
    assert "model bytes of checkpoint 1 are refused" in model["fingerprint_error"]
    assert fragment in model["fingerprint_error"]
    assert model["n_learned"] == 400 and status["counts"]["events"] == 0  # the rest of the document is there
    assert "fingerprint unavailable: the model bytes of checkpoint 1 are refused" in human


def test_unreachable_cluster_is_one_line(tmp_path, test_config):
    cfg = test_config.replace(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "request_timeout_s": 5.0})
    result = riverbed("topics", "create", config=write_config(cfg, tmp_path / "c.toml"), check=False, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.broker
def test_broker_status_and_idempotent_start(tmp_path, test_config, broker_bootstrap):
    config_file = write_config(test_config, tmp_path / "c.toml")
    assert riverbed("broker", "status", config=config_file).returncode == 0
    assert "already running" in riverbed("broker", "start", config=config_file).stdout
    nobody = test_config.replace(broker={"port": free_port(), "controller_port": free_port()})
    assert riverbed("broker", "status", config=write_config(nobody, tmp_path / "n.toml"), check=False).returncode == 1


@pytest.mark.broker
def test_topics_create_produce_run_tail(tmp_path, test_config, broker_bootstrap):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state", codec={"output": "json"})
    config_file = write_config(cfg, tmp_path / "c.toml")
    out = riverbed("topics", "create", config=config_file).stdout
    assert out.count("created") == 4
    assert riverbed("topics", "create", config=config_file).stdout.count("exists") == 4
    riverbed("produce", "--dataset", "bananas", "--limit", "50", "--label-delay", "3", "--format", "json",
             "--no-progress", config=config_file)
    riverbed("run", "--exit-when-idle", "1", config=config_file)
    lines = riverbed("tail", "--limit", "5", config=config_file).stdout.splitlines()
    assert len(lines) == 5
    first = json.loads(lines[0])
    assert first["key"] == "bananas-0"
    assert first["value"]["id"] == "bananas-0" and first["value"]["model"] == "logreg"
    human = riverbed("status", config=config_file).stdout
    assert "50 labels learned" in human

    from state import StateStore
    from stream.engine.model_bytes import load_model_state

    with StateStore(cfg.state.dir, read_only=True) as store:
        ckpt = store.load()
    assert "fingerprint" not in ckpt.meta["models"]["logreg"]  # the processor's checkpoints compute none
    status = json.loads(riverbed("status", "--json", config=config_file).stdout)
    restored = load_model_state(ckpt.model_blob)["models"]
    assert status["models"]["logreg"]["fingerprint"] == restored.models["logreg"].fingerprint()
    assert f"fingerprint {restored.models['logreg'].fingerprint()}" in human


@pytest.mark.broker
def test_produce_file_publishes_the_files_ids_times_and_typed_values(tmp_path, test_config, broker_bootstrap):
    cfg = fresh_config(test_config, broker_bootstrap, tmp_path / "state")
    config_file = write_config(cfg, tmp_path / "c.toml")
    data = tmp_path / "clicks.csv"
    data.write_text("id,ts,returning,price,label\n"
                    "order-17,1700000000,TRUE,9.5,true\n"
                    "order-18,2023-11-14T22:13:30Z,false,3,FALSE\n", encoding="utf-8")
    riverbed("produce", "--file", str(data), "--target", "label", "--format", "json", "--no-progress",
             config=config_file)

    def tailed(topic):
        out = riverbed("tail", "--topic", topic, "--limit", "2", config=config_file).stdout
        return [json.loads(line) for line in out.splitlines()]

    events, labels = tailed(cfg.topics.events), tailed(cfg.topics.labels)
    assert [e["key"] for e in events] == ["order-17", "order-18"]
    assert [e["value"] for e in events] == [
        {"id": "order-17", "x": {"returning": True, "price": 9.5}, "ts": 1_700_000_000.0},
        {"id": "order-18", "x": {"returning": False, "price": 3}, "ts": 1_700_000_010.0},
    ]
    assert [(lbl["value"]["id"], lbl["value"]["y"]) for lbl in labels] == [("order-17", True), ("order-18", False)]
    # label delay 0: just after its event, halfway to the next one (the last: --interval-s / 2 after it)
    assert [lbl["value"]["ts"] for lbl in labels] == [1_700_000_005.0, 1_700_000_010.5]
