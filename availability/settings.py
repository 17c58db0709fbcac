"""The one settings object: parsed once at an entry point from ``ATS_*`` variables (and ``.env``).

Nothing reads the environment anywhere else; the frozen :class:`Settings` is passed down.
A bad value raises :class:`SettingsError` whose message names the variable, so the command line
can print it and stop instead of showing a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .silence import Calendar, TradingHoursError, parse_calendar, parse_trading_hours

ENV_PREFIX = "ATS_"
SCOPES = frozenset({"availability:read", "reservations:write", "events:write", "admin"})
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
#: settings whose values are secrets: masked in ``repr`` and in error messages
SECRET_FIELDS = frozenset({"api_tokens", "redis_url", "kafka_sasl_password"})
#: optional settings where an empty variable means unset (a chart renders absent values as "")
_FILES = ("api_tokens_file", "kafka_sasl_password_file", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
          "redis_password_file", "redis_ssl_cafile", "trading_hours_file")
_OPTIONAL = (*_FILES, "kafka_sasl_username", "kafka_sasl_password")


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
    redis_cluster: bool = Field(
        False, description="ATS_REDIS_URL names one node of a Redis Cluster (any node: the client discovers the "
                           "others and follows slot moves); false: a single Redis (or one behind a proxy)"
    )
    api_host: str = Field("127.0.0.1", description="where the API listens")
    api_port: int = Field(8080, ge=1, le=65535, description="where the API listens")
    api_tokens: str | None = Field(
        None, description="token=scope,scope;token2=scope; `ats up` generates a dev token with all scopes"
    )
    api_tokens_file: Path | None = Field(
        None, description="file holding ATS_API_TOKENS' value (a mounted Secret), instead of the variable"
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
    history_limit: int = Field(
        200, ge=0, le=200,
        description="position history: the latest movements kept per position (0: no history is recorded)",
    )
    history_horizon_seconds: int = Field(
        7 * 86_400, ge=60, le=90 * 86_400, description="position history: how long a movement is kept",
    )
    store: Literal["rocksdb", "memory"] = Field("rocksdb", description="worker table store")
    rocksdb_write_buffer_mb: int = Field(
        8, ge=1, le=1_024,
        description="RocksDB store: MiB of writes each partition's database holds in memory before writing them "
                    "to disk (two such buffers at most); Faust's default, 64 (three), grew a worker by ~1.5 GiB",
    )
    rocksdb_block_cache_mb: int = Field(
        8, ge=1, le=4_096,
        description="RocksDB store: MiB of read cache per partition's database (the state is read once, when a "
                    "partition is loaded); Faust's default is 2,048",
    )
    batch_max: int = Field(5_000, ge=1, description="events the worker takes per batch at most")
    batch_window_ms: int = Field(
        10, ge=0, le=10_000,
        description="while the worker is behind its inputs, the longest a batch waits for more events after its "
                    "first (0: never); a worker keeping up starts each batch at once with what has arrived",
    )
    flush_interval_ms: int = Field(
        1_000, ge=0, le=60_000,
        description="how often the worker writes its changelog and acks its input (0: every batch); the cache is "
                    "written every batch, and a batch that decided a reservation flushes at once",
    )
    tick_interval_ms: int = Field(1_000, ge=50, description="hold-expiry and idle-flush tick per partition")
    fetch_wait_ms: int = Field(
        10, ge=1, le=10_000,
        description="longest the broker may hold a worker's fetch when no record is new (the embedded broker "
                    "holds it that long even when records arrive)",
    )
    session_timeout_seconds: float = Field(
        10.0, gt=0, description="consumer group session timeout (Kafka allows ≥ 6 by default)"
    )
    heartbeat_interval_seconds: float = Field(
        1.0, gt=0, description="consumer group heartbeat interval"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="where the worker serves /metrics (Prometheus)")
    worker_metrics_port: int = Field(
        9108, ge=0, le=65535, description="where the worker serves /metrics; 0: not served (`ats up` gives "
        "worker N this port + N)"
    )
    drift_refresh_seconds: int = Field(
        60, ge=0, le=86_400,
        description="API: how often the ERP drift gauges are recomputed; 0: only at GET /v1/erp/drift",
    )
    hold_timeout_ms: int = Field(5_000, ge=10, description="API: how long a reservation waits for its decision")
    answer_cache_skus: int = Field(
        20_000, ge=0, le=10_000_000,
        description="API: SKUs whose answers each API process keeps in memory until a worker publishes that they "
                    "changed (0: every read goes to the cache)",
    )
    silent_after_seconds: int = Field(
        1_800, ge=0, le=7 * 86_400,
        description="a location whose events stopped arriving for longer than this, counted in its trading hours, "
                    "is silent (GET /v1/locations/{id}/status, ats_worker_silent_locations); 0: never",
    )
    trading_hours: str = Field(
        "always", description="when locations trade (silence counts only then): 'always', or a time zone and "
                              "openings, e.g. 'Europe/Paris; Mon-Sat 09:00-20:00; Sun 10:00-13:00'",
    )
    trading_hours_file: Path | None = Field(
        None, description="JSON object of location id -> trading hours, for the locations whose hours differ from "
                          "ATS_TRADING_HOURS, e.g. {\"DC-1\": \"always\"}",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="API: request body limit")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    kafka_security_protocol: KafkaProtocol = Field(
        "PLAINTEXT", description="Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="Kafka SASL password; or ATS_KAFKA_SASL_PASSWORD_FILE, not both"
    )
    kafka_sasl_password_file: Path | None = Field(
        None, description="file holding the Kafka SASL password (a mounted Secret; one trailing newline dropped)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle the Kafka brokers' certificates chain to; unset: the system's trust store"
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate for mutual TLS to Kafka")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of ATS_KAFKA_SSL_CERTFILE")
    redis_password_file: Path | None = Field(
        None, description="file holding the Redis password (a mounted Secret), instead of one in ATS_REDIS_URL"
    )
    redis_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle for a rediss:// ATS_REDIS_URL; unset: the system's trust store"
    )

    _token_spec: str | None = PrivateAttr(None)
    _kafka_password: str | None = PrivateAttr(None)
    _redis_password: str | None = PrivateAttr(None)
    _calendar: Calendar = PrivateAttr(default_factory=Calendar)

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(*_FILES)
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _security(self) -> Settings:
        """Refuse half-configured security: a setting that would be silently ignored is an error."""
        if self.api_tokens_file is not None:
            if self.api_tokens is not None:
                raise SettingsError("set ATS_API_TOKENS or ATS_API_TOKENS_FILE, not both")
            spec = _read_secret(self.api_tokens_file, "ATS_API_TOKENS_FILE").strip()
            try:
                parse_tokens(spec)
            except ValueError as exc:
                raise SettingsError(f"ATS_API_TOKENS_FILE={self.api_tokens_file}: {exc}") from None
            self._token_spec = spec
        else:
            self._token_spec = self.api_tokens
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if self.kafka_sasl_password is not None and self.kafka_sasl_password_file is not None:
            raise SettingsError("set ATS_KAFKA_SASL_PASSWORD or ATS_KAFKA_SASL_PASSWORD_FILE, not both")
        if self.kafka_sasl_password_file is not None:
            self._kafka_password = _read_secret(self.kafka_sasl_password_file, "ATS_KAFKA_SASL_PASSWORD_FILE")
        elif self.kafka_sasl_password is not None:
            self._kafka_password = self.kafka_sasl_password.get_secret_value()
        given_sasl = [name for name in ("kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file")
                      if getattr(self, name) is not None]
        if sasl and (self.kafka_sasl_username is None or not self._kafka_password):
            raise SettingsError(f"ATS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                                "ATS_KAFKA_SASL_USERNAME and a password (ATS_KAFKA_SASL_PASSWORD or _FILE)")
        if given_sasl and not sasl:
            raise SettingsError(f"{_names(given_sasl)} set, but ATS_KAFKA_SECURITY_PROTOCOL="
                                f"{self.kafka_security_protocol} does not use SASL (SASL_PLAINTEXT or SASL_SSL)")
        given_tls = [name for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
                     if getattr(self, name) is not None]
        if given_tls and not tls:
            raise SettingsError(f"{_names(given_tls)} set, but ATS_KAFKA_SECURITY_PROTOCOL="
                                f"{self.kafka_security_protocol} does not use TLS (SSL or SASL_SSL)")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise SettingsError("ATS_KAFKA_SSL_CERTFILE and ATS_KAFKA_SSL_KEYFILE go together (mutual TLS)")
        if self.redis_password_file is not None:
            if self.redis_url and urlsplit(self.redis_url).password is not None:
                raise SettingsError("ATS_REDIS_URL carries a password and ATS_REDIS_PASSWORD_FILE is set: use one")
            self._redis_password = _read_secret(self.redis_password_file, "ATS_REDIS_PASSWORD_FILE")
        if self.redis_cluster and not self.redis_url:
            raise SettingsError("ATS_REDIS_CLUSTER=true needs ATS_REDIS_URL naming a node of the cluster (the "
                                "embedded cache is a single Redis)")
        if self.redis_cluster and (self.redis_url or "").startswith("unix://"):
            raise SettingsError("ATS_REDIS_CLUSTER=true needs ATS_REDIS_URL to name a node by host and port "
                                "(redis:// or rediss://), not a unix:// socket")
        if self.redis_cluster and urlsplit(self.redis_url or "").path not in ("", "/", "/0"):
            raise SettingsError("ATS_REDIS_CLUSTER=true: a Redis Cluster has database 0 only; drop the database "
                                "number from ATS_REDIS_URL (or make it /0)")
        if self.redis_ssl_cafile is not None and not (self.redis_url or "").startswith("rediss://"):
            raise SettingsError("ATS_REDIS_SSL_CAFILE is set, but ATS_REDIS_URL is not a rediss:// (TLS) URL")
        self._calendar = _read_calendar(self.trading_hours, self.trading_hours_file)
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Secrets never reach a log through ``repr``: tokens and passwords are masked."""
        for name, value in super().__repr_args__():
            if name in SECRET_FIELDS and value is not None:
                yield name, mask_url(value) if name == "redis_url" else "**********"
            else:
                yield name, value

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

    @field_validator("trading_hours")
    @classmethod
    def _trading_hours(cls, value: str) -> str:
        parse_trading_hours(value)  # a TradingHoursError is a ValueError: reported naming the variable
        return value

    @property
    def calendar(self) -> Calendar:
        """Trading hours per location: ``ATS_TRADING_HOURS`` and ``ATS_TRADING_HOURS_FILE``, parsed at start-up."""
        return self._calendar

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
        return parse_tokens(self._token_spec) if self._token_spec else {}

    @property
    def tokens_configured(self) -> bool:
        """Whether tokens were given at all (variable or file); ``ats up`` makes a dev token otherwise."""
        return self._token_spec is not None

    @property
    def kafka_password(self) -> str | None:
        """The SASL password, from ATS_KAFKA_SASL_PASSWORD or the file (read once, at start-up)."""
        return self._kafka_password

    @property
    def redis_password(self) -> str | None:
        """The Redis password from ATS_REDIS_PASSWORD_FILE (read once); None: the URL's, if any."""
        return self._redis_password


