"""Multi-scale averaging and large images, checked for correctness end to end.

A stand-in backend (PerfectNet) answers every forward with the training labels
(python_layers.labels) of known people, rendered for the input it is given: it reads the extent
of the picture inside the padded blob from the blob itself (the test image is black, the padding
grey), so at every scale, fitted or not, its maps are the ones a perfect net would give for that
input. The image -> input geometry it uses is written out here (OpenCV's exact-size resize maps
pixel centres to pixel centres: x_in + 0.5 = (x + 0.5) * w / W); it does not call
inference.scaling.

What a correct chain must return then: every keypoint of every person, per axis within

    0.5 map pixel (the peak is an integer pixel of the maps the grouping reads)
    + 0.6 input pixel of the coarsest input (a Gaussian of sigma 7 px sampled every 8 px, upsampled
      cubically by 8 and resized to the map, has its maximum within 0.56 px of the part: the
      first test sweeps it)

in image pixels: 1.2 px at scale 1 on a 420 x 610 image, up to 2.3 px where the network input is
much coarser than the image (scale 0.5, or 368 px of input for a 1000 px high image); and the
mean offset over all the keypoints, which any geometric error (a shift, a stretch) moves, within
0.35 px per axis. The averaged maps must keep the labels' height (part peaks ~1, PAF vectors
~unit length), and a weak response (a "ghost" person at 8% of the labels' height, under the 0.1
peak threshold) must stay below the thresholds whatever the number of scales: a sum instead of
a mean lifts it over them. In a plain average the sharpest scale's peaks decide where a part is
found, which hides another scale's geometric errors: so people are also shown to the chain at
one scale only (the other scales' maps empty), where that scale's maps alone must put them, at a
quarter of the labels' height.
"""
import collections

import cv2
import numpy as np
import pytest

from conventions.keypoints import NUM_PARTS, PART
from inference import grouping, prediction, synthetic
from python_layers import labels

STRIDE = 8
BOX = 368                     # network input height at scale 1 (OpenPose's test code)
PAD_BLOB = 128 / 256.0 - 0.5  # grey padding in the blob (pixel / 256 - 0.5): 0
BLACK_BLOB = 0 / 256.0 - 0.5  # the test images are black
GHOST_GAIN = 0.08             # under the 0.1 peak threshold; twice it is over
PEAK_BIAS_INPUT_PX = 0.6      # see test_a_perfect_maps_peak_is_within_0_6_input_px
MEAN_OFFSET_PX = 0.35


