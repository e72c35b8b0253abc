"""Page-locked frame rings with the real CUDA registration: the NVDEC decoder downloads into them, the
segmenter uploads from them, neither copying through a staging buffer on the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from trtseg.channel import FrameSlots, MappedSlots, channel_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not channel_available(), reason="the channel needs Linux (memfd, abstract sockets)"),
]


def test_a_page_locked_ring_is_written_and_read_by_dma(gpu_context) -> None:  # type: ignore[no-untyped-def]
    ctx = gpu_context
    from engines.gpu.memory import CudaPageLocker

    cp = ctx.cp
    ring = FrameSlots((720, 1280, 3), slots=3, locker=CudaPageLocker(cp, ctx.index))
    reader = MappedSlots(locker=CudaPageLocker(cp, ctx.index))
    try:
        assert ring.page_locked and all(ctx.is_pinned(ring.view(i)) for i in range(3))
        with ctx.device:
            picture = cp.asarray(np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8))
        ring.write(1, picture)  # the decoder's download, straight into the shared slot
        reader.add(ring.info, os.dup(ring.fd))
        view = reader.view(ring.info.ring_id, 1)
        assert reader.page_locked(ring.info.ring_id) and ctx.is_pinned(view)  # the letterbox uploads it as it is
        np.testing.assert_array_equal(view, cp.asnumpy(picture))
        with ctx.device:
            uploaded = cp.empty(view.nbytes, cp.uint8)
        ctx.upload(view.reshape(-1), uploaded)
        ctx.synchronize()
        assert bool((uploaded.reshape(view.shape) == picture).all())
    finally:
        reader.close()
        ring.close()
    plain = FrameSlots((4, 4), slots=1)
    assert not plain.page_locked and not ctx.is_pinned(plain.view(0))
    plain.close()
