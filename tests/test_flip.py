"""Test-time flip (inference/flip.py): the maps of the mirrored image, mapped back, must give the
same people as the maps of the image itself, with left and right where they belong.

Perfect maps stand in for a network: the training labels (python_layers.labels) rendered for the
people of the picture, upsampled as inference upsamples the network's output. For the mirrored
picture they are rendered for the mirrored people as a net would see them: x -> W - 1 - x and
every left part called right and the reverse. That mirroring is written out here by part name;
it does not use the tables the code under test uses. The people are posed asymmetrically (one
arm up, one leg out, head turned), so that a left/right mix-up moves keypoints by tens of pixels.
"""
import numpy as np
import pytest

from conventions.keypoints import NUM_PARTS, PART
from inference import flip, grouping, oracle, prediction, scaling
from python_layers import labels

IMAGE_SIZE = (300, 400)          # (H, W): not a multiple of 8, so the padding is asymmetric
TOLERANCE_PX = 1.5               # a perfect map's peak lies within ~0.6 input px (test_multiscale)

# (x, y) in pixels of two people; their right side is on the picture's left
POSES = [
    {"nose": (95, 52), "neck": (100, 80), "right_shoulder": (78, 82), "right_elbow": (60, 60),
     "right_wrist": (55, 35), "left_shoulder": (122, 80), "left_elbow": (130, 110),
     "left_wrist": (133, 140), "right_hip": (88, 150), "right_knee": (80, 200),
     "right_ankle": (78, 250), "left_hip": (112, 150), "left_knee": (135, 195),
     "left_ankle": (155, 240), "right_eye": (90, 47), "left_eye": (99, 46),
     "right_ear": (84, 52), "left_ear": (104, 50)},
    {"nose": (282, 70), "neck": (290, 95), "right_shoulder": (270, 97), "right_elbow": (262, 128),
     "right_wrist": (258, 160), "left_shoulder": (311, 94), "left_elbow": (338, 90),
     "left_wrist": (362, 84), "right_hip": (278, 165), "right_knee": (276, 210),
     "right_ankle": (275, 255), "left_hip": (301, 165), "left_knee": (320, 205),
     "left_ankle": (318, 255), "right_eye": (279, 64), "left_eye": (287, 65),
     "right_ear": (272, 68), "left_ear": (292, 69)},
]


def parts_of(poses):
    parts = np.zeros((len(poses), NUM_PARTS, 3), dtype=np.float32)
    for person, pose in enumerate(poses):
        for name, (x, y) in pose.items():
            parts[person, PART[name]] = (x, y, 2)
    return parts


def other_side(name):
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


def mirrored(poses, width):
    """The people of the mirrored picture, by name: a left wrist at x shows as a right wrist at
    W - 1 - x."""
    return [{other_side(name): (width - 1 - x, y) for name, (x, y) in pose.items()}
            for pose in poses]


def upsampled(parts):
    (net_maps, resized), = oracle.rendered_outputs(parts, IMAGE_SIZE)
    return scaling.upsample_maps(net_maps, resized, IMAGE_SIZE)


def decoded(heatmaps, pafs):
    return grouping.group_people(heatmaps, pafs, image_height=IMAGE_SIZE[0]).keypoints


def assert_people(found, truth):
    """Every true person found once, each part within TOLERANCE_PX of its own position."""
    assert len(found) == len(truth), "%d people found, %d expected" % (len(found), len(truth))
    for person in truth:
        errors = np.abs(found[:, :, :2] - person[None, :, :2]).max(axis=2)   # (found, parts)
        best = int(np.argmin(errors.max(axis=1)))
        worst_part = int(np.argmax(errors[best]))
        assert errors[best].max() <= TOLERANCE_PX, (
            "part %d is %.1f px from where it belongs" % (worst_part, errors[best].max()))
        assert (found[best, :, 2] > 0).all(), "a part of a person was not found"


@pytest.fixture(scope="module")
def maps():
    width = IMAGE_SIZE[1]
    return {"plain": upsampled(parts_of(POSES)),
            "mirror": upsampled(parts_of(mirrored(POSES, width)))}


