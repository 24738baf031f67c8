"""Training labels at the network's stride: part heatmaps (paper eq. 1) and PAFs (paper eq. 2).

Pure numpy, no Caffe: the training data layer, the label pictures and inference's oracle (which
decodes perfect labels with the grouping code) all render labels through this module.

Coordinates are input pixels with pixel centres at integers. Label cell (x, y) covers input
pixels 8x..8x+7 and is sampled at its centre (8x + 3.5, 8y + 3.5), so that the maps line up with
an image that is upsampled back by 8 with pixel-centre alignment (cv2.resize, as inference does).

Where the MLN paper and OpenPose's first training code differ, the paper is the specification:
people are combined by **max** in the heatmaps (the code summed and clipped) and PAF vectors are
**averaged** where people overlap (the code forgot to count and overwrote). The Gaussian follows
the code's exp(-d^2 / 2 sigma^2), cut to 0 where the exponent exceeds ln(100) (values below 0.01):
decoded with the OpenPose chain it gives more AP than the papers' exp(-d^2 / sigma^2), which stays
available as form="paper".
"""
import numpy as np

from conventions.geometry import STRIDE
from conventions.keypoints import LIMBS, NUM_HEATMAPS, NUM_LIMBS, NUM_PAFS, NUM_PARTS

SIGMA = 7.0                 # heatmap Gaussian, input pixels
PAF_WIDTH_CELLS = 1.0       # PAF half-width, label cells (8 input pixels)
GAUSSIAN_CUTOFF = 4.6052    # ln(100): Gaussian values under 0.01 are set to 0
GAUSSIAN_FORMS = ("code", "paper")


def cell_centres(length, stride=STRIDE):
    """Input-pixel coordinates of the centres of `length` label cells along one axis."""
    return np.arange(length, dtype=np.float32) * stride + (stride - 1) / 2.0


def _labelled(parts):
    """(P, 18) booleans: labelled (v > 0) with finite coordinates."""
    return (parts[..., 2] > 0) & np.isfinite(parts[..., 0]) & np.isfinite(parts[..., 1])


def _as_parts(parts):
    return np.asarray(parts, dtype=np.float32).reshape(-1, NUM_PARTS, 3)


def heatmaps(parts, grid_shape, stride=STRIDE, sigma=SIGMA, form="code"):
    """Part heatmaps and the background channel, (19, H, W) float32 in [0, 1].

    parts: (P, 18, 3) as (x, y, v) in input pixels; v == 0 means not labelled.
    grid_shape: (H, W) label cells.
    Channel p is the max over people of each person's Gaussian around part p; channel 18 is
    max(0, 1 - max over parts).
    """
    if form not in GAUSSIAN_FORMS:
        raise ValueError("form must be one of %s, got %r" % (GAUSSIAN_FORMS, form))
    height, width = grid_shape
    parts = _as_parts(parts)
    maps = np.zeros((NUM_HEATMAPS, height, width), dtype=np.float32)
    labelled = _labelled(parts)
    if labelled.any():
        people, channels = np.nonzero(labelled)            # one Gaussian per labelled part
        x = parts[people, channels, 0]
        y = parts[people, channels, 1]
        denominator = (2.0 if form == "code" else 1.0) * sigma * sigma
        dx2 = (cell_centres(width, stride)[None, :] - x[:, None]) ** 2 / denominator   # (K, W)
        dy2 = (cell_centres(height, stride)[None, :] - y[:, None]) ** 2 / denominator  # (K, H)
        exponent = dy2[:, :, None] + dx2[:, None, :]                                   # (K, H, W)
        gaussians = np.where(exponent > GAUSSIAN_CUTOFF, 0.0, np.exp(-exponent))
        # (person, part) pairs are unique: place each Gaussian, then take the max over people
        per_person = np.zeros((parts.shape[0], NUM_PARTS, height, width), dtype=np.float32)
        per_person[people, channels] = gaussians
        maps[:NUM_PARTS] = per_person.max(axis=0)
    maps[NUM_PARTS] = np.maximum(0.0, 1.0 - maps[:NUM_PARTS].max(axis=0))
    return maps


