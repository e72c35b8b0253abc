"""Constant-velocity Kalman filter over many tracks at once, stepped by elapsed seconds.

State per track: box centre, width and height and their velocities in pixels per second,
``mean = [cx, cy, w, h, vcx, vcy, vw, vh]``. ByteTrack keeps (cx, cy, aspect, h) and steps once per
frame; here the step is the elapsed time, because inference may run below the source rate and
unevenly (``inference_fps``, dropped frames), and the state is width and height (as BoT-SORT does)
because a thin cable's aspect ratio swings from 0.02 to 50 as it sways, which an aspect-ratio state
with a fixed noise of 0.1 cannot follow. Noise figures are ByteTrack's, tuned per frame at about
25 fps and scaled here by the elapsed time, so at 25 fps and ``noise`` 1 the filter behaves as
ByteTrack's does; the tracker passes ``TrackerConfig.motion_noise`` (a tenth by default: segmenter
boxes jitter, the objects watched walk steadily or hang still, and a filter that believes every
box's jump as speed sends a briefly hidden track off in the wrong direction).

With a diagonal process and measurement noise each coordinate and its velocity form an independent
2x2 block of the 8x8 covariance (the off-block terms stay exactly zero), so the covariance is kept as
those blocks, ``cov`` (T, 3, 4): variance of the position, position-velocity covariance, variance of
the velocity, per coordinate. Predict and update are then a few element-wise operations, the same
numbers as the full matrix filter at a fraction of the cost. Numpy only.
"""

from __future__ import annotations

import numpy as np

REFERENCE_FPS = 25.0  # the frame rate ByteTrack's per-frame noise weights stand for
WEIGHT_POSITION = 1.0 / 20.0  # ByteTrack's std_weight_position (share of the box size)
WEIGHT_VELOCITY = 1.0 / 160.0  # ByteTrack's std_weight_velocity (share of the box size per frame)
MIN_SIZE_PX = 4.0  # noise floor: a 1-pixel-thin box must not make the filter certain to the pixel


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) centre x, centre y, width, height (float64, sizes at least 1 px)."""
    boxes = np.asarray(boxes, np.float64)
    wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
    return np.concatenate([boxes[:, :2] + wh / 2.0, wh], axis=1)


def to_xyxy(mean: np.ndarray) -> np.ndarray:
    """(T, 8) states -> (T, 4) predicted xyxy boxes."""
    half = np.maximum(mean[:, 2:4], 1.0) / 2.0
    return np.concatenate([mean[:, 0:2] - half, mean[:, 0:2] + half], axis=1)


_WH = [0, 1, 0, 1]  # x and w are uncertain in proportion to the width, y and h to the height
_POS_VAR = WEIGHT_POSITION**2 * REFERENCE_FPS  # position noise variance per second, per squared size
_VEL_VAR = (WEIGHT_VELOCITY * REFERENCE_FPS) ** 2 * REFERENCE_FPS  # velocity noise variance per second


def _size2(mean: np.ndarray) -> np.ndarray:
    """(T, 4) squared [w, h, w, h], floored."""
    return np.maximum(mean[:, 2:4], MIN_SIZE_PX)[:, _WH] ** 2


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from (M, 4) cxcywh boxes: at rest, with wide velocity uncertainty."""
    mean = np.concatenate([measurement, np.zeros_like(measurement)], axis=1)
    size2 = _size2(mean)
    cov = np.zeros((len(measurement), 3, 4))
    cov[:, 0] = (2.0 * WEIGHT_POSITION) ** 2 * size2
    cov[:, 2] = (10.0 * WEIGHT_VELOCITY * REFERENCE_FPS) ** 2 * size2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: float, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """States ``dt`` seconds later; the process noise grows with the time elapsed, times ``noise``."""
    if mean.shape[0] == 0 or dt <= 0.0:
        return mean, cov
    size2 = _size2(mean)
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    new_cov = np.empty_like(cov)
    new_cov[:, 0] = pp + (2.0 * dt) * pv + (dt * dt) * vv + (noise * _POS_VAR * dt) * size2
    new_cov[:, 1] = pv + dt * vv
    new_cov[:, 2] = vv + (noise * _VEL_VAR * dt) * size2
    new_mean = mean.copy()
    new_mean[:, :4] += dt * mean[:, 4:]
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """States corrected by (T, 4) cxcywh measurements, one per state."""
    if mean.shape[0] == 0:
        return mean, cov
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    innovation_var = pp + WEIGHT_POSITION**2 * _size2(mean)
    gain_p, gain_v = pp / innovation_var, pv / innovation_var
    innovation = measurement - mean[:, :4]
    new_mean = np.concatenate([mean[:, :4] + gain_p * innovation, mean[:, 4:] + gain_v * innovation], axis=1)
    new_cov = np.stack([(1.0 - gain_p) * pp, (1.0 - gain_p) * pv, vv - gain_v * pv], axis=1)
    return new_mean, new_cov
