"""Bad outbound configuration: each a clear error naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trtseg.config.loader import format_validation_error
from trtseg.config.outbound import OutboundConfig


def problems(data: dict) -> str:
    with pytest.raises(ValidationError) as info:
        OutboundConfig.model_validate(data)
    return format_validation_error(info.value, "conf/site.yaml")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("broker.local:1883", "does not parse"),
        ("mqtt://broker.local:port", "does not parse"),
        ("mqtt://:1883", "has no host"),
        ("amqp://broker.local", "scheme 'amqp' is not allowed"),
        ("mqtt://user:pw@broker.local", "must not carry credentials"),
        ("mqtt://broker.local/topic", "only scheme, host and port"),
    ],
)
def test_broker_url_errors_name_the_field(url: str, reason: str) -> None:
    text = problems({"mqtt": {"url": url}})
    assert "mqtt.url: " in text and reason in text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "scheme 'ftp' is not allowed; use http:// or https://"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("https:///nohost", "url has no host"),
        ("http://h.example.com:70000/", "does not parse"),
    ],
)
def test_webhook_url_errors_name_the_field(url: str, reason: str) -> None:
    text = problems({"webhooks": [{"name": "pager", "url": url}]})
    assert "webhooks.0.url: " in text and reason in text


def test_other_fields() -> None:
    assert "topic_prefix" in problems({"mqtt": {"url": "mqtt://b", "topic_prefix": "a/#"}})
    assert "need an 'mqtts://' url" in problems({"mqtt": {"url": "mqtt://b", "tls_insecure": True}})
    assert "used more than once" in problems(
        {"webhooks": [{"name": "a", "url": "http://x.example"}, {"name": "a", "url": "http://y.example"}]}
    )
    assert "public_base_url" in problems({"public_base_url": "ftp://nvr"})
    assert "kinds.0" in problems({"webhooks": [{"name": "a", "url": "http://x.example", "kinds": ["opened"]}]})


def test_valid_configuration_and_targets() -> None:
    config = OutboundConfig.model_validate(
        {
            "mqtt": {"url": "mqtts://broker.example.com", "username": "u", "password": "p", "ca_file": "/etc/ca.pem"},
            "webhooks": [{"name": "pager", "url": "https://hooks.example.com/t/abc", "min_severity": "alert"}],
            "public_base_url": "https://nvr.example.com/",
        }
    )
    assert list(config.targets()) == ["mqtt", "webhook:pager"]
    assert config.public_base_url == "https://nvr.example.com"
    assert "p" not in repr(config.mqtt.password) and "abc" not in repr(config.webhooks[0].url)  # type: ignore[union-attr]
    assert config.enabled and not OutboundConfig().enabled
