"""Chaos, short: a two-node cluster loses a decoder, the sink, the database and the worker node at
seeded moments; it recovers on its own and every opened event is in MariaDB exactly once (tools/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos import FAULTS, schedule
from tools.soak import MODEL, reconcile

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing")


def test_schedule_is_seeded_and_covers_every_fault() -> None:
    first = schedule(list(FAULTS), rounds=2, seed=11)
    assert first == schedule(list(FAULTS), rounds=2, seed=11)
    assert sorted(first) == sorted(list(FAULTS) * 2)
    assert first != schedule(list(FAULTS), rounds=2, seed=12), "another seed, another order"


def test_reconciliation_finds_missing_and_unknown_events(tmp_path: Path) -> None:
    """The end check can fail: an opened event absent from the table, or a row nobody opened."""
    from tools.load import seed_events

    url = f"sqlite:///{tmp_path / 'events.db'}"
    seed_events(url, 3)
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        stored = [str(r[0]) for r in conn.execute(text("SELECT event_id FROM events"))]
    engine.dispose()
    opened = {event_id: ("cam", "person") for event_id in stored}
    assert reconcile(url, opened)["ok"]
    assert reconcile(url, {**opened, "0" * 32: ("cam", "person")})["missing"] == ["0" * 32]
    partial = dict(list(opened.items())[:2])
    found = reconcile(url, partial)
    assert not found["ok"] and found["unknown"] == sorted(set(stored) - set(partial))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.mysql
def test_short_chaos_recovers_and_loses_no_event(tmp_path: Path) -> None:
    from tools.chaos import run_chaos

    report = run_chaos(
        tmp_path, faults=["decoder", "sink", "database", "node"], rounds=1, seed=3, gap_s=(2.0, 5.0), two_nodes=True
    )
    assert report["ok"], report["failures"]
    assert report["survived"] == 4
    assert report["rtmp_readable"]
    events = report["events"]
    assert events["opened"] > 0 and events["missing"] == [] and events["duplicated"] == [] and events["rejected"] == 0
