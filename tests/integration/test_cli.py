"""The command line as a user meets it: help, bad configuration, and `ats up` end to end."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from streams import cli, embedded

ATS = [sys.executable, "-m", "streams"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("command", [[], ["up"], ["worker"], ["api"], ["simulate"], ["replay"]])
def test_help_lists_every_variable(command: list[str]) -> None:
    out = subprocess.run([*ATS, *command, "--help"], capture_output=True, text=True, check=True, env=_env())
    for variable in ("ATS_BROKER_URL", "ATS_REDIS_URL", "ATS_PARTITIONS", "ATS_API_TOKENS", "ATS_DATA_DIR",
                     "ATS_ERP_WINDOW_SECONDS", "ATS_CHANNELS_FILE", "ATS_API_PORT"):
        assert variable in out.stdout


@pytest.mark.parametrize("command", ["worker", "api", "up", "simulate"])
def test_bad_configuration_stops_with_the_variable_named(command: str) -> None:
    out = subprocess.run([*ATS, command], capture_output=True, text=True, env=_env(ATS_PARTITIONS="zero"),
                         timeout=30)
    assert out.returncode == 2
    assert "ATS_PARTITIONS" in out.stderr
    assert "Traceback" not in out.stderr


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ats_up_starts_everything_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    port = embedded.free_port()
    env = _env(ATS_API_PORT=str(port), ATS_DATA_DIR=str(tmp_path / "data"), ATS_PARTITIONS="2")
    up = subprocess.Popen([*ATS, "up"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready"):
                break
        output = "".join(lines)
        assert "ready" in output, output
        assert f"http://127.0.0.1:{port}" in output
        assert "dev token        dev-" in output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200  # "ready" means what /readyz says: the worker joined and loaded
        children = _descendants(up.pid)
        assert len(children) >= 4, children  # broker, cache, worker, API
    finally:
        up.send_signal(signal.SIGINT)
        try:  # each child gets SIGTERM, then up to 15 s before SIGKILL; then the broker and cache stop
            remaining, _ = up.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
            raise
    assert up.returncode == 0, remaining
    assert "stopped" in remaining
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, b'{"status": "ready"}', None),
    (503, b'{"detail": "not ready: workers no worker heartbeat"}', "not ready: workers no worker heartbeat"),
    (503, b"[]", "HTTP 503"),
])
def test_ats_up_waits_for_readyz_and_reports_why_it_is_not(status: int, body: bytes, expected: str | None) -> None:
    """``ats up`` says "ready" once /readyz answers 200, and otherwise, after its timeout, gives the reason."""
    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # the API process, alive
    try:
        assert cli._not_ready(f"http://127.0.0.1:{server.server_port}/readyz", timeout=0.5, process=api) == expected
    finally:
        api.kill()
        api.wait()
        server.shutdown()
        server.server_close()
