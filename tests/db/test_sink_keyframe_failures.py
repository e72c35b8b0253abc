"""A key frame directory that cannot take files (unwritable, full) loses pictures, never records.

The incident and the event are stored without the paths of the pictures that could not be written;
the sink counts them (``keyframe_failures``), says ``keyframes: failing`` until a later picture is
written, and the evidence component of /ready shows it while staying ready.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from tests.db.conftest import record
from tests.db.incident_helpers import lifecycle
from tests.db.test_sink import sink_config
from tests.db.test_sink_incidents import JPEG, with_pictures
from trtseg.clips.health import evidence_health
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore
from trtseg.sink import EventSink


def _blocked(tmp_path: Path) -> Path:
    """A key frame directory whose parent is a regular file: nothing can be created under it, even as root."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a file")
    return blocker / "keyframes"


def test_unwritable_keyframe_directory_stores_records_without_pictures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    keyframe_dir = _blocked(tmp_path)
    sink = EventSink(sink_config(tmp_path, url, keyframe_dir=keyframe_dir), start=False)
    incidents = with_pictures(lifecycle("inc-kf"))
    event = record(event_id="ev-kf", keyframe_raw_jpeg=JPEG, keyframe_annotated_jpeg=JPEG + b"A")
    caplog.set_level(logging.ERROR, logger="trtseg.sink")
    try:
        assert sink.submit([*incidents, event]) == len(incidents) + 1, "every record is taken"
        assert sink.flush() == len(incidents) + 1
        stats = sink.stats()
        assert stats["keyframe_failures"] == 3 * 2 + 2, "open, alert, close (raw, annotated) and the event's two"
        assert stats["keyframes"] == "failing" and stats["written"] == len(incidents) + 1
        assert stats["keyframe_last_error"] and stats["keyframe_last_failure_at"]
        assert stats["rejected"] == 0 and stats["backlog"] == 0
        failures = [r for r in caplog.records if "key frame not written" in r.getMessage()]
        assert len(failures) == 1, "the first failure is logged, not every one"

        health = evidence_health({}, None, {**stats, "state": "ready"})
        assert health["state"] == "failing" and health["ready"] is True
        assert health["keyframes_failing"] and health["keyframe_failures"] == 8
    finally:
        sink.close()

    store = EventStore(url)
    try:
        stored = store.incidents.get("inc-kf")
        assert stored is not None and stored.status == "closed" and stored.severity == "alert"
        assert stored.keyframe_paths == {}
        stored_event = store.get("ev-kf")
        assert stored_event is not None and stored_event.keyframe_raw_path is None
    finally:
        store.close()


def test_keyframes_recover_when_the_directory_can_be_written_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    keyframe_dir = _blocked(tmp_path)
    sink = EventSink(sink_config(tmp_path, url, keyframe_dir=keyframe_dir), start=False)
    try:
        sink.submit([record(event_id="ev-1", keyframe_raw_jpeg=JPEG)])
        assert sink.stats()["keyframes"] == "failing" and sink.keyframe_failures == 1
        keyframe_dir.parent.unlink()  # the operator frees the path
        sink.submit([record(event_id="ev-2", keyframe_raw_jpeg=JPEG)])
        assert sink.stats()["keyframes"] == "ok" and sink.keyframe_failures == 1
        sink.flush()
        event = sink.store.get("ev-2")
        assert event is not None and KeyframeStore(keyframe_dir).read(event.keyframe_raw_path or "") == JPEG
    finally:
        sink.close()


def test_a_full_disk_costs_only_the_pictures_it_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC on the annotated pictures: the raw ones are written and their paths kept."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    write = KeyframeStore.write

    def full(self: KeyframeStore, relative: str, data: bytes) -> Path:
        if relative.endswith("_annotated.jpg"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, relative, data)

    monkeypatch.setattr(KeyframeStore, "write", full)
    sink = EventSink(sink_config(tmp_path, url), start=False)
    try:
        sink.submit(with_pictures(lifecycle("inc-full")))
        sink.flush()
        stored = sink.store.incidents.get("inc-full")
        assert stored is not None
        assert stored.keyframe_paths == {stage: {"raw": f"block-7/cam1/2026-11-20/inc-full-{stage}_raw.jpg"}
                                         for stage in ("open", "alert", "close")}  # fmt: skip
        assert sink.keyframe_failures == 3 and "No space left" in (sink.stats()["keyframe_last_error"] or "")
    finally:
        sink.close()
