"""The one GPU memory layer: a device, a stream, reusable device buffers and pinned host buffers.

Pre-processing kernels, post-processing kernels and both GPU backends (PyTorch, TensorRT) take their
memory from a ``GpuContext`` so that a batch lives in one place: CuPy owns the allocations, PyTorch
sees them through DLPack without a copy, TensorRT through raw pointers. Buffers grow and are reused,
so a steady stream of batches allocates nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.gpu import require_cupy

logger = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^cuda(?::(\d+))?$")


def parse_device(device: str) -> int:
    """'cuda' -> 0, 'cuda:1' -> 1; anything else is a configuration error."""
    match = _DEVICE_RE.match(device.strip().lower())
    if match is None:
        raise EngineError(f"GPU backends need device 'cuda' or 'cuda:N', got '{device}'")
    return int(match.group(1) or 0)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What identifies a GPU for built-engine caches: its name and compute capability."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int


def device_info(index: int) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index``."""
    cp = require_cupy()
    count = cp.cuda.runtime.getDeviceCount()
    if index >= count:
        raise EngineError(f"CUDA device {index} requested but only {count} visible")
    props = cp.cuda.runtime.getDeviceProperties(index)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return DeviceInfo(index, name, (int(props["major"]), int(props["minor"])), int(props["totalGlobalMem"]))


