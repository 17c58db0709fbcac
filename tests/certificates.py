"""A self-signed TLS certificate for loopback (``127.0.0.1`` and ``localhost``), made with ``openssl``.

Tests that need TLS (a Kafka listener, a TLS proxy in front of the cache) use it as the server's
certificate, as the CA bundle clients verify it with, and, on a listener that requires client
certificates, as the client's certificate too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple


class Certificate(NamedTuple):
    certificate: Path
    key: Path


def self_signed(directory: Path, name: str = "loopback") -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS tests need the openssl command line tool")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return Certificate(cert, key)
