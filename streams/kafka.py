"""A real Apache Kafka (4.x, KRaft) on loopback, from its published jars: the test tier beside the
embedded broker, and ``ats up --broker kafka`` for users who want the real thing without a cluster.

Maven resolves ``org.apache.kafka:kafka_2.13`` and its dependencies once into a cache directory
(``ATS_DATA_DIR/kafka-<version>/jars``; Maven's own ``~/.m2`` caches the downloads too); later starts
reuse it. Each start formats a fresh KRaft directory and runs one combined broker and controller with
settings fit for tests: replication 1, small segments, no initial rebalance delay, and sessions down to
1 s (Kafka's default minimum is 6 s; the test workers use 3 s). :func:`resume_kafka` starts a stopped
broker again on its directory and ports: topics, records and committed offsets are kept (the chaos
suite stops the broker for 30 s this way).

With ``security=`` it also opens listeners that need credentials, one per security protocol
(``SASL_PLAINTEXT``, ``SSL`` with client certificates required, ``SASL_SSL``), so the engine's Kafka
security settings can be tested against the real thing: SASL users for PLAIN (a JAAS configuration in
``server.properties``) and SCRAM-SHA-256/512 (credentials written into the KRaft metadata at format
time), TLS from a PEM certificate and key. The PLAINTEXT listener stays for the broker itself.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .embedded import EmbeddedServer, free_port, start_server

KAFKA_VERSION = "4.4.0"
SLF4J_VERSION = "1.7.36"  # the slf4j API Kafka 4.4 is built against; its simple logger writes the broker log

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ats.local</groupId><artifactId>kafka-broker</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_JVM = ["-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true"]


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not resolve Kafka's jars."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaUnavailable(f"{name!r} is not on PATH: a local Apache Kafka needs Java 17+ and Maven")
    return path


def resolve_jars(cache_dir: Path, version: str = KAFKA_VERSION) -> Path:
    """Kafka's jars in ``cache_dir/kafka-<version>/jars`` (resolved by Maven the first time)."""
    home = cache_dir / f"kafka-{version}"
    jars = home / "jars"
    if (home / "resolved").exists():
        return jars
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(kafka=version, slf4j=SLF4J_VERSION))
    done = subprocess.run(
        [_tool("mvn"), "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={jars}", "-DincludeScope=runtime"],
        capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise KafkaUnavailable(f"Maven could not resolve Apache Kafka {version}:\n{done.stdout[-2000:]}{done.stderr}")
    (home / "resolved").write_text(version)
    return jars


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Security:
    """Listeners that need credentials: ``users`` (name → password) for every SASL mechanism, and a PEM
    ``certificate``/``key`` for TLS. The certificate is also the trust store for client certificates
    on the SSL listener (self-signed in tests: present the same certificate and key to pass)."""

    users: Mapping[str, str]
    certificate: Path
    key: Path


@dataclass
class SecureKafka:
    """A started Kafka with its listeners: ``urls[protocol]`` is a ``kafka://`` URL per protocol."""

    server: EmbeddedServer
    urls: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.server.stop()


def _quote(text: str) -> str:
    if '"' in text or "\\" in text:
        raise ValueError("SASL user names and passwords for the test broker may not contain quotes or backslashes")
    return f'"{text}"'


def _security_properties(security: Security) -> list[str]:
    jaas_users = " ".join(f"user_{name}={_quote(password)}" for name, password in security.users.items())
    lines = ["ssl.keystore.type=PEM", f"ssl.keystore.location={security.key.with_suffix('.keystore.pem')}",
             "ssl.truststore.type=PEM", f"ssl.truststore.location={security.certificate}",
             "listener.name.ssl.ssl.client.auth=required"]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        lines.append(f"listener.name.{listener}.sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}")
        lines.append(f"listener.name.{listener}.plain.sasl.jaas.config="
                     f"org.apache.kafka.common.security.plain.PlainLoginModule required {jaas_users};")
        for scram in ("scram-sha-256", "scram-sha-512"):
            lines.append(f"listener.name.{listener}.{scram}.sasl.jaas.config="
                         "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    # Kafka's PEM key store wants the private key and its certificate in one file.
    security.key.with_suffix(".keystore.pem").write_text(security.key.read_text() + security.certificate.read_text())
    return lines


def start_kafka(data_dir: Path, *, cache_dir: Path, port: int | None = None) -> EmbeddedServer:
    """Format a KRaft directory under ``data_dir`` and start one broker+controller on loopback."""
    return start_secure_kafka(data_dir, cache_dir=cache_dir, port=port).server


def start_secure_kafka(data_dir: Path, *, cache_dir: Path, port: int | None = None,
                       security: Security | None = None) -> SecureKafka:
    """:func:`start_kafka`, plus a listener per secure protocol when ``security`` is given."""
    java = _tool("java")
    classpath = f"{resolve_jars(cache_dir)}/*"
    port, controller = port or free_port(), free_port()
    ports = {"PLAINTEXT": port}
    if security is not None:
        ports.update({protocol: free_port() for protocol in ("SASL_PLAINTEXT", "SSL", "SASL_SSL")})
    logs = data_dir / "kraft"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    listeners = ",".join(f"{name}://127.0.0.1:{number}" for name, number in ports.items())
    properties = data_dir / "server.properties"
    properties.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners={listeners},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners={listeners}", "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=" + ",".join(f"{name}:{name}" for name in ports) + ",CONTROLLER:PLAINTEXT",
        *(_security_properties(security) if security is not None else []),
        f"log.dirs={logs}", "num.partitions=1", "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=1000",
        "log.segment.bytes=16777216", "log.cleaner.backoff.ms=1000",
        "",
    ]))
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = [] if security is None else [
        arg for mechanism in SASL_MECHANISMS[1:] for name, password in security.users.items()
        for arg in ("--add-scram", f"{mechanism}=[name={name},password={_quote(password)}]")]
    formatted = subprocess.run([java, *_JVM, "-cp", classpath, "kafka.tools.StorageTool", "format",
                                f"--cluster-id={cluster_id}",  # with "=": an id may start with "-"
                                "-c", str(properties), *scram],
                               capture_output=True, text=True, timeout=120, check=False)
    if formatted.returncode != 0:
        raise KafkaUnavailable(f"formatting the KRaft directory failed:\n{formatted.stdout}{formatted.stderr}")
    server = _run(java, classpath, data_dir, port)
    return SecureKafka(server, {name: f"kafka://127.0.0.1:{number}" for name, number in ports.items()})


def resume_kafka(data_dir: Path, *, cache_dir: Path, port: int) -> EmbeddedServer:
    """Start again the broker :func:`start_kafka` formatted under ``data_dir`` (and that has been stopped
    since) on the same ports and log directory: its topics, records and committed offsets are kept."""
    if not (data_dir / "server.properties").exists():
        raise KafkaUnavailable(f"no Kafka was formatted under {data_dir}: start it with start_kafka first")
    return _run(_tool("java"), f"{resolve_jars(cache_dir)}/*", data_dir, port)


def _run(java: str, classpath: str, data_dir: Path, port: int) -> EmbeddedServer:
    properties = data_dir / "server.properties"
    return start_server("kafka", [java, *_JVM, "-cp", classpath, "kafka.Kafka", str(properties)], port,
                        f"kafka://127.0.0.1:{port}", data_dir, timeout=90.0)
