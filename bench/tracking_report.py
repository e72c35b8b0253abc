"""The tracking benchmark's report: the table of every sequence and rate, and the goal check.

The goal (issue 18): no worse than the peer on HOTA and IDF1 on any sequence and rate, and at least
``MARGIN`` IDF1 points above it on the occlusion and thin-cable sequences, on every split of seeds.
"""

from __future__ import annotations

from typing import Any

from bench.common import markdown_table

MARGIN = 5.0  # IDF1 points above the peer on the sequences below
MARGIN_SCENARIOS = ("occlusion", "cables")


def markdown(report: dict[str, Any]) -> str:
    headers = ["sequence", "seeds", "fps", "side", "HOTA", "IDF1", "MOTA", "IDsw", "DetA", "AssA", "FP", "FN", "GT"]
    rows = []
    for item in report["sequences"]:
        seq = item["sequence"]
        for fps, row in item["rates"].items():
            for side in ("ours", "peer"):
                if side not in row:
                    continue
                m = row[side]
                rows.append(
                    [
                        seq["name"],
                        item["split"],
                        fps,
                        side,
                        100 * m["HOTA"],
                        100 * m["IDF1"],
                        100 * m["MOTA"],
                        m["IDsw"],
                        100 * m["DetA"],
                        100 * m["AssA"],
                        m["FP"],
                        m["FN"],
                        m["GT"],
                    ]
                )
    return markdown_table(headers, rows)


def goal_check(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per sequence and rate: the HOTA and IDF1 differences (points) and whether the goal holds."""
    out = []
    for item in report["sequences"]:
        name = item["sequence"]["name"]
        for fps, row in item["rates"].items():
            if "peer" not in row:
                continue
            ours, peer = row["ours"], row["peer"]
            d_idf1 = 100 * (ours["IDF1"] - peer["IDF1"])
            d_hota = 100 * (ours["HOTA"] - peer["HOTA"])
            need = MARGIN if name.split("-")[0] in MARGIN_SCENARIOS else 0.0
            out.append(
                {
                    "sequence": name,
                    "split": item["split"],
                    "fps": fps,
                    "idf1": round(d_idf1, 2),
                    "hota": round(d_hota, 2),
                    "needed_idf1": need,
                    "met": bool(d_idf1 >= need - 1e-9 and d_hota >= -1e-9),
                }
            )
    return out


def summary(report: dict[str, Any]) -> str:
    """One line per sequence and rate: IDF1 and HOTA of ours minus the peer's, and the goal's verdict."""
    lines = []
    for g in report.get("goal") or goal_check(report):
        verdict = "ok" if g["met"] else f"MISSED (IDF1 needs {g['needed_idf1']:+.0f}, HOTA >= 0)"
        lines.append(
            f"- {g['sequence']} [{g['split']}] @ {g['fps']} fps: IDF1 {g['idf1']:+.1f} points, "
            f"HOTA {g['hota']:+.1f}: {verdict}"
        )
    checks = report.get("goal") or goal_check(report)
    if checks:
        lines.append(f"goal met on {sum(g['met'] for g in checks)} of {len(checks)} sequence-rates")
    return "\n".join(lines)
