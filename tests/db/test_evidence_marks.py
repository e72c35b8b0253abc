"""Rows say when retention deleted their evidence: ``mark_removed`` on SQLite and MariaDB.

The first removal time stays (marking again, or a later run naming the same ids, changes nothing),
unknown ids are ignored, ids are marked a few hundred per UPDATE, and no upsert (a replayed spool, a
newer record) ever clears a mark. ``open_ids`` gives the open incidents and events.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.db.conftest import T0, record
from tests.db.incident_helpers import incident, lifecycle
from trtseg.clips.retention import EvidenceRemoved, open_ids_of
from trtseg.db import EventStore
from trtseg.db import store as store_module

FIRST = datetime(2026, 12, 1, 3, 0, 0, 250000, tzinfo=UTC)
LATER = FIRST + timedelta(days=1)


def _closed(incident_id: str, **fields: object):  # type: ignore[no-untyped-def]
    base = incident(incident_id, **fields)  # type: ignore[arg-type]
    return replace(base, status="closed", ended_at=base.last_seen_at)


def test_marks_keep_the_first_time_and_ignore_unknown_ids(store: EventStore) -> None:
    event = record(event_id="ev-old", status="closed", keyframe_raw_path="a/ev-old_raw.jpg")
    store.write_batch([event], [_closed("inc-a"), _closed("inc-b")])

    first = store.mark_removed(EvidenceRemoved(["inc-a"], ["inc-a", "inc-b"], ["ev-old", "ev-gone"]), at=FIRST)
    assert first == {"clips": 1, "incident_keyframes": 2, "event_keyframes": 1}
    again = store.mark_removed(EvidenceRemoved(["inc-a", "inc-b", "nobody"], ["inc-a"], ["ev-old"]), at=LATER)
    assert again == {"clips": 1, "incident_keyframes": 0, "event_keyframes": 0}, "only inc-b's clip is new"

    a, b = store.incidents.get("inc-a"), store.incidents.get("inc-b")
    assert a is not None and b is not None
    assert a.clip_removed_at == FIRST and a.keyframes_removed_at == FIRST
    assert b.clip_removed_at == LATER and b.keyframes_removed_at == FIRST
    assert a.updated_at >= a.created_at
    stored_event = store.get("ev-old")
    assert stored_event is not None and stored_event.keyframes_removed_at == FIRST
    assert stored_event.keyframe_raw_path == "a/ev-old_raw.jpg", "the row keeps its paths: files go, rows stay"
    assert store.incidents.mark_removed(EvidenceRemoved(["inc-a"]), at=LATER) == {"clips": 0, "incident_keyframes": 0}
    assert store.mark_keyframes_removed(["ev-old"], at=LATER) == 0
    assert store.mark_removed(EvidenceRemoved()) == {"clips": 0, "incident_keyframes": 0, "event_keyframes": 0}


def test_upserts_never_clear_the_marks(store: EventStore) -> None:
    records = lifecycle("inc-life")
    store.incidents.upsert(records[:4])  # open, refreshed, escalated
    store.write_batch([record(event_id="ev-life")], [])
    store.mark_removed(EvidenceRemoved(["inc-life"], ["inc-life"], ["ev-life"]), at=FIRST)

    store.incidents.upsert(records)  # the spool replayed, and the close with its key frame
    store.write_batch(
        [record(event_id="ev-life", status="closed", confidence=0.95, keyframe_raw_path="b/ev-life_raw.jpg")],
        records[-1:],
    )
    got = store.incidents.get("inc-life")
    assert got is not None and got.status == "closed" and "close" in got.keyframe_paths
    assert got.clip_removed_at == FIRST and got.keyframes_removed_at == FIRST
    event = store.get("ev-life")
    assert event is not None and event.status == "closed" and event.keyframes_removed_at == FIRST


def test_many_ids_are_marked_in_batches(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "IDS_PER_STATEMENT", 3)
    ids = [f"inc-{i}" for i in range(8)]
    store.incidents.upsert([_closed(i, started=T0 + timedelta(seconds=n)) for n, i in enumerate(ids)])
    assert store.incidents.mark_removed(EvidenceRemoved(ids, ids[::2]), at=FIRST) == {
        "clips": 8,
        "incident_keyframes": 4,
    }
    for n, incident_id in enumerate(ids):
        got = store.incidents.get(incident_id)
        assert got is not None and got.clip_removed_at == FIRST
        assert got.keyframes_removed_at == (FIRST if n % 2 == 0 else None)


def test_open_ids_of_both_stores(store: EventStore) -> None:
    store.write_batch(
        [record(event_id="ev-open"), record(event_id="ev-closed", status="closed")],
        [incident("inc-open"), _closed("inc-closed")],
    )
    assert store.open_ids() == {"ev-open"}
    assert store.incidents.open_ids() == {"inc-open"}
    assert open_ids_of(store)() == {"ev-open", "inc-open"}
