"""What the API asks of the system, as a small Protocol, and the adapter onto the Ray controller actor.

The API never touches pipeline actors directly: every replica talks to the one named controller,
so several replicas share state only through it (and the event database).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, runtime_checkable

import numpy as np
from trtseg.detections import Detections

logger = logging.getLogger(__name__)

CONTROLLER_NAME = "trtseg-controller"


class ControlError(Exception):
    """Base of the errors the API maps to HTTP statuses."""


class CameraNotFound(ControlError):
    """No camera has this id (404)."""


class CameraConflict(ControlError):
    """A camera with this id already exists (409)."""


class InvalidRequest(ControlError):
    """The controller refused the request's content (422)."""


class ControlUnavailable(ControlError):
    """The controller cannot be reached or did not answer in time (503)."""


@runtime_checkable
class ControlPlane(Protocol):
    """The controller methods the API calls (docs/CONTRACTS.md), as coroutines."""

    async def list_cameras(self) -> list[dict[str, Any]]: ...
    async def get_camera(self, camera_id: str) -> dict[str, Any]: ...
    async def add_camera(self, camera: dict[str, Any]) -> dict[str, Any]: ...
    async def update_camera(self, camera_id: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    async def remove_camera(self, camera_id: str) -> None: ...
    async def latest_jpeg(self, camera_id: str) -> bytes | None: ...
    async def stream_urls(self, camera_id: str) -> dict[str, Any]: ...
    async def health(self) -> dict[str, Any]: ...
    async def infer_image(self, image: np.ndarray, conf: float) -> Detections: ...
    async def config_summary(self) -> dict[str, Any]: ...
    async def read_keyframe(self, event_id: str, kind: str) -> bytes | None: ...
    async def read_incident_keyframe(self, incident_id: str, stage: str, kind: str) -> bytes | None: ...
    async def model_names(self) -> dict[int, str]: ...


STARTING_METHODS = ("add_camera", "update_camera")


def _translate(error: BaseException, method: str) -> ControlError:
    """Map what the actor raised (Ray re-raises it as a subclass of the cause) to an API error."""
    cause = getattr(error, "cause", None) or error
    message = str(getattr(cause, "args", [None])[0] or cause) if getattr(cause, "args", None) else str(cause)
    if isinstance(error, KeyError) or isinstance(cause, KeyError):
        return CameraNotFound(message.strip("'\""))
    if isinstance(error, FileExistsError) or isinstance(cause, FileExistsError):
        return CameraConflict(message)
    if isinstance(error, ValueError | TypeError) or isinstance(cause, ValueError | TypeError):
        if "exist" in message.lower() or "already" in message.lower():
            return CameraConflict(message)
        return InvalidRequest(message)
    if method in STARTING_METHODS and (isinstance(error, RuntimeError) or isinstance(cause, RuntimeError)):
        # the controller starts a camera strictly: a source it cannot open is the request's problem
        return InvalidRequest(f"camera could not start: {message}")
    logger.warning("controller call failed method=%s error=%r", method, error)
    return ControlUnavailable(f"controller call {method} failed: {type(cause).__name__}")


class RayControlPlane:
    """ControlPlane over the named Ray actor; looks the handle up lazily and again after a failure."""

    def __init__(
        self, namespace: str | None = "trtseg", name: str = CONTROLLER_NAME, timeout_s: float = 10.0, handle: Any = None
    ) -> None:
        self._namespace = namespace
        self._name = name
        self._timeout_s = timeout_s
        self._handle = handle

    def _actor(self) -> Any:
        if self._handle is None:
            import ray

            if not ray.is_initialized():
                raise ControlUnavailable("this process is not connected to a Ray cluster")
            try:
                self._handle = ray.get_actor(self._name, namespace=self._namespace)
            except ValueError as error:
                raise ControlUnavailable(f"controller actor '{self._name}' is not running") from error
        return self._handle

    async def _call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        import ray

        actor = self._actor()
        try:
            ref = getattr(actor, method).remote(*args)
            return await asyncio.wait_for(ref, timeout=timeout_s or self._timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
            self._handle = None
            raise ControlUnavailable(f"controller unavailable: {type(error).__name__}") from error
        except TimeoutError as error:
            raise ControlUnavailable(
                f"controller did not answer {method} in {timeout_s or self._timeout_s} s"
            ) from error
        except ControlError:
            raise
        except Exception as error:
            raise _translate(error, method) from error

    async def list_cameras(self) -> list[dict[str, Any]]:
        return list(await self._call("list_cameras"))

    async def get_camera(self, camera_id: str) -> dict[str, Any]:
        found = await self._call("get_camera", camera_id)
        if found is None:
            raise CameraNotFound(camera_id)
        return dict(found)

    async def add_camera(self, camera: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("add_camera", camera) or {})

    async def update_camera(self, camera_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("update_camera", camera_id, changes) or {})

    async def remove_camera(self, camera_id: str) -> None:
        await self._call("remove_camera", camera_id)

    async def latest_jpeg(self, camera_id: str) -> bytes | None:
        return await self._call("latest_jpeg", camera_id)

    async def stream_urls(self, camera_id: str) -> dict[str, Any]:
        return dict(await self._call("stream_urls", camera_id) or {})

    async def camera_actors(self, camera_id: str) -> dict[str, Any]:
        """The camera's actor handles (the API touches its pusher's ``watch``: streams on demand)."""
        return dict(await self._call("camera_actors", camera_id) or {})

    async def health(self) -> dict[str, Any]:
        return dict(await self._call("health") or {})

    async def infer_image(self, image: np.ndarray, conf: float) -> Detections:
        return await self._call("infer_image", image, conf, timeout_s=max(self._timeout_s, 60.0))

    async def config_summary(self) -> dict[str, Any]:
        return dict(await self._call("config_summary") or {})

    async def read_keyframe(self, event_id: str, kind: str) -> bytes | None:
        return await self._call("read_keyframe", event_id, kind)

    async def read_incident_keyframe(self, incident_id: str, stage: str, kind: str) -> bytes | None:
        return await self._call("read_incident_keyframe", incident_id, stage, kind)

    async def model_names(self) -> dict[int, str]:
        """Class id -> name of the running model (empty while no segmenter is ready)."""
        return {int(k): str(v) for k, v in dict(await self._call("model_names") or {}).items()}

    async def event_store_url(self) -> str:
        """The database URL (secret): only for building the API's own EventStore."""
        return str(await self._call("event_store_url"))
