"""Read py-spy's raw (collapsed) stacks of a segmenter and say where its time goes.

    python bench/profile_stacks.py var/bench/profile/segmenter-64cams-1234.txt [--top 25] [--json OUT]

``bench/bench_pipeline.py --profile DIR`` writes those files (one per segmentation actor and step).
Each line is ``frame;frame;...;frame COUNT`` with the thread first (``--threads``); a frame reads
``function (file:line)``. The report gives the share of samples per thread kind, the functions whose
own code was on top of the stack (self) and the functions anywhere on it (inclusive), file names
made relative to the project so the figures read the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
THREAD_ID = re.compile(r"0x[0-9a-fA-F]+|[0-9a-f]{8,}|\d{3,}")
THREAD_FRAME = re.compile(r"^(thread \(|process \d)")


def record(pid: int, seconds: float, out: Path, gil: bool = False) -> subprocess.Popen[bytes] | None:
    """py-spy samples process ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks, threads
    apart, without pausing it; ``gil``: only the thread holding the GIL); None without py-spy."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200"]
    cmd += ["--format", "raw", "--threads", "--nonblocking", "--output", str(out), *(["--gil"] if gil else [])]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def short_file(path: str) -> str:
    """Site-packages and project paths cut to what names the code (``ray/_private/worker.py``)."""
    for marker in ("site-packages/", "dist-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    for root in ("trtseg/", "engines/", "actors/", "bench/", "deployments/"):
        at = path.find("/" + root)
        if at >= 0:
            return path[at + 1 :]
    return path.rsplit("/", 3)[-1] if path.startswith("/") else path


def frame_name(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({short_file(match['file'])})"


def parse(lines: list[str]) -> list[tuple[list[str], int]]:
    """(frames, samples) per stack line; the thread frame kept first."""
    stacks = []
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((body.split(";"), int(count)))
    return stacks


def thread_kind(frame: str) -> str:
    """Thread frames carry ids (``thread (0x7f..)``, ``process 123:"ray::Segmenter..."``): drop them."""
    return THREAD_ID.sub("#", frame).strip()


def summarise(stacks: list[tuple[list[str], int]], top: int) -> dict[str, Any]:
    total = sum(count for _, count in stacks)
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        head = [f for f in frames if THREAD_FRAME.match(f)]
        threads[thread_kind(head[-1]) if head else "?"] += count
        code = [frame_name(f) for f in frames if not THREAD_FRAME.match(f)]
        if not code:
            continue
        own[code[-1]] += count
        for name in set(code):
            anywhere[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k, "samples": v, "share": round(v / total, 4)} for k, v in counter.most_common(top)]

    return {"samples": total, "threads": share(threads), "self": share(own), "inclusive": share(anywhere)}


def render(name: str, report: dict[str, Any]) -> str:
    out = [f"# {name}: {report['samples']} samples"]
    for section in ("threads", "self", "inclusive"):
        out.append(f"\n## {section}")
        out.extend(f"{row['share'] * 100:6.1f} %  {row['name']}" for row in report[section])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None, help="write every file's summary as JSON")
    args = parser.parse_args(argv)
    reports = {}
    for path in args.files:
        reports[path.name] = summarise(parse(path.read_text(errors="replace").splitlines()), args.top)
        sys.stdout.write(render(path.name, reports[path.name]) + "\n\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
