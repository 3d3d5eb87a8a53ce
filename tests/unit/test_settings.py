"""Configuration rules that need no server: protected mode, keys, limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.settings import (
    DURATIONS,
    ConfigError,
    Duration,
    Settings,
    env_name,
    from_env,
    parse_duration,
    setting_name,
)

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_without_a_key_loopback_addresses_are_allowed(host: str) -> None:
    assert from_env({}, host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com"])
def test_without_a_key_other_addresses_are_refused_naming_the_fix(host: str) -> None:
    with pytest.raises(ConfigError, match="--jwt-secret"):
        from_env({}, host=host)
    assert from_env({}, host=host, insecure_no_auth=True).insecure_no_auth
    assert from_env({"CAIRN_JWT_SECRET": SECRET}, host=host).host == host


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"jwt_secret": SECRET, "jwt_public_key": "/nonexistent"}, "exactly one"),
        ({"jwt_public_key": "/nonexistent/key.pem"}, "--jwt-public-key"),
        ({"rate_limit": "lots"}, "--rate-limit"),
        ({"redis_url": "http://x"}, "--redis-url"),
    ],
)
def test_unusable_security_settings_are_one_clear_error(
    overrides: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        from_env({}, **overrides)


@pytest.mark.parametrize("value", ["1023", "1048577"])
def test_the_default_message_size_is_one_a_queue_may_have(value: str) -> None:
    with pytest.raises(ConfigError, match=r"CAIRN_MAX_MESSAGE_BYTES .* 1024\.\.1048576"):
        from_env({"CAIRN_MAX_MESSAGE_BYTES": value})
    assert from_env({"CAIRN_MAX_MESSAGE_BYTES": "1024"}).max_message_bytes == 1024


def test_a_rate_such_as_100_per_second_is_accepted() -> None:
    assert from_env({"CAIRN_RATE_LIMIT": "100/second"}).rate_limit == "100/second"


def test_scope_globs_match_whole_names_only() -> None:
    from api.auth import Principal

    caller = Principal.from_scope("s", "publish:orders read:orders.*", None)
    assert caller.may("publish", "orders")
    assert not caller.may("publish", "orders\n")
    assert not caller.may("publish", "orders2")
    assert caller.may("read", "orders.eu")
    assert not caller.may("read", "orders.eu\n")
    assert not caller.may("read", "xorders.eu")


# -- durations (API.md v1.2, "Clarifications of v1.1") ------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0.5", 0.5),
        (".25", 0.25),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("14d", 1209600.0),
        (" 2H ", 7200.0),
    ],
)
def test_a_duration_is_seconds_or_a_number_with_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, "--x") == seconds


@given(st.integers(1, 10**9), st.sampled_from([("", 1), ("s", 1), ("m", 60), ("h", 3600)]))
def test_every_whole_number_with_any_unit_is_that_many_seconds(
    number: int, unit: tuple[str, int]
) -> None:
    assert parse_duration(f"{number}{unit[0]}", "--x") == number * unit[1]


@pytest.mark.parametrize(
    "text",
    [
        *("inf", "nan", "-inf", "Infinity", "0", "0s", "-1", "-0.5h", "1e3", "", "h", "1.5x"),
        *("1" * 400, "forever", "1 h", "0x10"),
    ],
)
def test_anything_else_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^CAIRN_SWEEP_INTERVAL_S: .* is not a duration"):
        parse_duration(text, "CAIRN_SWEEP_INTERVAL_S")


def test_zero_and_forever_only_where_the_option_says_so() -> None:
    assert parse_duration("0", "--x", Duration(zero=True)) == 0
    assert parse_duration("forever", "--x", Duration(forever=True)) is None
    with pytest.raises(ConfigError, match="or forever"):
        parse_duration("never", "--x", Duration(forever=True))


@pytest.mark.parametrize("field", sorted(DURATIONS))
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_every_duration_setting_refuses_infinite_nan_and_negative_values(
    field: str, value: str
) -> None:
    # A setting with a flag is named by its variable and its flag, else by its variable alone.
    with pytest.raises(ConfigError, match=rf"^{env_name(field)}( \(--[a-z-]+\))?: "):
        from_env({env_name(field): value})
    with pytest.raises(ConfigError, match=f"^{re.escape(setting_name(field))}: "):
        Settings(**{field: float(value)}).validate()


def test_interval_settings_refuse_zero_and_take_units() -> None:
    for field in ("sweep_interval_s", "read_wait_s", "sse_heartbeat_s"):
        with pytest.raises(ConfigError, match=env_name(field)):
            from_env({env_name(field): "0"})
    assert from_env({"CAIRN_SWEEP_INTERVAL_S": "0.25"}).sweep_interval_s == 0.25
    assert from_env({"CAIRN_READ_WAIT_S": "1m"}).read_wait_s == 60


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_host_with_the_kafka_door_needs_an_advertised_host(host: str) -> None:
    with pytest.raises(ConfigError, match="--kafka-advertised-host"):
        from_env({"CAIRN_JWT_SECRET": SECRET}, host=host, kafka_port=9092)
    settings = from_env(
        {"CAIRN_JWT_SECRET": SECRET},
        host=host,
        kafka_port=9092,
        kafka_advertised_host="broker-1.example",
    )
    assert settings.kafka_address == ("broker-1.example", 9092)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"kafka_port": 0}, "--kafka-port 0 is not a TCP port"),
        ({"kafka_port": 8080}, "already --port"),
        ({"kafka_port": 9092, "kafka_advertised_port": 70000}, "--kafka-advertised-port"),
    ],
)
def test_kafka_ports_must_be_ports(overrides: dict[str, int], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        from_env({}, **overrides)
