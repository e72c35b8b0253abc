"""The delivery outbox on SQLite and MariaDB: idempotent enqueue, filters, cooldown (also after a restart),
claims, backoff."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.outbound.helpers import T0, lifecycle, make_outbox, outbound_config, record
from trtseg.config.outbound import RetryConfig
from trtseg.outbound.outbox import backoff_s, utcnow

HOOK = {"name": "pager", "url": "http://127.0.0.1:9/hook", "cooldown_s": 0}


def keys(store, target: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(row["idempotency_key"], row["state"]) for row in store.rows(target)]


def test_enqueue_is_idempotent_and_makes_each_message_once(db_url: str) -> None:
    store = make_outbox(db_url, outbound_config(mqtt={"url": "mqtt://127.0.0.1:1"}, webhooks=[HOOK]))
    records = lifecycle("inc1")
    first = store.enqueue(records)
    assert first.pending == 6 and first.suppressed == 0
    again = store.enqueue(records)  # a sink batch replayed from its spool
    assert again.pending == 0
    store.enqueue(list(reversed(records)))
    expected = [("inc1:new:open", "pending"), ("inc1:update:alert", "pending"), ("inc1:end:closed", "pending")]
    assert keys(store, "mqtt") == expected and keys(store, "webhook:pager") == expected


def test_first_record_without_a_stage_still_makes_the_new(db_url: str) -> None:
    """A key frame that failed to render (no stage) loses no notification."""
    store = make_outbox(db_url, outbound_config(webhooks=[HOOK]))
    refresh = lifecycle("inc1")[1]
    store.enqueue([refresh])
    store.enqueue([refresh])
    assert keys(store, "webhook:pager") == [("inc1:new:open", "pending")]
    alert_no_frame = replace(lifecycle("inc1")[2], keyframe_paths={})
    store.enqueue([alert_no_frame])
    assert [k for k, _ in keys(store, "webhook:pager")] == ["inc1:new:open", "inc1:update:alert"]


def test_filters(db_url: str) -> None:
    hooks = [
        {**HOOK, "name": "alerts", "min_severity": "alert"},
        {**HOOK, "name": "cam2", "cameras": ["cam2"]},
        {**HOOK, "name": "ends", "kinds": ["end"]},
        {**HOOK, "name": "other_rule", "rules": ["loitering"]},
    ]
    store = make_outbox(db_url, outbound_config(webhooks=hooks))
    result = store.enqueue(lifecycle("inc1"))
    assert [k for k, _ in keys(store, "webhook:alerts")] == ["inc1:update:alert", "inc1:end:closed"]
    assert keys(store, "webhook:cam2") == [] and keys(store, "webhook:other_rule") == []
    assert [k for k, _ in keys(store, "webhook:ends")] == ["inc1:end:closed"]
    assert result.filtered > 0


def test_cooldown_per_camera_and_rule(db_url: str) -> None:
    store = make_outbox(db_url, outbound_config(webhooks=[{**HOOK, "cooldown_s": 60}]))
    store.enqueue(lifecycle("a"))  # notified
    store.enqueue(lifecycle("b", started=T0 + timedelta(seconds=20)))  # same camera+rule 20 s later: suppressed
    store.enqueue(lifecycle("c", started=T0 + timedelta(seconds=30), camera_id="cam2"))  # other camera
    store.enqueue(lifecycle("d", started=T0 + timedelta(seconds=30), rule="other"))  # other rule
    store.enqueue(lifecycle("e", started=T0 + timedelta(seconds=61)))  # after the cooldown
    states = {}
    for row in store.rows("webhook:pager"):
        states.setdefault(row["incident_id"], set()).add(row["state"])
    assert states == {"a": {"pending"}, "b": {"suppressed"}, "c": {"pending"}, "d": {"pending"}, "e": {"pending"}}
    assert len([r for r in store.rows() if r["incident_id"] == "b"]) == 3  # new, update and end all suppressed
    assert store.counters["suppressed"] == 3


def test_cooldown_within_one_batch_and_after_a_restart(db_url: str) -> None:
    config = outbound_config(webhooks=[{**HOOK, "cooldown_s": 60}])
    store = make_outbox(db_url, config)
    store.enqueue([lifecycle("a")[0], lifecycle("b", started=T0 + timedelta(seconds=5))[0]])
    assert [(r["incident_id"], r["state"]) for r in store.rows()] == [("a", "pending"), ("b", "suppressed")]
    restarted = make_outbox(db_url, config)  # a new process: the cooldown is read back from the table
    restarted.enqueue([lifecycle("c", started=T0 + timedelta(seconds=30))[0]])
    restarted.enqueue([lifecycle("b", started=T0 + timedelta(seconds=5))[-1]])  # b's end: still suppressed
    assert [(r["incident_id"], r["kind"], r["state"]) for r in restarted.rows()][2:] == [
        ("c", "new", "suppressed"),
        ("b", "end", "suppressed"),
    ]


def test_failed_write_leaves_no_cooldown_behind(db_url: str) -> None:
    """A batch that was not committed is replayed: its own incident must not be suppressed by itself."""
    config = outbound_config(webhooks=[{**HOOK, "cooldown_s": 60}])
    store = make_outbox(db_url, config)
    first = lifecycle("a")[0]
    store.cooldown.note(("webhook:pager", "cam1", "flying_lead"), "a", T0.replace(tzinfo=None))
    store.enqueue([first])
    assert store.rows()[0]["state"] == "pending"


def test_claim_orders_per_incident_and_leases(db_url: str) -> None:
    store = make_outbox(db_url, outbound_config(webhooks=[HOOK], retry={"lease_s": 30}))
    store.enqueue(lifecycle("a") + lifecycle("b"))
    now = utcnow()
    claimed = store.claim_due("webhook:pager", 10, now=now)
    # Only each incident's first pending message: its 'update' waits for its 'new'.
    assert [d.idempotency_key for d in claimed] == ["a:new:open", "b:new:open"]
    assert store.claim_due("webhook:pager", 10, now=now) == []  # leased
    store.mark_delivered([claimed[0].id], now=now)
    assert [d.idempotency_key for d in store.claim_due("webhook:pager", 10, now=now)] == ["a:update:alert"]
    # A dispatcher that died: its lease ends and the row is claimed again (at least once).
    again = store.claim_due("webhook:pager", 10, now=now + timedelta(seconds=31))
    assert {d.idempotency_key for d in again} == {"b:new:open", "a:update:alert"}


def test_backoff_is_exponential_capped_and_failed_rows_are_kept(db_url: str) -> None:
    retry = RetryConfig(backoff_base_s=1, backoff_max_s=8, max_attempts=5)
    assert [backoff_s(n, retry) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    store = make_outbox(db_url, outbound_config(webhooks=[HOOK], retry=retry.model_dump()))
    store.enqueue([lifecycle("a")[0]])
    now = utcnow()
    states = []
    for _ in range(5):
        (delivery,) = store.claim_due("webhook:pager", 1, now=now)
        states.append(store.mark_failed(delivery.id, "HTTP 500", now=now))
        row = store.rows()[0]
        if row["state"] == "pending":
            assert row["next_attempt_at"] - now == timedelta(seconds=backoff_s(row["attempts"], retry))
            now = row["next_attempt_at"]
    assert states == ["pending"] * 4 + ["failed"]
    row = store.rows()[0]
    assert row["attempts"] == 5 and row["last_error"] == "HTTP 500"
    assert store.counts()["webhook:pager"]["failed"] == 1
    assert store.requeue_failed() == 1 and store.rows()[0]["state"] == "pending"


def test_retry_after_and_release(db_url: str) -> None:
    store = make_outbox(db_url, outbound_config(webhooks=[HOOK]))
    store.enqueue([record("a", keyframe_paths={})])
    now = utcnow()
    (delivery,) = store.claim_due("webhook:pager", 1, now=now)
    store.release([delivery.id], now=now)
    (delivery,) = store.claim_due("webhook:pager", 1, now=now)
    assert delivery.attempts == 0
    store.mark_failed(delivery.id, "HTTP 429", now=now, retry_after_s=120)
    assert store.rows()[0]["next_attempt_at"] - now == timedelta(seconds=120)


def test_prune_keeps_pending_and_failed(db_url: str) -> None:
    store = make_outbox(db_url, outbound_config(webhooks=[HOOK], retry={"keep_days": 1}))
    store.enqueue(lifecycle("a"))
    now = utcnow()
    (first,) = store.claim_due("webhook:pager", 5, now=now)
    store.mark_delivered([first.id], now=now)
    assert store.prune(now=now + timedelta(days=2)) == 1
    assert [r["kind"] for r in store.rows()] == ["update", "end"]
