"""Retention of evidence files: clips and key frames by age per camera, and a global disk cap.

A plain class; whoever owns the disks runs it periodically (``start``, or ``run`` from a loop):

- clips older than their camera's ``retain_days`` (else ``evidence.clip_retain_days``) go;
- key frames older than their camera's ``keyframe_retain_days`` (else the global one) go, and only
  when one of those is set: key frames written before retention existed are kept otherwise;
- while the evidence is above ``max_disk_gb``, the oldest goes first (clips, and key frames too with
  ``cap_keyframes``);
- the evidence of an incident that is still open is never deleted (``open_ids``: a callable giving the
  ids of open incidents, and of open events; when it fails the run deletes nothing);
- ``cameras`` gives the configured cameras (their own days); None while they are not known yet, and
  the run deletes nothing (a camera that keeps longer than the default must not lose evidence);
- files only: the rows stay, and ``on_removed`` is told which incidents (and events) lost which
  evidence, so their rows can say so (``EventStore.mark_removed``); when it raises (the database is
  down) the removals are kept and handed over again after the next run. A clip's incident pointers
  are removed with it.

A deletion that fails is logged and counted and the run goes on. Age is the file's modification
time (a clip's is when it was finished, a key frame's when it was written).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trtseg.clips.layout import INCIDENTS, RECORDINGS, TMP_SUFFIX, ClipLayout
from trtseg.config.clips import ClipConfig, EvidenceConfig
from trtseg.keyframes import safe_component
from trtseg.metrics import EvidenceMetrics

logger = logging.getLogger(__name__)

DAY_S = 86_400.0
STALE_TMP_S = DAY_S  # a temporary file this old belongs to a recording that died with its process
STAGES = ("open", "alert", "close")


@dataclass(slots=True)
class _Item:
    kind: str  # 'clip' | 'keyframe'
    camera: str  # the camera's directory name
    paths: list[Path]
    size: int
    mtime: float
    incident_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EvidenceRemoved:
    """What one run deleted, by whose evidence it was (``on_removed`` gets it when it is not empty)."""

    clip_incidents: list[str] = field(default_factory=list)
    keyframe_incidents: list[str] = field(default_factory=list)
    keyframe_events: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.clip_incidents or self.keyframe_incidents or self.keyframe_events)

    def merged(self, other: EvidenceRemoved) -> EvidenceRemoved:
        """Both, each id once, in order."""
        return EvidenceRemoved(
            list(dict.fromkeys([*self.clip_incidents, *other.clip_incidents])),
            list(dict.fromkeys([*self.keyframe_incidents, *other.keyframe_incidents])),
            list(dict.fromkeys([*self.keyframe_events, *other.keyframe_events])),
        )

    def __len__(self) -> int:
        return len(self.clip_incidents) + len(self.keyframe_incidents) + len(self.keyframe_events)


@dataclass(slots=True)
class RetentionReport:
    """One run's figures."""

    clips_deleted: int = 0
    keyframes_deleted: int = 0
    bytes_freed: int = 0
    kept_open: int = 0
    delete_failures: int = 0
    stale_tmp_deleted: int = 0
    evidence_bytes: int = 0
    over_cap: bool = False
    skipped: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _days_s(days: int | None) -> float | None:
    return None if days is None else days * DAY_S


