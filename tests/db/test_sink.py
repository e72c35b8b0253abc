"""EventSink: key frames and rows written; spooled while the database is down, replayed exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.db.conftest import T0, record
from tests.services.mariadb import PrivateMariaDB
from tests.services.ports import free_port
from trtseg.config import CameraConfig, SinkConfig
from trtseg.db import EventStore, RecordError
from trtseg.detections import Detections
from trtseg.events import EventRecord, EventTracker
from trtseg.frames import Frame
from trtseg.keyframes import KeyframeStore
from trtseg.masks import InstanceMasks
from trtseg.sink import EventSink
from trtseg.spool import Spool, SpoolFull


def sink_config(tmp_path: Path, url: str, **extra: object) -> SinkConfig:
    settings: dict[str, object] = {
        "database_url": url,
        "keyframe_dir": tmp_path / "keyframes",
        "spool_dir": tmp_path / "spool",
        "batch_size": 8,
        "flush_interval_s": 0.1,
        "retry_max_s": 1.0,
        **extra,
    }
    return SinkConfig(**settings)  # type: ignore[arg-type]


def down_url() -> str:
    """A MySQL URL where nothing listens: connections are refused at once."""
    return f"mysql://root@127.0.0.1:{free_port()}/trtseg"


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def rows(url: str) -> list[dict]:
    store = EventStore(url)
    try:
        with store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM events ORDER BY id")).mappings()]
    finally:
        store.close()


def tracked_records() -> list[EventRecord]:
    """Records a real tracker emits for a cable seen in 12 frames, with JPEG key frames."""
    camera = CameraConfig(
        id="cam1",
        site="block-7",
        source="rtsp://127.0.0.1/x",
        events={"min_hits": 2, "window": 3, "min_area": 0.01, "close_after_s": 1.0},
    )
    names = {0: "charging_cable"}
    tracker = EventTracker(camera, names)
    out: list[EventRecord] = []
    for i in range(16):
        image = np.full((48, 64, 3), i * 10, np.uint8)
        mask = np.zeros((1, 48, 64), bool)
        mask[0, 10:30, 10:30] = True
        seen = i < 12
        det = Detections(
            boxes=np.array([[10, 10, 30, 30]], np.float32),
            scores=np.array([0.5 + i * 0.03], np.float32),
            class_ids=np.array([0], np.int32),
            masks=InstanceMasks.from_dense(mask),
            names=names,
            frame_shape=(48, 64),
        )
        out += tracker.update(Frame("cam1", i, T0.timestamp() + i * 0.4, image), det if seen else det[[]], image // 2)
    return out


def test_tracker_records_land_with_key_frames(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    records = tracked_records()
    assert records[0].status == "open" and records[-1].status == "closed" and len(records) >= 3
    sink = EventSink(sink_config(tmp_path, url))
    try:
        assert sink.submit(records) == len(records)
        wait_until(lambda: sink.stats()["written"] == len(records), 10, "the background flush")
        stats = sink.stats()
        assert stats["db_up"] is True and stats["backlog"] == 0 and stats["failures"] == 0
    finally:
        sink.close()
    (row,) = rows(url)
    assert row["status"] == "closed" and row["best_confidence"] == pytest.approx(records[-1].best_confidence)
    keyframes = KeyframeStore(tmp_path / "keyframes")
    best = [r for r in records if r.keyframe_raw_jpeg][-1]
    assert keyframes.read(row["keyframe_raw_path"]) == best.keyframe_raw_jpeg
    assert keyframes.read(row["keyframe_annotated_path"]) == best.keyframe_annotated_jpeg
    assert row["keyframe_raw_path"].startswith("block-7/cam1/")


def test_bad_record_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    sink = EventSink(sink_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}"), start=False)
    bad = replace(record(), site="", keyframe_raw_jpeg=b"\xff\xd8jpeg")
    with pytest.raises(RecordError, match="site"):
        sink.submit([record(), bad])
    assert sink.stats()["submitted"] == 0 and not (tmp_path / "keyframes").exists()
    sink.close()


def test_spool_survives_a_restart_of_the_sink(tmp_path: Path) -> None:
    records = [record(started=T0 + timedelta(seconds=i), keyframe_raw_jpeg=b"\xff\xd8%d" % i) for i in range(5)]
    first = EventSink(sink_config(tmp_path, down_url()), start=False)
    first.submit(records[:3])
    assert first.flush() == 0
    first.submit(records[3:])  # the database is known down: straight to the spool
    stats = first.stats()
    assert stats["db_up"] is False and stats["spooled"] == 5 and stats["backlog"] == 5
    assert stats["failures"] == 1 and "OperationalError" in stats["last_error"]
    first.close()

    url = f"sqlite:///{tmp_path / 'events.db'}"
    second = EventSink(sink_config(tmp_path, url), start=False)
    assert second.stats()["spooled"] == 5
    assert second.flush() == 5
    assert second.stats()["backlog"] == 0
    second.close()
    stored = rows(url)
    assert [r["event_id"] for r in stored] == [r.event_id for r in records]
    keyframes = KeyframeStore(tmp_path / "keyframes")
    assert keyframes.read(stored[4]["keyframe_raw_path"]) == b"\xff\xd84"


def test_full_spool_refuses_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = EventSink(sink_config(tmp_path, down_url(), spool_max_events=100), start=False)
    sink.submit([record(started=T0 + timedelta(seconds=i)) for i in range(60)])
    sink.flush()
    sink.submit([record(started=T0 + timedelta(minutes=1, seconds=i)) for i in range(40)])
    extra = record(started=T0 + timedelta(hours=1), keyframe_raw_jpeg=b"\xff\xd8x")
    with pytest.raises(SpoolFull):
        sink.submit([extra])
    stats = sink.stats()
    assert stats["refused"] == 1 and stats["backlog"] == 100 and stats["submitted"] == 100
    assert "spool full" in caplog.text
    assert not list((tmp_path / "keyframes").rglob(f"{extra.event_id}*"))
    sink.close()


def test_unreadable_spool_entry_is_set_aside_not_blocking(tmp_path: Path) -> None:
    good = record()
    spool = Spool(tmp_path / "spool", 100)
    spool.put(["{not json", good.to_json()])
    spool.close()
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = EventSink(sink_config(tmp_path, url), start=False)
    assert sink.flush() == 1
    assert sink.stats()["rejected"] == 1 and sink.stats()["backlog"] == 0
    sink.close()
    (line,) = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert json.loads(line)["payload"] == "{not json"
    assert [r["event_id"] for r in rows(url)] == [good.event_id]


CRASHING_CHILD = """
import os, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tests.db.conftest import record
from tests.db.test_sink import sink_config
from trtseg.sink import EventSink
sink = EventSink(sink_config(Path(sys.argv[1]), sys.argv[2]), start=False)
t0 = datetime(2026, 1, 1, tzinfo=UTC)
sink.submit([record(started=t0 + timedelta(seconds=i), site="crash") for i in range(5)])
os._exit(0)  # dies without flush or close
"""


def test_submitted_events_survive_a_crash_of_the_sink_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(tmp_path), url], cwd=root, timeout=120, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    sink = EventSink(sink_config(tmp_path, url), start=False)
    assert sink.stats()["spooled"] == 5
    assert sink.flush() == 5
    sink.close()
    assert [r["site"] for r in rows(url)] == ["crash"] * 5


def test_memory_mode_writes_on_close(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = EventSink(sink_config(tmp_path, url, durable_submit=False), start=False)
    sink.flush()  # database known up: submits stay in memory
    sink.submit([record(started=T0 + timedelta(seconds=i)) for i in range(3)])
    assert sink.stats()["pending_memory"] == 3 and sink.stats()["spooled"] == 0
    sink.close()
    assert len(rows(url)) == 3


@pytest.mark.mysql
@pytest.mark.slow
@pytest.mark.parametrize(("durable", "outage"), [(True, "kill"), (False, "stop")], ids=["durable-kill", "memory-stop"])
def test_database_outage_loses_and_duplicates_nothing(
    tmp_path: Path, private_mariadb: PrivateMariaDB, durable: bool, outage: str
) -> None:
    url = private_mariadb.url("trtseg_sink")
    sink = EventSink(sink_config(tmp_path, url, durable_submit=durable))
    events = [record(started=T0 + timedelta(seconds=i), frames_seen=1) for i in range(30)]
    done = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        """Each event opens, improves and closes, interleaved with the others, ~90 records over ~4.5 s."""
        try:
            for i, event in enumerate(events):
                batch = [event]
                if i >= 2:
                    prev = events[i - 2]
                    batch.append(replace(prev, best_confidence=0.8, frames_seen=5, keyframe_raw_jpeg=b"\xff\xd8b"))
                    batch.append(replace(prev, status="closed", frames_seen=9, ended_at=prev.last_seen_at))
                sink.submit(batch)
                time.sleep(0.15)
            for prev in events[-2:]:
                closed = replace(prev, status="closed", best_confidence=0.8, frames_seen=9, ended_at=prev.last_seen_at)
                sink.submit([closed])
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: sink.stats()["written"] > 0, 20, "first rows written")
        private_mariadb.kill() if outage == "kill" else private_mariadb.stop()
        wait_until(lambda: sink.stats()["db_up"] is False, 20, "the sink to notice the outage")
        wait_until(lambda: sink.stats()["spooled"] > 0, 20, "a backlog in the spool")
        time.sleep(1.0)
        backlog_while_down = sink.stats()["backlog"]
        assert backlog_while_down > 0
        private_mariadb.start()
        assert done.wait(60), "producer did not finish"
        wait_until(lambda: sink.stats()["backlog"] == 0 and sink.stats()["db_up"], 60, "the spool to drain")
        sink.flush()
        stats = sink.stats()
    finally:
        producer.join(30)
        sink.close()
    assert failures == []
    assert stats["failures"] >= 1 and stats["rejected"] == 0 and stats["refused"] == 0
    stored = rows(url)
    assert sorted(r["event_id"] for r in stored) == sorted(e.event_id for e in events)  # each exactly once
    assert all(r["status"] == "closed" and r["frames_seen"] == 9 for r in stored)
    assert all(r["best_confidence"] == pytest.approx(0.8) for r in stored)
