"""Joint grouping (paper section 2.4): part peaks, limb scores (eq. 6) and greedy assembly.

Pure numpy (1.19 and 2.x), no OpenCV, no Caffe. Three separate steps, so that each can be timed:

    peaks = find_peaks(heatmaps)                     # local maxima of the part heatmaps
    limbs = score_limbs(peaks, pafs, image_height)   # every candidate limb of every type, one pass
    people = assemble(peaks, limbs)                  # highest score first, along the limb tree

`group_people(heatmaps, pafs)` runs the three. The maps are the network's outputs upsampled to
the image, channels last as cv2.resize returns them: heatmaps (H, W, >= 18) (the background
channel 18, if present, is ignored) and PAFs (H, W, 38). Coordinates are image pixels with pixel
centres at integers (conventions.keypoints' convention).

The constants are OpenPose's (its Python demo and MATLAB evaluation code, as summarised in
conventions/README.md); inference/README.md lists their sources and the choices made where the
two differ.
"""
import collections

import numpy as np

from conventions.keypoints import LIMBS, LIMB_NAMES, NUM_LIMBS, NUM_PARTS, PART

PEAK_THRESHOLD = 0.1          # thre1: a part peak must exceed this
PAF_THRESHOLD = 0.05          # thre2: a PAF sample "agrees" with the limb above this
PAF_SAMPLES = 10              # mid_num: samples along a candidate limb
MIN_AGREEING_FRACTION = 0.8   # more than this fraction of the samples must agree
MIN_PARTS = 4                 # people with fewer parts are dropped
MIN_MEAN_SCORE = 0.4          # people whose total score / parts is lower are dropped
DEMO_SMOOTH_SIGMA = 3.0       # OpenPose's Python demo blurs heatmaps before peak finding
MAX_PEAKS_PER_PART = 64       # the highest peaks of each part kept (OpenPose's C++ keeps 127):
                              # bounds the all-pairs limb scoring on noisy maps

