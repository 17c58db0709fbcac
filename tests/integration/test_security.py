"""Kafka SASL and TLS, and a Redis password, end to end against a real Apache Kafka (:mod:`streams.kafka`)
whose listeners require credentials and a Valkey that requires a password.

The worker goes through SASL_SSL with SCRAM-SHA-512 (the production setting), the API's producer through
SASL_PLAINTEXT with PLAIN, both reading their passwords the ways the settings allow; wrong credentials
stop ``ats worker`` and ``ats api`` with status 2 and one line, never a traceback or a retry loop.
The Kafka tests always use the local Apache Kafka (the embedded broker has no SASL or TLS): they need
Java 17+ and Maven like ``make test-kafka``, and the jars it resolved once. The shipped Valkey has no
TLS, so ``rediss://`` is tested through a TLS proxy in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiokafka import TopicPartition

from availability import topics
from availability.settings import Settings, load_settings
from streams import embedded
from streams.access import AccessDenied, check_kafka, check_redis
from streams.admin import ensure_topics
from streams.kafka import SecureKafka, Security, start_secure_kafka
from streams.logreader import LogReader
from tests.brokers import kafka_cache_dir
from tests.builders import receipt, ref
from tests.certificates import Certificate, self_signed

from .apiserver import INGESTER, READER, bearer, serve, settings_for, vouch_for_cache
from .cluster import Cluster, eventually
from .conftest import running

pytestmark = [pytest.mark.integration]

USER = "ats-engine"
PASSWORD = "kafka-" + secrets.token_urlsafe(12)
REDIS_PASSWORD = "redis-" + secrets.token_urlsafe(12)
ATS = [sys.executable, "-m", "streams"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory, tls: Certificate) -> Iterator[SecureKafka]:
    try:
        server = start_secure_kafka(tmp_path_factory.mktemp("kafka"), cache_dir=kafka_cache_dir(),
                                    security=Security({USER: PASSWORD}, tls.certificate, tls.key))
    except Exception as exc:
        pytest.fail(f"could not start Apache Kafka with secure listeners: {exc!r}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def locked_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey with ``requirepass``; the URL carries no password."""
    try:
        server = embedded.start_cache(tmp_path_factory.mktemp("cache"), password=REDIS_PASSWORD)
    except Exception as exc:
        pytest.fail(f"could not start a cache: {exc!r}")
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Passwords as files, the way a mounted Kubernetes Secret gives them (with a trailing newline)."""
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "kafka-password").write_text(PASSWORD + "\n")
    (directory / "redis-password").write_text(REDIS_PASSWORD + "\n")
    return directory


def worker_env(kafka: SecureKafka, tls: Certificate, cache_url: str, secrets_dir: Path) -> dict[str, str]:
    """The production shape: SASL over TLS with SCRAM-SHA-512, passwords from files."""
    return {"ATS_BROKER_URL": kafka.urls["SASL_SSL"], "ATS_REDIS_URL": cache_url,
            "ATS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ATS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ATS_KAFKA_SASL_USERNAME": USER, "ATS_KAFKA_SASL_PASSWORD_FILE": str(secrets_dir / "kafka-password"),
            "ATS_KAFKA_SSL_CAFILE": str(tls.certificate),
            "ATS_REDIS_PASSWORD_FILE": str(secrets_dir / "redis-password")}


def api_settings(kafka: SecureKafka, cache_url: str) -> Settings:
    """The other ways in: SASL_PLAINTEXT with PLAIN, passwords in variables and in the Redis URL."""
    with_password = cache_url.replace("redis://", f"redis://:{REDIS_PASSWORD}@")
    return settings_for(kafka.urls["SASL_PLAINTEXT"], with_password, kafka_security_protocol="SASL_PLAINTEXT",
                        kafka_sasl_mechanism="PLAIN", kafka_sasl_username=USER, kafka_sasl_password=PASSWORD,
                        partitions="2")  # the worker's: the API waits for the cache epochs of every partition


@pytest.mark.timeout(240)
@pytest.mark.kafka
@pytest.mark.slow
async def test_worker_and_api_ingest_through_sasl_and_a_password_protected_cache(
        kafka: SecureKafka, tls: Certificate, locked_cache: str, secrets_dir: Path, tmp_path: Path) -> None:
    env = worker_env(kafka, tls, locked_cache, secrets_dir)
    cluster = Cluster(kafka.urls["SASL_SSL"], locked_cache, tmp_path, partitions=2, env=env)
    async with running(cluster):  # topics created by the admin, a probe produced and applied, all over SASL_SSL
        location, sku = ref("S"), ref("SKU")
        async with serve(api_settings(kafka, locked_cache)) as client:
            posted = await client.post("/v1/events", json=receipt(location, (sku, 7)), headers=bearer(INGESTER))
            assert posted.status == 202, await posted.text()

            async def on_hand() -> int | None:
                answer = await client.get(f"/v1/availability/{sku}", headers=bearer(READER))
                if answer.status != 200:  # 503 until the worker has vouched for its partitions in the cache
                    return None
                body = await answer.json()
                return body["locations"][0]["on_hand"] if body["locations"] else None

            assert await eventually(on_hand, timeout=60, what="the ingested receipt in the answer") == 7

        reader = LogReader(cluster.settings)  # the worker's direct log reads go through SASL_SSL too
        try:
            partition = TopicPartition(topics.RECEIPTS, 0)
            ends = await reader.ends({partition: None})
            assert ends[partition] is not None
        finally:
            await reader.close()
        log = cluster.log()
    assert PASSWORD not in log
    assert REDIS_PASSWORD not in log


def _ats(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    return subprocess.run([*ATS, command], capture_output=True, text=True, env={**clean, **env}, timeout=60)


@pytest.mark.kafka
@pytest.mark.parametrize("command", ["worker", "api"])
@pytest.mark.parametrize(("wrong", "message"), [
    ("kafka_password", "refused the SASL login"),
    ("kafka_user", "refused the SASL login"),
    ("kafka_ca", "TLS to Kafka"),
    ("redis_password", "Redis at"),
])
def test_wrong_credentials_stop_ats_with_status_2_and_one_line(
        kafka: SecureKafka, tls: Certificate, locked_cache: str, secrets_dir: Path, tmp_path: Path,
        command: str, wrong: str, message: str) -> None:
    env = worker_env(kafka, tls, locked_cache, secrets_dir)
    if wrong == "kafka_password":
        (tmp_path / "wrong").write_text("not-the-password")
        env["ATS_KAFKA_SASL_PASSWORD_FILE"] = str(tmp_path / "wrong")
    elif wrong == "kafka_user":  # and over the other SASL listener, without TLS
        env.update(ATS_BROKER_URL=kafka.urls["SASL_PLAINTEXT"], ATS_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                   ATS_KAFKA_SASL_USERNAME="nobody")
        env.pop("ATS_KAFKA_SSL_CAFILE")
    elif wrong == "kafka_ca":
        env.pop("ATS_KAFKA_SSL_CAFILE")  # the system's trust store does not know the self-signed broker
    else:
        (tmp_path / "wrong").write_text("not-the-password")
        env["ATS_REDIS_PASSWORD_FILE"] = str(tmp_path / "wrong")
    out = _ats(command, env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert PASSWORD not in out.stderr + out.stdout
    assert "not-the-password" not in out.stderr + out.stdout


@pytest.mark.kafka
async def test_mutual_tls_needs_the_client_certificate(kafka: SecureKafka, tls: Certificate, tmp_path: Path) -> None:
    base = {"ATS_BROKER_URL": kafka.urls["SSL"], "ATS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "ATS_KAFKA_SSL_CAFILE": str(tls.certificate), "ATS_PARTITIONS": "2"}
    with_certificate = load_settings({**base, "ATS_KAFKA_SSL_CERTFILE": str(tls.certificate),
                                      "ATS_KAFKA_SSL_KEYFILE": str(tls.key)})
    assert await check_kafka(with_certificate)
    await ensure_topics(with_certificate, attempts=1)  # the admin client over mutual TLS
    # Without a certificate the broker closes the connection: not provably a refusal, so no start-up error,
    # but no connection either.
    assert not await check_kafka(load_settings(base), wait_seconds=5)


class TlsProxy:
    """TLS in front of a plaintext cache: the shipped Valkey has no TLS, but what the engine owns is the
    client side (``rediss://``, ``ATS_REDIS_SSL_CAFILE``, certificate and host name checks)."""

    def __init__(self, target: tuple[str, int], tls: Certificate) -> None:
        self.target = target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(tls.certificate, tls.key)
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := await source.read(65_536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))


async def test_the_cache_over_tls_with_its_ca_file(redis_url: str, tls: Certificate) -> None:
    target = urlsplit(redis_url)
    async with TlsProxy((target.hostname or "127.0.0.1", target.port or 6379), tls) as port:
        rediss = f"rediss://127.0.0.1:{port}/0"
        settings = settings_for("kafka://127.0.0.1:1", rediss, redis_ssl_cafile=str(tls.certificate))
        assert await asyncio.to_thread(check_redis, settings)
        await vouch_for_cache(settings_for("kafka://127.0.0.1:1", redis_url))  # no worker here
        async with serve(settings) as client:  # the API's reads and its decisions subscription, over TLS
            answer = await client.get(f"/v1/availability/{ref('SKU')}", headers=bearer(READER))
            assert answer.status == 200, await answer.text()
        without_ca = settings_for("kafka://127.0.0.1:1", rediss)
        with pytest.raises(AccessDenied, match="TLS to Redis"):
            await asyncio.to_thread(check_redis, without_ca)
