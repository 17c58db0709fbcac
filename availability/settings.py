"""The one settings object: parsed once at an entry point from ``ATS_*`` variables (and ``.env``).

Nothing reads the environment anywhere else; the frozen :class:`Settings` is passed down.
A bad value raises :class:`SettingsError` whose message names the variable, so the command line
can print it and stop instead of showing a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ATS_"
SCOPES = frozenset({"availability:read", "reservations:write", "events:write", "admin"})
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the ``ATS_*`` variable."""


def parse_broker_url(url: str) -> list[str]:
    """``kafka://host:port[;host:port]`` → ``["host:port", ...]``."""
    if not url.startswith("kafka://"):
        raise ValueError("must look like kafka://host:port[;host:port]")
    hosts = [h.strip() for h in url[len("kafka://") :].replace(",", ";").split(";") if h.strip()]
    if not hosts or not all(_HOST_PORT.match(h) for h in hosts):
        raise ValueError("must look like kafka://host:port[;host:port]")
    return hosts


def parse_tokens(spec: str) -> dict[str, frozenset[str]]:
    """``token=scope,scope;token2=scope`` → ``{token: scopes}``."""
    tokens: dict[str, frozenset[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        token, sep, scopes_spec = part.partition("=")
        scopes = frozenset(s.strip() for s in scopes_spec.split(",") if s.strip())
        if not sep or not token.strip() or not scopes:
            raise ValueError("must look like token=scope,scope;token2=scope")
        unknown = scopes - SCOPES
        if unknown:
            raise ValueError(f"unknown scope(s) {sorted(unknown)}; known: {sorted(SCOPES)}")
        tokens[token.strip()] = scopes
    return tokens


class Settings(BaseSettings):
    """Every knob of the product. Field descriptions are what ``ats --help`` prints."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True, validate_default=True
    )

    broker_url: str | None = Field(
        None, description="Kafka bootstrap, kafka://host:port[;host:port]; unset: the embedded broker"
    )
    redis_url: str | None = Field(None, description="redis://… or rediss://…; unset: the embedded cache")
    api_host: str = Field("127.0.0.1", description="where the API listens")
    api_port: int = Field(8080, ge=1, le=65535, description="where the API listens")
    api_tokens: str | None = Field(
        None, description="token=scope,scope;token2=scope; `ats up` generates a dev token with all scopes"
    )
    channels_file: Path | None = Field(None, description="channel views file; unset: all locations, no buffer")
    partitions: int = Field(8, ge=1, le=1024, description="partitions of every input and state topic")
    replication_factor: int = Field(1, ge=1, le=16, description="replication factor of topics the engine creates")
    data_dir: Path = Field(Path("./.ats"), description="local state (RocksDB) and embedded services' files")
    erp_window_seconds: int = Field(300, ge=1, le=86_400, description="ERP netting window")
    erp_grace_seconds: int = Field(
        60, ge=0, le=86_400, description="how long after its end an ERP window waits for stragglers before it posts"
    )
    dedupe_window_seconds: int = Field(
        7 * 86_400, ge=60, description="how long an applied event_id is remembered"
    )
    count_horizon_seconds: int = Field(
        86_400, ge=60, le=30 * 86_400,
        description="how far behind the newest movement a count may be placed 'as of' its time",
    )
    store: Literal["rocksdb", "memory"] = Field("rocksdb", description="worker table store")
    batch_max: int = Field(5_000, ge=1, description="events the worker takes per batch at most")
    batch_window_ms: int = Field(20, ge=1, le=10_000, description="longest wait to fill a batch")
    flush_interval_ms: int = Field(
        1_000, ge=0, le=60_000,
        description="how often the worker writes its changelog and acks its input (0: every batch); the cache is "
                    "written every batch, and a batch that decided a reservation flushes at once",
    )
    tick_interval_ms: int = Field(1_000, ge=50, description="hold-expiry and idle-flush tick per partition")
    fetch_wait_ms: int = Field(
        25, ge=1, le=10_000, description="longest the broker may hold a worker's fetch when no record is new"
    )
    session_timeout_seconds: float = Field(
        10.0, gt=0, description="consumer group session timeout (Kafka allows ≥ 6 by default)"
    )
    heartbeat_interval_seconds: float = Field(
        1.0, gt=0, description="consumer group heartbeat interval"
    )
    hold_timeout_ms: int = Field(5_000, ge=10, description="API: how long a reservation waits for its decision")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="API: request body limit")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value:
            parse_broker_url(value)
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, value: str | None) -> str | None:
        if value:
            parse_tokens(value)
        return value or None

    @property
    def bootstrap_servers(self) -> list[str]:
        if self.broker_url is None:
            raise SettingsError("ATS_BROKER_URL is not set (start the embedded broker with `ats up`)")
        return parse_broker_url(self.broker_url)

    @property
    def tokens(self) -> dict[str, frozenset[str]]:
        return parse_tokens(self.api_tokens) if self.api_tokens else {}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the frozen settings; a bad value raises :class:`SettingsError` naming the variable."""
    try:
        if environ is None:
            return Settings(**overrides)  # type: ignore[arg-type]
        values: dict[str, object] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


def describe_variables() -> list[tuple[str, str, str]]:
    """``(variable, default, meaning)`` for every setting: the help text of every command."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else str(default)
        rows.append((ENV_PREFIX + name.upper(), shown, field.description or ""))
    return rows