# OpenPose's assembly order: the limb tree grown from the neck outwards (right arm, left arm,
# right leg, left leg, head), then the two shoulder-ear limbs. Those two close loops in the tree:
# they may add a part to a person or join two partial people, but never start a person.
ASSEMBLY_ORDER_NAMES = (
    ("neck", "right_shoulder"), ("neck", "left_shoulder"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("neck", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("neck", "nose"), ("nose", "right_eye"), ("right_eye", "right_ear"),
    ("nose", "left_eye"), ("left_eye", "left_ear"),
    ("right_shoulder", "right_ear"), ("left_shoulder", "left_ear"),
)
ASSEMBLY_ORDER = tuple(LIMB_NAMES.index(names) for names in ASSEMBLY_ORDER_NAMES)
LOOP_LIMBS = frozenset(LIMB_NAMES.index(names) for names in ASSEMBLY_ORDER_NAMES[-2:])
_ASSEMBLY_RANK = np.argsort(np.asarray(ASSEMBLY_ORDER))      # limb id -> position in the order
_LIMB_PARTS = np.asarray(LIMBS)                               # (19, 2) part ids

NECK = PART["neck"]

NECKLESS_REACH = 2.0          # keep_neckless: join when roots are within 2 x the longest limb


def _tree_depths():
    """Limbs between each part and the neck along the tree (the loop limbs left out)."""
    depth = {NECK: 0}
    for limb in ASSEMBLY_ORDER:
        first, second = LIMBS[limb]
        if limb not in LOOP_LIMBS:
            depth[second] = depth[first] + 1
    return np.asarray([depth[part] for part in range(NUM_PARTS)])


TREE_DEPTH = _tree_depths()


Peaks = collections.namedtuple("Peaks", "part x y score")
Peaks.__doc__ = """Part candidates, sorted by part: arrays of equal length N.

part: int part id (0..17); x, y: int pixel position; score: heatmap value there (float32)."""

Limbs = collections.namedtuple("Limbs", "limb a b score")
Limbs.__doc__ = """Candidate limbs that passed eq. 6's criteria: arrays of equal length M.

limb: limb id (conventions.keypoints.LIMBS); a, b: indices into Peaks of the limb's first and
second part; score: mean PAF agreement plus the distance prior."""

People = collections.namedtuple("People", "keypoints scores part_counts")
People.__doc__ = """Assembled people: keypoints (P, 18, 3) float32 as (x, y, peak score), a missing
part (0, 0, 0); scores (P,) OpenPose's total score (the peak scores of the parts plus the scores
of the limbs that joined them); part_counts (P,) ints."""


# ----------------------------------------------------------------------------- peaks

def gaussian_smooth(maps, sigma):
    """Separable Gaussian blur of (H, W, C) maps over H and W, as scipy.ndimage.gaussian_filter
    (kernel truncated at 4 sigma, edges mirrored 'reflect'-style); sigma 0 leaves them as they
    are, as scipy does (a 0/0 kernel would make every map NaN and find nobody)."""
    if sigma == 0:
        return np.asarray(maps, dtype=np.float32)
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = np.asarray(maps, dtype=np.float32)
    for axis in (0, 1):
        padding = [(0, 0)] * out.ndim
        padding[axis] = (radius, radius)
        padded = np.pad(out, padding, mode="symmetric")
        window = [slice(None)] * out.ndim
        blurred = np.zeros_like(out)
        for tap, weight in enumerate(kernel):
            window[axis] = slice(tap, tap + out.shape[axis])
            blurred += weight * padded[tuple(window)]
        out = blurred
    return out


def find_peaks(heatmaps, threshold=PEAK_THRESHOLD, smooth_sigma=None,
               max_per_part=MAX_PEAKS_PER_PART):
    """Local maxima of the part heatmaps above `threshold`, over the 4-neighbourhood.

    heatmaps: (H, W, C >= 18), channels last; only channels 0..17 are searched.
    A peak must exceed its left and upper neighbours (strict) and be at least as high as its
    right and lower ones: an exact plateau of two pixels (a part at a half-pixel position,
    e.g. the neck between the shoulders) gives one peak, not two. Outside the map counts as
    -infinity. Cheap: only the pixels above the threshold are compared with their neighbours.
    smooth_sigma: blur the maps first (OpenPose's Python demo uses 3); the peak's score is
    always the unblurred value. NaN never makes a peak, nor does a pixel next to one.
    max_per_part: keep only that many of each part's highest peaks (noisy maps of an untrained
    net can have thousands, and limbs are scored for every pair).
    Returns Peaks sorted by part, then y, then x.
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3 or heatmaps.shape[2] < NUM_PARTS:
        raise ValueError("heatmaps must be (H, W, C >= %d), got %s" % (NUM_PARTS, heatmaps.shape))
    scores = np.ascontiguousarray(heatmaps)
    search = scores if smooth_sigma is None else gaussian_smooth(scores[:, :, :NUM_PARTS],
                                                                  smooth_sigma)
    height, width, channels = search.shape
    # candidates: pixels above the threshold, as flat indices into search (y, x, part)
    above = np.flatnonzero(search[:, :, :NUM_PARTS] > threshold)
    pixel, part = np.divmod(above, NUM_PARTS)
    index = pixel * channels + part
    flat = search.ravel()
    value = flat[index]
    # left/right first: few candidates survive them, so the rows above/below are read less.
    # A neighbour outside the map is read from the next row or clipped, and then ignored.
    x = pixel % width
    left, right = np.take(flat, index - channels, mode="clip"), \
        np.take(flat, index + channels, mode="clip")
    is_peak = ((value > left) | (x == 0)) & ((value >= right) | (x == width - 1))
    pixel, part, index, value, x = (v[is_peak] for v in (pixel, part, index, value, x))
    y = pixel // width
    row = width * channels
    up, down = np.take(flat, index - row, mode="clip"), np.take(flat, index + row, mode="clip")
    is_peak = ((value > up) | (y == 0)) & ((value >= down) | (y == height - 1))
    x, y, part, value = x[is_peak], y[is_peak], part[is_peak], value[is_peak]
    counts = np.bincount(part, minlength=NUM_PARTS)
    if counts.max(initial=0) > max_per_part:
        # rank within each part by height; keep the top ones, in their scan order
        by_height = np.lexsort((-value, part))
        rank = np.empty(len(part), dtype=np.int64)
        rank[by_height] = np.arange(len(part)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < max_per_part
        x, y, part = x[keep], y[keep], part[keep]
    # the scan went row by row: stable-sort the few peaks by part, keeping y, then x
    order = np.argsort(part, kind="stable")
    x, y, part = x[order], y[order], part[order]
    score_channels = scores.shape[2]
    return Peaks(part=part.astype(np.int64), x=x.astype(np.int64), y=y.astype(np.int64),
                 score=scores.ravel()[(y * width + x) * score_channels + part].astype(np.float32))


# ----------------------------------------------------------------------------- limbs

def _candidate_pairs(peaks):
    """Every (limb, a, b) with a a peak of the limb's first part and b of its second."""
    counts = np.bincount(peaks.part, minlength=NUM_PARTS)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])     # first peak index of each part
    count_a = counts[_LIMB_PARTS[:, 0]]
    count_b = counts[_LIMB_PARTS[:, 1]]
    pairs = count_a * count_b                                  # candidate pairs per limb
    limb = np.repeat(np.arange(NUM_LIMBS), pairs)
    within = np.arange(pairs.sum()) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    step_a, step_b = np.divmod(within, count_b[limb])     # limbs with pairs have count_b > 0
    return limb, first[_LIMB_PARTS[limb, 0]] + step_a, first[_LIMB_PARTS[limb, 1]] + step_b