def part_affinity_fields(parts, grid_shape, stride=STRIDE, width_cells=PAF_WIDTH_CELLS):
    """PAFs, (38, H, W) float32: limb i's unit vector in channels 2i (x) and 2i+1 (y).

    A label cell gets limb i's vector v = (b - a) / |b - a| of a person when its centre p is
    within width_cells label cells of the limb segment a-b (1 cell: conventions/README.md); where
    several people's limbs cover the cell, their vectors are averaged. Along the limb this is the paper's eq. 2 band (|v x (p - a)| <= width); the band
    also rounds off past both parts, so that a limb shorter than a cell (eyes, ears, the wrists of
    small people) still gets a field: with eq. 2's bare rectangle such limbs get none and the
    ground truth itself decodes to AP 0.707 instead of 0.726 (inference/oracle.py on the COCO
    slice). A limb needs both parts labelled and a non-zero length: otherwise it adds nothing.
    """
    height, width = grid_shape
    parts = _as_parts(parts)
    limbs = np.asarray(LIMBS)
    start, end = parts[:, limbs[:, 0], :2], parts[:, limbs[:, 1], :2]          # (P, 19, 2)
    labelled = _labelled(parts)
    valid = labelled[:, limbs[:, 0]] & labelled[:, limbs[:, 1]]
    delta = np.where(valid[..., None], end - start, 0.0)
    length = np.sqrt((delta ** 2).sum(axis=-1))                                # (P, 19)
    valid &= length > 1e-6
    fields = np.zeros((NUM_LIMBS, 2, height, width), dtype=np.float32)
    if valid.any():
        people, limb_ids = np.nonzero(valid)
        a = start[people, limb_ids]                                           # (K, 2)
        unit = delta[people, limb_ids] / length[people, limb_ids, None]        # (K, 2)
        gx = cell_centres(width, stride)[None, None, :] - a[:, 0, None, None]  # (K, 1, W)
        gy = cell_centres(height, stride)[None, :, None] - a[:, 1, None, None]  # (K, H, 1)
        along = unit[:, 0, None, None] * gx + unit[:, 1, None, None] * gy      # (K, H, W)
        across = unit[:, 0, None, None] * gy - unit[:, 1, None, None] * gx
        # how far past either part the cell lies along the limb (0 between the parts)
        beyond = np.maximum(np.maximum(-along, along - length[people, limb_ids, None, None]), 0)
        on_limb = beyond ** 2 + across ** 2 <= (width_cells * stride) ** 2
        # (person, limb) pairs are unique: place each limb, then average over the people there
        per_person = np.zeros((parts.shape[0], NUM_LIMBS, 3, height, width), dtype=np.float32)
        per_person[people, limb_ids, 0] = on_limb
        per_person[people, limb_ids, 1] = on_limb * unit[:, 0, None, None]
        per_person[people, limb_ids, 2] = on_limb * unit[:, 1, None, None]
        count, sum_x, sum_y = per_person.sum(axis=0).transpose(1, 0, 2, 3)
        np.divide(sum_x, np.maximum(count, 1.0), out=fields[:, 0])
        np.divide(sum_y, np.maximum(count, 1.0), out=fields[:, 1])
    return fields.reshape(NUM_PAFS, height, width)



def render_labels(parts, grid_shape, stride=STRIDE, sigma=SIGMA, width_cells=PAF_WIDTH_CELLS,
                  form="code"):
    """Both label blocks for one sample: (heatmaps (19, H, W), PAFs (38, H, W))."""
    return (heatmaps(parts, grid_shape, stride=stride, sigma=sigma, form=form),
            part_affinity_fields(parts, grid_shape, stride=stride, width_cells=width_cells))
