"""The API and the worker refuse to start on a bad channels file, naming the file and the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.app import create_app
from availability.channels import ChannelsFileError
from availability.settings import load_settings


def test_create_app_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "channels.json"
    path.write_text('{"channels": {"ecom": {"locations": []}}}')
    with pytest.raises(ChannelsFileError) as caught:
        create_app(load_settings({"ATS_CHANNELS_FILE": str(path)}))
    assert str(path) in str(caught.value)
    assert "channels.ecom.locations" in str(caught.value)
    with pytest.raises(ChannelsFileError, match="cannot read"):
        create_app(load_settings({"ATS_CHANNELS_FILE": str(tmp_path / "missing.json")}))


def test_a_good_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "channels.json"
    path.write_text('{"channels": {"ecom": {"locations": "all", "default_buffer": 2}}}')
    app = create_app(load_settings({"ATS_CHANNELS_FILE": str(path)}))
    assert app is not None


def start_with_channels(path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``python -m <command>`` with ``path`` as its channels file and nothing else of the caller's ATS_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_BROKER_URL="kafka://127.0.0.1:1", ATS_REDIS_URL="redis://127.0.0.1:1",
               ATS_CHANNELS_FILE=str(path))
    return subprocess.run([sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_command_exits_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "channels.json"
    path.write_text("{oops")
    out = start_with_channels(path, "api")
    assert out.returncode == 2
    assert f"ATS_CHANNELS_FILE={path}" in out.stderr
    assert "not valid JSON" in out.stderr


def test_the_worker_exits_with_the_message_too(tmp_path: Path) -> None:
    """The worker reads the change feed's low-stock levels from the same file."""
    path = tmp_path / "channels.json"
    path.write_text('{"channels": {"ecom": {"low_stock": -1}}}')
    out = start_with_channels(path, "streams", "worker")
    assert out.returncode == 2
    assert f"ats worker: ATS_CHANNELS_FILE={path}" in out.stderr
    assert "channels.ecom.low_stock" in out.stderr
