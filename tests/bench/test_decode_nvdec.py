"""The NVDEC decoder option: chosen by CameraConfig.decoder, failing clearly where its GPU extras are absent."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from trtseg.config import CameraConfig
from trtseg.decode import CameraDecoder
from trtseg.decode_nvdec import NvdecCameraDecoder, NvdecUnavailable, make_decoder

HAS_NVDEC = importlib.util.find_spec("PyNvVideoCodec") is not None and importlib.util.find_spec("cupy") is not None


def _camera(tmp_path: Path, decoder: str) -> CameraConfig:
    return CameraConfig(id="cam1", source=str(tmp_path / "clip.mp4"), decoder=decoder)


@contextmanager
def _nvdec_and_cpu(
    tmp_path: Path, seed: int, host_frames: bool = False
) -> Iterator[tuple[CameraDecoder, CameraDecoder]]:
    """A 1 s 320x192 clip decoded by NVDEC and by the CPU side by side (stopped on the way out)."""
    from datasets.video import render_sample_video

    render_sample_video(tmp_path / "clip.mp4", seconds=1.0, fps=25, size=(320, 192), seed=seed)
    nvdec = make_decoder(_camera(tmp_path, "nvdec"), file_dir=tmp_path, host_frames=host_frames).start()
    cpu = make_decoder(_camera(tmp_path, "cpu"), file_dir=tmp_path).start()
    try:
        yield nvdec, cpu
    finally:
        nvdec.stop()
        cpu.stop()


def test_config_switch_defaults_to_cpu_and_refuses_unknown(tmp_path: Path) -> None:
    assert CameraConfig(id="c", source="rtsp://h/s").decoder == "cpu"
    with pytest.raises(ValidationError, match="decoder"):
        CameraConfig(id="c", source="rtsp://h/s", decoder="vaapi")


def test_make_decoder_follows_the_switch(tmp_path: Path) -> None:
    cpu = make_decoder(_camera(tmp_path, "cpu"), file_dir=tmp_path)
    assert type(cpu) is CameraDecoder
    nvdec = make_decoder(_camera(tmp_path, "nvdec"), file_dir=tmp_path)
    assert isinstance(nvdec, NvdecCameraDecoder) and nvdec.state == "stopped"


@pytest.mark.skipif(HAS_NVDEC, reason="PyNvVideoCodec and CuPy are installed here")
def test_start_without_extras_fails_at_once_with_the_fix(tmp_path: Path) -> None:
    decoder = make_decoder(_camera(tmp_path, "nvdec"), file_dir=tmp_path)
    with pytest.raises(NvdecUnavailable, match="pip install pynvvideocodec"):
        decoder.start()
    assert decoder.state == "failed"
    assert "PyNvVideoCodec" in (decoder.stats()["last_error"] or "")
    assert decoder.latest(timeout_s=0.0) is None


@pytest.mark.gpu
@pytest.mark.slow
def test_nvdec_decodes_into_gpu_memory(tmp_path: Path) -> None:
    """On the GPU machine: frames come out as BGR CuPy arrays matching the CPU decoder's picture."""
    import cupy
    import numpy as np

    with _nvdec_and_cpu(tmp_path, seed=1) as (nvdec, cpu):
        gpu_frame, cpu_frame = nvdec.latest(timeout_s=20.0), cpu.latest(timeout_s=20.0)
        assert gpu_frame is not None and cpu_frame is not None
        assert isinstance(gpu_frame.image, cupy.ndarray) and gpu_frame.image.shape == (192, 320, 3)
        assert nvdec.stats()["decoder"] == "nvdec" and nvdec.state == "live"
        # Not the same frame index necessarily, but the same scene and colour order: close means.
        diff = np.abs(cupy.asnumpy(gpu_frame.image).astype(float).mean((0, 1)) - cpu_frame.image.mean((0, 1)))
        assert diff.max() < 12.0


