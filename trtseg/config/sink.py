"""Where events and their key frames are stored."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from trtseg.config.base import Section

DATABASE_SCHEMES = ("sqlite", "mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql")


class SinkConfig(Section):
    """Event database and key frame storage."""

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///var/trtseg.db"),
        description="SQLAlchemy URL: 'sqlite:///path.db' (embedded) or 'mysql+pymysql://user:pass@host:3306/db'.",
    )
    keyframe_dir: Path = Field(default=Path("var/keyframes"), description="Directory of key frame JPEGs.")
    spool_dir: Path = Field(
        default=Path("var/spool"), description="On-disk queue of events waiting while the database is down."
    )
    spool_max_events: int = Field(default=100_000, ge=100, description="Bound of the on-disk queue.")
    batch_size: int = Field(default=64, ge=1, le=10_000, description="Events written per transaction.")
    flush_interval_s: float = Field(default=1.0, gt=0, le=60, description="Longest an event waits to be written.")
    retry_max_s: float = Field(default=30.0, gt=0, le=600, description="Longest wait between reconnect attempts.")
    durable_submit: bool = Field(
        default=True,
        description="Put every event in the on-disk spool before submit returns, so a crash of the sink "
        "process loses nothing; off: events wait in memory (at most flush_interval_s) while the database is up.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().split("://", 1)[0].lower()
        if "://" not in value.get_secret_value() or scheme not in DATABASE_SCHEMES:
            raise ValueError(f"database_url must start with one of {', '.join(s + '://' for s in DATABASE_SCHEMES)}")
        return value
