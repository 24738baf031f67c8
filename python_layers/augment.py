"""Per-sample training augmentation: one affine warp from the image to the crop, then the labels.

Pure numpy + OpenCV, no Caffe and no LMDB: the training data layer is a thin wrapper around
`sample_from_record`, and the label pictures (show_sample.py) call the same functions.

One sample = one image centred on one "main person" (OpenPose's CVPR'17 recipe, kept by MLN):

1. `draw_augmentation` picks the random parameters (6 uniform numbers per sample, always, so the
   random stream does not depend on the outcome): a scale multiplier U[scale_min, scale_max]
   (applied with probability scale_prob), a rotation U[-max_rotate_degree, max_rotate_degree],
   a centre offset U[-center_perturb_max, center_perturb_max]^2 in crop pixels and a horizontal
   flip with probability flip_prob.
2. `crop_matrix` composes ONE 2x3 affine map from original-image pixels to crop pixels:
   translate the main person's centre to the origin, scale so that the person's height becomes
   target_dist * crop_size * multiplier, rotate, move to the crop centre plus the offset, and
   mirror x (x -> C - 1 - x) when flipping. OpenPose applied the same steps as separate resizes,
   rotations and copies; one warp gives the same geometry with one interpolation.
3. The image goes through that matrix in one cv2.warpAffine (pixels outside the image = 128),
   the loss mask in another (outside = 1, see `warp_mask`) and then to label resolution by area
   averaging, and the keypoints through the same matrix (`transform_parts`); a mirroring matrix
   also swaps left and right parts (conventions.keypoints.FLIP_PERMUTATION).
4. Labels are rendered at stride 8 by python_layers.labels from the transformed keypoints of ALL
   people of the image; the image is normalised to pixel / 256 - 0.5 (the paper), BGR.

Coordinates: pixel centres at integers everywhere (as in conventions.keypoints and cv2.warpAffine),
so the crop's centre is ((C - 1) / 2, (C - 1) / 2) and a flip maps x to C - 1 - x.
"""
import collections
import dataclasses
import math

import cv2
import numpy as np

