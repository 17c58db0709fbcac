from __future__ import annotations

from pathlib import Path

import pytest

from availability.settings import (
    SettingsError,
    describe_variables,
    load_settings,
    parse_broker_url,
    parse_tokens,
)


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings({})
    assert settings.partitions == 8
    assert settings.api_host == "127.0.0.1"
    assert settings.api_port == 8080
    assert settings.erp_window_seconds == 300
    assert settings.erp_grace_seconds == 60
    assert settings.data_dir == Path(".ats")
    assert settings.broker_url is None
    assert settings.redis_url is None


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"ATS_PARTITIONS='zero'"):
        load_settings({"ATS_PARTITIONS": "zero"})


@pytest.mark.parametrize(("variable", "value"), [
    ("ATS_PARTITIONS", "0"),
    ("ATS_BROKER_URL", "localhost:9092"),
    ("ATS_BROKER_URL", "kafka://"),
    ("ATS_REDIS_URL", "http://x"),
    ("ATS_API_TOKENS", "tok"),
    ("ATS_API_TOKENS", "tok=superuser"),
    ("ATS_API_PORT", "70000"),
    ("ATS_STORE", "postgres"),
])
def test_invalid_values_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValueError, match="frozen"):
        settings.partitions = 3  # type: ignore[misc]


def test_broker_url_lists_every_host() -> None:
    assert parse_broker_url("kafka://a:9092;b.example:9093") == ["a:9092", "b.example:9093"]


def test_tokens_map_to_scopes() -> None:
    assert parse_tokens("t1=availability:read,admin;t2=events:write") == {
        "t1": frozenset({"availability:read", "admin"}),
        "t2": frozenset({"events:write"}),
    }


def test_every_variable_is_described() -> None:
    rows = describe_variables()
    names = {name for name, _, _ in rows}
    assert {"ATS_BROKER_URL", "ATS_REDIS_URL", "ATS_API_HOST", "ATS_API_PORT", "ATS_API_TOKENS",
            "ATS_CHANNELS_FILE", "ATS_PARTITIONS", "ATS_DATA_DIR", "ATS_ERP_WINDOW_SECONDS"} <= names
    assert all(meaning for _, _, meaning in rows)


# ---- security: Kafka TLS/SASL, Redis password, secrets kept out of logs ------------------------------

SASL = {"ATS_BROKER_URL": "kafka://k:9093", "ATS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ATS_KAFKA_SASL_USERNAME": "ats-engine"}


def test_repr_and_errors_never_show_a_secret(tmp_path: Path) -> None:
    settings = load_settings({**SASL, "ATS_KAFKA_SASL_PASSWORD": "kafka-pw-1",
                              "ATS_REDIS_URL": "rediss://ats:redis-pw-2@cache:6380/0",
                              "ATS_API_TOKENS": "token-3=admin"})
    for shown in (repr(settings), str(settings)):
        for secret in ("kafka-pw-1", "redis-pw-2", "token-3"):
            assert secret not in shown
    assert "rediss://ats:***@cache:6380/0" in repr(settings)
    assert settings.kafka_password == "kafka-pw-1"
    with pytest.raises(SettingsError) as refused:
        load_settings({"ATS_API_TOKENS": "token-4=superuser", "ATS_REDIS_URL": "http://:redis-pw-5@x"})
    assert "token-4" not in str(refused.value)
    assert "redis-pw-5" not in str(refused.value)
    assert "ATS_API_TOKENS" in str(refused.value)


def test_the_sasl_password_comes_from_a_file_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    settings = load_settings({**SASL, "ATS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw")})
    assert settings.kafka_password == "from-a-file"
    assert "from-a-file" not in repr(settings)


def test_the_redis_password_comes_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("cache-secret")
    settings = load_settings({"ATS_REDIS_URL": "redis://cache:6379/0", "ATS_REDIS_PASSWORD_FILE": str(tmp_path / "pw")})
    assert settings.redis_password == "cache-secret"


