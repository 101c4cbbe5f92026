"""The TLS material and the SASL login of a ``[broker] security = "sasl_ssl"`` local broker.

:class:`BrokerLogin` is the broker's one user and where its TLS files are;
:func:`sasl_ssl_settings` its listener, TLS and JAAS settings in ``server.properties``;
:func:`ensure_tls_material` makes its CA and server keystore once with ``openssl``;
:func:`_write_private` writes the files that hold the password (mode 0600).

Security
--------
``[broker] security = "plaintext"`` (the default) has one PLAINTEXT listener on ``[broker] port``.
``"sasl_ssl"`` replaces it with a SASL_SSL listener (SCRAM-SHA-512 and PLAIN; the broker's own
inter-broker traffic uses it too) with a PEM keystore from ``tls/``; the controller listener stays
PLAINTEXT on loopback. The one user is ``[kafka] sasl_username`` with the password of
``$RIVERBED_KAFKA_SASL_PASSWORD`` or ``[kafka] sasl_password_file``: its SCRAM credential is added
when the storage is formatted (through a ``java @argfile`` of mode 0600, deleted afterwards, so
the password is in no process's argument list), and the JAAS lines that hold it are in
``server.properties``, written with mode 0600. A directory formatted without SASL keeps no
credential: give a sasl_ssl broker its own ``[broker] dir``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from stream.connect.security import Secret
from stream.errors import BrokerError
from stream.devtools.broker_paths import HOST

logger = logging.getLogger(__name__)


# -- SASL login ---------------------------------------------------------------------------------


class BrokerLogin:
    """The SASL_SSL side of a local broker: its TLS files and its one SCRAM/PLAIN user.

    ``repr`` never shows the password.
    """

    def __init__(self, tls_dir: Path, username: str, password: Secret):
        self.tls_dir = tls_dir
        self.username = username
        self.password = Secret(password)

    def __repr__(self) -> str:
        return f"BrokerLogin({str(self.tls_dir)!r}, user={self.username!r})"

    @property
    def ca_path(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def keystore_path(self) -> Path:
        return self.tls_dir / "server.pem"

    def client_settings(self) -> dict:
        """kafka-python settings that log in to this broker (SCRAM-SHA-512, trusting ``ca.pem``)."""
        return {"security_protocol": "SASL_SSL", "ssl_cafile": str(self.ca_path), "ssl_check_hostname": True,
                "sasl_mechanism": SCRAM_MECHANISM, "sasl_plain_username": self.username,
                "sasl_plain_password": self.password}


SCRAM_MECHANISM = "SCRAM-SHA-512"
#: Characters a local broker's user name and password may use: they go unquoted into JAAS lines,
#: the StorageTool's ``--add-scram`` value and a java argument file.
_LOGIN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+-]+")


def _jaas(module: str, login: BrokerLogin, *extra: str) -> str:
    return (f"org.apache.kafka.common.security.{module} required "
            f'username="{login.username}" password="{login.password}"{"".join(extra)};')


def sasl_ssl_settings(port: int, login: BrokerLogin) -> dict[str, str]:
    """The listener, TLS and SASL settings of a ``[broker] security = "sasl_ssl"`` broker."""
    return {
        "listeners": f"SASL_SSL://{HOST}:{port}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},PLAIN",
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(login.keystore_path),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(login.ca_path),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas("scram.ScramLoginModule", login),
        "listener.name.sasl_ssl.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", login, f' user_{login.username}="{login.password}"'),
    }


# -- TLS material -------------------------------------------------------------------------------

OPENSSL_HINT = "install openssl (Debian: apt-get install openssl); the sasl_ssl broker makes its certificates with it"
CERT_DAYS = 3650


def _openssl(*arguments: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError(f"openssl not found: {OPENSSL_HINT}")
    result = subprocess.run([openssl, *arguments], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no error printed"])[-1]
        raise BrokerError(f"openssl {arguments[0]} failed in {cwd} (exit {result.returncode}): {last}")


def create_ca(directory: Path, name: str = "riverbed local CA") -> tuple[Path, Path]:
    """A self-signed CA in ``directory``: ``(ca.pem, ca.key)`` (RSA 2048, key mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", str(CERT_DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)
    os.chmod(directory / "ca.key", 0o600)
    return directory / "ca.pem", directory / "ca.key"


def create_server_keystore(directory: Path, ca_cert: Path, ca_key: Path) -> Path:
    """``server.pem`` in ``directory``: a PKCS#8 key and a certificate for 127.0.0.1 and localhost signed
    by the CA (Kafka's ``ssl.keystore.type=PEM`` reads both from the one file; mode 0600)."""
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:{HOST},DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n", encoding="utf-8")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", "server.crt", "-days", str(CERT_DAYS), "-extfile", "server.ext", cwd=directory)
    keystore = directory / "server.pem"
    keystore.touch(mode=0o600)
    keystore.write_text((directory / "server.key").read_text() + (directory / "server.crt").read_text())
    for leftover in ("server.key", "server.csr", "server.ext"):
        (directory / leftover).unlink()
    return keystore


def ensure_tls_material(tls_dir: Path) -> None:
    """Make the CA and the server keystore of a sasl_ssl broker once (kept across restarts)."""
    if (tls_dir / "ca.pem").is_file() and (tls_dir / "server.pem").is_file():
        return
    ca_cert, ca_key = create_ca(tls_dir)
    create_server_keystore(tls_dir, ca_cert, ca_key)
    logger.info("made a CA and a server certificate for %s in %s", HOST, tls_dir)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (mode 0600 from the first byte)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
