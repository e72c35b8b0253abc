"""Where the Ray cluster is and how the system's actors are placed on it."""

from typing import Literal

from pydantic import Field

from trtseg.config.base import Section


class ClusterConfig(Section):
    """Ray cluster connection and placement."""

    address: str | None = Field(
        default=None,
        title="Ray address",
        description="Address of an existing Ray cluster ('auto', 'ray://host:10001' or 'host:port'). "
        "Empty: start a local single-node cluster.",
    )
    namespace: str = Field(default="trtseg", title="Ray namespace", description="Namespace of the named actors.")
    head_port: int = Field(
        default=6380,
        ge=1024,
        le=65535,
        title="Local head port",
        description="GCS port of a local cluster started by `run`; not Ray's default 6379, which Redis often holds.",
    )
    dashboard_host: str = Field(
        default="127.0.0.1", description="Bind address of the Ray dashboard of a local cluster."
    )
    dashboard_port: int = Field(
        default=8265, ge=0, le=65535, description="Port of the Ray dashboard of a local cluster."
    )
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs a local cluster offers; empty: all.")
    segmenters_per_gpu: int = Field(
        default=1, ge=1, le=8, description="Segmentation actors per GPU (one is right unless the engine is tiny)."
    )
    cpu_segmenters: int = Field(
        default=1, ge=0, le=64, description="Segmentation actors on a cluster without GPUs (CPU backend)."
    )
    max_actor_restarts: int = Field(
        default=-1,
        ge=-1,
        description="Ray max_restarts for the pipeline's actors and the controller; -1 means without limit.",
    )
    frames_in_flight: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Frames of one camera between decoder and pusher at once; when the pipeline is behind, "
        "the decoder keeps only the newest frame instead of queueing (real time first). Cameras with an "
        "inference_fps get one interval's frames more, which wait behind an inferred frame being segmented.",
    )
    frame_transport: Literal["auto", "object_store"] = Field(
        default="auto",
        description="How frames go from a camera's decoder to its segmenter and pusher. 'auto': through "
        "the node-local channel (each picture written once into shared memory, a small note per hop over "
        "a Unix socket; about a millisecond of CPU less per hop than an actor call) when the three are on "
        "one node, as placement keeps them, else through Ray's object store. 'object_store': always "
        "actor calls with the frame in the object store.",
    )
    watchdog_interval_s: float = Field(
        default=2.0, gt=0, le=300, description="How often the controller checks its actors and the cluster's nodes."
    )
    detached: bool = Field(
        default=False, description="Run the controller as a detached actor that outlives the process starting it."
    )
    persist_cameras: bool = Field(
        default=True,
        description="Keep cameras added, changed or removed at run time (HTTP API) in the database of "
        "sink.database_url, so a restart of the controller or the system keeps them: stored changes win "
        "over this file's cameras of the same id, removed ones stay removed. Off: run-time changes live "
        "only in the controller's memory and a restart goes back to this file's cameras.",
    )
