"""FP32 / FP16 / INT8 side by side: convert, calibrate on your footage, and report box/mask mAP.

    python tools/accuracy_report.py --model models/trtseg-cable-n.onnx --data path/to/data.yaml \
        --calib clip1.mp4 --calib clip2.mp4 --count 128 --method entropy --out-dir var/quant

Writes ``<stem>.fp16.onnx`` and ``<stem>.int8.onnx`` under ``--out-dir`` (reused when present
unless ``--rebuild``), prints the markdown table, and with ``--json`` also the raw figures.
The same functions back ``run_cluster.py calibrate|fp16|accuracy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `engines`

from engines.base import EngineError
from engines.evaluate import EvalResult, accuracy_table, evaluate, format_table, iter_results_json
from engines.quant.dataset import DatasetError
from engines.quantize import calibrate, convert_fp16

__all__ = ["accuracy_table", "build_variants", "calibrate", "convert_fp16", "main"]


def build_variants(
    model: Path,
    out_dir: Path,
    calib_sources: list[str],
    count: int = 128,
    sampling: str = "uniform",
    method: str = "percentile",
    exclude: list[str] | None = None,
    target: str = "tensorrt",
    rebuild: bool = False,
) -> dict[str, Path]:
    """The FP32 source plus its FP16 and INT8 conversions (made only when missing or ``rebuild``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fp16 = out_dir / f"{model.stem}.fp16.onnx"
    int8 = out_dir / f"{model.stem}.int8-{target}-{method}.onnx"
    if rebuild or not fp16.is_file():
        convert_fp16(model, fp16)
    if rebuild or not int8.is_file():
        calibrate(model, calib_sources, int8, count, sampling, method, exclude, target=target)  # type: ignore[arg-type]
    return {"fp32": model, "fp16": fp16, f"int8 ({target}, {method})": int8}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="FP32 Ultralytics segmentation ONNX export")
    parser.add_argument("--data", type=Path, required=True, help="data.yaml of a YOLO-format segmentation data set")
    parser.add_argument("--split", default=None, help="split to evaluate (default: test, else val)")
    parser.add_argument("--calib", action="append", required=True, help="calibration video/URL/image folder (repeat)")
    parser.add_argument("--count", type=int, default=128, help="calibration frames in all")
    parser.add_argument("--sampling", default="uniform", help="uniform | every:K | random[:SEED]")
    parser.add_argument("--method", default="percentile", choices=["entropy", "minmax", "percentile"])
    parser.add_argument("--target", default="tensorrt", choices=["tensorrt", "cpu"])
    parser.add_argument("--exclude", action="append", default=None, help="extra node-name regex kept in float")
    parser.add_argument("--out-dir", type=Path, default=Path("var/quant"))
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--rebuild", action="store_true", help="convert again even if the files exist")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        models = build_variants(
            args.model, args.out_dir, args.calib, args.count, args.sampling, args.method, args.exclude,
            args.target, args.rebuild,
        )  # fmt: skip
        results: dict[str, EvalResult] = {
            label: evaluate(path, args.data, args.split, max_images=args.max_images) for label, path in models.items()
        }
    except (EngineError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(list(iter_results_json(results)), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
