"""Database URLs and engines: one place that knows MySQL/MariaDB and SQLite differ."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
MYSQL_DRIVERS = ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


class DatabaseUrlError(ValueError):
    """A database URL this project cannot use."""


def normalise_url(url: str | URL) -> URL:
    """``mysql://``/``mariadb://`` -> ``mysql+pymysql://`` (the driver we ship); sqlite as is."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it: keep secrets out
        raise DatabaseUrlError("database URL cannot be parsed; expected sqlite:///path.db or mysql://...") from exc
    if parsed.drivername in MYSQL_DRIVERS:
        return parsed.set(drivername="mysql+pymysql")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite")
    raise DatabaseUrlError(f"unsupported database '{parsed.drivername}': use sqlite:///path.db or mysql://...")


def is_sqlite(url: URL) -> bool:
    return url.drivername == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    if url.database in (None, "", ":memory:") or (url.database or "").startswith("file::memory:"):
        return None
    return Path(url.database or "")


def create_engine(url: URL) -> Engine:
    """An engine with pre-ping and short connect timeouts, so a down database fails fast."""
    if is_sqlite(url):
        path = sqlite_path(url)
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if path is None:
            kwargs["poolclass"] = StaticPool  # one shared in-memory database
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    query = dict(url.query)
    query.setdefault("charset", "utf8mb4")
    return sa.create_engine(
        url.set(query=query),
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_size=5,
        max_overflow=5,
        pool_timeout=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": 30, "write_timeout": 30},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the API read while the sink writes; FULL sync because events are results."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def ensure_mysql_database(url: URL) -> bool:
    """Create the database the URL names when it is missing; True when it was created."""
    name = url.database
    if not name:
        raise DatabaseUrlError("a MySQL/MariaDB URL must name a database: mysql://user:pass@host:3306/trtseg")
    if not _DATABASE_NAME.match(name):
        raise DatabaseUrlError(f"database name {name!r} must be 1-64 letters, digits, '_' or '$'")
    server = create_engine(url._replace(database=None))  # .set(database=None) keeps the name
    try:
        with server.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                {"name": name},
            ).first()
            if exists:
                return False
            # Identifiers cannot be bound parameters; the name was checked against a strict pattern above.
            conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            conn.commit()
            logger.info("created database name=%s host=%s", name, url.host)
            return True
    finally:
        server.dispose()
