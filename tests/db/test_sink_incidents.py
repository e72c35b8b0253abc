"""EventSink with incidents: mixed batches, key frames per stage, one spool for both kinds (old event
payloads included), bad records refused or set aside, resume reads, and a database outage."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.db.conftest import T0, record
from tests.db.incident_helpers import incident, lifecycle
from tests.db.test_sink import down_url, rows, sink_config, wait_until
from tests.services.mariadb import PrivateMariaDB
from trtseg.analytics.records import IncidentRecord
from trtseg.db import EventStore, RecordError
from trtseg.keyframes import KeyframeStore
from trtseg.sink import EventSink
from trtseg.spool import Spool

JPEG = b"\xff\xd8\xff\xe0 a picture"


def incident_rows(url: str) -> dict[str, dict]:
    store = EventStore(url)
    try:
        with store.engine.connect() as conn:
            found = conn.execute(sa.text("SELECT * FROM incidents ORDER BY id")).mappings()
            return {row["incident_id"]: dict(row) for row in found}
    finally:
        store.close()


def with_pictures(records: list[IncidentRecord]) -> list[IncidentRecord]:
    """The lifecycle as the analytics send it: JPEG bytes at open, alert and close, no paths yet."""
    out = []
    for r in records:
        stages = {stage: {"raw": JPEG + stage.encode(), "annotated": JPEG + b"A" + stage.encode()}
                  for stage in r.keyframe_paths}  # fmt: skip
        out.append(replace(r, keyframes=stages, keyframe_paths={}))
    return out


def test_mixed_batches_land_in_both_tables_with_key_frames(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    life = with_pictures(lifecycle("inc-mixed"))
    events = [record(started=T0 + timedelta(seconds=i), keyframe_raw_jpeg=b"\xff\xd8e%d" % i) for i in range(3)]
    sink = EventSink(sink_config(tmp_path, url), start=False)
    try:
        assert sink.submit([events[0], life[0], life[1], events[1]]) == 4
        assert sink.submit([life[2], events[2], life[3], life[4]]) == 4
        assert life[0].keyframes and not life[0].keyframe_paths, "the caller's record is not changed"
        assert sink.flush() == 8
        stats = sink.stats()
        assert stats["written"] == 8 and stats["incidents_written"] == 5 and stats["incidents_submitted"] == 5
    finally:
        sink.close()
    assert [r["event_id"] for r in rows(url)] == [e.event_id for e in events]
    row = incident_rows(url)["inc-mixed"]
    assert row["status"] == "closed" and row["severity"] == "alert" and row["frames_seen"] == 30
    keyframes = KeyframeStore(tmp_path / "keyframes")
    for stage in ("open", "alert", "close"):
        raw, annotated = row[f"keyframe_{stage}_raw_path"], row[f"keyframe_{stage}_annotated_path"]
        assert raw == f"block-7/cam1/2026-11-20/inc-mixed-{stage}_raw.jpg"
        assert keyframes.read(raw) == JPEG + stage.encode()
        assert keyframes.read(annotated) == JPEG + b"A" + stage.encode()


def test_one_spool_keeps_order_and_old_event_payloads_still_replay(tmp_path: Path) -> None:
    old_event = record(started=T0 - timedelta(days=1), site="before-incidents")
    spool = Spool(tmp_path / "spool", 1000)
    spool.put([old_event.to_json()])  # what a spool of the previous version holds: no "record" marker
    spool.close()

    life = with_pictures(lifecycle("inc-spooled"))
    event = record(started=T0)
    first = EventSink(sink_config(tmp_path, down_url()), start=False)
    first.submit([life[0], event])
    assert first.flush() == 0 and first.stats()["db_up"] is False
    first.submit(life[1:])
    assert first.stats()["spooled"] == 1 + 2 + 4
    payloads = [payload for _, payload in first.spool.peek(100)]
    assert [json.loads(p).get("record") for p in payloads] == [None, "incident", None, *["incident"] * 4]
    assert all("keyframes" not in json.loads(p) for p in payloads[1:] if '"record"' in p), "no JPEG bytes spooled"
    first.close()

    url = f"sqlite:///{tmp_path / 'events.db'}"
    second = EventSink(sink_config(tmp_path, url), start=False)
    try:
        assert second.flush() == 7 and second.stats()["backlog"] == 0
    finally:
        second.close()
    assert sorted(r["event_id"] for r in rows(url)) == sorted([old_event.event_id, event.event_id])
    row = incident_rows(url)["inc-spooled"]
    assert row["status"] == "closed" and row["keyframe_alert_annotated_path"].endswith(
        "inc-spooled-alert_annotated.jpg"
    )


def test_bad_incident_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    sink = EventSink(sink_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}"), start=False)
    good = with_pictures(lifecycle("inc-good"))[0]
    for bad, field in (
        (replace(good, incident_id="inc-bad", fraction=2.0), "fraction"),
        (replace(good, incident_id="inc-bad", keyframes={"opening": {"raw": JPEG}}), "keyframes"),
        (replace(good, incident_id="inc-bad", severity="urgent"), "severity"),
    ):
        with pytest.raises(RecordError, match=field):
            sink.submit([record(keyframe_raw_jpeg=JPEG), good, bad])
    assert sink.stats()["submitted"] == 0 and not (tmp_path / "keyframes").exists()
    sink.close()


def test_a_row_the_database_refuses_is_set_aside_and_the_rest_written(tmp_path: Path) -> None:
    good = incident("inc-fine")
    bad = json.loads(incident("inc-broken").to_json())
    bad["severity"] = "urgent"  # got past submit somehow (an older version, a hand edit): refused at write
    spool = Spool(tmp_path / "spool", 100)
    spool.put([json.dumps(bad), good.to_json(), record().to_json()])
    spool.close()
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = EventSink(sink_config(tmp_path, url), start=False)
    try:
        assert sink.flush() == 2
        assert sink.stats()["rejected"] == 1 and sink.stats()["backlog"] == 0
    finally:
        sink.close()
    (line,) = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert "severity" in json.loads(line)["error"]
    assert list(incident_rows(url)) == ["inc-fine"] and len(rows(url)) == 1


def test_open_incidents_include_what_still_waits_in_the_spool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    sink = EventSink(sink_config(tmp_path, url), start=False)
    try:
        open_one = incident("inc-open")
        sink.submit([open_one, incident("inc-shut", status="closed", ended_at=T0 + timedelta(seconds=5))])
        sink.submit([incident("inc-elsewhere", camera_id="cam2")])
        assert sink.stats()["spooled"] == 3, "nothing written yet"
        resumed = sink.open_incidents("cam1")
        assert [r.incident_id for r in resumed] == ["inc-open"] and resumed[0].last_seen_at == open_one.last_seen_at
    finally:
        sink.close()
    down = EventSink(sink_config(tmp_path / "down", down_url()), start=False)
    try:
        with pytest.raises(sa.exc.OperationalError):
            down.open_incidents("cam1")
    finally:
        down.close()


@pytest.mark.mysql
@pytest.mark.slow
def test_database_outage_loses_no_incident_state(tmp_path: Path, private_mariadb: PrivateMariaDB) -> None:
    url = private_mariadb.url("trtseg_incidents")
    sink = EventSink(sink_config(tmp_path, url))
    lives = [with_pictures(lifecycle(f"inc-out-{i}", started=T0 + timedelta(seconds=i))) for i in range(12)]
    events = [record(started=T0 + timedelta(seconds=i)) for i in range(12)]
    done = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        """Twelve incidents, interleaved, each through its whole life, with an event beside each step."""
        try:
            for step in range(5):
                for i, life in enumerate(lives):
                    sink.submit([life[step], events[i]] if step == 0 else [life[step]])
                    time.sleep(0.03)
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: sink.stats()["written"] > 0, 20, "first rows written")
        private_mariadb.kill()
        wait_until(lambda: sink.stats()["db_up"] is False, 20, "the sink to notice the outage")
        wait_until(lambda: sink.stats()["spooled"] > 0, 20, "a backlog in the spool")
        private_mariadb.start()
        assert done.wait(60), "producer did not finish"
        wait_until(lambda: sink.stats()["backlog"] == 0 and sink.stats()["db_up"], 60, "the spool to drain")
        stats = sink.stats()
    finally:
        producer.join(30)
        sink.close()
    assert failures == [] and stats["failures"] >= 1 and stats["rejected"] == 0
    stored = incident_rows(url)
    assert sorted(stored) == sorted(life[0].incident_id for life in lives)
    for row in stored.values():
        assert row["status"] == "closed" and row["severity"] == "alert" and row["frames_seen"] == 30
        assert row["peak_fraction"] == 0.62 and row["best_confidence"] == 0.7
        assert all(row[f"keyframe_{stage}_raw_path"] for stage in ("open", "alert", "close"))
    assert sorted(r["event_id"] for r in rows(url)) == sorted(e.event_id for e in events)
