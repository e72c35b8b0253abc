"""Delivery latency of incident messages on the loopback: from the enqueue of an opening to its receipt.

    .venv/bin/python bench/bench_outbound.py                        # 500 incidents, SQLite outbox
    .venv/bin/python bench/bench_outbound.py --db-url mysql+pymysql://root@127.0.0.1:3306/bench_outbound

A real Mosquitto (tests/services/mosquitto.py) and a webhook receiver that verifies signatures
(tests/services/webhook_receiver.py) on loopback; the outbox in SQLite (or ``--db-url``); the
dispatcher in this process, woken by the enqueue as the sink's would be. Each incident's opening
record is enqueued every ``--interval-ms``; latency is receipt time (the subscriber's callback, the
receiver's handler) minus the time before ``enqueue`` was called, so it includes writing the outbox
row, claiming it, sending, the PUBACK or HTTP answer and marking it delivered. ``--no-wake``
measures a dispatcher in another process (it finds rows by polling every ``--poll-ms``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_info, markdown_table, percentile, write_json
from tests.services.mosquitto import MosquittoBroker, MqttCollector
from tests.services.webhook_receiver import WebhookReceiver
from trtseg.analytics.records import IncidentRecord
from trtseg.config.outbound import OutboundConfig
from trtseg.db.url import create_engine, normalise_url
from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.outbox import OutboxStore

logger = logging.getLogger("bench_outbound")


def opening(index: int, started: datetime) -> IncidentRecord:
    incident_id = f"bench{index:06d}"
    return IncidentRecord(
        incident_id=incident_id,
        site="bench",
        camera_id=f"cam{index % 8}",
        rule="flying_lead",
        rule_kind="presence",
        severity="alert",
        status="open",
        result="danger: 62 % of charging_cable outside building_safe_zone",
        started_at=started,
        last_seen_at=started,
        zone="building_safe_zone",
        track_id=index,
        class_name="charging_cable",
        confidence=0.8,
        best_confidence=0.8,
        fraction=0.62,
        peak_fraction=0.62,
        keyframe_paths={"open": {"raw": f"b/{incident_id}-open_raw.jpg", "annotated": f"b/{incident_id}-open_a.jpg"}},
    )


def run(count: int, interval_ms: float, db_url: str | None, wake: bool, poll_ms: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work / "mosquitto").start()
        receiver = WebhookReceiver(secret="bench-secret").start()
        collector = MqttCollector("127.0.0.1", broker.port, "trtseg/incidents/#").start()
        config = OutboundConfig.model_validate(
            {
                "allow_loopback": True,
                "public_base_url": "http://127.0.0.1:8000",
                "mqtt": {"url": broker.url},
                "webhooks": [{"name": "bench", "url": receiver.url, "secret": "bench-secret", "cooldown_s": 0}],
                "retry": {"poll_interval_s": poll_ms / 1000.0},
            }
        )
        outbox = OutboxStore(create_engine(normalise_url(db_url or f"sqlite:///{work / 'outbox.db'}")), config)
        outbox.ensure_table()
        dispatcher = OutboundDispatcher(outbox).start()
        assert dispatcher.publisher is not None and dispatcher.publisher.wait_connected(10)
        sent: dict[str, float] = {}
        enqueue_ms: list[float] = []
        started = datetime.now(UTC)
        try:
            for i in range(count):
                record = opening(i, started + timedelta(milliseconds=i * interval_ms))
                t = time.time()
                sent[f"{record.incident_id}:new:open"] = t
                if wake:
                    dispatcher.enqueue([record])
                else:
                    outbox.enqueue([record])
                enqueue_ms.append((time.time() - t) * 1000.0)
                time.sleep(max(0.0, interval_ms / 1000.0 - (time.time() - t)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(receiver.unique_keys()) >= count and len(collector.messages) >= count:
                    break
                time.sleep(0.05)
        finally:
            dispatcher.stop()
            collector.stop()
            receiver.stop()
            broker.kill()
        mqtt = [m.at - sent[m.json()["idempotency_key"]] for m in collector.messages]
        hooks = [h.at - sent[h.key] for h in receiver.accepted()]
        outbox.engine.dispose()
    return {
        "count": count,
        "interval_ms": interval_ms,
        "wake": wake,
        "poll_ms": poll_ms,
        "database": "sqlite" if db_url is None else db_url.split("://", 1)[0],
        "enqueue_ms": _summary([v / 1000.0 for v in enqueue_ms]),
        "mqtt_ms": _summary(mqtt),
        "webhook_ms": _summary(hooks),
        "machine": machine_info(),
    }


def _summary(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 0.50),
        "p90": percentile(ms, 0.90),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else None,
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for name, key in (("MQTT (QoS 1, PUBACK)", "mqtt_ms"), ("webhook (HTTP POST, 2xx)", "webhook_ms")):
        s = report[key]
        rows.append([name, s["n"], f"{s['p50']:.1f}", f"{s['p90']:.1f}", f"{s['p99']:.1f}", f"{s['max']:.1f}"])
    s = report["enqueue_ms"]
    rows.append(["enqueue alone (outbox write)", s["n"], f"{s['p50']:.1f}", f"{s['p90']:.1f}", f"{s['p99']:.1f}",
                 f"{s['max']:.1f}"])  # fmt: skip
    return markdown_table(["delivery", "messages", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="incidents (one 'new' message each, per target)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="time between openings")
    parser.add_argument("--db-url", default=None, help="outbox database (default: SQLite in a temporary directory)")
    parser.add_argument("--no-wake", action="store_true", help="do not wake the dispatcher: it polls")
    parser.add_argument("--poll-ms", type=float, default=500.0, help="the dispatcher's poll interval")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args.count, args.interval_ms, args.db_url, not args.no_wake, args.poll_ms)
    if args.out:
        write_json(args.out, report)
    mode = "woken by the enqueue" if report["wake"] else f"polling every {report['poll_ms']:.0f} ms"
    print(f"{report['count']} incidents, one every {report['interval_ms']:.0f} ms, outbox on {report['database']}, "
          f"dispatcher {mode}")  # fmt: skip
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
