"""CPU per frame of an NVDEC camera's steps, and of moving its pictures between the GPU and a frame ring.

Usage (on a machine with an NVIDIA GPU, PyNvVideoCodec and CuPy):
    python3 bench/bench_nvdec.py [--clip FILE] [--out var/bench/nvdec.json] [--write]

Why: at 30+ cameras on one node the pipeline's limit is CPU, and a 720p picture is 2.7 MB. This
puts a number on each step an NVDEC camera takes per frame in the decoder actor (decode, colour
reorder, download) and on each way a picture reaches the shared frame ring (``trtseg.channel``)
and leaves it for the GPU segmenter: through a staging copy, or by DMA into and out of a ring
page-locked with ``engines.gpu.memory.CudaPageLocker``. CPU is process time (every thread, the CUDA
driver's own included) per frame, the clip decoded as fast as it goes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import CLIP_SIZE, machine_info, make_clips, write_doc_section, write_json  # noqa: E402
from trtseg.channel import FrameSlots, MappedSlots  # noqa: E402

logger = logging.getLogger("bench_nvdec")
UPLOADS = 300


def _timed(run: Callable[[], int]) -> dict[str, float]:
    """Process CPU and wall time per item of ``run`` (which returns how many items it did)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "items": count,
        "cpu_ms_per_frame": round(1000 * cpu / max(count, 1), 3),
        "wall_ms_per_frame": round(1000 * wall / max(count, 1), 3),
    }


def decode_steps(clip: Path) -> dict[str, dict[str, float]]:
    """Each decoder-actor step added in turn, over the whole clip."""
    import cupy
    import cupyx
    import PyNvVideoCodec as nvc  # noqa: N813

    from engines.gpu.memory import CudaPageLocker
    from trtseg.decode_nvdec import _blocking_sync, _low_latency, _packets

    _blocking_sync(0)  # as the decoder actor does, before the context exists
    height, width = CLIP_SIZE[1], CLIP_SIZE[0]
    shape = (height, width, 3)
    locked = FrameSlots(shape, slots=1, locker=CudaPageLocker(cupy, 0))
    plain = FrameSlots(shape, slots=1)
    staging = FrameSlots(shape, slots=1)

    pinned = cupyx.empty_pinned(shape, np.uint8)  # the decoder's host ring buffer

    def reorder(decoded: Any) -> Any:
        return cupy.ascontiguousarray(cupy.from_dlpack(decoded)[:, :, ::-1])

    def through(step: Callable[[Any], object]) -> Callable[[], int]:
        def run() -> int:
            demuxer = nvc.CreateDemuxer(filename=str(clip))
            low = _low_latency(nvc)
            decoder = nvc.CreateDecoder(
                gpuid=0,
                codec=demuxer.GetNvCodecId(),
                cudacontext=0,
                cudastream=0,
                usedevicememory=True,
                outputColorType=nvc.OutputColorType.RGB,
                **({"latency": low[0]} if low else {}),
            )
            frames = 0
            for packet in _packets(demuxer):
                if low and packet.bsl:
                    packet.decode_flag = low[1]
                for decoded in decoder.Decode(packet):
                    step(decoded)
                    frames += 1
            cupy.cuda.Device(0).synchronize()
            return frames

        return run

    steps: dict[str, Callable[[Any], object]] = {
        "decode (NVDEC, RGB out)": lambda d: None,
        "+ reorder to BGR": reorder,
        "+ download to the decoder's pinned buffer": lambda d: reorder(d).get(out=pinned),
        "+ pinned buffer copied into a ring slot (before)": lambda d: staging.write(0, reorder(d).get(out=pinned)),
        "+ download straight into a pageable ring slot": lambda d: plain.write(0, reorder(d)),
        "+ download straight into a page-locked ring slot (now)": lambda d: locked.write(0, reorder(d)),
    }
    with cupy.cuda.Device(0):
        through(lambda d: None)()  # warm: the first session pays for the context and the parser
        results = {name: _timed(through(step)) for name, step in steps.items()}
    for ring in (locked, plain, staging):
        ring.close()
    return results


def upload_ways() -> dict[str, dict[str, float]]:
    """The segmenter's side: a 720p picture from a ring slot into GPU memory."""
    import cupy

    from engines.gpu.memory import CudaPageLocker, GpuContext

    ctx = GpuContext("cuda")
    shape = (CLIP_SIZE[1], CLIP_SIZE[0], 3)
    writer = FrameSlots(shape, slots=1)
    locked, plain = MappedSlots(locker=CudaPageLocker(cupy, ctx.index)), MappedSlots()
    locked.add(writer.info, os.dup(writer.fd))
    plain.add(writer.info, os.dup(writer.fd))
    locked_view, plain_view = locked.view(writer.info.ring_id, 0), plain.view(writer.info.ring_id, 0)
    staging = ctx.pinned("bench.staging", writer.info.slot_bytes)
    with ctx.device:
        target = cupy.empty(writer.info.slot_bytes, cupy.uint8)

    def repeat(step: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(UPLOADS):
                step()
            ctx.synchronize()
            return UPLOADS

        return run

    def staged() -> None:  # what the letterbox did with a pageable slot
        np.copyto(staging, plain_view.reshape(-1))
        ctx.upload(staging, target)

    ways = {
        "staged: slot copied into a pinned buffer, then uploaded (before)": staged,
        "pageable slot uploaded by the driver": lambda: ctx.upload(plain_view.reshape(-1), target),
        "page-locked slot uploaded by DMA (now)": lambda: ctx.upload(locked_view.reshape(-1), target),
    }
    assert ctx.is_pinned(locked_view) and not ctx.is_pinned(plain_view)
    results = {name: _timed(repeat(step)) for name, step in ways.items()}
    locked.close()
    plain.close()
    writer.close()
    ctx.release()
    return results


def markdown(report: dict[str, Any]) -> str:
    lines = ["| step | CPU ms/frame | wall ms/frame |", "|---|---|---|"]
    for group in ("decoder", "segmenter"):
        for name, row in report[group].items():
            lines.append(f"| {group}: {name} | {row['cpu_ms_per_frame']:.3f} | {row['wall_ms_per_frame']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="a 720p H.264 file; default: the pipeline bench's seed-0 clip")
    parser.add_argument("--clip-seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "nvdec.json"))
    parser.add_argument("--from-json", default=None, help="render an existing report instead of measuring")
    parser.add_argument("--write", action="store_true", help="write the NVDEC section of docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.from_json:
        import json

        report = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
    else:
        clip = Path(args.clip) if args.clip else make_clips(ROOT / "var" / "bench" / "clips", 1, args.clip_seconds)[0]
        report = {
            "bench": "nvdec",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine_info(),
            "decoder": decode_steps(clip),
            "segmenter": upload_ways(),
        }
        write_json(Path(args.out), report)
    table = markdown(report)
    print(table)  # the CLI's result on stdout
    if args.write:
        info = report["machine"]
        write_doc_section(
            "bench_nvdec",
            "\n".join(
                [
                    "## NVDEC camera: CPU per frame of each step, and of the frame ring",
                    "",
                    f"Command: `{report['command']}`",
                    "",
                    f"Machine: {info['machine']}, {info['cores']} cores ({info['started_utc']} UTC). "
                    "A 1280x720 picture (2.7 MB) per frame; CPU is process time, all threads.",
                    "",
                    table,
                ]
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
