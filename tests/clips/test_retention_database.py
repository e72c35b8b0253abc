"""Retention end to end on a real SQLite database and real files, read back through the HTTP API.

Records go through the real sink (key frames written by it), clips are laid out as the recorder
does; retention runs with the open ids from the database and marks the rows through the stores, as
the controller wires it. An old closed incident loses its clip and key frames (its row says so, and
the API shows it), an open incident and an open event keep theirs however old, an old event loses
its key frames; while the database refuses the marks the files still go and the rows are marked at
the next run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.clips.test_retention import NOW, _age, _clip
from tests.db.conftest import record
from tests.db.incident_helpers import incident, lifecycle
from tests.db.test_sink import sink_config
from tests.db.test_sink_incidents import JPEG, with_pictures
from trtseg.clips.layout import ClipLayout
from trtseg.clips.retention import EvidenceRemoved, Retention, open_ids_of
from trtseg.config import ApiConfig, CameraConfig
from trtseg.config.clips import EvidenceConfig
from trtseg.db import EventStore
from trtseg.events import new_event_id
from trtseg.sink import EventSink

STARTED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # the helpers' site 'block-7', camera 'cam1'


@dataclass
class World:
    store: EventStore
    clip_dir: Path
    keyframe_dir: Path
    retention: Retention
    events: dict[str, str]  # 'old' / 'open' -> event id
    keyframes: dict[str, list[Path]]  # owner id -> its key frame files
    clips: dict[str, Path]
    marks: list[EvidenceRemoved]


def _age_tree(root: Path, days: float) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            _age(path, days)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = EventSink(sink_config(tmp_path, url), start=False)
    events = {"old": new_event_id(STARTED.timestamp()), "open": new_event_id(STARTED.timestamp() + 1)}
    old_event = record(STARTED, event_id=events["old"], status="closed", keyframe_raw_jpeg=JPEG,
                       keyframe_annotated_jpeg=JPEG + b"A")  # fmt: skip
    open_event = record(STARTED, event_id=events["open"], keyframe_raw_jpeg=JPEG)
    open_incident = replace(incident("inc-open", STARTED), keyframes={"open": {"raw": JPEG, "annotated": JPEG}})
    try:
        sink.submit([*with_pictures(lifecycle("inc-old", STARTED)), open_incident, old_event, open_event])
        assert sink.flush() == 8 and sink.stats()["keyframe_failures"] == 0
    finally:
        sink.close()
    keyframe_dir = tmp_path / "keyframes"
    _age_tree(keyframe_dir, 40)
    keyframes: dict[str, list[Path]] = {}
    for path in keyframe_dir.rglob("*.jpg"):
        owner = path.name.rsplit("_", 1)[0]
        owner = owner.rsplit("-", 1)[0] if owner.startswith("inc-") else owner
        keyframes.setdefault(owner, []).append(path)
    assert {k: len(v) for k, v in keyframes.items()} == {"inc-old": 6, "inc-open": 2, events["old"]: 2,
                                                         events["open"]: 1}  # fmt: skip

    clip_dir = tmp_path / "clips"
    clips = {
        "inc-old": _clip(clip_dir, "cam1", "rec-old", 40, ["inc-old"]),
        "inc-open": _clip(clip_dir, "cam1", "rec-open", 40, ["inc-open"]),
        "recent": _clip(clip_dir, "cam1", "rec-new", 2, ["inc-new"]),
    }
    store = EventStore(url)
    marks: list[EvidenceRemoved] = []

    def mark(removed: EvidenceRemoved) -> None:
        marks.append(removed)
        store.mark_removed(removed)

    retention = Retention(
        EvidenceConfig(clip_dir=clip_dir, clip_retain_days=30, keyframe_retain_days=30),
        keyframe_dir,
        cameras=lambda: [CameraConfig(id="cam1", site="block-7", source="rtsp://cams.local/1")],
        open_ids=open_ids_of(store),
        on_removed=mark,
        clock=lambda: NOW,
    )
    yield World(store, clip_dir, keyframe_dir, retention, events, keyframes, clips, marks)
    store.close()


def _client(world: World) -> TestClient:
    control = RayControlPlane(namespace="trtseg-absent-retention", timeout_s=5.0)
    app = create_app(control, world.store, ApiConfig(), keyframe_dir=world.keyframe_dir, clip_dir=world.clip_dir)
    return TestClient(app, raise_server_exceptions=False)


def test_old_evidence_goes_open_evidence_stays_and_rows_say_so(world: World) -> None:
    report = world.retention.run()
    assert report.skipped is None and report.delete_failures == 0
    assert report.clips_deleted == 1 and report.keyframes_deleted == 6 + 2
    assert report.kept_open == 1 + 2 + 1, "the open incident's clip and key frames, the open event's key frame"

    assert not world.clips["inc-old"].exists() and not world.clips["inc-old"].with_suffix(".json").exists()
    assert world.clips["inc-open"].exists() and world.clips["recent"].exists()
    assert not any(p.exists() for p in world.keyframes["inc-old"] + world.keyframes[world.events["old"]])
    assert all(p.exists() for p in world.keyframes["inc-open"] + world.keyframes[world.events["open"]])
    assert ClipLayout(world.clip_dir).read_pointer("inc-old") is None

    old, kept = world.store.incidents.get("inc-old"), world.store.incidents.get("inc-open")
    assert old is not None and old.clip_removed_at is not None and old.keyframes_removed_at is not None
    assert set(old.keyframe_paths) == {"open", "alert", "close"}, "rows are never deleted, paths stay"
    assert kept is not None and kept.clip_removed_at is None and kept.keyframes_removed_at is None
    old_event, open_event = world.store.get(world.events["old"]), world.store.get(world.events["open"])
    assert old_event is not None and old_event.keyframes_removed_at is not None
    assert open_event is not None and open_event.keyframes_removed_at is None

    with _client(world) as client:
        item = client.get("/incidents/inc-old").json()
        assert item["clip_removed_at"] is not None and item["keyframes_removed_at"] is not None
        assert datetime.fromisoformat(item["clip_removed_at"]) == old.clip_removed_at
        listed = {i["incident_id"]: i for i in client.get("/incidents", params={"limit": 10}).json()["items"]}
        assert listed["inc-old"]["clip_removed_at"] and listed["inc-open"]["clip_removed_at"] is None
        assert client.get("/incidents/inc-old/clip").status_code == 404
        assert client.get("/incidents/inc-open/clip").status_code == 200
        assert client.get("/incidents/inc-open/keyframe/open/raw").content == JPEG
        event = client.get(f"/events/{world.events['old']}").json()
        assert event["keyframes_removed_at"] is not None
        assert client.get(f"/events/{world.events['open']}").json()["keyframes_removed_at"] is None

    first = old.clip_removed_at
    again = world.retention.run()
    assert again.clips_deleted == 0 and again.keyframes_deleted == 0
    assert world.store.incidents.get("inc-old").clip_removed_at == first  # type: ignore[union-attr]


def test_marks_refused_by_the_database_are_made_at_the_next_run(world: World) -> None:
    refuse = {"left": 1}
    mark = world.retention._on_removed
    assert mark is not None

    def flaky(removed: EvidenceRemoved) -> None:
        if refuse["left"]:
            refuse["left"] -= 1
            raise ConnectionError("database went away")
        mark(removed)

    world.retention._on_removed = flaky
    world.retention.run()
    assert not world.clips["inc-old"].exists(), "the files go"
    assert world.store.incidents.get("inc-old").clip_removed_at is None  # type: ignore[union-attr]
    stats = world.retention.stats()
    assert stats["unreported"] == 1 + 1 + 1 and stats["callback_failures"] == 1

    world.retention.run()  # nothing more to delete: the waiting removals are handed over again
    assert world.store.incidents.get("inc-old").clip_removed_at is not None  # type: ignore[union-attr]
    assert world.store.get(world.events["old"]).keyframes_removed_at is not None  # type: ignore[union-attr]
    assert world.retention.stats()["unreported"] == 0
    assert world.marks[-1].clip_incidents == ["inc-old"]


def test_nothing_is_deleted_while_the_database_cannot_say_what_is_open(world: World, tmp_path: Path) -> None:
    world.store.close()
    os.remove(tmp_path / "events.db")
    (tmp_path / "events.db").mkdir()  # the database file cannot be opened: every query fails
    report = world.retention.run()
    assert report.skipped and "open incidents unknown" in report.skipped
    assert world.clips["inc-old"].exists() and all(p.exists() for p in world.keyframes["inc-old"])
