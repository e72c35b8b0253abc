"""Node-local frame channel: pictures in shared memory, per-frame notes over Unix sockets.

Why: a Ray actor call costs about a millisecond of CPU on each side, and a frame that goes
through the object store is copied into it once more; with three processes touching every
frame (decoder, segmenter, pusher) that was about 0.2 cores per 720p25 camera, a third of what a
camera cost on the H100 node (docs/BENCHMARKS.md). A camera's decoder, pusher and segmenter
share a node (``trtseg.placement``), so its frames need not leave the node: the decoder writes
each picture once into a ring of slots in anonymous shared memory (``memfd``), whose file
descriptor readers get over the socket, and every hop after that is a few hundred bytes of
pickled note. Ray keeps what it is good at: placement, restarts, control calls, metrics.

Everything here is plain Python and Linux-only (abstract Unix sockets, memfd), testable without
Ray: ``FrameSlots`` (the writer's ring), ``MappedSlots`` (a reader's view of it), ``Connection``
(length-prefixed pickled messages that may carry file descriptors), ``Listener`` (accepts
connections on an abstract address, one reader thread each).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import pickle
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!IB")  # payload length, number of file descriptors sent with it
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_FDS = 4
_RECV_CHUNK = 1 << 20


class ChannelClosed(ConnectionError):
    """The other end went away (or this end was closed)."""


def channel_available() -> bool:
    """True where the channel works: Linux (abstract sockets, memfd) with fd passing."""
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and os.uname().sysname == "Linux"


def new_address(role: str, key: str) -> str:
    """A fresh abstract socket address (no file to clean up, gone with the process)."""
    return f"\0trtseg/{role}/{key}/{uuid.uuid4().hex[:12]}"


def printable(address: str) -> str:
    """An abstract address as logs and stats show it."""
    return address.replace("\0", "@", 1)


# --------------------------------------------------------------------------- shared frames
class PageLocker(Protocol):
    """Registers host memory with a GPU driver (page-locked), so copies to and from the GPU are DMA.

    A process that moves ring pictures over PCIe (the NVDEC decoder writing them, a GPU segmenter
    reading them) registers each ring once: without it every 720p picture took a 2.7 MB copy
    through a staging buffer on the CPU (0.25-0.35 ms, measured in docs/BENCHMARKS.md).
    """

    def register(self, memory: np.ndarray) -> bool:
        """Page-lock ``memory`` (a whole ring); False when the driver refused (copies stay staged)."""
        ...

    def unregister(self, memory: np.ndarray) -> None: ...


class DeviceImage(Protocol):
    """A picture in GPU memory (a CuPy array) that downloads itself into a host array."""

    shape: tuple[int, ...]
    dtype: Any

    def get(self, stream: Any = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class RingInfo:
    """What a reader needs to map a ring: its id, the picture shape and dtype, and the slot count."""

    ring_id: str
    shape: tuple[int, ...]
    dtype: str
    slots: int

    @property
    def slot_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


class _Mapping:
    """An mmap of a ring's memory with a NumPy view per slot, page-locked when a locker is given."""

    def __init__(self, fd: int, info: RingInfo, locker: PageLocker | None = None) -> None:
        self.info = info
        size = info.slot_bytes * info.slots
        self._mmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._whole: np.ndarray | None = np.frombuffer(self._mmap, dtype=np.uint8, count=size)
        self.views = [
            self._whole[i * info.slot_bytes : (i + 1) * info.slot_bytes].view(info.dtype).reshape(info.shape)
            for i in range(info.slots)
        ]
        self._locker = locker if locker is not None and locker.register(self._whole) else None

    @property
    def page_locked(self) -> bool:
        return self._locker is not None

    def close(self) -> None:
        if self._locker is not None and self._whole is not None:
            self._locker.unregister(self._whole)
            self._locker = None
        self.views = []
        self._whole = None
        with contextlib.suppress(BufferError):  # a view still held elsewhere: the GC unmaps it later
            self._mmap.close()


