"""The outbox tests run on SQLite and on MariaDB (a database of their own, dropped afterwards)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

DATABASES = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    server = request.getfixturevalue("mysql_server")
    name = f"trtseg_outbound_{secrets.token_hex(4)}"
    server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield server.url(name)
    finally:
        server.execute(f"DROP DATABASE IF EXISTS `{name}`")
