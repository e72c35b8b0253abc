"""Key frame JPEGs on disk, named by site, camera, day and event; paths the HTTP API can trust.

Files are written atomically (temporary file, fsync, rename) so a reader never sees half a JPEG,
and every relative path handed back in is checked to stay inside the root, so a crafted path
(``..``, absolute, a symlink pointing out) cannot read other files.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from datetime import date
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("raw", "annotated")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """BGR image to JPEG bytes; a failed encode is a bug upstream, so it raises."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as JPEG")
    return buf.tobytes()


class KeyframePathError(ValueError):
    """A key frame path that is malformed or would leave the key frame directory."""


def safe_component(value: str) -> str:
    """One path component from free text (site names may hold '/', spaces, dots)."""
    cleaned = _UNSAFE.sub("_", value.strip())[:100].strip(".")
    return cleaned or "_"


class KeyframeStore:
    """Writes and resolves ``<root>/<site>/<camera>/<YYYY-MM-DD>/<event_id>_{raw,annotated}.jpg``."""

    def __init__(self, root: Path | str, jpeg_quality: int = 80) -> None:
        if not 10 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 10..100, got {jpeg_quality}")
        self.root = Path(root)
        self.jpeg_quality = int(jpeg_quality)

    def relative_path(self, site: str, camera_id: str, day: date, event_id: str, kind: str) -> str:
        """Where a key frame of this event goes, relative to the root (POSIX separators)."""
        if kind not in KINDS:
            raise KeyframePathError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not _EVENT_ID.match(event_id):
            raise KeyframePathError(f"event_id {event_id!r} is not 1-64 letters, digits, '_' or '-'")
        parts = (safe_component(site), safe_component(camera_id), day.isoformat(), f"{event_id}_{kind}.jpg")
        return str(PurePosixPath(*parts))

    def write(self, relative: str, data: bytes) -> Path:
        """Atomically write ``data`` at ``relative``; returns the absolute path."""
        if not data:
            raise ValueError("refusing to write an empty key frame")
        target = self._inside(relative, must_exist=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)
        logger.debug("key frame written path=%s bytes=%d", relative, len(data))
        return target

    def save(
        self, site: str, camera_id: str, day: date, event_id: str, jpegs: dict[str, bytes | np.ndarray | None]
    ) -> dict[str, str]:
        """Write the given kinds (raw / annotated) of one event, as JPEG bytes or BGR images (encoded
        at this store's quality); returns kind -> relative path."""
        out: dict[str, str] = {}
        for kind, value in jpegs.items():
            data = encode_jpeg(value, self.jpeg_quality) if isinstance(value, np.ndarray) else value
            if data:
                relative = self.relative_path(site, camera_id, day, event_id, kind)
                self.write(relative, data)
                out[kind] = relative
        return out

    def resolve(self, relative: str) -> Path:
        """The absolute path of an existing key frame; refuses anything outside the root."""
        return self._inside(relative, must_exist=True)

    def read(self, relative: str) -> bytes:
        """The bytes of a stored key frame (FileNotFoundError when it is gone)."""
        return self.resolve(relative).read_bytes()

    def _inside(self, relative: str, must_exist: bool) -> Path:
        if not isinstance(relative, str) or not relative.strip():
            raise KeyframePathError("key frame path is empty")
        if "\x00" in relative or "\\" in relative:
            raise KeyframePathError(f"key frame path {relative!r} holds a NUL or backslash")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or relative.startswith("~"):
            raise KeyframePathError(f"key frame path {relative!r} must be relative to the key frame directory")
        if any(part in ("..", ".") for part in relative.split("/")):
            raise KeyframePathError(f"key frame path {relative!r} must not contain '..' or '.' parts")
        root = self.root.resolve()
        candidate = root.joinpath(*pure.parts)
        resolved = candidate.resolve(strict=False)
        if not resolved.is_relative_to(root):
            raise KeyframePathError(f"key frame path {relative!r} leaves the key frame directory")
        if must_exist and not resolved.is_file():
            raise FileNotFoundError(f"no key frame at {relative!r}")
        return resolved


def fsync_dir(path: Path) -> None:
    """Make the rename durable; some filesystems refuse to open directories, which is harmless."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
