"""How the toolkit draws people and maps: one set of part and limb colours, one skeleton drawer
and one map upsampler for every picture (predict.py's skeletons through
inference.prediction.draw_people, data_prep/inspect_lmdb.py's records, scripts/show_sample.py's
label panels), so that a person looks the same in all of them.

Unlike the rest of conventions/ this module needs OpenCV (numpy and cv2 only); only code that
writes pictures imports it.
"""
import cv2
import numpy as np

from conventions.keypoints import LIMBS, NUM_PARTS, PART_NAMES

# Right side warm, left side cool, the middle (nose, neck) green: a flip or a left/right swap in
# the labels shows at a glance. One BGR colour per part of a side, taken in PART_NAMES order
# (shoulder, elbow, wrist, hip, knee, ankle, eye, ear).
_RIGHT = ((0, 0, 255), (0, 96, 255), (0, 176, 255), (0, 230, 230), (64, 0, 200),
          (128, 64, 255), (0, 140, 180), (96, 96, 255))
_LEFT = ((255, 0, 0), (255, 128, 0), (255, 200, 0), (230, 230, 0), (200, 0, 96),
         (255, 64, 160), (180, 140, 0), (255, 128, 128))
_MIDDLE = (0, 220, 0)


def _part_colours():
    right, left = iter(_RIGHT), iter(_LEFT)
    return tuple(next(right) if name.startswith("right_") else
                 next(left) if name.startswith("left_") else _MIDDLE for name in PART_NAMES)


PART_COLOURS = _part_colours()      # BGR per part (tuples of int, as cv2 draws with them)

# A limb takes the colour of the part it leads to, away from the neck: every limb of the tree
# gets a colour of its own, on its side's palette (only the two shoulder-ear limbs, which close
# loops, repeat an ear's colour).
LIMB_COLOURS = tuple(PART_COLOURS[second] for _, second in LIMBS)


def stick_width(image_shape):
    """Limb width for a picture of this (H, W, ...) shape: 2 px per 320 px of its longer side,
    at least 2, so that skeletons look alike on a 96 px crop and on a large photo."""
    return 2 * max(1, int(round(max(image_shape[:2]) / 320.0)))


def _pixel(point):
    return int(round(float(point[0]))), int(round(float(point[1])))


def draw_skeletons(image, parts, width=None, skip_limbs=(), opacity=1.0, occluded_rings=False):
    """A copy of `image` (H, W, 3) uint8 BGR with the skeletons of `parts` drawn on it.

    parts: (P, 18, 3) as (x, y, v) in the image's pixels; parts with v > 0 (and finite
    coordinates) are drawn. Limbs are sticks `width` px wide (default stick_width) in
    LIMB_COLOURS, blended with the image at `opacity` so that it shows through; the limb ids in
    skip_limbs are left out. Parts are dots in PART_COLOURS, a little wider than the sticks,
    opaque on top. occluded_rings: column 2 is COCO's visibility, and parts with v == 1
    (labelled but occluded) are drawn as rings.
    """
    parts = np.asarray(parts, dtype=np.float32).reshape(-1, NUM_PARTS, 3)
    width = stick_width(image.shape) if width is None else int(width)
    drawn = (parts[..., 2] > 0) & np.isfinite(parts[..., :2]).all(axis=-1)
    sticks = image.copy()
    for person, shown in zip(parts, drawn):
        for limb, (first, second) in enumerate(LIMBS):
            if limb not in skip_limbs and shown[first] and shown[second]:
                cv2.line(sticks, _pixel(person[first]), _pixel(person[second]),
                         LIMB_COLOURS[limb], width, cv2.LINE_AA)
    canvas = sticks if opacity >= 1 else cv2.addWeighted(sticks, opacity, image, 1 - opacity, 0)
    radius = width // 2 + 2
    for person, shown in zip(parts, drawn):
        for part in np.nonzero(shown)[0]:
            ring = occluded_rings and person[part, 2] == 1
            cv2.circle(canvas, _pixel(person[part]), radius, PART_COLOURS[part],
                       max(1, width // 2) if ring else -1, cv2.LINE_AA)
    return canvas


def upsample(maps, size, interpolation=cv2.INTER_LINEAR):
    """Maps (..., h, w) -> (..., H, W) float32 for a picture; size: (H, W).

    The resize is given its exact output size, so pixel centres map to pixel centres: label cell
    x lands on pixel 8x + 3.5, where the labels put it (conventions.geometry). Linear by default
    because it does not overshoot: a heatmap stays within [0, 1], a colour within its range.
    (Decoding upsamples with inference.scaling's cubic resize, as OpenPose does.) At most 512
    maps at once, OpenCV's channel limit.
    """
    maps = np.asarray(maps, dtype=np.float32)
    height, width = size
    flat = np.ascontiguousarray(maps.reshape((-1,) + maps.shape[-2:]).transpose(1, 2, 0))
    big = cv2.resize(flat, (width, height), interpolation=interpolation)
    big = big.reshape(height, width, -1).transpose(2, 0, 1)
    return big.reshape(maps.shape[:-2] + (height, width))
