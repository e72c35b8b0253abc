"""How annotated frames are encoded and pushed."""

from pathlib import Path

from pydantic import Field

from trtseg.config.base import Section


class PusherConfig(Section):
    """FFmpeg encoding settings shared by every camera's pusher."""

    ffmpeg: str = Field(default="ffmpeg", description="FFmpeg executable.")
    preset: str = Field(
        default="veryfast",
        pattern="^(ultrafast|superfast|veryfast|faster|fast|medium)$",
        description="x264 preset; chosen by measurement (docs/BENCHMARKS.md).",
    )
    bitrate_kbps: int = Field(default=2500, ge=100, le=50000, description="Target video bitrate.")
    gop_s: float = Field(default=1.0, gt=0, le=10, description="Keyframe interval in seconds (HLS segment unit).")
    threads: int = Field(default=2, ge=0, le=64, description="x264 threads per camera; 0 lets x264 decide.")
    encoder_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness of the FFmpeg encoders. An encoder has a queue of frames and "
        "catches up; decoders, the channel and the segmenters have deadlines. On a busy node the kernel "
        "then runs those first (a waking decoder preempts x264) instead of sharing each core evenly; "
        "encoders still get every cycle the rest leaves. 0 keeps the pusher's own priority.",
    )
    hls_dir: Path = Field(default=Path("var/hls"), description="Where HLS playlists and segments are written.")
    hls_segment_s: float = Field(default=2.0, gt=0, le=30, description="HLS segment duration.")
    hls_list_size: int = Field(default=6, ge=2, le=100, description="Segments kept in the live playlist.")
    draw_labels: bool = Field(default=True, description="Draw class names and scores.")
    draw_boxes: bool = Field(default=True, description="Draw bounding boxes.")
    draw_overlay: bool = Field(default=True, description="Draw camera name and wall-clock time.")
    mask_alpha: float = Field(default=0.45, ge=0.0, le=1.0, description="Opacity of instance masks.")
    restart_backoff_s: float = Field(default=1.0, gt=0, le=60, description="First wait before restarting FFmpeg.")
    restart_backoff_max_s: float = Field(default=30.0, gt=0, le=600, description="Longest wait between restarts.")
    queue_frames: int = Field(
        default=16,
        ge=1,
        le=250,
        description="Frames waiting for the encoder before the oldest is dropped; absorbs the bursts in "
        "which frames leave the pipeline behind an inferred one.",
    )
    on_demand_idle_s: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="A camera with push_mode 'on_demand' stops encoding this long after the last viewer's "
        "request (HLS playlist, MJPEG frame, latest JPEG, POST /cameras/{id}/watch).",
    )
    jpeg_quality: int = Field(default=80, ge=10, le=100, description="Quality of live-view and key frame JPEGs.")
