"""Secure clusters on the real broker: SASL_SSL with SCRAM-SHA-512, refusals in one line, no leaked password.

A second local broker (``[broker] security = "sasl_ssl"``, ports 19192/19193, its own dir) runs for
this module only, so the plaintext test broker on 19092 keeps running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from river import evaluate

from learners import build_model, river_metric
from stream.config import Config, load_config, to_toml
from stream.connect.security import aiokafka_security, kafka_python_security
from stream.errors import ConfigError
from stream.devtools.broker import LocalBroker, create_ca, ensure_tls_material
from stream.devtools.datasets import open_dataset


PORT, CONTROLLER_PORT = 19192, 19193
USERNAME = "riverbed"
#: Deterministic and distinctive, so that a leak is found by searching for it.
PASSWORD = "pw-" + hashlib.sha256(b"riverbed secure-cluster test").hexdigest()[:24]
SECURE_SERVERS = f"127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory) -> dict:
    """A SASL_SSL broker (SCRAM-SHA-512 user ``riverbed``), its CA and password file; stopped at the end."""
    root = tmp_path_factory.mktemp("secure-broker")
    broker_dir = root / "broker"
    ensure_tls_material(broker_dir / "tls")  # the CA and the server certificate for 127.0.0.1 / localhost
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    cfg = load_config(None, env={}).replace(
        broker={"port": PORT, "controller_port": CONTROLLER_PORT, "dir": str(broker_dir), "security": "sasl_ssl"},
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": USERNAME,
               "sasl_password_file": str(password_file), "ssl_cafile": str(broker_dir / "tls" / "ca.pem")},
    )
    broker = LocalBroker(cfg)
    broker.start()
    try:
        yield {"config": cfg, "broker": broker, "root": root, "ca": broker_dir / "tls" / "ca.pem",
               "password_file": password_file}
    finally:
        broker.stop()


def client_config(secure_broker: dict, tmp_path: Path, log_level: str = "INFO", **kafka) -> Config:
    """A riverbed config for the secure broker (password from the environment), fresh topics and state."""
    suffix = uuid.uuid4().hex[:10]
    return load_config(None, env={"RIVERBED_KAFKA_SASL_PASSWORD": PASSWORD}).replace(
        kafka={"bootstrap_servers": SECURE_SERVERS, "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
               "sasl_username": USERNAME, "ssl_cafile": str(secure_broker["ca"]), "request_timeout_s": 10.0, **kafka},
        topics={name: f"s{suffix}-{name}" for name in ("events", "labels", "predictions", "deadletter")},
        state={"dir": str(tmp_path / "state"), "checkpoint_interval_s": 1.0},
        metrics={"enabled": False},
        http={"enabled": False},
        log={"level": log_level},
    )


def write_config(cfg: Config, path: Path) -> Path:
    path.write_text(to_toml(cfg), encoding="utf-8")
    return path


def cli(*args: str, config: Path, password: str | None = PASSWORD, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real CLI; the password, if any, only in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    if password is not None:
        env["RIVERBED_KAFKA_SASL_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "stream", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


class ArgumentListWatch:
    """Reads every process's ``/proc/<pid>/cmdline`` in the background and remembers the ones holding ``secret``."""

    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "ArgumentListWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    raw = cmdline.read_bytes()
                except OSError:
                    continue
                if self.secret in raw:
                    self.leaks.append(raw.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            self._stop.wait(0.05)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("riverbed: error: "), lines[0]
    return lines[0]


@pytest.mark.broker
def test_parity_with_river_over_sasl_ssl_and_the_password_is_nowhere(secure_broker, tmp_path):
    """`produce`, `run` and `status` through SASL_SSL + SCRAM: exactly River's progressive_val_score;
    the password is in no stderr line, no status document and no process argument list."""
    # DEBUG: riverbed's debug lines and every client line from INFO; the password must be in none
    cfg = client_config(secure_broker, tmp_path, log_level="DEBUG").replace(model={"preset": "logreg", "task": "binary", "metrics": ["rocauc", "accuracy", "logloss"]})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    assert PASSWORD not in config_file.read_text()
    broker_pid = secure_broker["broker"].running_pid()
    assert broker_pid is not None

    with ArgumentListWatch(PASSWORD) as watch:
        produced = cli("produce", "--dataset", "phishing", "--label-delay", "100", "--no-progress", config=config_file)
        assert produced.returncode == 0, produced.stderr[-3000:]
        ran = cli("run", "--exit-when-idle", "1", config=config_file)
        assert ran.returncode == 0, ran.stderr[-3000:]
        status_text = cli("status", "--json", config=config_file)
    assert watch.scans > 0 and watch.leaks == []
    assert PASSWORD.encode() not in Path(f"/proc/{broker_pid}/cmdline").read_bytes()

    for result in (produced, ran, status_text):
        assert PASSWORD not in result.stderr and PASSWORD not in result.stdout
    status = json.loads(status_text.stdout)
    assert PASSWORD not in status_text.stdout
    model = status["models"][status["serving"]]
    assert status["counts"]["events"] == 1250
    assert status["counts"]["joined"] == 1250 == model["n_learned"]
    for name in ("rocauc", "accuracy", "logloss"):
        expected = evaluate.progressive_val_score(
            open_dataset("phishing").rows, build_model("logreg", "binary"), river_metric(name, "binary"), delay=100
        ).get()
        assert model["metrics"][name] == pytest.approx(expected, abs=1e-12), name
    broker_files = secure_broker["broker"].dir
    assert (broker_files / "server.properties").stat().st_mode & 0o077 == 0
    assert not (broker_files / "format.args").exists()


@pytest.mark.broker
def test_wrong_password_is_one_line(secure_broker, tmp_path):
    config_file = write_config(client_config(secure_broker, tmp_path), tmp_path / "riverbed.toml")
    started = time.monotonic()
    result = cli("topics", "create", config=config_file, password="not-" + PASSWORD[4:])
    line = one_error_line(result)
    assert f"Kafka at {SECURE_SERVERS} refused the SASL login for user 'riverbed' (SCRAM-SHA-512)" in line
    assert "RIVERBED_KAFKA_SASL_PASSWORD" in line
    assert PASSWORD[4:] not in result.stderr
    assert time.monotonic() - started < 60


@pytest.mark.broker
def test_plaintext_client_on_the_tls_port_is_one_line(secure_broker, tmp_path):
    cfg = client_config(secure_broker, tmp_path).replace(
        kafka={"security_protocol": "PLAINTEXT", "sasl_mechanism": "", "sasl_username": "", "ssl_cafile": ""})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    started = time.monotonic()
    line = one_error_line(cli("run", "--exit-when-idle", "1", config=config_file, password=None))
    assert "the listener is TLS; set [kafka] security_protocol" in line
    assert time.monotonic() - started < 30  # bounded, not request_timeout_s of retries


@pytest.mark.broker
def test_untrusted_ca_is_one_line(secure_broker, tmp_path):
    other_ca, _ = create_ca(tmp_path / "other-ca", name="not the broker's CA")
    cfg = client_config(secure_broker, tmp_path).replace(kafka={"ssl_cafile": str(other_ca)})
    config_file = write_config(cfg, tmp_path / "riverbed.toml")
    line = one_error_line(cli("produce", "--dataset", "phishing", "--limit", "10", "--no-progress", config=config_file))
    assert f"Kafka at {SECURE_SERVERS} presented a TLS certificate this client does not trust" in line
    assert "set [kafka] ssl_cafile" in line


@pytest.mark.broker
def test_logged_client_settings_show_no_password(secure_broker, tmp_path, caplog):
    """kafka-python logs its admin client's configuration at DEBUG: the password shows as '<redacted>'."""
    from stream.connect.bootstrap import ensure_kafka
    from stream.connect.topics import cluster_info

    caplog.set_level(logging.DEBUG, logger="kafka")
    bootstrap = ensure_kafka(client_config(secure_broker, tmp_path, sasl_password_file=str(secure_broker["password_file"])))
    assert cluster_info(bootstrap) is not None
    logged = [r.getMessage() for r in caplog.records if "KafkaAdminClient with configuration" in r.getMessage()]
    assert logged and all("'sasl_plain_password': '<redacted>'" in line for line in logged)
    assert not any(PASSWORD in record.getMessage() for record in caplog.records)
    assert PASSWORD not in repr(bootstrap) and PASSWORD not in repr(secure_broker["broker"].login)


# -- without a broker: the config rules and the settings built from them ----------------------------


@pytest.mark.parametrize("env, message", [
    ({"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs [kafka] sasl_mechanism"),
    ({"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RIVERBED_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "needs [kafka] sasl_username"),
    ({"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RIVERBED_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
      "RIVERBED_KAFKA_SASL_USERNAME": "u"}, "needs a password: set RIVERBED_KAFKA_SASL_PASSWORD"),
    ({"RIVERBED_KAFKA_SASL_MECHANISM": "GSSAPI"}, "is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"RIVERBED_KAFKA_SECURITY_PROTOCOL": "TLS"}, "is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"RIVERBED_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "does not exist or is not a file"),
    ({"RIVERBED_BROKER_SECURITY": "sasl_ssl"}, "needs [kafka] sasl_mechanism"),
])
def test_security_keys_are_checked_in_one_line(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(None, env=env)
    assert "\n" not in str(raised.value)


def test_the_password_is_no_config_override_and_never_in_the_config():
    env = {"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RIVERBED_KAFKA_SASL_MECHANISM": "PLAIN",
           "RIVERBED_KAFKA_SASL_USERNAME": "u", "RIVERBED_KAFKA_SASL_PASSWORD": PASSWORD}
    cfg = load_config(None, env=env)
    assert PASSWORD not in to_toml(cfg) and PASSWORD not in repr(cfg.as_dict())
    settings = kafka_python_security(cfg, env=env)
    assert settings["sasl_plain_password"] == PASSWORD and PASSWORD not in repr(settings)


def test_settings_for_both_clients(tmp_path):
    ca, _ = create_ca(tmp_path / "ca")
    password_file = tmp_path / "password"
    password_file.write_text("from-the-file\n", encoding="utf-8")
    cfg = load_config(None, env={}).replace(kafka={
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u",
        "sasl_password_file": str(password_file), "ssl_cafile": str(ca), "ssl_check_hostname": False})
    assert kafka_python_security(cfg, env={}) == {
        "security_protocol": "SASL_SSL", "ssl_cafile": str(ca), "ssl_certfile": None, "ssl_keyfile": None,
        "ssl_check_hostname": False, "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u",
        "sasl_plain_password": "from-the-file"}
    aio = aiokafka_security(cfg, env={"RIVERBED_KAFKA_SASL_PASSWORD": "from-the-env"})
    assert aio["sasl_plain_password"] == "from-the-env"  # the environment wins over the file
    assert aio["ssl_context"].check_hostname is False
    assert set(aio) == {"security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
                        "sasl_plain_password"}
    assert kafka_python_security(load_config(None, env={})) == {"security_protocol": "PLAINTEXT"}
