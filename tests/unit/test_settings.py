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
