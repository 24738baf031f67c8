"""Scenes of the synthetic demo data: background, people, crowd, occluder (data_prep/SYNTHETIC.md).

One scene = a background, 1-4 people (data_prep/synthetic_body.py), sometimes a crowd of small
people behind them and an object in front of them, then camera noise. `render_scene` returns the
picture and, for every person, the COCO keypoints with their visibility, the silhouette polygons
and masks; data_prep/make_synthetic.py turns scenes into a COCO person_keypoints dataset.

Coordinates: pixel centres at integers, as in synthetic_body. make_synthetic shifts polygons by
+0.5 when it writes COCO segmentations, because pycocotools rasterises polygons with pixel corners
at integers.
"""
import collections
import math
import statistics

import cv2
import numpy as np

from data_prep.synthetic_body import (POSE_KINDS, POSE_WEIGHTS, Body, ellipse_polygon, fill,
                                      random_colour)

# An annotated person of whom less than this fraction of the body is seen (the rest hidden by
# people or the object in front) is published unannotated, as COCO's annotators skip such people.
MIN_SEEN_FRACTION = 0.25

Person = collections.namedtuple("Person", [
    "keypoints",    # (17, 3) float64 in COCO's order: x, y, v (0 outside the image, 1, 2)
    "polygons",     # list of (N, 2) silhouette polygons, pixel centres at integers (drawn
                    # shapes grown by SILHOUETTE_GROW)
    "mask",         # (H, W) bool: the whole drawn body, also where something covers it
    "visible",      # (H, W) bool: the body where nothing drawn later covers it
    "annotated",    # bool: keypoints are published (False: a person left unannotated)
    "pose",         # one of POSE_KINDS
])
Scene = collections.namedtuple("Scene", [
    "image",        # (H, W, 3) uint8 BGR, the final picture (sensor noise and blur included)
    "clean",        # (H, W, 3) uint8 BGR, before noise and blur
    "background",   # (H, W, 3) uint8 BGR, the background alone
    "people",       # list of Person, in drawing order (back to front)
    "crowd_mask",   # (H, W) bool: where the crowd's small people are seen, or None
    "occluder_mask",  # (H, W) bool: the object drawn in front of the people (may be empty)
])


# ----------------------------------------------------------------------------- the scene

def draw_background(rng, height, width):
    """Gradient or smooth colour noise, maybe a floor, then random shapes (clutter)."""
    if rng.rand() < 0.5:
        a, b = (np.array(random_colour(rng), dtype=np.float32) for _ in range(2))
        angle = rng.uniform(0, 2 * math.pi)
        xx = np.arange(width, dtype=np.float32)[None, :] / width
        yy = np.arange(height, dtype=np.float32)[:, None] / height
        t = math.cos(angle) * xx + math.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = a + t[..., None] * (b - a)
    else:
        cells, amplitude = rng.randint(3, 12), rng.uniform(30, 110)
        base = np.array(random_colour(rng), dtype=np.float32)
        coarse = base + rng.uniform(-amplitude, amplitude, size=(cells, cells, 3))
        coarse = coarse.astype(np.float32)
        image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.rand() < 0.5:                                                # a floor
        horizon = int(rng.uniform(0.3, 0.8) * height)
        floor = random_colour(rng, (0.0, 0.6), (0.2, 0.9))
        image[horizon:] = (0.5 * image[horizon:] + 0.5 * np.array(floor)).astype(np.uint8)
    for _ in range(rng.randint(2, 14)):
        draw_clutter(rng, image)
    return image


