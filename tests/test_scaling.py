"""Image <-> network geometry: OpenPose's resize and pad, and the maps' way back."""
import numpy as np
import pytest

from conventions.keypoints import PART
from inference import oracle, scaling


@pytest.mark.parametrize("image, scale, resized, padded", [
    ((480, 640), 1.0, (368, 491), (368, 496)),
    ((368, 432), 1.0, (368, 432), (368, 432)),
    ((427, 640), 0.5, (184, 276), (184, 280)),
    ((1000, 5), 1.0, (368, 2), (368, 8)),
])
def test_resized_height_is_368_times_the_scale_and_padding_reaches_a_multiple_of_8(
        image, scale, resized, padded):
    assert scaling.scaled_size(image[0], image[1], scale) == resized
    assert scaling.padded_size(*resized) == padded


def test_padding_is_grey_on_the_right_and_at_the_bottom():
    image = np.zeros((100, 150, 3), np.uint8)
    padded, resized = scaling.resize_and_pad(image, 1.0)
    assert resized == (368, 552) and padded.shape == (368, 552, 3)
    image = np.zeros((97, 150, 3), np.uint8)
    padded, resized = scaling.resize_and_pad(image, 1.0)
    assert resized == (368, 569) and padded.shape == (368, 576, 3)
    assert (padded[:, :569] == 0).all() and (padded[:, 569:] == 128).all()


@pytest.mark.parametrize("image_size", [(368, 432), (480, 640), (300, 451)])
def test_upsampled_label_peaks_land_on_the_keypoints(image_size):
    parts = np.zeros((1, 18, 3), np.float32)
    parts[0, PART["nose"]] = (101, 57, 2)
    parts[0, PART["left_ankle"]] = (image_size[1] - 40, image_size[0] - 30, 2)
    (net_maps, resized), = oracle.rendered_outputs(parts, image_size)
    heatmaps, pafs = scaling.upsample_maps(net_maps, resized, image_size)
    assert heatmaps.shape == image_size + (18,) and pafs.shape == image_size + (38,)
    assert heatmaps.flags.c_contiguous and pafs.flags.c_contiguous
    for part in ("nose", "left_ankle"):
        y, x = np.unravel_index(heatmaps[:, :, PART[part]].argmax(), image_size)
        # within the resize's own rounding: at most one pixel of the image per axis
        assert abs(x - parts[0, PART[part], 0]) <= 1 and abs(y - parts[0, PART[part], 1]) <= 1


def test_keypoints_scale_back_from_reduced_maps_and_missing_parts_stay_zero():
    keypoints = np.zeros((1, 18, 3), np.float32)
    keypoints[0, 0] = (9.5, 19.5, 0.7)             # the edge of pixel 10 / 20 in the map
    moved = scaling.keypoints_to_image(keypoints, (100, 50), (400, 200))
    assert moved[0, 0].tolist() == pytest.approx([39.5, 79.5, 0.7])
    assert (moved[0, 1:] == 0).all()
    assert scaling.map_size(2000, 3000) == (816, 1224)
    assert scaling.map_size(480, 640) == (480, 640)
