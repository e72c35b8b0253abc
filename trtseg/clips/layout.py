"""Where clips live on disk, and the small JSON files that say which incident points at which clip.

```
<clip_dir>/recordings/<site>/<camera>/<YYYY-MM-DD>/<recording_id>.mp4   the clip (faststart MP4)
<clip_dir>/recordings/<site>/<camera>/<YYYY-MM-DD>/<recording_id>.json  its sidecar (ClipInfo)
<clip_dir>/incidents/<incident_id>.json                                  pointer: status and clip path
```

Overlapping incidents share one recording, so several pointers name the same clip. A pointer's
``status`` is ``recording`` while the clip is being written, then ``ready`` (or ``failed``, with the
error). Every file is written atomically (temporary file, fsync, rename), and every relative path
read back is checked to stay inside the clip directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from trtseg.keyframes import safe_component

RECORDINGS = "recordings"
INCIDENTS = "incidents"
TMP_SUFFIX = ".tmp"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

PointerStatus = str  # 'recording' | 'ready' | 'failed'


@dataclass(slots=True)
class ClipInfo:
    """One finished (or failed) recording: what its sidecar holds and what the recorder reports.

    ``start_ts`` / ``end_ts`` are the capture times (seconds since the epoch) of its first and last
    packet; ``requested_start_ts`` is where pre-capture wanted it to begin (earlier when the buffer
    did not reach back that far: ``pre_capture_short``). ``capped``: cut at ``max_clip_s`` while an
    incident was still open. ``ended_by`` says why it ended: 'post_capture', 'capped', 'source_changed',
    'stalled', 'stopped' (the camera stopped) or 'failed'.
    """

    recording_id: str
    camera_id: str
    site: str
    incident_ids: list[str]
    clip: str | None  # path of the MP4 relative to the clip directory; None when nothing was written
    start_ts: float | None = None
    end_ts: float | None = None
    requested_start_ts: float | None = None
    duration_s: float = 0.0
    packets: int = 0
    bytes: int = 0
    capped: bool = False
    pre_capture_short: bool = False
    gaps: int = 0
    ended_by: str = ""
    error: str | None = None
    codec: str | None = None
    width: int = 0
    height: int = 0
    written_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClipPathError(ValueError):
    """A clip path or id that is malformed or would leave the clip directory."""


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ClipPathError(f"{what} {value!r} is not 1-64 letters, digits, '_' or '-'")
    return value


class ClipLayout:
    """Paths under one clip directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def recording(self, site: str, camera_id: str, day: str, recording_id: str) -> str:
        """The MP4's path relative to the root (its sidecar has the same name with '.json')."""
        check_id(recording_id, "recording id")
        parts = (RECORDINGS, safe_component(site), safe_component(camera_id), day, f"{recording_id}.mp4")
        return str(PurePosixPath(*parts))

    def camera_dir(self, site: str, camera_id: str) -> Path:
        return self.root / RECORDINGS / safe_component(site) / safe_component(camera_id)

    def pointer(self, incident_id: str) -> Path:
        return self.root / INCIDENTS / f"{check_id(incident_id, 'incident id')}.json"

    def resolve(self, relative: str) -> Path:
        """The absolute path of ``relative``, refused when it would leave the root."""
        if not isinstance(relative, str) or not relative or "\x00" in relative or "\\" in relative:
            raise ClipPathError(f"clip path {relative!r} is empty or holds a NUL or backslash")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or any(part in ("..", ".") for part in relative.split("/")):
            raise ClipPathError(f"clip path {relative!r} must be relative, without '.' or '..' parts")
        root = self.root.resolve()
        resolved = root.joinpath(*pure.parts).resolve(strict=False)
        if not resolved.is_relative_to(root):
            raise ClipPathError(f"clip path {relative!r} leaves the clip directory")
        return resolved

    def read_pointer(self, incident_id: str) -> dict[str, Any] | None:
        """An incident's pointer, or None when it has none (or it cannot be read as JSON)."""
        try:
            data = json.loads(self.pointer(incident_id).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write_pointer(self, incident_id: str, data: dict[str, Any]) -> None:
        write_json(self.pointer(incident_id), {"incident_id": incident_id, **data})


def tmp_name(target: Path) -> Path:
    """A hidden temporary name beside ``target`` (retention and readers skip these)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as JSON at ``path`` (directories made as needed); OSError on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"), ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