class Retention:
    """Deletes evidence files by age and disk cap (see the module doc); ``run`` never raises."""

    def __init__(
        self,
        evidence: EvidenceConfig,
        keyframe_dir: Path | str | None,
        cameras: Callable[[], Iterable[Any] | None],
        open_ids: Callable[[], Iterable[str]],
        on_removed: Callable[[EvidenceRemoved], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.evidence = evidence
        self.layout = ClipLayout(evidence.clip_dir)
        self.keyframe_dir = Path(keyframe_dir) if keyframe_dir is not None else None
        self._cameras = cameras
        self._open_ids = open_ids
        self._on_removed = on_removed
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_report: RetentionReport | None = None
        self.last_error: str | None = None
        self.figures = {
            "runs": 0,
            "clips_deleted": 0,
            "keyframes_deleted": 0,
            "bytes_freed": 0,
            "delete_failures": 0,
            "callback_failures": 0,
        }
        self._unreported = EvidenceRemoved()  # removals on_removed could not take yet (handed over again)

    # ------------------------------------------------------------------ running
    def start(self, interval_s: float | None = None) -> Retention:
        """Run now and every ``interval_s`` (default ``evidence.retention_interval_s``) on a thread."""
        interval = interval_s or self.evidence.retention_interval_s
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(interval,), name="retention", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.run()
            self._stop.wait(interval_s)

    def stats(self) -> dict[str, Any]:
        return {
            **self.figures,
            "unreported": len(self._unreported),
            "last_run": self.last_report.to_dict() if self.last_report else None,
            "last_error": self.last_error,
        }

    def run(self) -> RetentionReport:
        started = time.perf_counter()
        report = RetentionReport()
        removed = EvidenceRemoved()
        try:
            self._run(report, removed)
        except Exception as error:  # a scan that fails (a directory vanished mid-walk...) is retried next time
            self.last_error = f"{type(error).__name__}: {error}"[:500]
            report.skipped = report.skipped or self.last_error
            logger.exception("retention run failed")
        report.seconds = round(time.perf_counter() - started, 3)
        self.figures["runs"] += 1
        for key in ("clips_deleted", "keyframes_deleted", "bytes_freed", "delete_failures"):
            self.figures[key] += getattr(report, key)
        self.last_report = report
        EvidenceMetrics.retention(report)
        if self._on_removed is not None and (removed or self._unreported):
            waiting = self._unreported.merged(removed)
            try:
                self._on_removed(waiting)
                self._unreported = EvidenceRemoved()
            except Exception:  # the files are gone: their rows must still learn it, at the next run
                self._unreported = waiting
                self.figures["callback_failures"] += 1
                logger.exception("retention callback failed, kept for the next run ids=%d", len(waiting))
        if report.clips_deleted or report.keyframes_deleted or report.delete_failures:
            logger.info("retention run report=%s", report.to_dict())
        return report

    # ------------------------------------------------------------------ one run
    def _run(self, report: RetentionReport, removed: EvidenceRemoved) -> None:
        try:
            open_ids = set(self._open_ids())
        except Exception as error:  # without the open incidents nothing may be deleted
            report.skipped = f"open incidents unknown: {type(error).__name__}: {error}"[:500]
            self.last_error = report.skipped
            logger.warning("retention skipped reason=%s", report.skipped)
            return
        cameras = self._cameras()
        if cameras is None:  # per-camera days unknown yet: a camera keeping longer than the default must not lose
            report.skipped = "cameras not known yet"
            return
        cameras = list(cameras)
        self.last_error = None
        now = self._clock()
        clip_days, keyframe_days = self._policies(cameras)
        clips = self._scan_clips(report, now)
        keyframes = self._scan_keyframes(cameras)
        report.evidence_bytes = sum(i.size for i in clips) + sum(i.size for i in keyframes)
        kept: list[_Item] = []
        for item in [*clips, *keyframes]:
            days = (clip_days if item.kind == "clip" else keyframe_days).get(item.camera, self._default(item.kind))
            limit = _days_s(days)
            if limit is not None and now - item.mtime > limit and self._delete(item, open_ids, report, removed):
                continue
            kept.append(item)
        cap = self.evidence.max_disk_gb
        if cap is None:
            return
        capped = [i for i in kept if i.kind == "clip" or self.evidence.cap_keyframes]
        total = sum(i.size for i in capped)
        for item in sorted(capped, key=lambda i: i.mtime):
            if total <= cap * 1e9:
                break
            if self._delete(item, open_ids, report, removed):
                total -= item.size
        report.over_cap = total > cap * 1e9
        if report.over_cap:
            logger.warning("evidence above its disk cap bytes=%d cap_gb=%s", total, cap)

    def _default(self, kind: str) -> int | None:
        return self.evidence.clip_retain_days if kind == "clip" else self.evidence.keyframe_retain_days

    def _policies(self, cameras: list[Any]) -> tuple[dict[str, int | None], dict[str, int | None]]:
        """Camera directory name -> its own clip days and key frame days (the global ones when unset)."""
        clip_days: dict[str, int | None] = {}
        keyframe_days: dict[str, int | None] = {}
        for camera in cameras:
            config: ClipConfig | None = getattr(camera, "clips", None)
            name = safe_component(camera.id)
            own_clip = config.retain_days if config is not None else None
            own_keyframe = config.keyframe_retain_days if config is not None else None
            clip_days[name] = own_clip if own_clip is not None else self.evidence.clip_retain_days
            keyframe_days[name] = own_keyframe if own_keyframe is not None else self.evidence.keyframe_retain_days
        return clip_days, keyframe_days

    def _delete(self, item: _Item, open_ids: set[str], report: RetentionReport, removed: EvidenceRemoved) -> bool:
        """Delete one item unless it is an open incident's evidence; True when it is gone."""
        if open_ids.intersection(item.incident_ids) or open_ids.intersection(item.event_ids):
            report.kept_open += 1
            return False
        for path in item.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                report.delete_failures += 1
                logger.warning("evidence not deleted path=%s error=%s", path, error)
                return False
        report.bytes_freed += item.size
        if item.kind == "clip":
            report.clips_deleted += 1
            removed.clip_incidents.extend(item.incident_ids)
            for incident_id in item.incident_ids:
                self._drop_pointer(incident_id, item, report)
        else:
            report.keyframes_deleted += 1
            for incident_id in item.incident_ids:
                if incident_id not in removed.keyframe_incidents:
                    removed.keyframe_incidents.append(incident_id)
            for event_id in item.event_ids:
                if event_id not in removed.keyframe_events:
                    removed.keyframe_events.append(event_id)
        _remove_empty(item.paths[0].parent)
        return True

    def _drop_pointer(self, incident_id: str, item: _Item, report: RetentionReport) -> None:
        """Remove the incident's pointer when it still names this clip (a later clip of it keeps its own)."""
        try:
            pointer = self.layout.read_pointer(incident_id)
            clip = pointer.get("clip") if pointer else None
            if clip is not None and self.layout.resolve(clip) == item.paths[0].resolve():
                self.layout.pointer(incident_id).unlink(missing_ok=True)
        except (OSError, ValueError) as error:
            report.delete_failures += 1
            logger.warning("clip pointer not removed incident_id=%s error=%s", incident_id, error)

    # ------------------------------------------------------------------ scanning
    def _scan_clips(self, report: RetentionReport, now: float) -> list[_Item]:
        root = self.layout.root / RECORDINGS
        items: list[_Item] = []
        for camera_dir in _dirs(root, depth=2):  # <site>/<camera>
            for day in _dirs(camera_dir):
                for entry in _files(day):
                    if entry.name.endswith(TMP_SUFFIX):
                        if now - entry.stat().st_mtime > STALE_TMP_S:
                            report.stale_tmp_deleted += int(_unlink(entry))
                        continue
                    if not entry.name.endswith(".mp4") or entry.name.startswith("."):
                        continue
                    sidecar = entry.with_suffix(".json")
                    stat = entry.stat()
                    size = stat.st_size + (sidecar.stat().st_size if sidecar.exists() else 0)
                    items.append(
                        _Item("clip", camera_dir.name, [entry, sidecar], size, stat.st_mtime, _incidents_of(sidecar))
                    )
        self._sweep_pointers(now, report)
        return items

    def _sweep_pointers(self, now: float, report: RetentionReport) -> None:
        """Pointers of clips that failed (no file behind them) outlive nothing: gone after the clip retention."""
        limit = _days_s(self.evidence.clip_retain_days)
        if limit is None:
            return
        for entry in _files(self.layout.root / INCIDENTS):
            if entry.name.endswith(".json") and now - entry.stat().st_mtime > limit:
                try:
                    status = json.loads(entry.read_text(encoding="utf-8")).get("status")
                except (OSError, ValueError):
                    status = None
                if status != "ready":
                    report.stale_tmp_deleted += int(_unlink(entry))

    def _scan_keyframes(self, cameras: list[Any]) -> list[_Item]:
        if self.keyframe_dir is None:
            return []
        needed = self.evidence.max_disk_gb is not None and self.evidence.cap_keyframes
        own_days = any(getattr(getattr(c, "clips", None), "keyframe_retain_days", None) for c in cameras)
        if not needed and self.evidence.keyframe_retain_days is None and not own_days:
            return []  # nothing may delete key frames: do not walk them
        items: list[_Item] = []
        for camera_dir in _dirs(self.keyframe_dir, depth=2):  # <site>/<camera>
            for day in _dirs(camera_dir):
                for entry in _files(day):
                    if not entry.name.endswith(".jpg") or entry.name.startswith("."):
                        continue
                    stat = entry.stat()
                    incident, event = _owner_of(entry.name)
                    items.append(
                        _Item(
                            "keyframe",
                            camera_dir.name,
                            [entry],
                            stat.st_size,
                            stat.st_mtime,
                            [incident] if incident else [],
                            [event] if event else [],
                        )
                    )
        return items


def open_ids_of(store: Any) -> Callable[[], set[str]]:
    """``open_ids`` from a ``trtseg.db.EventStore``: ids of open incidents and open events, read from the
    stores' status indexes (raises while the database is down, and the run then deletes nothing)."""

    def open_ids() -> set[str]:
        return set(store.incidents.open_ids()) | set(store.open_ids())

    return open_ids


def _owner_of(name: str) -> tuple[str | None, str | None]:
    """(incident id, event id) of a key frame file: '<incident>-<stage>_<kind>.jpg' or '<event>_<kind>.jpg'."""
    stem = name[: -len(".jpg")].rsplit("_", 1)[0]
    head, _, stage = stem.rpartition("-")
    if head and stage in STAGES:
        return head, None
    return None, stem


def _incidents_of(sidecar: Path) -> list[str]:
    try:
        ids = json.loads(sidecar.read_text(encoding="utf-8")).get("incident_ids") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [i for i in ids if isinstance(i, str)]


def _dirs(root: Path, depth: int = 1) -> list[Path]:
    level = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for parent in level:
            try:
                nxt += [Path(e.path) for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                continue
        level = nxt
    return level


def _files(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unlink(path: Path) -> bool:
    try:
        path.unlink(missing_ok=True)
        return True
    except OSError as error:
        logger.warning("evidence not deleted path=%s error=%s", path, error)
        return False


def _remove_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()  # only succeeds when empty