def _round_up(nbytes: int, quantum: int = 1 << 20) -> int:
    return max(quantum, (nbytes + quantum - 1) // quantum * quantum)


HOST_REGISTER_PORTABLE = 0x01  # cudaHostRegisterPortable: page-locked for every CUDA context


class CudaPageLocker:
    """``trtseg.channel.PageLocker`` through CUDA: ``cudaHostRegister`` of a frame ring's memory.

    Registered memory is DMA'd directly (``GpuContext.is_pinned`` answers True for it), so a
    picture in a ring goes to or from the GPU without the CPU copying it through a staging buffer.
    A refusal (no GPU, driver limits) is logged once and the ring keeps working unregistered.
    """

    def __init__(self, cp: Any, device_id: int = 0) -> None:
        self.cp = cp
        self.device_id = device_id
        self._refusals = 0

    def register(self, memory: np.ndarray) -> bool:
        if memory.nbytes == 0:
            return False
        try:
            with self.cp.cuda.Device(self.device_id):
                self.cp.cuda.runtime.hostRegister(memory.ctypes.data, memory.nbytes, HOST_REGISTER_PORTABLE)
        except Exception as error:
            self._refusals += 1
            if self._refusals == 1:
                logger.warning(
                    "frame ring not page-locked, copies go through a staging buffer gpu=%d bytes=%d error=%s",
                    self.device_id,
                    memory.nbytes,
                    error,
                )
            return False
        return True

    def unregister(self, memory: np.ndarray) -> None:
        try:
            with self.cp.cuda.Device(self.device_id):
                self.cp.cuda.runtime.deviceSynchronize()  # no copy may still read or write the ring
                self.cp.cuda.runtime.hostUnregister(memory.ctypes.data)
        except Exception as error:  # the process is going away or the ring was never registered
            logger.debug("frame ring unregister failed gpu=%d error=%s", self.device_id, error)


class GpuContext:
    """One CUDA device and one non-blocking stream, with named reusable buffers.

    Every kernel launch, copy and backend execution of a pipeline goes onto ``stream``; the host
    waits only where results are needed (``synchronize``).
    """

    def __init__(self, device: str = "cuda", _parent: GpuContext | None = None) -> None:
        self.cp = require_cupy()
        if _parent is not None:  # a lane of the same device (see ``lane``)
            self.index, self.info, self.device = _parent.index, _parent.info, _parent.device
        else:
            self.index = parse_device(device)
            self.info = device_info(self.index)
            self.device = self.cp.cuda.Device(self.index)
        with self.device:
            self.stream = self.cp.cuda.Stream(non_blocking=True)
        self._device_buffers: dict[str, Any] = {}
        self._pinned: dict[str, tuple[Any, np.ndarray]] = {}
        self._torch_stream: Any = None
        if _parent is None:
            logger.info(
                "gpu context ready device=%d name=%s cc=%d.%d",
                self.index,
                self.info.name,
                *self.info.compute_capability,
            )

    def lane(self) -> GpuContext:
        """A context on the same device with its own stream and buffers.

        Work on a lane overlaps work on this context (the engine post-processes batch k on a lane
        while the network runs batch k+1 here); order between them only through events.
        """
        return GpuContext(_parent=self)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this device current and this stream the current CuPy stream."""
        with self.device, self.stream:
            yield

    def device_buffer(self, key: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A CuPy array of ``shape`` backed by a named allocation that only grows."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        flat = self._device_buffers.get(key)
        if flat is None or flat.nbytes < nbytes:
            if flat is not None:  # work queued on the old buffer must finish before its memory is reused
                self.stream.synchronize()
            with self.device, self.stream:
                flat = self.cp.empty(_round_up(nbytes), dtype=np.uint8)
            self._device_buffers[key] = flat
        return flat[:nbytes].view(dtype).reshape(shape)

    def pinned(self, key: str, nbytes: int) -> np.ndarray:
        """A page-locked host byte buffer of at least ``nbytes`` (for asynchronous copies)."""
        entry = self._pinned.get(key)
        if entry is None or entry[1].nbytes < nbytes:
            if entry is not None:
                self.stream.synchronize()
            size = _round_up(nbytes)
            with self.device:
                memory = self.cp.cuda.alloc_pinned_memory(size)
            entry = (memory, np.frombuffer(memory, dtype=np.uint8, count=size))
            self._pinned[key] = entry
        return entry[1][:nbytes]

    def pinned_array(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A standalone page-locked NumPy array (e.g. a decoder's frame buffer): it uploads with no host copy."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        with self.device:
            memory = self.cp.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
        return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)

    def is_pinned(self, array: np.ndarray) -> bool:
        """Whether ``array``'s memory is page-locked (registered with CUDA), so it can be DMA'd directly."""
        try:
            attributes = self.cp.cuda.runtime.pointerGetAttributes(array.ctypes.data)
        except Exception:  # pageable memory on old drivers raises instead of answering
            return False
        return int(attributes.type) == 1  # cudaMemoryTypeHost

    def upload(self, host: np.ndarray, device_array: Any, stream: Any = None) -> None:
        """Asynchronous host-to-device copy on ``stream`` (default: the context's; ``host`` should be pinned)."""
        if host.nbytes > device_array.nbytes:
            raise EngineError(f"upload of {host.nbytes} bytes into a {device_array.nbytes}-byte buffer")
        self.cp.cuda.runtime.memcpyAsync(
            device_array.data.ptr,
            host.ctypes.data,
            host.nbytes,
            self.cp.cuda.runtime.memcpyHostToDevice,
            (stream or self.stream).ptr,
        )

    def download(self, device_array: Any, key: str) -> np.ndarray:
        """Copy ``device_array`` into a pinned host buffer and wait; returns a view of that buffer.

        The view is overwritten by the next download under the same key: copy what you keep.
        """
        device_array = self.cp.ascontiguousarray(device_array)
        host = self.pinned(key, device_array.nbytes)
        if device_array.nbytes:
            self.cp.cuda.runtime.memcpyAsync(
                host.ctypes.data,
                device_array.data.ptr,
                device_array.nbytes,
                self.cp.cuda.runtime.memcpyDeviceToHost,
                self.stream.ptr,
            )
        self.stream.synchronize()
        return host.view(device_array.dtype).reshape(device_array.shape)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def torch_stream(self) -> Any:
        """The same stream seen by PyTorch, so torch work orders with CuPy work."""
        if self._torch_stream is None:
            import torch

            self._torch_stream = torch.cuda.ExternalStream(self.stream.ptr, device=torch.device("cuda", self.index))
        return self._torch_stream

    def release(self) -> None:
        """Drop every buffer (the memory returns to CuPy's pools)."""
        self.synchronize()
        self._device_buffers.clear()
        self._pinned.clear()


def to_torch(array: Any) -> Any:
    """Zero-copy torch view of a CuPy array (DLPack)."""
    import torch

    return torch.from_dlpack(array)


def to_cupy(array: Any) -> Any:
    """Zero-copy CuPy view of a device array from any framework (CuPy, torch, __cuda_array_interface__)."""
    cp = require_cupy()
    if isinstance(array, cp.ndarray):
        return array
    if hasattr(array, "__dlpack__"):
        return cp.from_dlpack(array)
    if hasattr(array, "__cuda_array_interface__"):
        return cp.asarray(array)
    raise EngineError(f"not a device array: {type(array).__name__}")
