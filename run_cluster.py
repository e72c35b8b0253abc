#!/usr/bin/env python3
"""trtseg's command line: run the system on a Ray cluster, check configuration, build engines,
calibrate INT8 models, report accuracy, run benchmarks.

    python run_cluster.py run --config conf/demo.yaml [--address auto] [--make-sample]
    python run_cluster.py check-config --config conf/production.example.yaml
    python run_cluster.py build-engine --config conf/production.example.yaml
    python run_cluster.py calibrate --model models/trtseg-cable-n.onnx --source clip.mp4 --out int8.onnx
    python run_cluster.py accuracy --model fp32=a.onnx --model int8=b.onnx --data path/to/data.yaml
    python run_cluster.py bench engine|media|gpu|quant|pipeline [bench args]
    python run_cluster.py sample-video var/videos/sample.mp4 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engines.base import EngineError  # noqa: E402
from trtseg.config import ConfigError, SystemConfig, load_config  # noqa: E402
from trtseg.progress import Progress  # noqa: E402
from trtseg.sources import redact_url  # noqa: E402

logger = logging.getLogger("trtseg.cli")
DEFAULT_CONFIG = ROOT / "conf" / "demo.yaml"
BENCHMARKS = ("engine", "media", "gpu", "quant", "pipeline")


class CliError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, CliError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-level", default=os.environ.get("TRTSEG_LOG_LEVEL", "info"), choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config",
            "-c",
            type=Path,
            default=Path(os.environ.get("TRTSEG_CONFIG", DEFAULT_CONFIG)),
            help="YAML configuration (default: conf/demo.yaml or $TRTSEG_CONFIG)",
        )
        return sub

    run = with_config(commands.add_parser("run", help="start every actor and the HTTP API; run until Ctrl-C"))
    run.add_argument(
        "--address",
        help="Ray cluster to join ('auto', 'host:port', 'ray://host:10001'); "
        "default: the config's, else a local instance",
    )
    run.add_argument(
        "--make-sample",
        action="store_true",
        help="render the demo's sample video first when a camera's file source is missing",
    )
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds (smoke tests)")
    run.set_defaults(handler=cmd_run)

    check = with_config(commands.add_parser("check-config", help="validate a configuration and summarise it"))
    check.set_defaults(handler=cmd_check_config)

    build = with_config(commands.add_parser("build-engine", help="build (or find cached) the TensorRT engine"))
    build.add_argument("--force", action="store_true", help="rebuild even when a cached engine matches")
    build.set_defaults(handler=cmd_build_engine)

    calibrate = commands.add_parser("calibrate", help="make an INT8 Q/DQ model from your own footage")
    calibrate.add_argument("--model", type=Path, required=True, help="FP32 ONNX model")
    calibrate.add_argument("--source", action="append", required=True, help="video file or stream URL (repeatable)")
    calibrate.add_argument("--out", type=Path, required=True, help="output ONNX path")
    calibrate.add_argument("--count", type=int, default=128, help="calibration frames (shared by the sources)")
    calibrate.add_argument(
        "--sampling", default="uniform", help="uniform | every:K | random[:SEED] (per source; default uniform)"
    )
    calibrate.add_argument("--method", default="percentile", choices=["percentile", "minmax", "entropy"])
    calibrate.add_argument(
        "--target",
        default="tensorrt",
        choices=["tensorrt", "cpu"],
        help="tensorrt: symmetric int8 Q/DQ for a strongly typed TensorRT network (also runs on ONNX Runtime); "
        "cpu: uint8 activations, ONNX Runtime's fastest CPU form",
    )
    calibrate.add_argument("--imgsz", type=int, nargs=2, metavar=("H", "W"), help="calibration input size")
    calibrate.add_argument("--exclude", action="append", default=None, help="node name regex kept in float")
    calibrate.set_defaults(handler=cmd_calibrate)

    fp16 = commands.add_parser("fp16", help="convert an ONNX model to FP16 (inputs/outputs stay FP32)")
    fp16.add_argument("--model", type=Path, required=True)
    fp16.add_argument("--out", type=Path, required=True)
    fp16.set_defaults(handler=cmd_fp16)

    accuracy = commands.add_parser("accuracy", help="mask/box mAP of models on a YOLO segmentation dataset")
    accuracy.add_argument("--model", action="append", required=True, metavar="LABEL=PATH")
    accuracy.add_argument("--data", type=Path, required=True, help="data.yaml of a YOLO-format dataset")
    accuracy.add_argument("--split", default="test")
    accuracy.set_defaults(handler=cmd_accuracy)

    bench = commands.add_parser("bench", help="run a benchmark from bench/ (extra args go to it)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=cmd_bench)

    sample = commands.add_parser("sample-video", help="render a generated 1280x720 25 fps H.264 scene")
    sample.add_argument("out", type=Path)
    sample.add_argument("--seconds", type=float, default=20.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=cmd_sample_video)
    return parser


# -- commands -----------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{args.config}: valid")
    print(f"  cluster   : {config.cluster.address or 'local instance'} (namespace {config.cluster.namespace})")
    print(
        f"  engine    : {config.engine.backend} {config.engine.precision} on {config.engine.device}, "
        f"batch {config.engine.batch_size}, model {config.engine.model}"
    )
    print(f"  cameras   : {len(config.cameras)}")
    for camera in config.cameras:
        print(f"    - {camera.id} ({camera.site}): push {camera.push}, classes {', '.join(camera.classes)}")
    print(f"  database  : {redact_url(config.sink.database_url.get_secret_value())}")
    print(
        f"  http api  : http://{config.api.host}:{config.api.port}{config.api.route_prefix} "
        f"(admin token {'set' if config.api.admin_secret() else 'not set'}, "
        f"viewer token {'set' if config.api.viewer_secret() else 'not set'})"
    )
    if config.api.exposure_problem():
        print(f"  warning   : `run` will refuse to start: {config.api.exposure_problem()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.api.exposure_problem():
        raise ConfigError(str(config.api.exposure_problem()))
    if args.address:
        config.cluster.address = args.address
    config = config.with_paths_resolved(ROOT)
    prepare_local_dirs(config)
    if args.make_sample:
        render_missing_samples(config)
    check_inputs(config)

    import ray

    init_ray(config)
    from actors.launch import running_system
    from deployments.app import deploy

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with contextlib.ExitStack() as running:
            with Progress("starting actors"):
                running.enter_context(running_system(config))  # stops the pipeline in order on exit
            try:
                with Progress("starting the HTTP API"):
                    deploy(config)
                print_urls(config)
                stop.wait(timeout=args.duration)
            finally:
                print("shutting down ...", file=sys.stderr)
                stop_serve()
    finally:
        ray.shutdown()
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    config = load_config(args.config).with_paths_resolved(ROOT)
    try:
        from engines.tensorrt_backend import build_engine
    except ImportError as error:
        raise CliError(f"the TensorRT backend is unavailable: {error}") from None
    with Progress("building TensorRT engine", total=100) as progress:
        path = build_engine(
            config.engine, progress=lambda share, note="": progress.set(share * 100, note=note), force=args.force
        )
    print(f"engine: {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from engines.quantize import calibrate

    out = calibrate(
        model=args.model,
        sources=args.source,
        out=args.out,
        count=args.count,
        sampling=args.sampling,
        method=args.method,
        exclude=args.exclude,
        target=args.target,
        imgsz=tuple(args.imgsz) if args.imgsz else None,
    )
    print(f"int8 model: {out}")
    return 0


def cmd_fp16(args: argparse.Namespace) -> int:
    from engines.quantize import convert_fp16

    print(f"fp16 model: {convert_fp16(args.model, args.out)}")
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from engines.evaluate import accuracy_table

    models: dict[str, Path] = {}
    for item in args.model:
        label, sep, path = item.partition("=")
        if not sep:
            raise CliError(f"--model takes LABEL=PATH, got '{item}'")
        models[label] = Path(path)
    print(accuracy_table(models, args.data, split=args.split))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = ROOT / "bench" / f"bench_{args.name}.py"
    if not script.is_file():
        raise CliError(f"no benchmark script {script.relative_to(ROOT)}")
    sys.argv = [str(script), *args.bench_args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def cmd_sample_video(args: argparse.Namespace) -> int:
    from datasets.video import render_sample_video

    with Progress(f"rendering {args.out}"):
        render_sample_video(args.out, seconds=args.seconds, seed=args.seed)
    return 0


# -- helpers -----------------------------------------------------------------------------------


def prepare_local_dirs(config: SystemConfig) -> None:
    for path in (config.pusher.hls_dir, config.sink.keyframe_dir, config.sink.spool_dir, config.engine.cache_dir):
        path.mkdir(parents=True, exist_ok=True)
    url = config.sink.database_url.get_secret_value()
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def render_missing_samples(config: SystemConfig) -> None:
    from datasets.video import render_sample_video

    for camera in config.cameras:
        path = Path(camera.source.removeprefix("file://"))
        if "://" in camera.source and not camera.source.startswith("file://"):
            continue
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with Progress(f"rendering sample video {path.name}"):
                render_sample_video(path, seconds=20.0, seed=0, charging_bay=True)


def check_inputs(config: SystemConfig) -> None:
    if not config.engine.model.is_file():
        raise CliError(f"engine.model: model file not found: {config.engine.model}")
    for camera in config.cameras:
        if "://" not in camera.source and not Path(camera.source).exists():
            raise CliError(
                f"cameras.{camera.id}.source: file not found: {camera.source} "
                "(run with --make-sample to render the demo video)"
            )


def init_ray(config: SystemConfig) -> None:
    import ray

    cluster = config.cluster
    runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT)}}
    if cluster.address:
        logger.info("joining Ray cluster at %s", cluster.address)
        ray.init(address=cluster.address, namespace=cluster.namespace, runtime_env=runtime_env, log_to_driver=True)
    else:
        logger.info("starting a local Ray instance")
        ray.init(
            address="local",  # never attach to some other Ray instance found on this machine
            namespace=cluster.namespace,
            num_cpus=cluster.num_cpus,
            include_dashboard=True,
            dashboard_host=cluster.dashboard_host,
            dashboard_port=cluster.dashboard_port,
            runtime_env=runtime_env,
            _node_ip_address="127.0.0.1",
        )


def print_urls(config: SystemConfig) -> None:
    import ray

    api = f"http://{config.api.host}:{config.api.port}{config.api.route_prefix.rstrip('/')}"
    dashboard = ray.get_runtime_context().gcs_address
    try:
        dashboard = "http://" + ray._private.worker.global_worker.node.webui_url  # local instance only
    except Exception:
        dashboard = f"the Ray dashboard of the cluster at {config.cluster.address}"
    print("")
    print(f"  HTTP API      : {api}/docs   (health: {api}/health)")
    print(f"  web dashboard : {api}/")
    print(f"  Ray dashboard : {dashboard}")
    for camera in config.cameras:
        stream = f"{api}/hls/{camera.id}/index.m3u8" if camera.push == "hls" else camera.push
        print(f"  camera {camera.id:<10}: live {api}/cameras/{camera.id}/live.mjpg   stream {stream}")
    print("  Ctrl-C stops everything.", flush=True)


def stop_serve() -> None:
    """Stop the HTTP API first, so no request reaches a pipeline that is shutting down."""
    from ray import serve

    try:
        serve.shutdown()
    except Exception as error:  # the pipeline's ordered shutdown still runs
        logger.warning("stopping the HTTP API failed: %s", error)


if __name__ == "__main__":
    sys.exit(main())