def draw_clutter(rng, image):
    """One random shape, opaque or translucent."""
    height, width = image.shape[:2]
    layer = image.copy()
    colour = random_colour(rng)
    centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
    size = max(2, int(rng.uniform(0.03, 0.3) * min(height, width)))
    shape = rng.randint(4)
    if shape == 0:
        box = ((centre[0], centre[1]), (size, int(size * rng.uniform(0.2, 2))), rng.uniform(0, 180))
        fill(layer, cv2.boxPoints(box), colour)
    elif shape == 1:
        cv2.circle(layer, centre, size // 2, colour, -1, cv2.LINE_AA)
    elif shape == 2:
        triangle = np.array(centre) + rng.uniform(-size, size, size=(3, 2))
        fill(layer, triangle, colour)
    else:
        end = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        cv2.line(layer, centre, end, colour, int(rng.randint(1, 4)), cv2.LINE_AA)
    alpha = rng.uniform(0.3, 1.0)
    image[:] = cv2.addWeighted(layer, alpha, image, 1 - alpha, 0)


def place_bodies(rng, bodies, height, width, tries=12):
    """Offsets for bodies: mostly inside the image, some cut by its border, little pile-up."""
    boxes = []
    for body in bodies:
        x0, y0, x1, y1 = body.bounds()
        w, h = x1 - x0, y1 - y0
        best = None
        for _ in range(tries):
            # up to a quarter of the body may leave the picture on any side
            dx = uniform_between(rng, -x0 - 0.25 * w, width - 1 - x1 + 0.25 * w)
            dy = uniform_between(rng, -y0 - 0.25 * h, height - 1 - y1 + 0.25 * h)
            box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
            overlap = max([box_iou(box, other) for other in boxes] + [0.0])
            if best is None or overlap < best[0]:
                best = (overlap, (dx, dy), box)
            if overlap < 0.3:
                break
        body.place(best[1])
        boxes.append(best[2])


def uniform_between(rng, a, b):
    """Uniform between a and b in either order (a body larger than the image swaps them)."""
    return rng.uniform(min(a, b), max(a, b))


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_crowd(rng, image):
    """5-10 small people side by side, behind everybody; returns the union of their bodies."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    count = rng.randint(5, 11)
    left = rng.uniform(0, 0.6) * width
    span = rng.uniform(0.25, 0.45) * width
    feet = rng.uniform(0.35, 0.95) * height
    members = []
    for _ in range(count):
        body = Body(rng, rng.uniform(0.09, 0.16) * height, POSE_KINDS[rng.randint(2)])
        x0, y0, x1, y1 = body.bounds()
        body.place((left + rng.uniform(0, span) - (x0 + x1) / 2,
                    feet + rng.uniform(-0.04, 0.04) * height - y1))
        members.append(body)
    members.sort(key=lambda b: b.bounds()[3])                          # farther (higher) first
    for body in members:
        body.draw(image, mask)
    return mask.astype(bool)


def draw_occluder(rng, image, target):
    """An object in front of `target` (a Body): a box, a ball or a pole over one of its joints."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    names = sorted(n for n in target.joints if n not in ("hip_centre",))
    centre = target.xy(names[rng.randint(len(names))])
    size = rng.uniform(0.15, 0.35) * target.height_px
    colour = random_colour(rng, (0.0, 1.0), (0.2, 1.0))
    kind = rng.randint(3)
    if kind == 0:
        box = ((float(centre[0]), float(centre[1])), (size, size * rng.uniform(0.4, 1.5)),
               rng.uniform(-20, 20))
        polygon = cv2.boxPoints(box)
    elif kind == 1:
        polygon = ellipse_polygon(centre, (size / 2, size / 2 * rng.uniform(0.6, 1.0)),
                                  rng.uniform(0, math.pi), 20)
    else:                                                              # a pole through the scene
        half = max(2.0, size / 5)
        polygon = np.array([[centre[0] - half, -2], [centre[0] + half, -2],
                            [centre[0] + half, height + 1], [centre[0] - half, height + 1]])
    fill(image, polygon, colour)
    fill(mask, polygon, 1, antialias=False)
    if kind != 2 and rng.rand() < 0.5:                                 # a stripe, for texture
        striped = image.copy()
        cv2.line(striped, (int(centre[0] - size / 2), int(centre[1])),
                 (int(centre[0] + size / 2), int(centre[1])), random_colour(rng),
                 max(1, int(size / 8)))
        image[mask > 0] = striped[mask > 0]                            # kept inside the object
    return mask.astype(bool)


def sample_person_count(rng):
    return 1 + int(rng.choice(4, p=(0.3, 0.3, 0.25, 0.15)))


def render_scene(rng, height, width, unannotated_rate=0.15, crowd_rate=0.2, occluder_rate=0.3):
    """One picture with its people; all randomness comes from `rng` (a RandomState)."""
    background = draw_background(rng, height, width)
    image = background.copy()
    crowd_mask = draw_crowd(rng, image) if rng.rand() < crowd_rate else None

    bodies, annotated = [], []
    for _ in range(sample_person_count(rng)):
        is_annotated = rng.rand() >= unannotated_rate
        # people left unannotated are small ones, as in COCO
        fraction = rng.uniform(0.25, 0.9) if is_annotated else rng.uniform(0.2, 0.4)
        kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=POSE_WEIGHTS)]
        bodies.append(Body(rng, fraction * height, kind))
        annotated.append(is_annotated)
    place_bodies(rng, bodies, height, width)
    # larger people are nearer: drawn later, in front (with a little shuffling)
    order = np.argsort([b.height_px * rng.uniform(0.8, 1.25) for b in bodies], kind="stable")

    masks, polygons = [], []
    for index in order:
        mask = np.zeros((height, width), dtype=np.uint8)
        polygons.append(bodies[index].draw(image, mask))
        masks.append(mask.astype(bool))
    occluder = np.zeros((height, width), dtype=bool)
    targets = [bodies[i] for i in order if annotated[i]]
    if targets and rng.rand() < occluder_rate:
        occluder = draw_occluder(rng, image, targets[rng.randint(len(targets))])

    people = []
    covered = occluder.copy()               # what is drawn after the person being visited
    for position in range(len(order) - 1, -1, -1):
        body = bodies[order[position]]
        keypoints = label_visibility(body.keypoints(), covered, height, width)
        visible = masks[position] & ~covered
        # nobody annotates a person hidden almost entirely: such a one is left unannotated
        seen = visible.sum() >= MIN_SEEN_FRACTION * masks[position].sum()
        people.append(Person(keypoints, polygons[position], masks[position], visible,
                             annotated[order[position]] and bool(seen), body.pose_kind))
        covered = covered | masks[position]
    people.reverse()
    if crowd_mask is not None:
        # like COCO's crowd regions: the pixels where the crowd is seen, not under the people
        crowd_mask = crowd_mask & ~covered
        crowd_mask = crowd_mask if crowd_mask.any() else None

    clean = image.copy()
    image = add_camera_noise(rng, image)
    return Scene(image, clean, background, people, crowd_mask, occluder)


def label_visibility(keypoints, covered, height, width):
    """v = 0 (and x = y = 0) outside the image, 1 where something in front covers the point."""
    out = keypoints.copy()
    for k in range(len(out)):
        x, y = out[k, :2]
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            out[k] = 0
        elif covered[int(round(y)), int(round(x))]:
            out[k, 2] = 1
    return out


# Standard normal quantiles of the 256 byte values: Gaussian noise from random bytes, which is
# several times faster than RandomState.normal for a whole picture.
NORMAL_QUANTILES = np.array([statistics.NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


def add_camera_noise(rng, image):
    """A little blur sometimes, and Gaussian luminance noise (sensor noise)."""
    if rng.rand() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
    table = np.round(NORMAL_QUANTILES * rng.uniform(0, 6)).astype(np.int16)
    noise = table[np.frombuffer(rng.bytes(image.shape[0] * image.shape[1]), dtype=np.uint8)]
    noisy = image.astype(np.int16) + noise.reshape(image.shape[:2] + (1,))
    return np.clip(noisy, 0, 255).astype(np.uint8)
