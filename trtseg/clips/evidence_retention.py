"""The controller's retention of evidence: one ``Retention`` thread wired to a database store of its own.

Kept out of the controller actor so the wiring (which ids are open, where removals are marked, when the
schema is migrated) is a plain class: the actor only says which cameras are current and asks for the
figures ``health()`` shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trtseg.clips.health import evidence_health
from trtseg.clips.retention import Retention, open_ids_of
from trtseg.config import CameraConfig, SystemConfig
from trtseg.db import EventStore


class EvidenceRetention:
    """Clips and key frames deleted by age and disk cap (every ``evidence.retention_interval_s``).

    ``cameras`` gives the current cameras (their own retention days) or None while the stored ones are
    unknown; the open incidents and events come from the database (nothing is deleted while it cannot be
    read); the rows whose files were deleted are marked through the stores.
    """

    def __init__(self, config: SystemConfig, cameras: Callable[[], list[CameraConfig] | None]) -> None:
        self.store = EventStore(config.sink.database_url)
        self._open_ids = open_ids_of(self.store)
        self._migrated = False
        try:
            self.retention = Retention(
                config.evidence,
                config.sink.keyframe_dir,
                cameras=cameras,
                open_ids=self._open_ids_now,
                on_removed=self.store.mark_removed,
            )
        except Exception:
            self.store.close()
            raise

    def _open_ids_now(self) -> set[str]:
        if not self._migrated:  # the marks need migration 4, which the sink may not have applied yet
            self.store.migrate()
            self._migrated = True
        return self._open_ids()

    def start(self) -> EvidenceRetention:
        """Run retention on its own thread (returns self)."""
        self.retention.start()
        return self

    def stats(self) -> dict[str, Any]:
        return self.retention.stats()

    def close(self) -> None:
        """Stop the thread, then close the store (the thread may still be marking rows until it stops)."""
        try:
            self.retention.close()
        finally:
            self.store.close()


def evidence_component(
    cameras: list[Mapping[str, Any]], retention: EvidenceRetention | None, sink: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The ``evidence`` component of the controller's ``health()`` from its described cameras (their
    decoders' stats), the retention's figures (None when it does not run) and the sink's stats."""
    return evidence_health(
        {camera["id"]: (camera["stats"] or {}).get("decoder") or {} for camera in cameras},
        retention.stats() if retention is not None else None,
        sink,
    )
