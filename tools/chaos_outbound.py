#!/usr/bin/env python3
"""Outbound chaos, reconciled: incidents keep coming while the broker, the receiver and the dispatcher fail.

A real Mosquitto (with persistence, so a subscriber's session survives its restart), a webhook
receiver that checks signatures and dedupes by Idempotency-Key, the delivery outbox on SQLite (or
``--db-url``), incidents enqueued as the sink would (open, escalation, close of each), and the
dispatcher in a process of its own. Faults, in order:

1. the broker stopped for ``--broker-outage-s`` (60), then started again;
2. the receiver answering 500 for ``--receiver-500-s`` (20), then down for ``--receiver-down-s`` (20), then up;
3. the dispatcher SIGKILLed while a webhook request is in flight, a new one started on the same database.

Then production stops and the tool waits until nothing is pending. It counts, per target, the
messages expected (3 per incident), received (with repeats), unique by key, duplicates and lost;
zero lost is the pass. tests/outbound/test_chaos.py runs a short version in CI.

    .venv/bin/python tools/chaos_outbound.py --incidents 120 --out var/chaos_outbound.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.services.mosquitto import MosquittoBroker, MqttCollector  # noqa: E402
from tests.services.webhook_receiver import WebhookReceiver  # noqa: E402
from trtseg.analytics.records import IncidentRecord  # noqa: E402
from trtseg.config.outbound import OutboundConfig  # noqa: E402
from trtseg.db.url import create_engine, normalise_url  # noqa: E402
from trtseg.outbound.dispatcher import OutboundDispatcher  # noqa: E402
from trtseg.outbound.outbox import OutboxStore  # noqa: E402

logger = logging.getLogger("chaos_outbound")
SECRET = "chaos-secret"
KINDS = ("new:open", "update:alert", "end:closed")


@dataclass
class Plan:
    incidents: int = 120
    produce_s: float = 150.0  # incidents are spread over this long (faults happen meanwhile)
    broker_at_s: float = 5.0
    broker_outage_s: float = 60.0
    receiver_500_s: float = 20.0
    receiver_down_s: float = 20.0
    kill_delay_s: float = 2.0  # how long the receiver holds the request the dispatcher dies in
    settle_timeout_s: float = 300.0
    webhook_timeout_s: float = 5.0
    lease_s: float = 8.0
    backoff_max_s: float = 4.0


def outbound_config(broker: MosquittoBroker, receiver: WebhookReceiver, plan: Plan) -> OutboundConfig:
    return OutboundConfig.model_validate(
        {
            "allow_loopback": True,
            "public_base_url": "http://127.0.0.1:8000",
            "mqtt": {"url": broker.url, "publish_timeout_s": 3, "keepalive_s": 5, "client_id": "trtseg-chaos"},
            "webhooks": [
                {
                    "name": "chaos",
                    "url": receiver.url,
                    "secret": SECRET,
                    "cooldown_s": 0,
                    "timeout_s": plan.webhook_timeout_s,
                }
            ],
            "retry": {
                "backoff_base_s": 0.2,
                "backoff_max_s": plan.backoff_max_s,
                "max_attempts": 100_000,
                "lease_s": plan.lease_s,
                "poll_interval_s": 0.1,
            },
        }
    )


def incident_records(index: int, started: datetime) -> list[list[IncidentRecord]]:
    """One incident's three records that make messages: open, escalation, close."""
    incident_id = f"chaos{index:05d}"

    def stage(name: str) -> dict[str, dict[str, str]]:
        return {name: {"raw": f"x/{incident_id}-{name}_raw.jpg", "annotated": f"x/{incident_id}-{name}_annotated.jpg"}}

    first = IncidentRecord(
        incident_id=incident_id,
        site="chaos",
        camera_id=f"cam{index % 4}",
        rule="flying_lead",
        rule_kind="presence",
        severity="detection",
        status="open",
        result="safe",
        started_at=started,
        last_seen_at=started,
        zone="bay",
        track_id=index,
        class_name="charging_cable",
        keyframe_paths=stage("open"),
    )
    alert = replace(
        first,
        severity="alert",
        escalated_at=started + timedelta(seconds=1),
        last_seen_at=started + timedelta(seconds=1),
        result="danger",
        keyframe_paths=stage("alert"),
    )
    close = replace(
        alert,
        status="closed",
        ended_at=started + timedelta(seconds=2),
        last_seen_at=started + timedelta(seconds=2),
        keyframe_paths=stage("close"),
    )
    return [[first], [alert], [close]]


