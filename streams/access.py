"""The start-up check of the credentials for Kafka and Redis (``ats worker``, ``ats api``, ``ats up``).

A wrong password, an unknown SASL mechanism or a certificate that does not verify is a configuration
error: the command says so in one line and exits with status 2, instead of a retry loop that never
ends or a traceback from deep inside a client library (aiokafka reports a refused SASL login only as
"Unable to bootstrap"). A server that does not answer is *not* an error here: the processes start
anyway and wait for it, as they always have (the API answers 503 meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import redis
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

import cacheclient
from availability.connections import kafka_options
from availability.settings import Settings, mask_url

log = logging.getLogger(__name__)

_SASL_REFUSED = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)


class AccessDenied(Exception):
    """Kafka or Redis refused the configured credentials (the message says which and how to fix it)."""


async def check_kafka(settings: Settings, *, wait_seconds: float = 10.0) -> bool:
    """Log in to the first bootstrap server that answers; True if one did. Raises :class:`AccessDenied`
    when a server refuses the login or its certificate; False when none answered."""
    protocol = settings.kafka_security_protocol
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(wait_seconds * 1000), **kafka_options(settings)),
                wait_seconds)
        except _SASL_REFUSED as exc:
            raise AccessDenied(
                f"Kafka at {server} refused the SASL login of user {settings.kafka_sasl_username!r} "
                f"({settings.kafka_sasl_mechanism} over {protocol}): {exc}. Check ATS_KAFKA_SASL_USERNAME, "
                "ATS_KAFKA_SASL_PASSWORD(_FILE) and ATS_KAFKA_SASL_MECHANISM") from None
        except ssl.SSLError as exc:
            raise AccessDenied(
                f"TLS to Kafka at {server} failed ({protocol}): {exc.reason or exc}. Check ATS_KAFKA_SSL_CAFILE, "
                "ATS_KAFKA_SSL_CERTFILE/KEYFILE, and that the listener speaks TLS") from None
        except KafkaConnectionError as exc:
            log.warning("Kafka at %s closed the connection during the %s handshake (%s): the listener may expect "
                        "another ATS_KAFKA_SECURITY_PROTOCOL, or a client certificate", server, protocol, exc)
            continue
        except (OSError, TimeoutError, KafkaError) as exc:
            log.warning("Kafka at %s does not answer yet: %s", server, exc)
            continue
        conn.close()
        return True
    return False


def check_redis(settings: Settings, *, timeout: float = 5.0) -> bool:
    """PING Redis with the configured password and TLS; True if it answered. Raises
    :class:`AccessDenied` on a refused password or a failed certificate check; False when unreachable."""
    url = settings.redis_url
    if url is None:
        return False
    client = None
    try:  # a cluster client asks its seed node for the slot map as it is made
        client = cacheclient.connect_sync(settings, socket_timeout=timeout, socket_connect_timeout=timeout)
        client.ping()
    except redis.AuthenticationError as exc:
        raise AccessDenied(f"Redis at {mask_url(url)} refused the password: {str(exc).rstrip('.')}. "
                           "Check the password in ATS_REDIS_URL or ATS_REDIS_PASSWORD_FILE") from None
    except redis.ResponseError as exc:
        raise AccessDenied(f"Redis at {mask_url(url)} refused the connection: {exc}") from None
    except (redis.ConnectionError, redis.exceptions.RedisClusterException, OSError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in str(exc):
            raise AccessDenied(f"TLS to Redis at {mask_url(url)} failed: {exc}. Check ATS_REDIS_SSL_CAFILE and "
                               "that the server speaks TLS (rediss://)") from None
        log.warning("Redis at %s does not answer yet: %s", mask_url(url), exc)
        return False
    finally:
        if client is not None:
            client.close()
    return True