def score_limbs(peaks, pafs, image_height, samples=PAF_SAMPLES, paf_threshold=PAF_THRESHOLD,
                min_agreeing=MIN_AGREEING_FRACTION):
    """Paper eq. 6 for every candidate limb of every limb type, in one vectorised pass.

    pafs: (H, W, 38), channels last; limb i's field is channels 2i (x), 2i+1 (y).
    A candidate a -> b is sampled at `samples` points evenly spaced from a to b inclusive,
    rounded to the nearest pixel (OpenPose reads the field there, no interpolation). Its score
    is the mean of PAF . unit(b - a) plus the distance prior min(0.5 * image_height / |b - a|
    - 1, 0), which penalises limbs longer than half the image. It is kept when more than
    `min_agreeing` of the samples exceed `paf_threshold` and the score is positive. Two peaks at
    the same pixel have no direction and make no limb.
    Returns Limbs (unsorted).
    """
    pafs = np.ascontiguousarray(pafs, dtype=np.float32)
    if pafs.ndim != 3 or pafs.shape[2] != 2 * NUM_LIMBS:
        raise ValueError("pafs must be (H, W, %d), got %s" % (2 * NUM_LIMBS, pafs.shape))
    width = pafs.shape[1]
    limb, a, b = _candidate_pairs(peaks)
    x, y = peaks.x.astype(np.float32), peaks.y.astype(np.float32)
    dx, dy = x[b] - x[a], y[b] - y[a]
    length = np.sqrt(dx * dx + dy * dy)
    # (samples, M) arrays: the long axis last keeps numpy's inner loops long (3x faster)
    steps = np.linspace(0.0, 1.0, samples, dtype=np.float32)[:, None]
    # nearest pixel as floor(v + 0.5) (halves up; OpenPose's Python rounds them to even, but
    # with 10 samples between integer peaks no sample is ever exactly half-way)
    sample_x = (steps * dx + (x[a] + 0.5)).astype(np.intp)
    sample_y = (steps * dy + (y[a] + 0.5)).astype(np.intp)
    index = (sample_y * width + sample_x) * (2 * NUM_LIMBS) + 2 * limb
    flat = pafs.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):   # zero length: NaN, never kept
        along = flat[index] * (dx / length)
        along += flat[1:][index] * (dy / length)           # the y channel follows the x one
        score = (along.sum(axis=0) * (1.0 / samples)
                 + np.minimum(0.5 * image_height / length - 1.0, 0.0))
    agreeing = (along > paf_threshold).sum(axis=0)
    keep = (agreeing > min_agreeing * samples) & (score > 0)
    return Limbs(limb=limb[keep], a=a[keep], b=b[keep], score=score[keep].astype(np.float32))


