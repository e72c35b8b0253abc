"""The API's own Prometheus figures (request counts and latencies) in the text exposition format.

Each app keeps its own registry, so several apps in one process (tests, replicas) never clash.
The actors' metrics go through Ray's own metrics export (see the /metrics description).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(val))}"' for key, val in pairs.items()) + "}"


class RequestMetrics:
    """Thread-safe counters and a latency histogram keyed by method, route template and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self.live_views = 0  # MJPEG streams open now (changed only on the event loop)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(method, route, str(status))] += 1
            key = (method, route)
            buckets = self._buckets.setdefault(key, [0] * (len(BUCKETS_S) + 1))
            for index, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    buckets[index] += 1
            buckets[-1] += 1
            self._sums[key] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP trtseg_api_live_views MJPEG live views this replica is streaming now.",
            "# TYPE trtseg_api_live_views gauge",
            f"trtseg_api_live_views {self.live_views}",
            "# HELP trtseg_api_requests_total HTTP requests handled by this API replica.",
            "# TYPE trtseg_api_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._counts.items()):
                lines.append(
                    f"trtseg_api_requests_total{_labels({'method': method, 'route': route, 'status': status})} {count}"
                )
            lines += [
                "# HELP trtseg_api_request_seconds Latency of HTTP requests (to the first response byte).",
                "# TYPE trtseg_api_request_seconds histogram",
            ]
            for (method, route), buckets in sorted(self._buckets.items()):
                base = {"method": method, "route": route}
                for bound, count in zip([*BUCKETS_S, math.inf], buckets, strict=True):
                    le = "+Inf" if math.isinf(bound) else repr(bound)
                    lines.append(f"trtseg_api_request_seconds_bucket{_labels({**base, 'le': le})} {count}")
                lines.append(f"trtseg_api_request_seconds_sum{_labels(base)} {self._sums[(method, route)]:.6f}")
                lines.append(f"trtseg_api_request_seconds_count{_labels(base)} {buckets[-1]}")
        return lines


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _metric_name(key: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in key.lower()).strip("_")
    return f"trtseg_camera_{cleaned}" if cleaned else ""


def camera_lines(cameras: Iterable[Mapping[str, Any]]) -> list[str]:
    """Gauges from each camera's numeric figures (nested dicts flattened with '_'), plus an up gauge."""
    series: dict[str, list[str]] = defaultdict(list)
    for camera in cameras:
        camera_id = str(camera.get("id", "?"))
        labels = _labels({"camera_id": camera_id, "site": str(camera.get("site", ""))})
        state = str(camera.get("state", "unknown"))
        series["trtseg_camera_live"].append(f"trtseg_camera_live{labels} {1 if state == 'live' else 0}")
        flat: dict[str, Any] = {}
        for key in ("stats", "figures"):
            for sub, value in (camera.get(key) or {}).items():
                if isinstance(value, Mapping):
                    flat.update({f"{sub}_{inner}": val for inner, val in value.items()})
                else:
                    flat[str(sub)] = value
        for key, value in flat.items():
            number = _numeric(value)
            name = _metric_name(key)
            if number is not None and name:
                series[name].append(f"{name}{labels} {number:g}")
    lines: list[str] = []
    for name in sorted(series):
        lines.append(f"# TYPE {name} gauge")
        lines.extend(series[name])
    return lines


def zone_lines(cameras: Iterable[Mapping[str, Any]]) -> list[str]:
    """Objects per camera, zone and class now, from each pusher's ``zone_counts`` figure."""
    lines = ["# HELP trtseg_zone_objects Tracked objects in a zone now.", "# TYPE trtseg_zone_objects gauge"]
    for camera in cameras:
        output = (camera.get("stats") or {}).get("output") or {}
        counts = output.get("zone_counts") if isinstance(output, Mapping) else None
        if not isinstance(counts, Mapping):
            continue
        base = {"camera_id": str(camera.get("id", "?")), "site": str(camera.get("site", ""))}
        for zone, classes in counts.items():
            for class_name, count in (classes or {}).items():
                number = _numeric(count)
                if number is not None:
                    labels = _labels({**base, "zone": str(zone), "class_name": str(class_name)})
                    lines.append(f"trtseg_zone_objects{labels} {number:g}")
    return lines


def incident_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Open incidents by site, camera, rule, severity and acknowledgement, from the database."""
    lines = [
        "# HELP trtseg_incidents_open Incidents open now (from the database).",
        "# TYPE trtseg_incidents_open gauge",
    ]
    for row in rows:
        labels = {key: str(row[key]) for key in ("site", "camera_id", "rule", "severity")}
        labels["acknowledged"] = "true" if row["acknowledged"] else "false"
        lines.append(f"trtseg_incidents_open{_labels(labels)} {int(row['count'])}")
    return lines
