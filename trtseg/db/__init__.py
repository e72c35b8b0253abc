"""Events, incidents and the camera registry: MySQL/MariaDB or embedded SQLite through one SQLAlchemy Core code path."""

from trtseg.db.cameras import CameraRegistry, StoredCamera, merge_cameras
from trtseg.db.incident_models import AckResult, IncidentOut, IncidentPage, IncidentQuery
from trtseg.db.incidents import IncidentStore
from trtseg.db.migrations import LATEST as SCHEMA_VERSION
from trtseg.db.migrations import MigrationError
from trtseg.db.models import CursorError, EventCount, EventOut, EventPage, EventQuery
from trtseg.db.store import EventStore, RecordError, is_transient
from trtseg.db.url import DatabaseUrlError

__all__ = [
    "SCHEMA_VERSION",
    "AckResult",
    "CameraRegistry",
    "CursorError",
    "DatabaseUrlError",
    "EventCount",
    "EventOut",
    "EventPage",
    "EventQuery",
    "EventStore",
    "IncidentOut",
    "IncidentPage",
    "IncidentQuery",
    "IncidentStore",
    "MigrationError",
    "RecordError",
    "StoredCamera",
    "is_transient",
    "merge_cameras",
]