class PerfectNet(object):
    """forward(blob) -> (1, 57, h/8, w/8): the labels of `parts` (image pixels) for the picture
    found inside the blob, plus GHOST_GAIN x the labels of `ghost` (people apart from them).
    only_rows: see the people only in the input whose picture is that high (empty labels at the
    other scales, as a net that sees small people at the large scales only)."""

    def __init__(self, parts, image_size, ghost=None, only_rows=None):
        self.parts, self.image_size, self.ghost = parts, image_size, ghost
        self.only_rows = only_rows
        self.inputs = []      # per forward: ((padded h, w), (picture h, w))
        self.seeing = []      # (picture h, w) of the inputs where the people were rendered

    def _labels(self, parts, picture, grid):
        height, width = self.image_size
        moved = np.array(parts, dtype=np.float32, copy=True)
        moved[..., 0] = (moved[..., 0] + 0.5) * picture[1] / float(width) - 0.5
        moved[..., 1] = (moved[..., 1] + 0.5) * picture[0] / float(height) - 0.5
        return labels.render_labels(moved, grid, stride=STRIDE)

    def forward(self, blob):
        assert blob.dtype == np.float32 and blob.shape[:2] == (1, 3), blob.shape
        height, width = blob.shape[2:]
        assert height % STRIDE == 0 and width % STRIDE == 0, blob.shape
        picture = (blob[0] != PAD_BLOB).any(axis=0)
        rows, columns = int(picture.any(axis=1).sum()), int(picture.any(axis=0).sum())
        # the picture at the top left, the padding (under a stride) on the right and at the bottom
        assert picture[:rows, :columns].all() and picture.sum() == rows * columns
        assert 0 <= height - rows < STRIDE and 0 <= width - columns < STRIDE
        assert np.allclose(blob[0][:, :rows, :columns], BLACK_BLOB)
        self.inputs.append(((height, width), (rows, columns)))
        grid = (height // STRIDE, width // STRIDE)
        seen = self.only_rows in (None, rows)
        if seen:
            self.seeing.append((rows, columns))
        heat, paf = self._labels(self.parts[:len(self.parts) * seen], (rows, columns), grid)
        if self.ghost is not None:
            ghost_heat, ghost_paf = self._labels(self.ghost, (rows, columns), grid)
            heat = np.maximum(heat, GHOST_GAIN * ghost_heat)
            paf = paf + GHOST_GAIN * ghost_paf
        return np.concatenate([heat, paf])[None].astype(np.float32)


def people_and_ghost(image_size):
    """Three standing people and a ghost, one in each quadrant of the image's middle 80% x 90%
    (a head at the very top edge makes extra border peaks at coarse scales: not tested here)."""
    height, width = image_size
    everyone = synthetic.standing_people(4, (int(0.8 * height), int(0.9 * width)), rows=2)
    everyone[..., 0] += round(0.05 * width)
    everyone[..., 1] += round(0.1 * height)
    return everyone[[0, 1, 3]], everyone[2:3]


@pytest.fixture
def decoded_maps(monkeypatch):
    """The averaged maps the grouping reads, captured on their way in."""
    seen = []
    group_people = grouping.group_people

    def capture(heatmaps, pafs, *args, **kwargs):
        seen.append((np.array(heatmaps), np.array(pafs)))
        return group_people(heatmaps, pafs, *args, **kwargs)

    monkeypatch.setattr(grouping, "group_people", capture)
    return seen


def predict(image_size, scales, decoded_maps, only_rows=None):
    parts, ghost = people_and_ghost(image_size)
    net = PerfectNet(parts, image_size, ghost, only_rows)
    stats = collections.Counter()
    image = np.zeros(tuple(image_size) + (3,), np.uint8)
    people = prediction.predict_image(net, image, scales, stats=stats)
    (heatmaps, pafs), = decoded_maps
    return parts, net, stats, people, heatmaps, pafs


def check_people(parts, people, heatmaps, image_size, net, height=1.0):
    """Each true person found once, every keypoint within the tolerance, no systematic offset,
    peak scores `height` (the labels' 1 / the share of the scales that saw the people);
    returns (largest error, tolerance, mean offset (x, y)) in image pixels."""
    keypoints = people.keypoints
    assert len(keypoints) == len(parts), "found %d people, expected %d" % (len(keypoints),
                                                                           len(parts))
    map_px = max(image_size[0] / float(heatmaps.shape[0]), image_size[1] / float(heatmaps.shape[1]))
    input_px = max(image_size[0] / float(min(rows for rows, _ in net.seeing)),
                   image_size[1] / float(min(columns for _, columns in net.seeing)))
    tolerance = 0.5 * map_px + PEAK_BIAS_INPUT_PX * input_px + 0.01
    matched, offsets = set(), []
    for truth in parts:
        distance = np.hypot(*(keypoints[:, :, :2] - truth[None, :, :2]).transpose(2, 0, 1))
        best = int(distance.mean(axis=1).argmin())
        matched.add(best)
        assert (keypoints[best, :, 2] > 0).all(), "parts missing: %s" % keypoints[best]
        offset = keypoints[best, :, :2] - truth[:, :2]
        offsets.append(offset)
        worst = int(np.abs(offset).max(axis=1).argmax())
        assert np.abs(offset).max() <= tolerance, (
            "part %d at %s, truth %s: %.2f px off (tolerance %.2f px)"
            % (worst, keypoints[best, worst, :2], truth[worst, :2], np.abs(offset).max(),
               tolerance))
        # the peak scores are the averaged heatmaps' height, not a multiple of it
        scores = keypoints[best, :, 2]
        assert ((scores > 0.9 * height) & (scores < 1.1 * height)).all(), scores
    assert len(matched) == len(parts)
    mean = np.concatenate(offsets).mean(axis=0)
    assert (np.abs(mean) <= MEAN_OFFSET_PX).all(), "keypoints shifted by %s px on average" % mean
    return np.abs(np.concatenate(offsets)).max(), tolerance, mean


def check_maps(heatmaps, pafs, height=1.0):
    """Averaged perfect maps keep the labels' height (x `height`): part peaks ~1, PAF vectors ~unit
    length (up to ~1.35 where the cubic resizes overshoot the band's edges)."""
    peaks = heatmaps.reshape(-1, NUM_PARTS).max(axis=0)
    assert ((peaks > 0.9 * height) & (peaks < 1.1 * height)).all(), peaks
    length = np.hypot(pafs[:, :, 0::2], pafs[:, :, 1::2]).max(axis=(0, 1))
    assert ((length > 0.9 * height) & (length < 1.5 * height)).all(), length


@pytest.mark.parametrize("image_width, input_width, map_width", [
    (610, 267, 610), (610, 534, 610), (1500, 276, 1224), (1500, 552, 1224), (1500, 1262, 1224)])
def test_a_perfect_maps_peak_is_within_0_6_input_px(image_width, input_width, map_width):
    # The limit of perfect maps, which the tolerances are built on, along one axis: a part
    # anywhere between two cell centres; its labels upsampled by 8 (cubic), cut to the picture,
    # resized to the map; the integer peak, back in image pixels. Off by at most half a map pixel
    # plus 0.6 input pixel (measured: 0.26-0.56, the most for the coarsest inputs).
    cells = -(-input_width // STRIDE)
    input_px = image_width / float(input_width)
    map_px = image_width / float(map_width)
    errors = []
    for x in np.arange(100.0, 100.0 + STRIDE * input_px, 0.1):
        parts = np.zeros((1, NUM_PARTS, 3), np.float32)
        parts[0, PART["nose"]] = ((x + 0.5) / input_px - 0.5, 20.0, 2)
        heat, _ = labels.render_labels(parts, (5, cells), stride=STRIDE)
        row = cv2.resize(heat[PART["nose"]], (cells * STRIDE, 5 * STRIDE),
                         interpolation=cv2.INTER_CUBIC)[20:21, :input_width]
        if map_width != input_width:
            row = cv2.resize(np.ascontiguousarray(row), (map_width, 1),
                             interpolation=cv2.INTER_CUBIC)
        errors.append(abs((row.argmax() + 0.5) * map_px - 0.5 - x))
    assert max(errors) <= 0.5 * map_px + PEAK_BIAS_INPUT_PX * input_px
    assert max(errors) > 0.5 * map_px + 0.25 * input_px      # the bound is not loose


@pytest.mark.parametrize("scales, heights", [
    ((1.0,), [368]),
    ((0.5,), [184]),
    ((0.75,), [276]),                 # padded at the bottom too: 276 -> 280
    ((1.5,), [552]),
    ((2.0,), [736]),
    ((0.5, 1.0, 1.5, 2.0), [184, 368, 552, 736]),
    ((0.75, 1.25), [276, 460]),
], ids=["1", "0.5", "0.75", "1.5", "2", "0.5+1+1.5+2", "0.75+1.25"])
def test_every_scale_and_their_average_find_the_people_within_a_pixel(scales, heights,
                                                                      decoded_maps):
    size = (420, 610)
    parts, net, stats, people, heatmaps, pafs = predict(size, scales, decoded_maps)
    # the inputs: height 368 x scale, width in proportion, padded to a multiple of 8
    assert [rows for _, (rows, _) in net.inputs] == heights
    assert [columns for _, (_, columns) in net.inputs] == [int(round(h * 610 / 420.0))
                                                           for h in heights]
    assert heatmaps.shape == size + (NUM_PARTS,)
    check_maps(heatmaps, pafs)
    error, tolerance, mean = check_people(parts, people, heatmaps, size, net)
    assert tolerance <= (1.9 if min(scales) < 1 else 1.2)
    # the ghost stays under the thresholds: no peak of it, nothing assembled and dropped
    assert stats["dropped_low_score"] == 0 and stats["dropped_few_parts"] == 0, stats


@pytest.mark.parametrize("rows", [184, 368, 552, 736])
def test_people_seen_at_one_scale_only_are_found_where_that_scale_puts_them(rows, decoded_maps):
    # Averaged with three empty scales, one scale's maps decide alone where the people are (in a
    # plain average the sharpest scale's peaks decide, and the others' errors hide under it), at
    # a quarter of the labels' height: a sum, or another divisor, changes that.
    size = (420, 610)
    scales = (0.5, 1.0, 1.5, 2.0)
    parts, net, stats, people, heatmaps, pafs = predict(size, scales, decoded_maps, rows)
    assert len(net.seeing) == 1 and len(net.inputs) == 4
    check_maps(heatmaps, pafs, height=0.25)
    check_people(parts, people, heatmaps, size, net, height=0.25)
    assert stats["dropped_low_score"] == 0 and stats["dropped_few_parts"] == 0, stats


@pytest.mark.parametrize("scales, fitted", [
    ((1.0,), [False]),
    ((3.0,), [True]),
    ((1.0, 2.0, 3.0), [False, False, True]),
], ids=["1", "3", "1+2+3"])
def test_an_image_over_a_megapixel_and_an_input_over_the_limit(scales, fitted, decoded_maps):
    size = (1000, 1500)                    # 1500 x 1000: 1.5 Mpx
    parts, net, stats, people, heatmaps, pafs = predict(size, scales, decoded_maps)
    # decoded on maps of at most 1 Mpx, in the image's proportions
    assert heatmaps.shape[0] * heatmaps.shape[1] <= 1000000
    assert heatmaps.shape[0] * heatmaps.shape[1] > 0.99 * 1000000
    assert abs(heatmaps.shape[1] / float(heatmaps.shape[0]) - 1.5) < 0.005
    # network inputs: at most MAX_INPUT_PIXELS; a scale over it shrunk to just under it
    limit = prediction.MAX_INPUT_PIXELS
    for (padded, picture), scale, shrunk in zip(net.inputs, scales, fitted):
        requested = (int(round(BOX * scale)), int(round(BOX * scale * 1.5)))
        assert padded[0] * padded[1] <= limit
        if shrunk:
            assert requested[0] * requested[1] > limit
            assert picture[0] * picture[1] > 0.95 * limit
            assert abs(picture[1] / float(picture[0]) - 1.5) < 0.005
        else:
            assert picture == requested
    assert sum(count for key, count in stats.items() if key.startswith("inputs scaled down")) \
        == sum(fitted)
    check_maps(heatmaps, pafs)
    error, tolerance, mean = check_people(parts, people, heatmaps, size, net)
    assert tolerance <= 2.3
    assert stats["dropped_low_score"] == 0 and stats["dropped_few_parts"] == 0, stats
