"""Configuration: good files load, each kind of bad file gives one clear message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from trtseg.config import ConfigError, SystemConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "production.example.yaml"])
def test_shipped_files_load(name: str) -> None:
    config = load_config(ROOT / "conf" / name, environ={})
    assert config.cameras, "shipped configurations define cameras"
    assert len({c.id for c in config.cameras}) == len(config.cameras)


def test_defaults_alone_are_valid() -> None:
    config = load_config(None, environ={})
    assert config.engine.backend == "onnxruntime"
    assert config.cluster.head_port != 6379, "Ray's default port is often Redis's"


def _all_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    seen.add(model)
    for field in model.model_fields.values():
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            inner = getattr(arg, "__args__", (arg,))
            for candidate in (arg, *inner):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in seen:
                    _all_models(candidate, seen)


def test_every_field_is_described() -> None:
    models: set[type[BaseModel]] = set()
    _all_models(SystemConfig, models)
    assert len(models) >= 8
    undocumented = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert not undocumented


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


BAD_FILES = {
    "unknown section": ("enginee:\n  backend: cuda\n", "enginee: unknown field"),
    "unknown field": ("engine:\n  batchsize: 4\n", "engine.batchsize: unknown field"),
    "wrong type": ("engine:\n  batch_size: many\n", "engine.batch_size: Input should be a valid integer"),
    "out of range": ("engine:\n  batch_size: 0\n", "engine.batch_size: Input should be greater than or equal to 1"),
    "bad precision": ("engine:\n  precision: fp8\n", "engine.precision: Input should be 'fp32', 'fp16' or 'int8'"),
    "bad scheme": (
        "cameras:\n  - id: a\n    source: gopher://x/y\n",
        "cameras.0.source: scheme 'gopher' is not allowed",
    ),
    "bad push": ("cameras:\n  - id: a\n    source: rtsp://h/s\n    push: ftp://h/x\n", "cameras.0.push: push must be"),
    "bad camera id": ("cameras:\n  - id: 'a b'\n    source: rtsp://h/s\n", "cameras.0.id: String should match pattern"),
    "missing source": ("cameras:\n  - id: a\n", "cameras.0.source: Field required"),
    "duplicate ids": (
        "cameras:\n  - {id: a, source: 'rtsp://h/1'}\n  - {id: a, source: 'rtsp://h/2'}\n",
        "camera id 'a' is used more than once",
    ),
    "hits over window": (
        "cameras:\n  - id: a\n    source: rtsp://h/s\n    events: {window: 3, min_hits: 5}\n",
        "min_hits (5) cannot exceed window (3)",
    ),
    "bad database": ("sink:\n  database_url: postgres://h/db\n", "sink.database_url: database_url must start with"),
    "zero switch interval": (
        "engine:\n  switch_interval_ms: 0\n",
        "engine.switch_interval_ms: Input should be greater than 0",
    ),
    "bad profile": ("engine:\n  batch_size: 8\n  profile_batch: [1, 4, 4]\n", "profile_batch max (4) is below"),
    "region too short": (
        "cameras:\n  - id: a\n    source: rtsp://h/s\n    events: {region: {points: [[0, 0], [1, 1]]}}\n",
        "cameras.0.events.region.points: List should have at least 3 items",
    ),
    "not yaml": ("engine: [unclosed\n", "is not valid YAML at line"),
    "not a mapping": ("- just\n- a list\n", "must hold a mapping of sections"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_clear_message(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert expected in message
    assert "Traceback" not in message
    assert "pydantic" not in message.lower() or "errors.pydantic.dev" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}) == SystemConfig()


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - {id: a, source: 'rtsp://h/1'}\n")
    config = load_config(
        path,
        environ={
            "TRTSEG__ENGINE__BATCH_SIZE": "16",
            "TRTSEG__ENGINE__BACKEND": "cuda",
            "TRTSEG__CAMERAS__0__SITE": "north",
            "TRTSEG__API__TOKEN": "s3cret",
            "UNRELATED": "x",
        },
    )
    assert config.engine.batch_size == 16
    assert config.engine.backend == "cuda"
    assert config.cameras[0].site == "north"
    assert config.api.token is not None and config.api.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_environment_override_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"engine\.batch_size"):
        load_config(None, environ={"TRTSEG__ENGINE__BATCH_SIZE": "-1"})
    with pytest.raises(ConfigError, match="not an index"):
        load_config(None, environ={"TRTSEG__CAMERAS__3__SITE": "x"})


def test_paths_resolve_against_the_checkout(tmp_path: Path) -> None:
    config = parse_config(
        {"cameras": [{"id": "a", "source": "videos/a.mp4"}, {"id": "b", "source": "rtsp://h/s"}]}
    ).with_paths_resolved(tmp_path)
    assert config.engine.model == tmp_path / "models" / "trtseg-cable-n.onnx"
    assert config.cameras[0].source == str(tmp_path / "videos" / "a.mp4")
    assert config.cameras[1].source == "rtsp://h/s"
    assert config.sink.database_url.get_secret_value() == f"sqlite:///{tmp_path}/var/trtseg.db"
