"""A real Apache Kafka (4.x, KRaft) on loopback, from its published jars: the test tier beside the
embedded broker, and ``ats up --broker kafka`` for users who want the real thing without a cluster.

Maven resolves ``org.apache.kafka:kafka_2.13`` and its dependencies once into a cache directory
(``ATS_DATA_DIR/kafka-<version>/jars``; Maven's own ``~/.m2`` caches the downloads too); later starts
reuse it. Each start formats a fresh KRaft directory and runs one combined broker and controller with
settings fit for tests: replication 1, small segments, no initial rebalance delay, and sessions down to
1 s (Kafka's default minimum is 6 s; the test workers use 3 s). :func:`resume_kafka` starts a stopped
broker again on its directory and ports: topics, records and committed offsets are kept (the chaos
suite stops the broker for 30 s this way).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
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


def start_kafka(data_dir: Path, *, cache_dir: Path, port: int | None = None) -> EmbeddedServer:
    """Format a KRaft directory under ``data_dir`` and start one broker+controller on loopback."""
    java = _tool("java")
    classpath = f"{resolve_jars(cache_dir)}/*"
    port, controller = port or free_port(), free_port()
    logs = data_dir / "kraft"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    properties = data_dir / "server.properties"
    properties.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}", "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={logs}", "num.partitions=1", "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=1000",
        "log.segment.bytes=16777216", "log.cleaner.backoff.ms=1000",
        "",
    ]))
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    formatted = subprocess.run([java, *_JVM, "-cp", classpath, "kafka.tools.StorageTool", "format",
                                f"--cluster-id={cluster_id}", "-c", str(properties)],  # an id may start with "-"
                               capture_output=True, text=True, timeout=120, check=False)
    if formatted.returncode != 0:
        raise KafkaUnavailable(f"formatting the KRaft directory failed:\n{formatted.stdout}{formatted.stderr}")
    return _run(java, classpath, data_dir, port)


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
