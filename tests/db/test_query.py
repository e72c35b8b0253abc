"""Event listing: filters, order, keyset pagination (walked to the end) and counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.db.conftest import T0, record
from trtseg.db import EventQuery, EventStore
from trtseg.events import EventRecord


def _walk(store: EventStore, **params: object) -> list[str]:
    """Every event id of a query, page by page, following next_cursor."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page = store.query(EventQuery(cursor=cursor, **params))
        assert len(page.items) <= page.limit
        seen += [item.event_id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def _expected(records: list[EventRecord], order: str = "desc", **filters: object) -> list[str]:
    """What the store should return, computed in Python (ids are insertion order as in the table)."""
    kept = [
        (r.started_at, i, r.event_id)
        for i, r in enumerate(records)
        if all(getattr(r, key) == value for key, value in filters.items())
    ]
    kept.sort(reverse=order == "desc")
    return [event_id for _, _, event_id in kept]


def _seed(store: EventStore) -> list[EventRecord]:
    records = []
    for i in range(12):
        records.append(
            record(
                started=T0 + timedelta(minutes=i // 2),  # pairs share a start time: ties broken by id
                site="north" if i % 3 else "south",
                camera_id=f"cam{i % 2}",
                class_name="person" if i % 4 == 0 else "charging_cable",
                status="closed" if i % 5 == 0 else "open",
            )
        )
    for r in records:  # one by one so ids follow list order
        store.upsert([r])
    return records


def test_filters_and_order(store: EventStore) -> None:
    records = _seed(store)
    assert _walk(store, limit=500) == _expected(records)
    assert _walk(store, limit=500, order="asc") == _expected(records, "asc")
    for filters in ({"site": "north"}, {"camera_id": "cam1"}, {"class_name": "person"}, {"status": "closed"}):
        assert _walk(store, limit=3, **filters) == _expected(records, **filters), filters
    both = {"site": "south", "class_name": "charging_cable"}
    assert _walk(store, limit=2, order="asc", **both) == _expected(records, "asc", **both)
    window = _walk(store, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3), order="asc")
    assert window == [r.event_id for r in records[2:6]]
    # an aware time in another zone means the same instant
    plus2 = timezone(timedelta(hours=2))
    assert _walk(store, since=(T0 + timedelta(minutes=5)).astimezone(plus2)) == _expected(records)[:2]
    assert store.query(EventQuery(site="nowhere")).items == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=25),
    limit=st.integers(min_value=1, max_value=7),
    order=st.sampled_from(["asc", "desc"]),
    site=st.sampled_from([None, "a", "b"]),
)
def test_pages_have_no_gaps_or_duplicates(
    store: EventStore, offsets: list[int], limit: int, order: str, site: str | None
) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events"))
    records = [
        record(started=T0 + timedelta(seconds=off), site="ab"[i % 2], camera_id=f"c{i}")
        for i, off in enumerate(offsets)
    ]
    for r in records:
        store.upsert([r])
    filters = {} if site is None else {"site": site}
    walked = _walk(store, limit=limit, order=order, **filters)
    assert walked == _expected(records, order, **filters)
    assert len(walked) == len(set(walked))


def test_cursor_is_tied_to_its_query(store: EventStore) -> None:
    _seed(store)
    page = store.query(EventQuery(limit=2, site="north"))
    assert page.next_cursor
    with pytest.raises(ValidationError, match="other filters"):
        EventQuery(limit=2, site="south", cursor=page.next_cursor)
    with pytest.raises(ValidationError, match="other filters"):
        EventQuery(limit=2, site="north", order="asc", cursor=page.next_cursor)
    for garbage in ("!!!", "eyJzIjoxfQ", "' OR 1=1 --"):
        with pytest.raises(ValidationError, match="malformed"):
            EventQuery(cursor=garbage)
    # a different page size is the same query: allowed
    assert store.query(EventQuery(limit=3, site="north", cursor=page.next_cursor)).items


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": 501}, "less than or equal to 500"),
        ({"order": "sideways"}, "'asc' or 'desc'"),
        ({"status": "maybe"}, "'open' or 'closed'"),
        ({"since": T0, "until": T0}, "earlier than 'until'"),
        ({"site": ""}, "at least 1 character"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_query_validation_messages(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EventQuery(**params)


def test_naive_times_are_utc() -> None:
    query = EventQuery(since=datetime(2026, 1, 1, 12), until=datetime(2026, 1, 1, 13, tzinfo=UTC))
    assert query.since == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_counts_by_site_class_and_day(store: EventStore) -> None:
    records = [
        record(started=T0, site="n", class_name="cable"),
        record(started=T0 + timedelta(hours=1), site="n", class_name="cable"),
        record(started=T0 + timedelta(days=1), site="n", class_name="cable"),
        record(started=T0, site="s", class_name="person"),
    ]
    store.upsert(records)
    rows = [(c.site, c.class_name, c.day, c.count) for c in store.counts()]
    assert rows == [("n", "cable", "2026-11-20", 2), ("n", "cable", "2026-11-21", 1), ("s", "person", "2026-11-20", 1)]
    assert [(c.class_name, c.count) for c in store.counts(["class_name"])] == [("cable", 3), ("person", 1)]
    since = [(c.day, c.count) for c in store.counts(["day"], since=T0 + timedelta(minutes=30))]
    assert since == [("2026-11-20", 1), ("2026-11-21", 1)]
    assert [c.count for c in store.counts(["site"], site="s")] == [1]
    with pytest.raises(ValueError, match="group_by"):
        store.counts(["site; DROP TABLE events"])  # type: ignore[list-item]
