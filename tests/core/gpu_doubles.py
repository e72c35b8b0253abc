"""What the channel needs of a GPU, for tests on machines without one.

The real registration (``engines.gpu.memory.CudaPageLocker``) and CuPy downloads run in
tests/gpu/test_channel_gpu.py on the lent GPU; these let the CPU tests check the plumbing around them.
"""

from __future__ import annotations

import numpy as np


class RecordingLocker:
    """Stands in for the GPU driver's registration, which needs a GPU (tests/gpu/test_channel_gpu.py
    runs the real one): records what is registered and may refuse like a driver at its limit."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.registered: list[tuple[int, int]] = []
        self.unregistered: list[int] = []

    def register(self, memory: np.ndarray) -> bool:
        self.registered.append((memory.ctypes.data, memory.nbytes))
        return self.accept

    def unregister(self, memory: np.ndarray) -> None:
        self.unregistered.append(memory.ctypes.data)


class DeviceImage:
    """A picture that downloads itself like a CuPy array (``get(out=...)``)."""

    def __init__(self, image: np.ndarray) -> None:
        self._image, self.shape, self.dtype = image, image.shape, image.dtype
        self.downloads = 0

    def get(self, stream: object = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray:
        assert out is not None and out.flags.c_contiguous
        self.downloads += 1
        np.copyto(out, self._image)
        return out
