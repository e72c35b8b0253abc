"""Load the configuration from YAML plus environment overrides, failing with one readable message.

Environment overrides use the prefix ``TRTSEG__`` and ``__`` between nested keys, for example
``TRTSEG__ENGINE__BACKEND=cuda`` or ``TRTSEG__SINK__DATABASE_URL=mysql+pymysql://...``; values are
parsed as YAML scalars, so ``TRTSEG__ENGINE__BATCH_SIZE=16`` is an integer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trtseg.config.system import SystemConfig

ENV_PREFIX = "TRTSEG__"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the field and the reason."""


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> SystemConfig:
    """Read ``path`` (YAML), apply environment overrides and validate the result."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        data = _read_yaml(Path(path))
    _apply_env_overrides(data, environ)
    return parse_config(data, origin)


def parse_config(data: Mapping[str, Any], origin: str = "configuration") -> SystemConfig:
    """Validate a plain mapping; errors become one ConfigError listing each bad field."""
    try:
        return SystemConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, origin)) from None


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem: dotted field path, reason, and the offending value when it is short."""
    lines = [f"invalid configuration in {origin}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        reason = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = ""
        if item["type"] == "extra_forbidden":
            reason = "unknown field (check the spelling)"
        elif isinstance(value, str | int | float | bool) and len(repr(value)) <= 80:
            shown = f" (got {value!r})"
        lines.append(f"  {location}: {reason}{shown}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of sections at the top, got {type(loaded).__name__}")
    return loaded


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Set ``TRTSEG__A__B=v`` as data["a"]["b"] = v; a numeric part indexes a list (cameras)."""
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node: Any = data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"environment override {key}: '{part}' is not an index of the list")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if last:
                node[part] = value
            else:
                if path[depth + 1].isdigit() and not isinstance(node.get(part), list):
                    raise ConfigError(f"environment override {key}: '{path[depth + 1]}' is not an index of a list")
                if not isinstance(node.get(part), dict | list):
                    node[part] = {}
                node = node[part]
