"""The controller's pool of segmentation actors: one per GPU of every alive node (or a few CPU ones).

Each watchdog pass syncs the pool with the cluster: segmenters on lost nodes are dropped, new nodes
and GPUs get theirs. Starting a segmenter (loading a model, building an engine) can take minutes,
so starts are never awaited inside a pass: a start is polled on the following passes until it
answers or its time is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from actors.common import call
from actors.spawn import new_segmenter
from actors.supervisor import SegmenterEntry, is_dead, kill_quietly
from trtseg.config import SystemConfig
from trtseg.placement import SegmenterSlot, segmenter_slots_for_nodes

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
START_TIMEOUT_S = 300.0
MISSED_PINGS = 3


@dataclass
class _Starting:
    slot: SegmenterSlot
    handle: Any
    ping: Any  # ObjectRef of its first ping
    since: float


class SegmenterPool:
    """Segmenters by key, with their slots (node, weight) for placement."""

    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        self.entries: dict[str, SegmenterEntry] = {}
        self._starting: dict[str, _Starting] = {}
        self.errors: dict[str, str] = {}

    def slots(self) -> list[SegmenterSlot]:
        return [entry.slot for entry in self.entries.values()]

    @property
    def starting(self) -> list[str]:
        return sorted(self._starting)

    async def sync(self) -> bool:
        """One pass: check running segmenters, poll starting ones, start missing ones; True on change."""
        nodes = await asyncio.to_thread(ray.nodes)
        cluster = self.config.cluster
        desired = {
            s.key: s for s in segmenter_slots_for_nodes(nodes, cluster.segmenters_per_gpu, cluster.cpu_segmenters)
        }
        changed = await self._check_running(desired)
        changed = self._poll_starting() or changed
        changed = self._retire_surplus(desired) or changed
        for key, slot in desired.items():
            if key not in self.entries and key not in self._starting:
                handle = new_segmenter(slot, self.config)
                self._starting[key] = _Starting(slot, handle, handle.ping.remote(), time.monotonic())
                logger.info("segmenter starting key=%s node=%s", key, slot.node_id)
        return changed

    async def wait_ready(self, timeout_s: float) -> None:
        """At start-up: sync until no segmenter is still starting (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        await self.sync()
        while self._starting and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await self.sync()

    async def close_all(self) -> None:
        for entry in self.entries.values():
            try:
                await call(entry.handle.close.remote(), PING_TIMEOUT_S, "segmenter close")
            except Exception as error:
                logger.debug("segmenter close failed key=%s error=%s", entry.slot.key, error)
            kill_quietly(entry.handle)
        for start in self._starting.values():
            kill_quietly(start.handle)
        self.entries.clear()
        self._starting.clear()

    async def _check_running(self, desired: dict[str, SegmenterSlot]) -> bool:
        keys = list(self.entries)
        answers = await asyncio.gather(
            *(call(self.entries[k].handle.ping.remote(), PING_TIMEOUT_S, f"segmenter {k}") for k in keys),
            return_exceptions=True,
        )
        changed = False
        for key, info in zip(keys, answers, strict=True):
            entry = self.entries[key]
            if isinstance(info, BaseException):
                entry.failures += 1
                if is_dead(info) or entry.failures >= MISSED_PINGS or key not in desired:
                    logger.warning("segmenter lost key=%s error=%s", key, info)
                    self.errors[key] = str(info)[:300]
                    kill_quietly(entry.handle)
                    del self.entries[key]
                    changed = True
                continue
            entry.failures = 0
            if entry.incarnation != info["incarnation"]:
                entry.incarnation = info["incarnation"]
                entry.restarts += 1
            if info["node_id"] != entry.slot.node_id:  # Ray restarted it elsewhere (soft affinity)
                logger.info("segmenter moved key=%s node=%s", key, info["node_id"])
                entry.slot = SegmenterSlot(entry.slot.key, info["node_id"], entry.slot.weight)
                changed = True
        return changed

    def _retire_surplus(self, desired: dict[str, SegmenterSlot]) -> bool:
        """Stop segmenters the cluster no longer wants, once their replacements run (capacity first)."""
        surplus = [key for key in self.entries if key not in desired]
        if not surplus or self._starting:
            return False
        for key in surplus:
            logger.info("segmenter retired key=%s", key)
            kill_quietly(self.entries.pop(key).handle)
        return True

    def _poll_starting(self) -> bool:
        changed = False
        for key, start in list(self._starting.items()):
            ready, _ = ray.wait([start.ping], timeout=0)
            if not ready:
                if time.monotonic() - start.since > START_TIMEOUT_S:
                    logger.error("segmenter did not start in time key=%s", key)
                    self.errors[key] = f"did not start in {START_TIMEOUT_S:g} s"
                    kill_quietly(start.handle)
                    del self._starting[key]
                continue
            del self._starting[key]
            try:
                info = ray.get(start.ping)
            except Exception as error:
                logger.error("segmenter failed to start key=%s error=%s", key, error)
                self.errors[key] = str(error)[:300]
                kill_quietly(start.handle)
                continue
            slot = SegmenterSlot(key, info["node_id"], start.slot.weight)
            self.entries[key] = SegmenterEntry(slot, start.handle, info["incarnation"], info["names"])
            self.errors.pop(key, None)
            changed = True
            logger.info("segmenter ready key=%s node=%s", key, slot.node_id)
        return changed