def test_the_poses_are_asymmetric_enough_to_catch_a_mix_up():
    truth = parts_of(POSES)
    swapped = parts_of([{other_side(name): xy for name, xy in pose.items()} for pose in POSES])
    moved = np.abs(truth[:, :, :2] - swapped[:, :, :2]).max(axis=2)
    assert (moved.max(axis=1) > 10 * TOLERANCE_PX).all()


def test_the_mirrored_images_maps_mapped_back_give_the_people(maps):
    heat, paf = flip.unflip_maps(*maps["mirror"])
    assert_people(decoded(heat, paf), parts_of(POSES))


def test_flip_averaged_maps_give_the_people_as_the_plain_maps_do(maps):
    plain_heat, plain_paf = maps["plain"]
    back_heat, back_paf = flip.unflip_maps(*maps["mirror"])
    averaged = decoded((plain_heat + back_heat) / 2, (plain_paf + back_paf) / 2)
    plain = decoded(plain_heat, plain_paf)
    assert_people(averaged, parts_of(POSES))
    assert_people(plain, parts_of(POSES))


def test_mapping_back_twice_is_the_identity(maps):
    heat, paf = maps["plain"]
    again = flip.unflip_maps(*flip.unflip_maps(heat, paf))
    np.testing.assert_array_equal(again[0], heat)
    np.testing.assert_array_equal(again[1], paf)


def test_mirror_image_is_a_left_right_mirror():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mirrored_image = flip.mirror_image(image)
    assert mirrored_image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(mirrored_image[:, 0], image[:, 2])
    np.testing.assert_array_equal(mirrored_image[:, 2], image[:, 0])


class MarkedPictureNet(object):
    """A stand-in backend giving perfect maps for whatever picture it is shown: the test image is
    black with a white column on its left edge, the padding grey, so the net can tell where the
    picture ends in the padded blob and whether it was mirrored (the white column on the
    right). Image -> input geometry as OpenCV's exact-size resize maps pixel centres:
    x_in + 0.5 = (x + 0.5) * w / W."""

    def __init__(self, poses, image_size):
        self.poses, self.image_size = poses, image_size
        self.seen = []                         # per forward: was the picture mirrored?

    def forward(self, blob):
        channel = blob[0, 0]
        picture = np.abs(channel) > 0.01       # black (-0.5) and white (~0.5), not grey (0)
        height = int(np.nonzero(picture.any(axis=1))[0][-1]) + 1
        width = int(np.nonzero(picture.any(axis=0))[0][-1]) + 1
        is_mirrored = channel[:height, width - 1].mean() > channel[:height, 0].mean()
        self.seen.append(bool(is_mirrored))
        poses = mirrored(self.poses, self.image_size[1]) if is_mirrored else self.poses
        parts = parts_of(poses)
        for axis, (before, after) in enumerate(((self.image_size[1], width),
                                                (self.image_size[0], height))):
            parts[..., axis] = (parts[..., axis] + 0.5) * after / before - 0.5
        grid = (blob.shape[2] // 8, blob.shape[3] // 8)
        heat, paf = labels.render_labels(parts, grid, stride=8)
        return np.concatenate([heat, paf])[None].astype(np.float32)


def marked_image():
    image = np.zeros(IMAGE_SIZE + (3,), dtype=np.uint8)
    image[:, :3] = 255
    return image


@pytest.mark.parametrize("scales", [[1.0], [0.7, 1.3]])
def test_predict_with_flip_forwards_the_mirrored_image_and_finds_the_people(scales):
    net = MarkedPictureNet(POSES, IMAGE_SIZE)
    people = prediction.predict_image(net, marked_image(), scales, mirror=True)
    assert net.seen == [False, True] * len(scales)
    assert_people(people.keypoints, parts_of(POSES))


def test_predict_without_flip_forwards_the_image_once():
    net = MarkedPictureNet(POSES, IMAGE_SIZE)
    people = prediction.predict_image(net, marked_image(), [1.0])
    assert net.seen == [False]
    assert_people(people.keypoints, parts_of(POSES))
