"""RecordOutbox: a camera's event and incident records, coalesced into few hand-offs to the sink.

A record that changes what an operator sees (an opening, an escalation, a close, a new key frame)
leaves at once; plain refreshes of open rows wait up to ``hold_s`` and go together. At 96 cameras
with 20 tracked objects each, one sink call per refresh would be hundreds of calls a second; held,
it is at most one call per camera per ``hold_s``, and the sink writes each call as one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trtseg.analytics.records import IncidentRecord
from trtseg.events import EventRecord

Record = EventRecord | IncidentRecord
HOLD_S = 1.0


def is_refresh(record: Record) -> bool:
    """True for a record that only moves an open row's figures forward (no key frame, no state change)."""
    if record.status != "open":
        return False
    if isinstance(record, IncidentRecord):
        return not record.keyframes
    return record.keyframe_raw_jpeg is None and record.keyframe_annotated_jpeg is None


class RecordOutbox:
    """Not thread-safe: one per camera, used from its frame loop (and ``flush`` on close)."""

    def __init__(
        self, send: Callable[[list[Record]], None], hold_s: float = HOLD_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._send = send
        self.hold_s = hold_s
        self._clock = clock
        self._held: list[Record] = []
        self._since = 0.0
        self.calls = 0

    def put(self, records: list[Record]) -> None:
        """Queue records; sends everything held when one is urgent or the oldest has waited ``hold_s``."""
        if records:
            if not self._held:
                self._since = self._clock()
            self._held.extend(records)
        if not self._held:
            return
        if any(not is_refresh(r) for r in records) or self._clock() - self._since >= self.hold_s:
            self.flush()

    def flush(self) -> None:
        if self._held:
            batch, self._held = self._held, []
            self.calls += 1
            self._send(batch)

    def __len__(self) -> int:
        return len(self._held)