@pytest.mark.gpu
@pytest.mark.slow
def test_nvdec_host_frames_land_in_page_locked_ring(tmp_path: Path) -> None:
    """On the GPU machine: host frames are NumPy views of page-locked buffers, the CPU decoder's picture."""
    import cupy
    import numpy as np

    from trtseg.decode_nvdec import HOST_RING_SLOTS

    with _nvdec_and_cpu(tmp_path, seed=2, host_frames=True) as (nvdec, _cpu):
        frames = [nvdec.latest(timeout_s=20.0) for _ in range(3)]
        assert all(f is not None for f in frames)
        images = [f.image for f in frames]  # type: ignore[union-attr]
        assert all(isinstance(i, np.ndarray) and i.shape == (192, 320, 3) for i in images)
        assert all(int(cupy.cuda.runtime.pointerGetAttributes(i.ctypes.data).type) == 1 for i in images)
        assert len({i.ctypes.data for i in images}) == 3 <= HOST_RING_SLOTS  # consecutive frames, own buffers
        # The CPU decoder's picture of the same frame: a decoder started now from the clip's start
        # (the context's one runs on its own clock, and its newest frame is another frame).
        seq = frames[-1].seq  # type: ignore[union-attr]
        reference = make_decoder(_camera(tmp_path, "cpu"), file_dir=tmp_path).start()
        cpu_pictures: dict[int, np.ndarray] = {}
        try:
            while seq not in cpu_pictures and (frame := reference.latest(timeout_s=2.0)) is not None:
                cpu_pictures[frame.seq] = frame.image
        finally:
            reference.stop()
        assert seq in cpu_pictures, (seq, sorted(cpu_pictures))
        diff = np.abs(images[-1].astype(float).mean((0, 1)) - cpu_pictures[seq].mean((0, 1)))
        assert diff.max() < 12.0


@pytest.mark.gpu
@pytest.mark.slow
def test_nvdec_frames_come_in_display_order_at_once(tmp_path: Path) -> None:
    """On the GPU machine: with B-frames in the clip, NVDEC's low-latency mode still gives the CPU
    decoder's pictures frame for frame, and the first one after about one frame interval."""
    import time

    import numpy as np

    from datasets.video import render_sample_video

    render_sample_video(tmp_path / "clip.mp4", seconds=2.0, fps=25, size=(320, 192), seed=3)
    pictures: dict[str, dict[int, np.ndarray]] = {"nvdec": {}, "cpu": {}}
    first_after: dict[str, float] = {}
    for kind in ("nvdec", "cpu"):
        decoder = make_decoder(_camera(tmp_path, kind), file_dir=tmp_path, host_frames=True)
        started = time.monotonic()
        decoder.start()
        try:
            deadline = time.monotonic() + 10.0
            while len(pictures[kind]) < 40 and time.monotonic() < deadline:
                frame = decoder.latest(timeout_s=1.0)
                if frame is not None:
                    first_after.setdefault(kind, time.monotonic() - started)
                    pictures[kind][frame.seq] = np.asarray(frame.image).astype(np.float32)
        finally:
            decoder.stop()
    common = sorted(set(pictures["nvdec"]) & set(pictures["cpu"]))
    assert len(common) >= 30, (len(pictures["nvdec"]), len(pictures["cpu"]))
    same = [float(np.abs(pictures["nvdec"][seq] - pictures["cpu"][seq]).mean()) for seq in common]
    shifted = [
        float(np.abs(pictures["nvdec"][seq] - pictures["cpu"][seq + 1]).mean())
        for seq in common
        if seq + 1 in pictures["cpu"]
    ]
    assert float(np.mean(shifted)) > 2.0 * float(np.mean(same)), "the clip moves too little to tell frames apart"
    worst = int(np.argmax(same))
    assert same[worst] < 6.0, f"frame {common[worst]} is not the CPU decoder's ({same[worst]:.1f}): out of order"
    assert first_after["nvdec"] < 2.0, first_after


@pytest.mark.gpu
@pytest.mark.slow
def test_nvdec_delivers_every_frame_of_a_file(tmp_path: Path) -> None:
    """On the GPU machine: the end of a file flushes NVDEC, so no frame is lost there (nor at each
    loop of a looping clip); the CPU decoder's count is the reference."""
    import time

    from datasets.video import render_sample_video

    render_sample_video(tmp_path / "clip.mp4", seconds=2.0, fps=25, size=(320, 192), seed=4)
    counts: dict[str, int] = {}
    for kind in ("nvdec", "cpu"):
        camera = CameraConfig(id="cam1", source=str(tmp_path / "clip.mp4"), decoder=kind, loop=False)
        decoder = make_decoder(camera, file_dir=tmp_path, host_frames=True).start()
        try:
            deadline = time.monotonic() + 20.0
            while not decoder.stats()["ended"] and time.monotonic() < deadline:
                time.sleep(0.1)
            counts[kind] = int(decoder.stats()["frames"])
        finally:
            decoder.stop()
    assert counts["cpu"] == 50
    assert counts["nvdec"] == counts["cpu"], counts