@pytest.mark.parametrize(("env", "named"), [
    ({"ATS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "ATS_KAFKA_SASL_USERNAME"),
    ({**SASL}, "a password"),
    ({**SASL, "ATS_KAFKA_SASL_PASSWORD": "a", "ATS_KAFKA_SASL_PASSWORD_FILE": "{file}"}, "not both"),
    ({"ATS_KAFKA_SASL_USERNAME": "u"}, "does not use SASL"),
    ({"ATS_KAFKA_SSL_CAFILE": "{file}"}, "does not use TLS"),
    ({"ATS_KAFKA_SECURITY_PROTOCOL": "SSL", "ATS_KAFKA_SSL_CERTFILE": "{file}"}, "go together"),
    ({"ATS_KAFKA_SECURITY_PROTOCOL": "SSL", "ATS_KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "ATS_KAFKA_SSL_CAFILE"),
    ({**SASL, "ATS_KAFKA_SASL_PASSWORD_FILE": "{empty}"}, "empty"),
    ({"ATS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "ATS_KAFKA_SECURITY_PROTOCOL"),
    ({"ATS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "ATS_KAFKA_SASL_MECHANISM"),
    ({"ATS_REDIS_URL": "redis://c:1/0", "ATS_REDIS_SSL_CAFILE": "{file}"}, "rediss://"),
    ({"ATS_REDIS_URL": "redis://:pw@c:1/0", "ATS_REDIS_PASSWORD_FILE": "{file}"}, "use one"),
])
def test_half_configured_security_is_refused(tmp_path: Path, env: dict[str, str], named: str) -> None:
    """A security setting that would be silently ignored, or is missing its other half, stops start-up."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").write_text("")
    env = {k: v.format(file=tmp_path / "file", empty=tmp_path / "empty") for k, v in env.items()}
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_empty_optional_variables_mean_unset() -> None:
    """A chart renders an absent value as "": that must not count as configured."""
    settings = load_settings({"ATS_KAFKA_SASL_USERNAME": "", "ATS_KAFKA_SASL_PASSWORD": "",
                              "ATS_KAFKA_SSL_CAFILE": "", "ATS_REDIS_PASSWORD_FILE": ""})
    assert settings.kafka_sasl_username is None
    assert settings.kafka_password is None


def test_tokens_come_from_a_file_too(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("tok-file=availability:read;tok-2=admin\n")
    settings = load_settings({"ATS_API_TOKENS_FILE": str(tmp_path / "tokens")})
    assert settings.tokens == {"tok-file": frozenset({"availability:read"}), "tok-2": frozenset({"admin"})}
    assert settings.tokens_configured
    assert "tok-file" not in repr(settings)
    assert not load_settings({}).tokens_configured
    with pytest.raises(SettingsError, match="not both"):
        load_settings({"ATS_API_TOKENS_FILE": str(tmp_path / "tokens"), "ATS_API_TOKENS": "t=admin"})
    (tmp_path / "bad").write_text("tok-secret=superuser")
    with pytest.raises(SettingsError, match="unknown scope") as refused:
        load_settings({"ATS_API_TOKENS_FILE": str(tmp_path / "bad")})
    assert "tok-secret" not in str(refused.value)


def test_a_redis_cluster_is_named_by_one_node() -> None:
    settings = load_settings({"ATS_REDIS_URL": "rediss://cache-0.cache:6379", "ATS_REDIS_CLUSTER": "true"})
    assert settings.redis_cluster
    assert not load_settings({}).redis_cluster


@pytest.mark.parametrize(("url", "named"), [
    (None, "needs ATS_REDIS_URL"),
    ("unix:///run/redis.sock", "not a unix:// socket"),
    ("redis://cache:6379/3", "database 0 only"),
])
def test_a_redis_cluster_url_that_cannot_be_one_is_refused(url: str | None, named: str) -> None:
    env = {"ATS_REDIS_CLUSTER": "true", **({"ATS_REDIS_URL": url} if url else {})}
    with pytest.raises(SettingsError, match=named):
        load_settings(env)