class DispatcherProcess:
    """The dispatcher in a process of its own, so it can die as a crash would."""

    def __init__(self, db_url: str, config_path: Path, log_path: Path) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "dispatch", "--db-url", db_url]
        self.args += ["--config", str(config_path)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it for its life
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _faults(plan: Plan, broker: MosquittoBroker, receiver: WebhookReceiver, dispatcher: DispatcherProcess,
            log: list[dict[str, Any]], t0: float) -> None:  # fmt: skip
    def note(event: str, **fields: Any) -> None:
        log.append({"at_s": round(time.monotonic() - t0, 2), "event": event, **fields})
        logger.info("chaos event=%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    time.sleep(plan.broker_at_s)
    broker.stop()
    note("broker stopped")
    time.sleep(plan.broker_outage_s)
    broker.start()
    note("broker started")
    receiver.status = 500
    note("receiver answers 500")
    time.sleep(plan.receiver_500_s)
    receiver.stop()
    note("receiver down")
    time.sleep(plan.receiver_down_s)
    receiver.status = 200
    receiver.delay_s = plan.kill_delay_s
    receiver.start()
    note("receiver up, slow")
    deadline = time.monotonic() + 60
    while receiver.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    dispatcher.kill()
    note("dispatcher killed", in_flight=receiver.in_flight)
    receiver.delay_s = 0.0
    time.sleep(0.5)
    dispatcher.start()
    note("dispatcher started")


def run_chaos(plan: Plan, workdir: Path, db_url: str | None = None) -> dict[str, Any]:
    """Run the scenario; returns the counts (``lost`` per target must be 0)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{workdir / 'outbox.db'}"
    broker = MosquittoBroker(workdir / "mosquitto", persistence=True).start()
    receiver = WebhookReceiver(secret=SECRET).start()
    collector = MqttCollector(
        "127.0.0.1", broker.port, "trtseg/#", client_id="chaos-subscriber", clean_session=False
    ).start()
    config = outbound_config(broker, receiver, plan)
    config_path = workdir / "outbound.json"
    config_path.write_text(config.model_dump_json(), encoding="utf-8")
    # model_dump_json hides secrets: write them in plainly for the child (a throwaway file of this run).
    raw = json.loads(config_path.read_text())
    raw["webhooks"][0]["url"], raw["webhooks"][0]["secret"] = receiver.url, SECRET
    config_path.write_text(json.dumps(raw), encoding="utf-8")
    outbox = OutboxStore(create_engine(normalise_url(db_url)), config)
    outbox.ensure_table()
    dispatcher = DispatcherProcess(db_url, config_path, workdir / "dispatcher.log")
    dispatcher.start()
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()
    faults = threading.Thread(target=_faults, args=(plan, broker, receiver, dispatcher, events, t0), daemon=True)
    faults.start()
    try:
        # Produce: each incident's open, escalation and close, spread over produce_s.
        started = datetime.now(UTC)
        schedule: list[tuple[float, list[IncidentRecord]]] = []
        for i in range(plan.incidents):
            at = plan.produce_s * i / max(1, plan.incidents)
            for step, records in enumerate(incident_records(i, started + timedelta(seconds=at))):
                schedule.append((at + step * min(1.0, plan.produce_s / max(1, plan.incidents)), records))
        schedule.sort(key=lambda item: item[0])
        for at, records in schedule:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            while True:
                try:
                    outbox.enqueue(records)
                    break
                except Exception as exc:  # SQLite busy under two writers: the sink would retry too
                    logger.warning("enqueue retry error=%s", type(exc).__name__)
                    time.sleep(0.2)
        faults.join()
        produced_s = time.monotonic() - t0
        deadline = time.monotonic() + plan.settle_timeout_s
        expected = {f"chaos{i:05d}:{k}" for i in range(plan.incidents) for k in KINDS}
        while time.monotonic() < deadline:
            pending = sum(c["pending"] for c in outbox.counts().values())
            mqtt_keys = {_key(m) for m in list(collector.messages) if m.topic.startswith("trtseg/incidents/")}
            if pending == 0 and expected <= receiver.unique_keys() and expected <= mqtt_keys:
                break
            time.sleep(0.2)
        settled_s = time.monotonic() - t0 - produced_s
    finally:
        dispatcher.stop()
        collector.stop()
        receiver.stop()
        broker.kill()
    mqtt_msgs = [m for m in collector.messages if m.topic.startswith("trtseg/incidents/")]
    availability = [m.payload.decode() for m in collector.messages if m.topic == "trtseg/availability"]
    result = {
        "plan": asdict(plan),
        "events": events,
        "produce_s": round(produced_s, 1),
        "settle_s": round(settled_s, 1),
        "expected": len(expected),
        "mqtt": _counts(expected, [_key(m) for m in mqtt_msgs]),
        "webhook": _counts(expected, [h.key for h in receiver.accepted()]),
        "webhook_requests": len(receiver.hits),
        "webhook_bad_signatures": sum(1 for h in receiver.hits if h.signed_ok is False),
        "availability": {"online": availability.count("online"), "offline": availability.count("offline")},
        "outbox": outbox.counts(("pending", "delivered", "failed", "suppressed")),
    }
    outbox.engine.dispose()
    return result


def _key(message: Any) -> str:
    try:
        return str(message.json()["idempotency_key"])
    except (ValueError, KeyError):
        return ""


def _counts(expected: set[str], received: list[str]) -> dict[str, Any]:
    unique = set(received)
    return {
        "lost_keys": sorted(expected - unique)[:20],
        "received": len(received),
        "unique": len(unique & expected),
        "duplicates": len(received) - len(unique),
        "lost": len(expected - unique),
        "unexpected": len(unique - expected),
    }


def dispatch(db_url: str, config_path: Path) -> None:
    """The child: run a dispatcher until SIGTERM (or until it is killed)."""
    config = OutboundConfig.model_validate_json(config_path.read_text(encoding="utf-8"))
    outbox = OutboxStore(create_engine(normalise_url(db_url)), config)
    dispatcher = OutboundDispatcher(outbox).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1.0):
        dispatcher.stats()
    dispatcher.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("dispatch", help="(internal) run one dispatcher process")
    child.add_argument("--db-url", required=True)
    child.add_argument("--config", type=Path, required=True)
    parser.add_argument("--incidents", type=int, default=Plan.incidents)
    parser.add_argument("--produce-s", type=float, default=Plan.produce_s)
    parser.add_argument("--broker-outage-s", type=float, default=Plan.broker_outage_s)
    parser.add_argument("--receiver-500-s", type=float, default=Plan.receiver_500_s)
    parser.add_argument("--receiver-down-s", type=float, default=Plan.receiver_down_s)
    parser.add_argument("--db-url", default=None, help="outbox database (default: SQLite in the work directory)")
    parser.add_argument("--out", type=Path, default=None, help="write the counts as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "dispatch":
        dispatch(args.db_url, args.config)
        return 0
    plan = Plan(
        incidents=args.incidents,
        produce_s=args.produce_s,
        broker_outage_s=args.broker_outage_s,
        receiver_500_s=args.receiver_500_s,
        receiver_down_s=args.receiver_down_s,
    )
    needed = plan.broker_at_s + plan.broker_outage_s + plan.receiver_500_s + plan.receiver_down_s + 5
    if plan.produce_s < needed:
        plan.produce_s = needed  # incidents keep coming through every fault
    with tempfile.TemporaryDirectory(prefix="chaos-outbound-") as tmp:
        result = run_chaos(plan, Path(tmp), args.db_url)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    for target in ("mqtt", "webhook"):
        c = result[target]
        print(
            f"{target}: expected {result['expected']}, received {c['received']}, unique {c['unique']}, "
            f"duplicates {c['duplicates']}, lost {c['lost']}"
        )
    print(
        f"availability: {result['availability']}; webhook requests {result['webhook_requests']}, "
        f"bad signatures {result['webhook_bad_signatures']}; settled {result['settle_s']} s after production"
    )
    lost = result["mqtt"]["lost"] + result["webhook"]["lost"]
    print("PASS: zero lost" if lost == 0 else f"FAIL: {lost} lost")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
