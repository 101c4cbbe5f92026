"""An integrity header for model bytes.

Model bytes are pickles, and unpickling is code execution. Nothing is unpickled unless
:func:`unseal` has verified it first: the length and SHA-256 always, an HMAC-SHA256 signature
when a key is configured, and the producer version (e.g. ``"river 0.26.1"``) when the caller
asks for one.

Layout (all integers big-endian)::

    offset  size  field
    0       4     magic b"RVBD"
    4       2     format version (u16) = 1
    6       2     flags (u16): bit 0 = HMAC present; other bits must be 0
    8       2     producer_version length n (u16)
    10      n     producer_version, UTF-8
    10+n    8     payload length (u64)
    18+n    32    SHA-256 of the payload
    50+n    32    HMAC-SHA256(key, bytes[0 : 50+n] + payload), only if flag bit 0 is set
    ...           payload

The HMAC covers the whole header before it (so the producer version and length are signed too)
and the payload.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from state.errors import CorruptStateError, IncompatibleStateError

MAGIC = b"RVBD"
FORMAT_VERSION = 1
FLAG_HMAC = 0x0001
_KNOWN_FLAGS = FLAG_HMAC

_PREFIX = struct.Struct(">4sHHH")  # magic, format version, flags, producer_version length
_PAYLOAD_LENGTH = struct.Struct(">Q")
_DIGEST_SIZE = 32

_WHAT_TO_DO = "fall back to an older checkpoint or start from a fresh [state] dir"


def seal(payload: bytes, *, producer_version: str, key: bytes | None = None) -> bytes:
    """Prefix ``payload`` with the integrity header.

    Parameters
    ----------
    payload
        The bytes to protect (typically a pickled model).
    producer_version
        Who produced the payload, e.g. ``"river 0.26.1"``; checked by :func:`unseal` when it is
        given ``expect_version``.
    key
        If given, an HMAC-SHA256 signature with this key is added; :func:`unseal` then needs the
        same key.

    Returns
    -------
    bytes
        Header followed by the payload.

    Raises
    ------
    ValueError
        If the key is empty or ``producer_version`` is longer than 65535 bytes in UTF-8.
    """
    payload = bytes(payload)
    version_bytes = producer_version.encode("utf-8")
    if len(version_bytes) > 0xFFFF:
        raise ValueError("producer_version is longer than 65535 bytes in UTF-8")
    if key is not None and len(key) == 0:
        raise ValueError("the HMAC key is empty: configure a non-empty key or none at all")
    flags = FLAG_HMAC if key is not None else 0
    header = b"".join(
        (
            _PREFIX.pack(MAGIC, FORMAT_VERSION, flags, len(version_bytes)),
            version_bytes,
            _PAYLOAD_LENGTH.pack(len(payload)),
            hashlib.sha256(payload).digest(),
        )
    )
    if key is not None:
        header += _mac(key, header, payload)
    return header + payload


def unseal(blob: bytes, *, expect_version: str | None = None, key: bytes | None = None) -> bytes:
    """Verify ``blob`` and return its payload.

    Checks, in order: magic, format version and flags, that the header is complete, that the
    payload has the declared length, its SHA-256, the HMAC (when ``key`` is given), and the
    producer version (when ``expect_version`` is given).

    Parameters
    ----------
    blob
        Bytes produced by :func:`seal`.
    expect_version
        If given, the producer version the payload must have been written by.
    key
        If given, the blob must carry a valid HMAC-SHA256 made with this key. Without a key an
        HMAC present in the blob is not checked (there is nothing to check it against); the
        SHA-256 still is.

    Returns
    -------
    bytes
        The verified payload.

    Raises
    ------
    ValueError
        If the key is empty.
    CorruptStateError
        Bad magic, truncated header, payload length mismatch, checksum mismatch, HMAC mismatch,
        or an unsigned blob when a key is configured.
    IncompatibleStateError
        Unknown format version or flags, or a producer version other than ``expect_version``.
    """
    if key is not None and len(key) == 0:
        raise ValueError("the HMAC key is empty: configure a non-empty key or none at all")
    view = memoryview(blob)
    if len(view) < _PREFIX.size:
        if bytes(view[:4]) != MAGIC[: len(view[:4])]:
            raise _bad_magic(view)
        raise CorruptStateError(
            f"model bytes are truncated: {len(view)} bytes is shorter than the "
            f"{_PREFIX.size}-byte header start; {_WHAT_TO_DO}"
        )
    magic, format_version, flags, version_length = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise _bad_magic(view)
    if format_version != FORMAT_VERSION:
        raise IncompatibleStateError(
            f"model bytes use sealed format version {format_version} but this riverbed reads "
            f"version {FORMAT_VERSION}: run the riverbed version that wrote them, or start from a "
            f"fresh [state] dir"
        )
    if flags & ~_KNOWN_FLAGS:
        raise IncompatibleStateError(
            f"model bytes carry unknown header flags 0x{flags:04x} (a newer riverbed wrote them): "
            f"run that riverbed version, or start from a fresh [state] dir"
        )
    has_mac = bool(flags & FLAG_HMAC)

    offset = _PREFIX.size
    header_end = offset + version_length + _PAYLOAD_LENGTH.size + _DIGEST_SIZE
    digest_end = header_end
    if has_mac:
        header_end += _DIGEST_SIZE
    if len(view) < header_end:
        raise CorruptStateError(
            f"model bytes are truncated inside the header ({len(view)} of at least {header_end} "
            f"bytes); {_WHAT_TO_DO}"
        )
    try:
        producer_version = bytes(view[offset : offset + version_length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStateError(
            f"model bytes have an undecodable producer version ({exc}); {_WHAT_TO_DO}"
        ) from None
    offset += version_length
    (declared_length,) = _PAYLOAD_LENGTH.unpack_from(view, offset)
    offset += _PAYLOAD_LENGTH.size
    expected_sha = bytes(view[offset : offset + _DIGEST_SIZE])
    offset += _DIGEST_SIZE
    stored_mac = bytes(view[offset:header_end]) if has_mac else b""

    payload = view[header_end:]
    if len(payload) != declared_length:
        kind = "truncated" if len(payload) < declared_length else "padded with extra bytes"
        raise CorruptStateError(
            f"model bytes are {kind}: the header declares a {declared_length}-byte payload but "
            f"{len(payload)} bytes follow it; {_WHAT_TO_DO}"
        )
    if not hmac.compare_digest(hashlib.sha256(payload).digest(), expected_sha):
        raise CorruptStateError(
            f"model bytes fail their SHA-256 checksum (the payload was damaged after it was "
            f"written); {_WHAT_TO_DO}"
        )
    if key is not None:
        if not has_mac:
            raise CorruptStateError(
                "model bytes are not signed but an HMAC key is configured: refusing to unpickle "
                "unsigned bytes; use the key they were written with (none), or start from a "
                "fresh [state] dir"
            )
        expected_mac = _mac(key, view[:digest_end], payload)
        if not hmac.compare_digest(expected_mac, stored_mac):
            raise CorruptStateError(
                "model bytes fail their HMAC-SHA256 signature: they were signed with another key "
                "or altered after signing; configure the key they were written with, or start "
                "from a fresh [state] dir"
            )
    if expect_version is not None and producer_version != expect_version:
        raise IncompatibleStateError(
            f"model bytes were written by {producer_version} but this is {expect_version}: "
            f"install the same version or start from a fresh [state] dir"
        )
    return bytes(payload)


def _mac(key: bytes, header: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def _bad_magic(view: memoryview) -> CorruptStateError:
    return CorruptStateError(
        f"these are not sealed model bytes (they start with {bytes(view[:4])!r}, not {MAGIC!r}); "
        f"{_WHAT_TO_DO}"
    )
