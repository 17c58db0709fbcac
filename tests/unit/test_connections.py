"""The client options every Kafka and Redis client is built with (:mod:`availability.connections`)."""

from __future__ import annotations

import ssl
from pathlib import Path

from availability.connections import kafka_options, redis_options
from availability.settings import load_settings
from streams.app import broker_credentials
from tests.certificates import self_signed


def test_plaintext_by_default() -> None:
    settings = load_settings({})
    assert kafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(settings) is None
    assert redis_options(settings) == {}


def test_sasl_over_tls_gives_every_client_the_same_login_and_a_verifying_context(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    settings = load_settings({"ATS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ATS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                              "ATS_KAFKA_SASL_USERNAME": "ats", "ATS_KAFKA_SASL_PASSWORD": "pw",
                              "ATS_KAFKA_SSL_CAFILE": str(tls.certificate)})
    options = kafka_options(settings)
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                       "sasl_plain_username": "ats", "sasl_plain_password": "pw"}
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    faust = broker_credentials(settings)
    assert faust is not None
    assert (faust.protocol.value, faust.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-256")  # type: ignore[attr-defined]
    assert "pw" not in repr(faust)


def test_tls_alone_and_a_client_certificate(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    settings = load_settings({"ATS_KAFKA_SECURITY_PROTOCOL": "SSL", "ATS_KAFKA_SSL_CERTFILE": str(tls.certificate),
                              "ATS_KAFKA_SSL_KEYFILE": str(tls.key)})
    options = kafka_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    credentials = broker_credentials(settings)
    assert credentials is not None
    assert credentials.protocol.value == "SSL"  # type: ignore[attr-defined]


def test_redis_password_file_and_ca(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("cache-secret\n")
    (tmp_path / "ca.pem").write_text("-")
    settings = load_settings({"ATS_REDIS_URL": "rediss://cache:6380/0", "ATS_REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
                              "ATS_REDIS_SSL_CAFILE": str(tmp_path / "ca.pem")})
    assert redis_options(settings) == {"password": "cache-secret", "ssl_ca_certs": str(tmp_path / "ca.pem")}
