"""Stratum over TLS (`stratum+ssl://`, `stratum+tcps://`): the server's SSL context.

Builds it from the operator's PEM certificate chain and private key, naming the file (and the
config key) in every error: missing, unreadable, not PEM, or a key that does not match the
certificate. Imports only the standard library.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    """A certificate or key the operator named cannot be used; the message says which file."""


def _read(path: Path, key: str, marker: str, what: str) -> None:
    if not path.exists():
        raise TlsConfigError(f"stratum.{key}: {path} does not exist")
    if not path.is_file():
        raise TlsConfigError(f"stratum.{key}: {path} is not a file")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"stratum.{key}: cannot read {path}: {exc.strerror}") from None
    if marker.encode() not in text:
        raise TlsConfigError(f"stratum.{key}: {path} holds no PEM {what} (no '{marker}' line)")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or newer) for the stratum listener."""
    _read(cert, "tls_cert", "-----BEGIN CERTIFICATE-----", "certificate")
    _read(key, "tls_key", "PRIVATE KEY-----", "private key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsConfigError(
                f"stratum.tls_key: the key in {key} does not match the certificate in {cert}"
            ) from None
        raise TlsConfigError(
            f"stratum.tls_cert/tls_key: cannot load {cert} with key {key}: {exc.reason or exc}"
        ) from None
    return ctx
