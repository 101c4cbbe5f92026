"""How riverbed's Kafka clients log in: one place that turns ``[kafka]`` security keys into client settings.

- :func:`aiokafka_security` gives the keyword arguments of ``AIOKafkaConsumer`` /
  ``AIOKafkaProducer`` (the hot path), :func:`kafka_python_security` those of kafka-python's
  ``KafkaConsumer``, ``KafkaProducer`` and ``KafkaAdminClient`` (the tools).
- The SASL password is never part of the config: it is read from ``$RIVERBED_KAFKA_SASL_PASSWORD``
  or the file named by ``[kafka] sasl_password_file`` when the settings are built, and travels
  as a :class:`Secret`, a ``str`` whose ``repr`` is redacted, so that a logged settings dict
  (kafka-python logs its admin client's configuration at DEBUG) shows ``'<redacted>'``.
- :class:`SecuredBootstrap` is a bootstrap string that also carries the kafka-python settings of
  its cluster, so that every tool handed a bootstrap by :func:`stream.connect.bootstrap.ensure_kafka`
  logs in without each call site threading the config through (:func:`carried_security`).
- :func:`diagnose_refusal` words a TLS mismatch (untrusted CA, a TLS listener for a plaintext
  client, a plaintext listener for a TLS client) as one line; :func:`sasl_refused` a failed login.

>>> cfg_env = {"RIVERBED_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RIVERBED_KAFKA_SASL_MECHANISM": "PLAIN",
...            "RIVERBED_KAFKA_SASL_USERNAME": "alice", "RIVERBED_KAFKA_SASL_PASSWORD": "s3cret"}
>>> from stream.config import load_config
>>> settings = kafka_python_security(load_config(None, env=cfg_env), env=cfg_env)
>>> settings
{'security_protocol': 'SASL_PLAINTEXT', 'sasl_mechanism': 'PLAIN', 'sasl_plain_username': 'alice', 'sasl_plain_password': '<redacted>'}
>>> settings["sasl_plain_password"] == "s3cret"
True
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path
from typing import Any, Mapping

from stream.config import SASL_PASSWORD_ENV, Config
from stream.errors import ConfigError, KafkaUnavailableError

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
PROBE_TIMEOUT_S = 5.0


class KafkaSecurityError(KafkaUnavailableError):
    """Kafka answers, but refuses this client's TLS or SASL settings (or they do not match the listener)."""


class Secret(str):
    """A secret string: equal to and usable as its value, but ``repr`` (and so logged dicts) hide it.

    >>> password = Secret("hunter2")
    >>> password == "hunter2", repr(password), f"{[password]}"
    (True, "'<redacted>'", "['<redacted>']")
    """

    def __repr__(self) -> str:
        return "'<redacted>'"


class SecuredBootstrap(str):
    """A bootstrap string (``"host:port,..."``) that carries the kafka-python settings of its cluster.

    >>> bootstrap = SecuredBootstrap("kafka:9093", {"security_protocol": "SSL"})
    >>> bootstrap, carried_security(bootstrap), carried_security("kafka:9092")
    (SecuredBootstrap('kafka:9093', SSL), {'security_protocol': 'SSL'}, {})
    """

    kafka_python: dict[str, Any]

    def __new__(cls, servers: str, kafka_python: Mapping[str, Any]) -> "SecuredBootstrap":
        bootstrap = super().__new__(cls, servers)
        bootstrap.kafka_python = dict(kafka_python)
        return bootstrap

    def __repr__(self) -> str:
        return f"SecuredBootstrap({str(self)!r}, {self.kafka_python.get('security_protocol', 'PLAINTEXT')})"


def secured_bootstrap(servers: str, config: Config) -> SecuredBootstrap:
    """``servers`` with the kafka-python settings of ``config`` attached (the password is read now)."""
    return SecuredBootstrap(servers, kafka_python_security(config))


def carried_security(bootstrap: str) -> dict[str, Any]:
    """The kafka-python settings a :class:`SecuredBootstrap` carries; ``{}`` for a plain string."""
    return dict(getattr(bootstrap, "kafka_python", {}))


def read_sasl_password(config: Config, env: Mapping[str, str] | None = None) -> Secret:
    """The SASL password: ``$RIVERBED_KAFKA_SASL_PASSWORD``, else the first line of ``[kafka] sasl_password_file``.

    Raises
    ------
    ConfigError
        When neither is set, or the file cannot be read or is empty.
    """
    env = os.environ if env is None else env
    if env.get(SASL_PASSWORD_ENV):
        return Secret(env[SASL_PASSWORD_ENV])
    path = config.kafka.sasl_password_file
    if not path:
        raise ConfigError(f"[kafka] security_protocol = {config.kafka.security_protocol!r} needs a password: set "
                          f"{SASL_PASSWORD_ENV} or [kafka] sasl_password_file")
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"[kafka] sasl_password_file = {path!r} cannot be read ({exc.strerror}); "
                          "fix the path or its permissions") from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise ConfigError(f"[kafka] sasl_password_file = {path!r} is empty; write the password on its first line")
    return Secret(password)


def _sasl_settings(config: Config, env: Mapping[str, str] | None) -> dict[str, Any]:
    kafka = config.kafka
    if not kafka.security_protocol.startswith("SASL_"):
        return {}
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": read_sasl_password(config, env),
    }


def _optional_path(value: str) -> str | None:
    return str(Path(value).expanduser()) if value else None


