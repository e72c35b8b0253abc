"""The serving sides of the node-local frame channel: the pusher's and the segmenter's ends.

``serve_frames`` (the pusher) and ``serve_inference`` (the segmenter) read one decoder's connection
on a thread of their own; the decoder's end is ``trtseg.handoff.ChannelHandoff``.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import numpy as np

from trtseg.channel import ChannelClosed, Connection, MappedSlots, PageLocker
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.handoff_messages import LOG_EVERY, FrameDone, FrameNote, InferNote, InferReply, RingAnnounce

logger = logging.getLogger(__name__)

Note = TypeVar("Note", FrameNote, InferNote)


def _notes(connection: Connection, kind: type[Note], rings: MappedSlots) -> Iterator[Note]:
    """The notes of ``kind`` a connection brings; rings announced on it are mapped into ``rings``."""
    while True:
        message, fds = connection.recv()
        if isinstance(message, RingAnnounce):
            if fds:
                rings.add(message.info, fds[0])
        elif isinstance(message, kind):
            yield message
        else:
            logger.warning(
                "unexpected message on the channel kind=%s expected=%s", type(message).__name__, kind.__name__
            )


FrameProcessor = Callable[[Frame, Detections | None, bool], float]


def serve_frames(connection: Connection, process: FrameProcessor) -> None:
    """The pusher's side: every frame note processed in order and answered with ``FrameDone``.

    ``process(frame, detections, infer_failed)`` returns the capture-to-push latency. The picture
    is a view of the decoder's slot, valid until this frame is answered.
    """
    rings = MappedSlots()
    failures = 0
    try:
        for message in _notes(connection, FrameNote, rings):
            latency: float | None = None
            error: str | None = None
            try:
                frame = message.frame(rings.view(message.ring_id, message.slot))
                detections = pickle.loads(message.detections) if message.detections is not None else None
                latency = process(frame, detections, message.infer_failed)
            except Exception as exc:  # one bad frame must not stop the camera's stream
                error = f"{type(exc).__name__}: {exc}"[:500]
                failures += 1
                if failures == 1 or failures % LOG_EVERY == 0:  # the first, then every 100th: no flood
                    logger.exception(
                        "frame failed on the pusher channel camera=%s seq=%d failures=%d",
                        message.camera_id,
                        message.seq,
                        failures,
                    )
            connection.send(FrameDone(message.seq, latency, error))
    finally:
        rings.close()


InferSubmitter = Callable[[InferNote, np.ndarray], "Future[Detections]"]


def serve_inference(connection: Connection, submit: InferSubmitter, locker: PageLocker | None = None) -> None:
    """The segmenter's side: each note submitted at once (so frames of many cameras batch), answered
    when its detections are done; ``submit`` returns a future (e.g. from ``run_coroutine_threadsafe``).

    Answers are pickled and sent by a thread of this connection's own: a future's callback runs on
    the segmenter's event loop, which must not wait on one slow decoder's socket. A GPU segmenter
    passes a ``locker``: its rings are page-locked, so pictures are uploaded without a host copy.
    """
    rings = MappedSlots(locker=locker)
    answers: queue.SimpleQueue[tuple[int, Future[Detections]] | None] = queue.SimpleQueue()

    def send_answers() -> None:
        while (answer := answers.get()) is not None:
            seq, future = answer
            try:
                blob: bytes | None = pickle.dumps(future.result(), protocol=pickle.HIGHEST_PROTOCOL)
                error = None
            except Exception as exc:
                blob, error = None, f"{type(exc).__name__}: {exc}"[:500]
            try:
                connection.send(InferReply(seq, blob, error))
            except ChannelClosed:
                return  # the decoder went away; it counts its frames itself

    sender = threading.Thread(target=send_answers, name="segment-answers", daemon=True)
    sender.start()
    try:
        for message in _notes(connection, InferNote, rings):
            try:
                future = submit(message, rings.view(message.ring_id, message.slot))
            except Exception as exc:
                future = Future()
                future.set_exception(exc)
            future.add_done_callback(lambda done, seq=message.seq: answers.put((seq, done)))
    finally:
        answers.put(None)
        rings.close()