# ----------------------------------------------------------------------------- assembly

class _Assembly(object):
    """People under construction: peak ids per part slot, totals, and who owns each peak."""

    def __init__(self, peak_count):
        self.slots = []           # per person: list of 18 peak ids (-1 empty)
        self.totals = []          # per person: peak scores + limb scores
        self.counts = []          # per person: parts
        self.alive = []
        self.owner = [-1] * peak_count

    def start(self, parts, peaks, score):
        person = len(self.slots)
        slots = [-1] * NUM_PARTS
        for part, peak in zip(parts, peaks):
            slots[part] = peak
            self.owner[peak] = person
        self.slots.append(slots)
        self.totals.append(score)
        self.counts.append(len(peaks))
        self.alive.append(True)

    def add(self, person, part, peak, score):
        self.slots[person][part] = peak
        self.owner[peak] = person
        self.totals[person] += score
        self.counts[person] += 1

    def disjoint(self, first, second):
        return all(p < 0 or q < 0 for p, q in zip(self.slots[first], self.slots[second]))

    def merge(self, into, other, score):
        for part, peak in enumerate(self.slots[other]):
            if peak >= 0:
                self.slots[into][part] = peak
                self.owner[peak] = into
        self.totals[into] += self.totals[other] + score
        self.counts[into] += self.counts[other]
        self.alive[other] = False


def assemble(peaks, limbs, min_parts=MIN_PARTS, min_mean_score=MIN_MEAN_SCORE,
             keep_neckless=False, stats=None):
    """Greedy multi-person assembly of scored limbs into people (OpenPose's procedure).

    Limb types are taken in ASSEMBLY_ORDER, each type's candidates highest score first; a peak
    is used at most once per limb type. A chosen limb a -> b then
      - starts a person with a and b when neither belongs to anyone (not for the shoulder-ear
        loop limbs);
      - adds the free end to the person that owns the other end, when that person's slot for
        it is empty;
      - joins the two people that own a and b when they have no part type in common.
    People with fewer than `min_parts` parts or a total score per part below `min_mean_score`
    are dropped.
    keep_neckless: join partial people that lack a neck into one before that filter (see
    join_neckless); off by default, which is OpenPose's behaviour.
    stats: an optional collections.Counter that receives counts of what happened ("merges",
    "dropped_few_parts", "dropped_low_score", "conflicts", ...).
    Returns People, in order of creation.
    """
    stats = collections.Counter() if stats is None else stats
    assembly = _Assembly(len(peaks.part))
    order = np.lexsort((-limbs.score, _ASSEMBLY_RANK[limbs.limb]))
    part_score = peaks.score.tolist()
    current_limb = None
    used_a, used_b = set(), set()
    for limb, a, b, score in zip(limbs.limb[order].tolist(), limbs.a[order].tolist(),
                                 limbs.b[order].tolist(), limbs.score[order].tolist()):
        if limb != current_limb:
            current_limb, used_a, used_b = limb, set(), set()
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        part_a, part_b = LIMBS[limb]
        owner_a, owner_b = assembly.owner[a], assembly.owner[b]
        if owner_a < 0 and owner_b < 0:
            if limb not in LOOP_LIMBS:
                assembly.start((part_a, part_b), (a, b), part_score[a] + part_score[b] + score)
        elif owner_a == owner_b:
            continue
        elif owner_b < 0 or owner_a < 0:
            person, part, peak = ((owner_a, part_b, b) if owner_b < 0 else (owner_b, part_a, a))
            if assembly.slots[person][part] < 0:
                assembly.add(person, part, peak, part_score[peak] + score)
            else:
                stats["conflicts"] += 1       # the slot holds another peak: keep the first
        elif assembly.disjoint(owner_a, owner_b):
            assembly.merge(owner_a, owner_b, score)
            stats["merges"] += 1
        else:
            stats["conflicts"] += 1           # both ends taken by people that overlap
    if keep_neckless:
        stats["neckless_joins"] += join_neckless(assembly, peaks)
    return _finish(assembly, peaks, min_parts, min_mean_score, stats)