def kafka_python_security(config: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (``KafkaConsumer``, ``KafkaProducer``, ``KafkaAdminClient``).

    Only the keys that apply to ``[kafka] security_protocol`` are present, so a plaintext config
    gives ``{"security_protocol": "PLAINTEXT"}``.
    """
    kafka = config.kafka
    settings: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in TLS_PROTOCOLS:
        settings.update(
            ssl_cafile=_optional_path(kafka.ssl_cafile),
            ssl_certfile=_optional_path(kafka.ssl_certfile),
            ssl_keyfile=_optional_path(kafka.ssl_keyfile),
            ssl_check_hostname=kafka.ssl_check_hostname,
        )
    settings.update(_sasl_settings(config, env))
    return settings


def aiokafka_security(config: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer`` / ``AIOKafkaProducer``.

    TLS goes through one ``ssl.SSLContext`` built by ``aiokafka.helpers.create_ssl_context``
    (CA, optional client certificate); ``[kafka] ssl_check_hostname`` is set on it.
    """
    kafka = config.kafka
    settings: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in TLS_PROTOCOLS:
        settings["ssl_context"] = _aiokafka_ssl_context(config)
    settings.update(_sasl_settings(config, env))
    return settings


def _aiokafka_ssl_context(config: Config) -> ssl.SSLContext:
    from aiokafka.helpers import create_ssl_context

    kafka = config.kafka
    context = create_ssl_context(
        cafile=_optional_path(kafka.ssl_cafile),
        certfile=_optional_path(kafka.ssl_certfile),
        keyfile=_optional_path(kafka.ssl_keyfile),
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


# -- wording refusals ------------------------------------------------------------------------------


def describe_login(settings: Mapping[str, Any]) -> str:
    """``user 'alice' (SCRAM-SHA-512)`` for SASL settings, ``''`` without SASL."""
    if not settings.get("sasl_mechanism"):
        return ""
    return f"user {settings.get('sasl_plain_username')!r} ({settings['sasl_mechanism']})"


def sasl_refused(bootstrap: str, settings: Mapping[str, Any], reason: str = "") -> KafkaSecurityError:
    """The one-line error for a SASL login the broker refused."""
    detail = f" ({reason})" if reason else ""
    return KafkaSecurityError(
        f"Kafka at {bootstrap} refused the SASL login for {describe_login(settings) or 'this client'}{detail}: "
        f"check [kafka] sasl_username, sasl_mechanism and {SASL_PASSWORD_ENV} (or sasl_password_file)"
    )


def sasl_login_problem(host: str, port: int, config: Config,
                       timeout_s: float = PROBE_TIMEOUT_S) -> KafkaSecurityError | None:
    """Log in once with aiokafka's connection (it raises on a refused SASL login, where kafka-python's
    bootstrap only retries until its timeout); the refusal as one line, else ``None``."""
    if not config.kafka.security_protocol.startswith("SASL_"):
        return None
    from aiokafka.conn import create_conn
    from aiokafka.errors import SaslAuthenticationFailed

    settings = aiokafka_security(config)

    async def log_in() -> None:
        connection = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **settings), timeout_s)
        connection.close()

    try:
        asyncio.run(log_in())
    except SaslAuthenticationFailed as exc:
        return sasl_refused(f"{host}:{port}", kafka_python_security(config), _short_reason(str(exc)))
    except Exception:  # noqa: BLE001 - anything else is not a refused login; the caller words it
        return None
    return None


def _short_reason(message: str) -> str:
    """The broker's reason without the mechanism it repeats, e.g. ``invalid credentials``."""
    found = message.partition(" due to ")[2].partition(" with SASL mechanism")[0]
    return found or message[:120]


def _tls_handshake(host: str, port: int, context: ssl.SSLContext, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        with context.wrap_socket(raw, server_hostname=host):
            pass


def _client_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.get("ssl_cafile"))
    if settings.get("ssl_certfile"):
        context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"))
    context.check_hostname = bool(settings.get("ssl_check_hostname", True))
    return context


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificate not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _tls_handshake(host, port, context, timeout_s)
    except (OSError, ssl.SSLError):
        return False
    return True


def diagnose_refusal(host: str, port: int, settings: Mapping[str, Any],
                     timeout_s: float = PROBE_TIMEOUT_S) -> KafkaSecurityError | None:
    """Why a listener that accepts TCP connections refuses these client settings, if TLS explains it.

    A TLS client gets the certificate verification result (untrusted CA, wrong host name) or
    "not a TLS listener"; a plaintext client whose listener completes a TLS handshake gets "the
    listener is TLS". ``None`` when TLS is not the problem.
    """
    where = f"Kafka at {host}:{port}"
    if settings.get("security_protocol", "PLAINTEXT") not in TLS_PROTOCOLS:
        if _speaks_tls(host, port, timeout_s):
            return KafkaSecurityError(
                f"{where} did not answer a plaintext client: the listener is TLS; set [kafka] security_protocol "
                "= \"SSL\" or \"SASL_SSL\" (and ssl_cafile)")
        return None
    try:
        _tls_handshake(host, port, _client_context(settings), timeout_s)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return KafkaSecurityError(
                f"{where} presented a TLS certificate for another host name ({exc.verify_message}): connect by a "
                "name in the certificate or set [kafka] ssl_check_hostname = false")
        return KafkaSecurityError(
            f"{where} presented a TLS certificate this client does not trust ({exc.verify_message}): set "
            "[kafka] ssl_cafile to the CA certificate (PEM) that signed the broker's certificate")
    except ssl.SSLError as exc:
        return KafkaSecurityError(
            f"{where} did not complete a TLS handshake ({exc.reason or exc}): is the listener plaintext? set "
            "[kafka] security_protocol = \"PLAINTEXT\" or \"SASL_PLAINTEXT\"")
    except OSError:
        return None
    return None
