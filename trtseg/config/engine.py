"""The segmentation engine: which model, on which backend, at which precision and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from trtseg.config.base import Section

Precision = Literal["fp32", "fp16", "int8"]
OpenHead = Literal["auto", "on", "off"]


class EngineConfig(Section):
    """Model and backend of the segmentation actors."""

    model: Path = Field(
        default=Path("models/trtseg-cable-n.onnx"),
        description="Ultralytics YOLOv8/YOLO11-seg ONNX export (relative paths are from the project root).",
    )
    backend: str = Field(
        default="onnxruntime",
        description="Inference backend from the engine registry: 'onnxruntime' (CPU, or CUDA/TensorRT "
        "execution providers), 'cuda' (PyTorch on the GPU) or 'tensorrt'.",
    )
    device: str = Field(default="cpu", description="'cpu', or 'cuda' / 'cuda:N' for GPU backends.")
    precision: Precision = Field(default="fp32", description="Numeric precision; int8 needs a Q/DQ model.")
    batch_size: int = Field(default=8, ge=1, le=256, description="Largest batch a segmentation actor forms.")
    max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=1000.0, description="Longest a frame waits for its batch to fill."
    )
    imgsz: tuple[int, int] | None = Field(
        default=None,
        description="Network input (height, width); empty: rectangular, the smallest stride-aligned size "
        "holding the model's square input at the frame's aspect ratio (dynamic models) or the model's own.",
    )
    warmup_frame: tuple[int, int] | None = Field(
        default=(720, 1280),
        description="Frame (height, width) a segmentation actor warms up with at start, once per batch size "
        "its backend plans (CUDA graphs are then captured before live frames arrive); empty: no warm-up.",
    )
    max_detections: int = Field(default=100, ge=1, le=1000, description="Detections kept per frame after NMS.")
    mask_threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="Mask probability threshold.")
    open_head: OpenHead = Field(
        default="auto",
        description="'onnxruntime' backend: cut the export's size-bound box decode out of the graph and decode "
        "in NumPy, so a fixed-size (dynamic=False) export runs at rectangular sizes too. 'auto': for fixed-size "
        "exports only; 'on': for every export; 'off': run the graph as exported.",
    )
    intra_op_threads: int = Field(default=0, ge=0, le=256, description="CPU threads for ONNX Runtime; 0: its default.")
    intra_op_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's CPU threads busy-wait between operators: a little lower latency on "
        "dedicated cores, but they steal CPU from decoders and encoders sharing the cores.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference.",
    )
    cache_dir: Path = Field(
        default=Path("var/engines"), description="Where built engines (TensorRT plans, EP caches) are kept."
    )
    workspace_mb: int = Field(default=2048, ge=64, description="TensorRT builder workspace limit.")
    profile_batch: tuple[int, int, int] | None = Field(
        default=None, description="TensorRT optimisation profile (min, opt, max) batch; empty: (1, batch, batch)."
    )
    cuda_graphs: bool = Field(
        default=True,
        description="GPU backends ('cuda'): capture each batch size once as a CUDA graph and replay it "
        "(partial batches are padded to the next captured size).",
    )
    channels_last: bool = Field(
        default=True, description="'cuda' backend: NHWC (channels-last) activations, faster fp16 convolutions."
    )
    timing_cache: Path | None = Field(
        default=None,
        description="TensorRT timing cache file (loaded and saved by engine builds); empty: one per GPU in cache_dir.",
    )
    switch_interval_ms: float | None = Field(
        default=None,
        gt=0.0,
        le=100.0,
        description="Python's GIL switch interval in the segmentation process (sys.setswitchinterval); empty: "
        "Python's 5 ms. Its many per-camera channel threads each wait for the GIL while a batch thread holds it.",
    )

    @model_validator(mode="after")
    def _profile_fits_batch(self) -> EngineConfig:
        if self.profile_batch is not None:
            low, opt, high = self.profile_batch
            if not 1 <= low <= opt <= high:
                raise ValueError(f"profile_batch must satisfy 1 <= min <= opt <= max, got {self.profile_batch}")
            if high < self.batch_size:
                raise ValueError(f"profile_batch max ({high}) is below batch_size ({self.batch_size})")
        if self.warmup_frame is not None and any(side <= 0 for side in self.warmup_frame):
            raise ValueError(f"warmup_frame sides must be positive, got {self.warmup_frame}")
        if self.imgsz is not None and any(side <= 0 or side % 32 for side in self.imgsz):
            raise ValueError(f"imgsz sides must be positive multiples of 32, got {self.imgsz}")
        return self
