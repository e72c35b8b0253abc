"""Configuration errors name the field and the problem, never a secret's value.

Pydantic's errors carry the rejected ``input``; the loader showed short ones as ``(got ...)``, which for a
token, a password or a URL with credentials put the secret in the logs and on the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from trtseg.config import CameraConfig, ConfigError, load_config, parse_config
from trtseg.config.loader import format_validation_error
from trtseg.config.outbound import OutboundConfig

CAMERA = {"id": "cam1", "source": "rtsp://cam.example.com/s"}


def _message(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "site.yaml")
    return str(caught.value)


# (configuration, field named in the error, problem named, secret text that must not appear)
CASES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "admin token not text": ({"api": {"admin_token": 738_291_645_113}}, "api.admin_token:", "valid string", "738291"),
    "viewer token not text": ({"api": {"viewer_token": 4_418_802_559}}, "api.viewer_token:", "valid string", "44188"),
    "legacy token not text": ({"api": {"token": 9_913_377_001}}, "api.token:", "valid string", "99133"),
    "link secret not text": ({"api": {"link_secret": 5_550_123_987}}, "api.link_secret:", "valid string", "555012"),
    "database url with a password": (
        {"sink": {"database_url": "postgresql://dbuser:Db-Pa55word@db.example.com:5432/trtseg"}},
        "sink.database_url:",
        "must start with one of",
        "Db-Pa55word",
    ),
    "mqtt password not text": (
        {"outbound": {"mqtt": {"url": "mqtt://broker.example.com", "password": 24_681_357}}},
        "outbound.mqtt.password:",
        "valid string",
        "2468135",
    ),
    "mqtt url with credentials": (
        {"outbound": {"mqtt": {"url": "mqtt://mquser:Mq-Pa55@broker.example.com:1883"}}},
        "outbound.mqtt.url:",
        "must not carry credentials",
        "Mq-Pa55",
    ),
    "webhook secret not text": (
        {"outbound": {"webhooks": [{"name": "ops", "url": "https://hooks.example.com/x", "secret": 86_420_975}]}},
        "outbound.webhooks.0.secret:",
        "valid string",
        "8642097",
    ),
    "webhook url with credentials and a bad scheme": (
        {"outbound": {"webhooks": [{"name": "ops", "url": "ftp://hookuser:Hook-Pa55@hooks.example.com/x"}]}},
        "outbound.webhooks.0.url:",
        "scheme 'ftp' is not allowed",
        "Hook-Pa55",
    ),
    "camera source with credentials and a bad scheme": (
        {"cameras": [{**CAMERA, "source": "foo://camuser:Cam-Pa55@cam.example.com/s"}]},
        "cameras.0.source:",
        "scheme 'foo' is not allowed",
        "Cam-Pa55",
    ),
    "camera push with credentials and a bad scheme": (
        {"cameras": [{**CAMERA, "push": "ftp://pushuser:Push-Pa55@media.example.com/live"}]},
        "cameras.0.push:",
        "push must be 'hls', 'none' or a",
        "Push-Pa55",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_errors_name_the_field_and_problem_but_not_the_secret(case: str) -> None:
    data, field, problem, secret = CASES[case]
    message = _message(data)
    assert field in message and problem in message, message
    assert secret not in message, message


def test_a_url_keeps_its_host_and_loses_its_userinfo() -> None:
    message = _message({"cameras": [{**CAMERA, "source": "foo://camuser:Cam-Pa55@cam.example.com/s"}]})
    assert "cam.example.com" in message and "camuser" not in message and "***@" in message


def test_a_secret_query_value_is_hidden_too() -> None:
    message = _message({"cameras": [{**CAMERA, "source": "foo://cam.example.com/s?token=Qry-S3cret&ch=1"}]})
    assert "cameras.0.source:" in message and "Qry-S3cret" not in message and "ch=1" in message


def test_other_values_are_still_shown() -> None:
    message = _message({"engine": {"batch_size": -1}, "api": {"port": 70000}})
    assert "engine.batch_size:" in message and "(got -1)" in message
    assert "api.port:" in message and "(got 70000)" in message


def test_a_secret_in_an_environment_override_is_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"TRTSEG__API__ADMIN_TOKEN": "31415926535"})
    message = str(caught.value)
    assert "api.admin_token:" in message and "31415926535" not in message


def test_a_camera_change_through_the_api_hides_credentials() -> None:
    # The controller formats a camera's errors with the same function (origin 'camera').
    with pytest.raises(ValidationError) as caught:
        CameraConfig.model_validate({**CAMERA, "source": "foo://camuser:Cam-Pa55@cam.example.com/s"})
    message = format_validation_error(caught.value, "camera")
    assert "source:" in message and "scheme 'foo' is not allowed" in message
    assert "Cam-Pa55" not in message and "camuser" not in message


def test_outbound_sections_on_their_own_hide_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        OutboundConfig.model_validate({"webhooks": [{"name": "ops", "url": "https://h.example.com/x", "secret": 7}]})
    message = format_validation_error(caught.value, "conf/site.yaml")
    assert "webhooks.0.secret:" in message and "(got 7)" not in message
