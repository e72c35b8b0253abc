"""The controller's retention wiring as a plain class: its own store, migrated before the first read of the
open ids, nothing deleted while the cameras are unknown, and the figures ``health()`` shows."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.clips.test_retention import _clip
from trtseg.clips.evidence_retention import EvidenceRetention, evidence_component
from trtseg.clips.retention import DAY_S
from trtseg.config import CameraConfig, SystemConfig
from trtseg.db import EventStore


def test_retention_runs_on_its_own_migrated_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"  # nothing has created the schema yet (the sink may be late)
    clip_dir = tmp_path / "clips"
    old = _clip(clip_dir, "cam1", "rec-old", 0, ["inc-gone"])
    then = time.time() - 40 * DAY_S
    os.utime(old, (then, then))
    fresh = _clip(clip_dir, "cam1", "rec-new", 0, ["inc-new"])
    os.utime(fresh, None)
    config = SystemConfig.model_validate(
        {
            "sink": {"database_url": url, "keyframe_dir": str(tmp_path / "keyframes")},
            "evidence": {"clip_dir": str(clip_dir), "clip_retain_days": 30},
        }
    )
    cameras: list[CameraConfig] | None = None
    evidence = EvidenceRetention(config, lambda: cameras)
    try:
        assert evidence.retention.run().skipped and old.exists()  # the stored cameras are not known yet
        cameras = [CameraConfig(id="cam1", site="site A", source="rtsp://cams.local/1")]
        report = evidence.retention.run()
        assert report.skipped is None and report.delete_failures == 0
        assert not old.exists() and fresh.exists()
        stats = evidence.stats()
        assert stats["runs"] == 2 and stats["last_error"] is None
        health = evidence_component([{"id": "cam1", "stats": {"decoder": {}}}], evidence, {})
        assert health["ready"] is True and health["retention_error"] is None
    finally:
        evidence.close()
    store = EventStore(url)
    try:
        assert store.migrate() == []  # the retention's store migrated it before reading the open ids
    finally:
        store.close()
    assert evidence_component([], None, None)["ready"] is True