def _finish(assembly, peaks, min_parts, min_mean_score, stats):
    kept = []
    for person, alive in enumerate(assembly.alive):
        if not alive:
            continue
        count, total = assembly.counts[person], assembly.totals[person]
        if count < min_parts:
            stats["dropped_few_parts"] += 1
        elif total / count < min_mean_score:
            stats["dropped_low_score"] += 1
        else:
            kept.append(person)
    slots = np.asarray([assembly.slots[person] for person in kept],
                       dtype=np.int64).reshape(len(kept), NUM_PARTS)
    found = slots >= 0
    ids = slots[found]
    keypoints = np.zeros((len(kept), NUM_PARTS, 3), dtype=np.float32)
    keypoints[found] = np.stack([peaks.x[ids], peaks.y[ids], peaks.score[ids]], axis=1)
    return People(keypoints=keypoints,
                  scores=np.asarray([assembly.totals[p] for p in kept], dtype=np.float32),
                  part_counts=np.asarray([assembly.counts[p] for p in kept], dtype=np.int64))


def join_neckless(assembly, peaks, reach=NECKLESS_REACH):
    """Join partial people that lack a neck: the keep_neckless option (going beyond OpenPose).

    Without a neck the limb tree has no root: a person whose neck is missing (a shoulder not
    seen, so no neck was labelled or predicted) falls apart into arms, legs and head, and the
    pieces with fewer than MIN_PARTS parts are dropped. No PAF joins those pieces, so geometry
    does: two neck-less pieces with no part type in common are joined when their roots (each
    piece's parts nearest the neck in the tree) lie within `reach` times the longest limb of
    the two pieces; closest pairs (relative to that length) first, repeatedly. A join adds no
    score. Returns the number of joins.
    """
    joins = 0
    while True:
        pieces = [person for person, alive in enumerate(assembly.alive)
                  if alive and assembly.slots[person][NECK] < 0]
        shapes = {person: _piece_shape(assembly.slots[person], peaks) for person in pieces}
        best = None
        for i, first in enumerate(pieces):
            for second in pieces[i + 1:]:
                if not assembly.disjoint(first, second):
                    continue
                roots_a, length_a = shapes[first]
                roots_b, length_b = shapes[second]
                gap = np.sqrt(((roots_a[:, None] - roots_b[None]) ** 2).sum(axis=-1)).min()
                ratio = gap / max(length_a, length_b, 1.0)
                if ratio <= reach and (best is None or ratio < best[0]):
                    best = (ratio, first, second)
        if best is None:
            return joins
        assembly.merge(best[1], best[2], 0.0)
        joins += 1


def _piece_shape(slots, peaks):
    """(positions of the parts nearest the neck (K, 2), longest tree limb present)."""
    slots = np.asarray(slots)
    present = np.nonzero(slots >= 0)[0]
    xy = np.stack([peaks.x[slots[present]], peaks.y[slots[present]]], axis=1).astype(np.float64)
    roots = xy[TREE_DEPTH[present] == TREE_DEPTH[present].min()]
    longest = 0.0
    for limb, (first, second) in enumerate(LIMBS):
        if limb not in LOOP_LIMBS and slots[first] >= 0 and slots[second] >= 0:
            delta = xy[present == second][0] - xy[present == first][0]
            longest = max(longest, float(np.hypot(delta[0], delta[1])))
    return roots, longest


def group_people(heatmaps, pafs, image_height=None, smooth_sigma=None, keep_neckless=False,
                 stats=None):
    """find_peaks, score_limbs and assemble with OpenPose's constants: maps -> People."""
    heatmaps = np.asarray(heatmaps)
    peaks = find_peaks(heatmaps, smooth_sigma=smooth_sigma)
    height = heatmaps.shape[0] if image_height is None else image_height
    limbs = score_limbs(peaks, pafs, height)
    return assemble(peaks, limbs, keep_neckless=keep_neckless, stats=stats)
