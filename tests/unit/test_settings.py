"""Configuration rules that need no server: protected mode, keys, limits."""

from __future__ import annotations

import pytest

from api.settings import ConfigError, from_env

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
