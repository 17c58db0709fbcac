"""How every process reaches Kafka and Redis: the client options the settings imply, built in one place.

The worker's Faust app, its log reader, the topic admin, the API's producer and every Redis client take
their security from here, so none of them can be left in plaintext by accident. Standard library only:
the TLS context is an :class:`ssl.SSLContext` loaded from the configured PEM files when a client is
made (at start-up), with certificate and host name verification on.
"""

from __future__ import annotations

import ssl
from typing import Any

from .settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for Kafka (SSL and SASL_SSL), or None when the protocol has no TLS."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (producer, consumer, admin): protocol, TLS, SASL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM credentials under the same two names as PLAIN's.
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_password)
    return options


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url(settings.redis_url, **...)``: the password of
    ``ATS_REDIS_PASSWORD_FILE`` (the settings refuse it beside a URL that has one: redis-py lets the
    URL win) and the CA bundle of a ``rediss://`` URL."""
    options: dict[str, Any] = {}
    if settings.redis_password is not None:
        options["password"] = settings.redis_password
    if settings.redis_ssl_cafile is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    return options