class FrameSlots:
    """The writer's ring: ``slots`` pictures of one shape in anonymous shared memory.

    The memory has no name (``memfd_create``): nothing is left behind when the process dies, and
    readers get it only through ``fd`` passed over a ``Connection``. The writer decides which slot
    is free; the channel itself does no locking. With a ``locker`` (a writer whose pictures come
    from the GPU) the ring is page-locked and a GPU picture is downloaded straight into its slot.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        slots: int,
        dtype: np.dtype | type = np.uint8,
        locker: PageLocker | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {slots}")
        self.info = RingInfo(uuid.uuid4().hex[:12], tuple(int(s) for s in shape), np.dtype(dtype).str, slots)
        self.fd = os.memfd_create(f"trtseg-{self.info.ring_id}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.info.slot_bytes * slots)
            self._mapping = _Mapping(self.fd, self.info, locker)
        except Exception:
            os.close(self.fd)
            raise

    @property
    def page_locked(self) -> bool:
        return self._mapping.page_locked

    def fits(self, image: np.ndarray | DeviceImage) -> bool:
        return tuple(image.shape) == self.info.shape and np.dtype(image.dtype) == np.dtype(self.info.dtype)

    def write(self, index: int, image: np.ndarray | DeviceImage) -> np.ndarray:
        """Copy ``image`` (host, or GPU: downloaded) into slot ``index``; returns the slot's view."""
        view = self._mapping.views[index]
        if isinstance(image, np.ndarray):
            np.copyto(view, image)
        else:
            image.get(out=view)  # DMA when the ring is page-locked, else a staged copy
        return view

    def view(self, index: int) -> np.ndarray:
        return self._mapping.views[index]

    def close(self) -> None:
        self._mapping.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class MappedSlots:
    """A reader's rings, by id: mapped from the fds that came over its connection.

    Keeps the newest ``keep`` rings (a resolution change makes a new ring while frames of the old
    one may still be in flight). A reader that uploads pictures to a GPU passes a ``locker``.
    """

    def __init__(self, keep: int = 2, locker: PageLocker | None = None) -> None:
        self._rings: dict[str, _Mapping] = {}
        self._keep = keep
        self._locker = locker

    def add(self, info: RingInfo, fd: int) -> None:
        try:
            self._rings[info.ring_id] = _Mapping(fd, info, self._locker)
        finally:
            os.close(fd)  # the mapping holds the memory; the descriptor is not needed any more
        while len(self._rings) > self._keep:
            oldest = next(iter(self._rings))
            self._rings.pop(oldest).close()

    def view(self, ring_id: str, index: int) -> np.ndarray:
        mapping = self._rings.get(ring_id)
        if mapping is None:
            raise KeyError(f"ring {ring_id} was never announced on this connection")
        return mapping.views[index]

    def page_locked(self, ring_id: str) -> bool:
        mapping = self._rings.get(ring_id)
        return mapping is not None and mapping.page_locked

    def close(self) -> None:
        for mapping in self._rings.values():
            mapping.close()
        self._rings.clear()


# --------------------------------------------------------------------------- messages
class Connection:
    """Length-prefixed pickled messages over a connected Unix stream socket, optionally with fds.

    ``send`` may be called from several threads (one lock); ``recv`` from one reader thread.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._closed = False

    @classmethod
    def connect(cls, address: str, timeout_s: float = 2.0) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            raise ChannelClosed(f"cannot connect to {printable(address)}: {error}") from error
        sock.settimeout(None)
        return cls(sock)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Any, fds: tuple[int, ...] = ()) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(payload)} bytes is over the channel's {MAX_MESSAGE_BYTES}")
        if len(fds) > MAX_FDS:
            raise ValueError(f"at most {MAX_FDS} file descriptors a message, got {len(fds)}")
        data = _HEADER.pack(len(payload), len(fds)) + payload
        with self._send_lock:
            if self._closed:
                raise ChannelClosed("connection is closed")
            try:
                if fds:
                    sent = socket.send_fds(self._sock, [data], list(fds))
                    if sent < len(data):
                        self._sock.sendall(data[sent:])
                else:
                    self._sock.sendall(data)
            except OSError as error:
                raise ChannelClosed(f"send failed: {error}") from error

    def recv(self) -> tuple[Any, list[int]]:
        """The next message and the fds sent with it; raises ``ChannelClosed`` at the end."""
        while True:
            if len(self._buffer) >= _HEADER.size:
                length, nfds = _HEADER.unpack_from(self._buffer)
                if length > MAX_MESSAGE_BYTES or nfds > MAX_FDS:
                    self.close()
                    raise ChannelClosed(f"malformed message header (length {length}, fds {nfds})")
                end = _HEADER.size + length
                if len(self._buffer) >= end:
                    payload = bytes(self._buffer[_HEADER.size : end])
                    del self._buffer[:end]
                    fds = [self._fds.popleft() for _ in range(min(nfds, len(self._fds)))]
                    return pickle.loads(payload), fds
            self._fill()

    def _fill(self) -> None:
        try:
            data, ancillary, _flags, _addr = self._sock.recvmsg(
                _RECV_CHUNK, socket.CMSG_SPACE(MAX_FDS * struct.calcsize("i"))
            )
        except OSError as error:
            raise ChannelClosed(f"receive failed: {error}") from error
        for level, kind, blob in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(blob) - len(blob) % struct.calcsize("i")
                self._fds.extend(struct.unpack(f"{usable // struct.calcsize('i')}i", blob[:usable]))
        if not data:
            raise ChannelClosed("the other end closed the connection")
        self._buffer += data

    def close(self) -> None:
        """Close; a thread blocked in ``recv`` wakes with ``ChannelClosed``."""
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())


ConnectionHandler = Callable[[Connection], None]


class Listener:
    """Accepts connections on an abstract Unix address; runs ``handler(connection)`` on a thread each.

    The handler owns its connection (reads until ``ChannelClosed``); the listener closes what is
    still open on ``close``.
    """

    def __init__(self, address: str, handler: ConnectionHandler, name: str = "channel") -> None:
        self.address = address
        self._handler = handler
        self._name = name
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(address)
        self._sock.listen(64)
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                logger.exception("channel accept failed listener=%s", self._name)
                continue
            connection = Connection(sock)
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=self._serve, args=(connection,), name=f"{self._name}-conn", daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        try:
            self._handler(connection)
        except ChannelClosed:
            pass
        except Exception:
            logger.exception("channel handler failed listener=%s", self._name)
        finally:
            connection.close()
            with self._lock:
                self._connections.discard(connection)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