from conventions.geometry import BOX_SIZE, PAD_VALUE, STRIDE, normalise
from conventions.keypoints import FLIP_PERMUTATION, NUM_PARTS
from python_layers import labels


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Augmentation and label parameters; the defaults are OpenPose's COCO training values.

    crop_size, stride: network input side and output stride (368, 8 -> 46x46 labels).
    target_dist: the main person's height as a fraction of the crop (0.6), before the multiplier.
    scale_min, scale_max, scale_prob: multiplier U[0.5, 1.1], applied with probability 1.
    max_rotate_degree: rotation U[-40, 40] degrees.
    center_perturb_max: crop centre offset U[-40, 40] crop pixels along x and y.
    flip_prob: horizontal flip with left/right swap, probability 0.5.
    pad_value: grey level of the image outside the original picture (128).
    sigma, paf_width_cells, gaussian_form: label parameters, see python_layers.labels.
    """
    crop_size: int = BOX_SIZE
    stride: int = STRIDE
    target_dist: float = 0.6
    scale_min: float = 0.5
    scale_max: float = 1.1
    scale_prob: float = 1.0
    max_rotate_degree: float = 40.0
    center_perturb_max: float = 40.0
    flip_prob: float = 0.5
    pad_value: int = PAD_VALUE
    sigma: float = labels.SIGMA
    paf_width_cells: float = labels.PAF_WIDTH_CELLS
    gaussian_form: str = "code"

    def __post_init__(self):
        if self.crop_size <= 0 or self.stride <= 0 or self.crop_size % self.stride:
            raise ValueError("crop_size (%r) must be a positive multiple of stride (%r)"
                             % (self.crop_size, self.stride))
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError("need 0 < scale_min <= scale_max, got %r, %r"
                             % (self.scale_min, self.scale_max))
        for name in ("scale_prob", "flip_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError("%s must be in [0, 1], got %r" % (name, getattr(self, name)))
        for name in ("target_dist", "sigma", "paf_width_cells"):
            if not getattr(self, name) > 0:
                raise ValueError("%s must be positive, got %r" % (name, getattr(self, name)))
        for name in ("max_rotate_degree", "center_perturb_max"):
            if not getattr(self, name) >= 0:
                raise ValueError("%s must be >= 0, got %r" % (name, getattr(self, name)))
        if not 0 <= self.pad_value <= 255:
            raise ValueError("pad_value must be in [0, 255], got %r" % (self.pad_value,))
        if self.gaussian_form not in labels.GAUSSIAN_FORMS:
            raise ValueError("gaussian_form must be one of %s, got %r"
                             % (labels.GAUSSIAN_FORMS, self.gaussian_form))

    @property
    def grid_size(self):
        """Label side in cells: crop_size / stride."""
        return self.crop_size // self.stride

    @classmethod
    def from_dict(cls, values):
        """Parameters from a mapping (e.g. the data layer's param_str JSON minus its own keys).

        Unknown keys are an error (a typo would otherwise silently train with a default).
        """
        defaults = {field.name: field.default for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ValueError("unknown augmentation parameter(s) %s; known: %s"
                             % (", ".join(unknown), ", ".join(sorted(defaults))))
        typed = {}
        for name, value in values.items():
            kind = type(defaults[name])          # JSON has no int/float distinction: cast
            try:
                typed[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError("augmentation parameter %s must be %s, got %r"
                                 % (name, kind.__name__, value)) from None
            if kind is int and typed[name] != value:
                raise ValueError("augmentation parameter %s must be an integer, got %r"
                                 % (name, value))
        return cls(**typed)


Augmentation = collections.namedtuple(
    "Augmentation", ["scale_multiplier", "rotate_degree", "center_offset", "flip"])
Augmentation.__doc__ = """The random choices of one sample.

scale_multiplier: factor on top of the target_dist scale; rotate_degree: counter-clockwise on
screen (OpenCV's convention); center_offset: (dx, dy) crop pixels where the main person's centre
lands relative to the crop centre; flip: mirror horizontally (and swap left/right parts).
"""

NO_AUGMENTATION = Augmentation(1.0, 0.0, (0.0, 0.0), False)

Sample = collections.namedtuple(
    "Sample", ["data", "heatmap_label", "paf_label", "loss_mask",
               "crop", "parts", "matrix", "augmentation"])
Sample.__doc__ = """One training sample.

data (3, C, C) float32 BGR pixel / 256 - 0.5; heatmap_label (19, G, G), paf_label (38, G, G),
loss_mask (1, G, G) float32 in [0, 1] with G = C / stride. For pictures and checks: crop, the
augmented (C, C, 3) uint8 image; parts (P, 18, 3), the keypoints in crop pixels (left/right
already swapped on a flip); matrix, the 2x3 map from image to crop pixels; augmentation.
"""


def draw_augmentation(params, rng):
    """The random choices of one sample from `rng` (np.random.RandomState); always 6 draws."""
    dice = rng.random_sample(6)
    if dice[0] < params.scale_prob:
        scale_multiplier = params.scale_min + (params.scale_max - params.scale_min) * dice[1]
    else:
        scale_multiplier = 1.0
    rotate_degree = (2 * dice[2] - 1) * params.max_rotate_degree
    center_offset = ((2 * dice[3] - 1) * params.center_perturb_max,
                     (2 * dice[4] - 1) * params.center_perturb_max)
    flip = bool(dice[5] < params.flip_prob)
    return Augmentation(float(scale_multiplier), float(rotate_degree),
                        (float(center_offset[0]), float(center_offset[1])), flip)


def crop_matrix(center, person_scale, augmentation, params):
    """The 2x3 float64 affine map from original-image pixels to crop pixels.

    center: (x, y) of the main person in the image; person_scale: its height / 368 (data_prep's
    `scales`, OpenPose's scale_provided). The person's height becomes
    target_dist * crop_size * scale_multiplier pixels (at crop 368 exactly OpenPose's
    target_dist / scale_provided), its centre lands at the crop centre + center_offset.
    """
    if not (np.isfinite(person_scale) and person_scale > 0):
        raise ValueError("person scale must be positive and finite, got %r" % (person_scale,))
    if not np.all(np.isfinite(center)):
        raise ValueError("person centre must be finite, got %r" % (tuple(center),))
    scale = (params.target_dist * params.crop_size / (person_scale * BOX_SIZE)
             * augmentation.scale_multiplier)
    angle = math.radians(augmentation.rotate_degree)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # Rotation counter-clockwise on screen with y pointing down (as cv2.getRotationMatrix2D).
    linear = np.array([[cos, sin], [-sin, cos]])
    middle = (params.crop_size - 1) / 2.0
    target = np.array([middle + augmentation.center_offset[0],
                       middle + augmentation.center_offset[1]])
    matrix = np.empty((2, 3))
    matrix[:, :2] = linear
    matrix[:, 2] = target - linear @ np.asarray(center, dtype=np.float64)
    if augmentation.flip:
        matrix[0] = -matrix[0]
        matrix[0, 2] += params.crop_size - 1
    return matrix


def is_mirroring(matrix):
    """True when the affine map reverses orientation (a flip): then left and right swap."""
    return float(np.linalg.det(np.asarray(matrix)[:, :2])) < 0


def transform_parts(parts, matrix):
    """Parts (P, 18, 3) in image pixels -> the same people in crop pixels.

    Labelled parts (v > 0) move through `matrix`; unlabelled ones stay (0, 0, 0). When the matrix
    mirrors, part p of the result is part FLIP_PERMUTATION[p] of the input: the person's left
    wrist appears where a right wrist would, so it must be labelled as a right wrist.
    """
    parts = np.asarray(parts, dtype=np.float32).reshape(-1, NUM_PARTS, 3)
    matrix = np.asarray(matrix, dtype=np.float64)
    moved = np.zeros_like(parts)
    labelled = parts[..., 2] > 0
    xy = parts[..., :2].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    moved[..., :2] = np.where(labelled[..., None], xy, 0)
    moved[..., 2] = parts[..., 2]
    if is_mirroring(matrix):
        moved = moved[:, FLIP_PERMUTATION, :]
    return moved


def warp_image(image, matrix, crop_size, pad_value=PAD_VALUE):
    """(H, W, 3) uint8 image -> (crop_size, crop_size, 3) uint8 crop; outside = pad_value."""
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (crop_size, crop_size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(pad_value,) * 3)


def warp_mask(mask, matrix, crop_size, stride):
    """Loss mask (H, W) uint8 in {0, 1} -> (crop_size / stride,)*2 float32 in [0, 1].

    Warped at crop resolution (nearest: it is a label, not a picture) and then averaged over each
    label cell's stride x stride input pixels (INTER_AREA), so a cell half covered by an
    unannotated person gets 0.5. Outside the original image the mask is 1: the padding holds no
    person, its labels (background 1, no PAF) are right, and inference pads with the same grey,
    so the network should learn to predict "nothing" there. OpenPose's COCO training does the
    same (mask_miss padded with 255 = keep in its rotation and crop).
    """
    warped = cv2.warpAffine(mask, np.asarray(matrix, dtype=np.float64), (crop_size, crop_size),
                            flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=1)
    grid = crop_size // stride
    return cv2.resize(warped.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)


def _check_inputs(image, mask_miss, parts):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be (H, W, 3) uint8 BGR, got %s %s"
                         % (image.dtype, image.shape))
    if mask_miss is not None:
        mask_miss = np.asarray(mask_miss)
        if mask_miss.dtype != np.uint8 or mask_miss.shape != image.shape[:2]:
            raise ValueError("mask_miss must be (H, W) uint8 matching the image %s, got %s %s"
                             % (image.shape[:2], mask_miss.dtype, mask_miss.shape))
        if mask_miss.max(initial=0) > 1:        # a 0/255 mask would give loss weights of 255
            raise ValueError("mask_miss must hold 0 and 1, its maximum is %d"
                             % mask_miss.max())
    parts = np.asarray(parts, dtype=np.float32)
    if parts.ndim != 3 or parts.shape[1:] != (NUM_PARTS, 3):
        raise ValueError("parts must be (P, %d, 3), got %s" % (NUM_PARTS, parts.shape))
    return image, mask_miss, parts


def augment(image, mask_miss, parts, center, person_scale, augmentation, params):
    """One sample for given augmentation choices (no randomness here).

    image: (H, W, 3) uint8 BGR; mask_miss: (H, W) uint8 in {0, 1} (0 where the loss is ignored)
    or None for "no mask"; parts: (P, 18, 3) all people of the image; center, person_scale: the
    main person's (x, y) and height / 368. Returns a Sample.
    """
    image, mask_miss, parts = _check_inputs(image, mask_miss, parts)
    matrix = crop_matrix(center, person_scale, augmentation, params)
    crop = warp_image(image, matrix, params.crop_size, params.pad_value)
    if mask_miss is None:
        loss_mask = np.ones((params.grid_size,) * 2, dtype=np.float32)
    else:
        loss_mask = warp_mask(mask_miss, matrix, params.crop_size, params.stride)
    crop_parts = transform_parts(parts, matrix)
    heatmap_label, paf_label = labels.render_labels(
        crop_parts, (params.grid_size,) * 2, stride=params.stride, sigma=params.sigma,
        width_cells=params.paf_width_cells, form=params.gaussian_form)
    return Sample(normalise(crop), heatmap_label, paf_label, loss_mask[None], crop, crop_parts,
                  matrix, augmentation)


def make_sample(image, mask_miss, parts, center, person_scale, params, rng):
    """One randomly augmented sample: draw_augmentation(params, rng), then augment(...)."""
    augmentation = draw_augmentation(params, rng)
    return augment(image, mask_miss, parts, center, person_scale, augmentation, params)


def sample_from_record(record, person, params, rng, augmentation=None):
    """One sample centred on person `person` of a data_prep Record (or anything with its fields).

    Uses record.image(), record.mask_miss(), record.parts, record.centers[person] and
    record.scales[person]; `augmentation` overrides the random draw (rng is then not used).
    Errors name the record's image id and file.
    """
    try:
        if augmentation is None:
            augmentation = draw_augmentation(params, rng)
        return augment(record.image(), record.mask_miss(), record.parts,
                       record.centers[person], record.scales[person], augmentation, params)
    except (ValueError, IndexError) as error:
        raise ValueError("image id %s (%s), person %d: %s"
                         % (record.image_id, record.file_name, person, error)) from error
