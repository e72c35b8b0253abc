"""Load the configuration from YAML plus environment overrides, failing with one readable message.

Environment overrides use the prefix ``TRTSEG__`` and ``__`` between nested keys, for example
``TRTSEG__ENGINE__BACKEND=cuda`` or ``TRTSEG__SINK__DATABASE_URL=mysql+pymysql://...``; values are
parsed as YAML scalars, so ``TRTSEG__ENGINE__BATCH_SIZE=16`` is an integer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

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
    """One line per problem: dotted field path, reason, and the offending value when it is short.

    A secret's value is never shown (SecretStr fields, ``token``, ``*_token``, ``*password*``, ``*secret*``),
    not even inside the reason, and URLs lose their userinfo and secret query values: these errors end up
    on consoles and in logs.
    """
    root = _config_models().get(error.title)
    lines = [f"invalid configuration in {origin}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        reason = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        secret = _is_secret(root, item["loc"])
        if secret and isinstance(value, str) and len(value) >= 4:  # a shorter one would garble the reason
            reason = reason.replace(value, "***")
        reason = _redact(reason)
        shown = ""
        if item["type"] == "extra_forbidden":
            reason = "unknown field (check the spelling)"
        elif not secret and isinstance(value, str | int | float | bool) and len(repr(value)) <= 80:
            shown = f" (got {_redact(value) if isinstance(value, str) else value!r})"
        lines.append(f"  {location}: {reason}{shown}")
    return "\n".join(lines)


_SECRET_NAME = re.compile(r"^token$|_token$|password|secret", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"(?<=://)[^/?#@]*@")


def _redact(text: str) -> str:
    """``text`` with every URL's userinfo replaced by ``***`` and its secret query values hidden."""
    from trtseg.sources import redact_url  # imported here: trtseg.sources imports this package

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        if "@" not in url and "?" not in url:
            return url  # nothing to hide: shown exactly as given
        return _USERINFO.sub("***@", redact_url(url), count=1)

    return _URL.sub(one, text)


def _is_secret(root: type[BaseModel] | None, loc: tuple[int | str, ...]) -> bool:
    """Whether the field at ``loc`` holds a secret: by its name, or by its type (a SecretStr) in ``root``."""
    if any(isinstance(part, str) and _SECRET_NAME.search(part) for part in loc):
        return True
    current: Any = root
    for part in loc:
        if current is None:
            return False
        current = _step(current, part)
        if _holds_secret_str(current):
            return True
    return False


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold (Annotated and unions unwrapped)."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _holds_secret_str(annotation: Any) -> bool:
    return annotation is not None and any(member is SecretStr for member in _members(annotation))


def _step(annotation: Any, part: int | str) -> Any:
    """The type of ``part`` (a field name, list index or mapping key) inside ``annotation``; None: unknown."""
    members = _members(annotation)
    for member in members:
        origin = get_origin(member)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset) and get_args(member):
            return get_args(member)[0]
        if isinstance(part, str) and origin is dict and len(get_args(member)) == 2:
            return get_args(member)[1]
        if isinstance(member, type) and issubclass(member, BaseModel) and part in member.model_fields:
            return member.model_fields[part].annotation
    # A tag of a union's member in the location (e.g. a rule's kind): the type stays the union.
    return annotation if isinstance(part, str) and len(members) > 1 else None


@cache
def _config_models() -> dict[str, type[BaseModel]]:
    """Every model of the configuration tree by name (a ValidationError names the model it came from)."""
    found: dict[str, type[BaseModel]] = {}
    pending: list[Any] = [SystemConfig]
    while pending:
        annotation = pending.pop()
        for member in _members(annotation):
            pending.extend(get_args(member))
            if isinstance(member, type) and issubclass(member, BaseModel) and member.__name__ not in found:
                found[member.__name__] = member
                pending.extend(field.annotation for field in member.model_fields.values())
    return found


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