def mask_url(url: str) -> str:
    """``redis://user:secret@host/0`` → ``redis://user:***@host/0``: a URL fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _read_secret(path: Path, variable: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{variable}={path}: cannot read it: {exc.__class__.__name__}") from None
    secret = text[:-1] if text.endswith("\n") else text
    if not secret:
        raise SettingsError(f"{variable}={path}: the file is empty")
    return secret


def _read_calendar(default: str, path: Path | None) -> Calendar:
    if path is None:
        return parse_calendar(default)
    try:
        return parse_calendar(default, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"ATS_TRADING_HOURS_FILE={path}: cannot read it: {exc.__class__.__name__}") from None
    except TradingHoursError as exc:
        raise SettingsError(f"ATS_TRADING_HOURS_FILE={path}: {exc}") from None


def _names(fields: list[str]) -> str:
    return " and ".join(ENV_PREFIX + name.upper() for name in fields)


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
            if not error["loc"]:  # a rule across settings: its message names them; the input is everything
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            shown = "'***'" if field in SECRET_FIELDS else repr(error.get("input"))
            problems.append(f"{ENV_PREFIX}{field.upper()}={shown}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


def describe_variables() -> list[tuple[str, str, str]]:
    """``(variable, default, meaning)`` for every setting: the help text of every command."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else str(default)
        rows.append((ENV_PREFIX + name.upper(), shown, field.description or ""))
    return rows
