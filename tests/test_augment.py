"""The training augmentation: geometry of the one warp, flips with the left/right swap, the mask,
determinism, normalisation, and properties of whole samples on random annotations."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conventions.keypoints import FLIP_PERMUTATION, LIMBS, PART
from python_layers import augment

PARAMS = augment.AugmentParams()
C = PARAMS.crop_size
GRID = PARAMS.grid_size
MIDDLE = (C - 1) / 2.0


def person(**positions):
    """Parts (1, 18, 3): the named parts at (x, y) with v = 2, the rest unlabelled."""
    parts = np.zeros((1, 18, 3), dtype=np.float32)
    for name, (x, y) in positions.items():
        parts[0, PART[name]] = (x, y, 2)
    return parts


def scale_for(factor, params=PARAMS):
    """The person_scale (height / 368) that makes crop_matrix scale the image by `factor`."""
    return params.target_dist * params.crop_size / (368.0 * factor)


def limb_channels(first, second):
    i = LIMBS.index((PART[first], PART[second]))
    return 2 * i, 2 * i + 1


def blob_image(shape, x, y, sigma):
    """A black uint8 BGR image with a bright Gaussian spot centred at (x, y) (pixel centres)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    spot = 255 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.round(spot).astype(np.uint8)[..., None], 3, axis=2)


def bright_centroid(crop):
    weights = crop[..., 1].astype(np.float64)
    rows, cols = np.mgrid[0:crop.shape[0], 0:crop.shape[1]]
    return (cols * weights).sum() / weights.sum(), (rows * weights).sum() / weights.sum()


TRANSFORMS = {
    "scale up": augment.Augmentation(1.0, 0.0, (0.0, 0.0), False),
    "rotation": augment.Augmentation(1.0, 33.0, (0.0, 0.0), False),
    "crop offset": augment.Augmentation(1.0, 0.0, (-37.5, 21.25), False),
    "flip": augment.Augmentation(1.0, 0.0, (0.0, 0.0), True),
    "combined": augment.Augmentation(0.7, -28.0, (15.0, -31.0), True),
}


# ----------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("name", sorted(TRANSFORMS) + ["random%d" % i for i in range(4)])
def test_a_bright_spot_and_its_keypoint_land_on_the_same_place(name):
    if name.startswith("random"):
        augmentation = augment.draw_augmentation(PARAMS, np.random.RandomState(int(name[-1])))
    else:
        augmentation = TRANSFORMS[name]
    spot = (171.0, 97.0)
    image = blob_image((240, 320), spot[0], spot[1], sigma=4.0)
    parts = person(nose=spot)
    # the main person (centre 150, 120) is scaled by 1.5 before the multiplier; black padding
    # keeps the spot the only bright thing in the crop
    sample = augment.augment(image, None, parts, (150.0, 120.0), scale_for(1.5),
                             augmentation, augment.AugmentParams(pad_value=0))
    labelled = np.nonzero(sample.parts[0, :, 2])[0]
    assert list(labelled) == [PART["nose"]]                  # the nose has no mirror partner
    x, y = sample.parts[0, PART["nose"], :2]
    assert bright_centroid(sample.crop) == pytest.approx((x, y), abs=0.3)
    # and the heatmap label peaks in the label cell that holds the spot
    peak = np.unravel_index(sample.heatmap_label[PART["nose"]].argmax(), (GRID, GRID))
    assert abs(peak[0] - (y - 3.5) / 8) <= 0.5 + 1e-6 and abs(peak[1] - (x - 3.5) / 8) <= 0.5 + 1e-6


def test_crop_matrix_puts_the_person_at_the_crop_centre_with_the_target_height():
    centre, height = np.array([400.0, 250.0]), 180.0
    matrix = augment.crop_matrix(centre, height / 368.0, augment.NO_AUGMENTATION, PARAMS)
    head, feet = centre - (0, height / 2), centre + (0, height / 2)
    moved = [matrix[:, :2] @ p + matrix[:, 2] for p in (centre, head, feet)]
    np.testing.assert_allclose(moved[0], (MIDDLE, MIDDLE), atol=1e-9)
    assert moved[2][1] - moved[1][1] == pytest.approx(0.6 * C)       # target_dist of the crop


def test_positive_rotation_is_counter_clockwise_on_screen_like_opencv():
    aug = augment.Augmentation(1.0, 30.0, (0.0, 0.0), False)
    matrix = augment.crop_matrix((100.0, 100.0), scale_for(1.0), aug, PARAMS)
    opencv = cv2.getRotationMatrix2D((100.0, 100.0), 30.0, 1.0)
    np.testing.assert_allclose(matrix[:, :2], opencv[:, :2], atol=1e-12)


def test_the_offset_moves_the_person_within_the_crop():
    aug = augment.Augmentation(1.0, 0.0, (12.0, -7.0), False)
    matrix = augment.crop_matrix((50.0, 60.0), scale_for(1.0), aug, PARAMS)
    np.testing.assert_allclose(matrix @ (50.0, 60.0, 1.0), (MIDDLE + 12, MIDDLE - 7))


# ----------------------------------------------------------------------------- flips

def test_flip_mirrors_the_crop_and_swaps_left_and_right():
    # the person's right arm points to the image's left: shoulder x=200 -> elbow x=150
    parts = person(right_shoulder=(200.0, 120.0), right_elbow=(150.0, 120.0))
    image = np.random.RandomState(0).randint(0, 256, (240, 320, 3)).astype(np.uint8)
    plain = augment.augment(image, None, parts, (160.0, 120.0), scale_for(1.0),
                            augment.NO_AUGMENTATION, PARAMS)
    flipped = augment.augment(image, None, parts, (160.0, 120.0), scale_for(1.0),
                              augment.NO_AUGMENTATION._replace(flip=True), PARAMS)
    np.testing.assert_array_equal(flipped.crop, plain.crop[:, ::-1])
    # the arm is now a left arm, mirrored: x -> C - 1 - x; no right arm is left
    for joint in ("shoulder", "elbow"):
        x, y, v = plain.parts[0, PART["right_" + joint]]
        np.testing.assert_allclose(flipped.parts[0, PART["left_" + joint]], (C - 1 - x, y, v),
                                   atol=1e-4)
        assert (flipped.parts[0, PART["right_" + joint]] == 0).all()
    # heatmaps and PAFs are the mirrored labels of the mirrored parts
    np.testing.assert_allclose(flipped.heatmap_label[PART["left_shoulder"]],
                               plain.heatmap_label[PART["right_shoulder"]][:, ::-1], atol=1e-5)


def test_flipped_limb_vectors_still_point_from_the_first_part_to_the_second():
    parts = person(right_shoulder=(200.0, 120.0), right_elbow=(150.0, 120.0))
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    right_x, _ = limb_channels("right_shoulder", "right_elbow")
    left_x, _ = limb_channels("left_shoulder", "left_elbow")
    plain = augment.augment(image, None, parts, (160.0, 120.0), scale_for(1.0),
                            augment.NO_AUGMENTATION, PARAMS)
    flipped = augment.augment(image, None, parts, (160.0, 120.0), scale_for(1.0),
                              augment.NO_AUGMENTATION._replace(flip=True), PARAMS)
    # unflipped: a right arm pointing to -x; flipped: a left arm pointing to +x
    assert plain.paf_label[right_x].min() == pytest.approx(-1.0)
    assert plain.paf_label[right_x].max() == 0 and not plain.paf_label[left_x].any()
    assert flipped.paf_label[left_x].max() == pytest.approx(1.0)
    assert flipped.paf_label[left_x].min() == 0 and not flipped.paf_label[right_x].any()
    np.testing.assert_allclose(flipped.paf_label[left_x], -plain.paf_label[right_x][:, ::-1],
                               atol=1e-6)


def test_flipping_twice_restores_the_parts():
    rng = np.random.RandomState(3)
    parts = np.concatenate([rng.uniform(0, 300, (2, 18, 2)),
                            rng.randint(0, 3, (2, 18, 1))], axis=2).astype(np.float32)
    parts[parts[..., 2] == 0] = 0
    mirror = np.array([[-1.0, 0.0, C - 1], [0.0, 1.0, 0.0]])
    once = augment.transform_parts(parts, mirror)
    np.testing.assert_array_equal(once[:, :, 2], parts[:, FLIP_PERMUTATION, 2])
    np.testing.assert_allclose(augment.transform_parts(once, mirror), parts, atol=1e-4)


# ----------------------------------------------------------------------------- mask

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_mask_follows_the_image_through_scale_rotation_and_crop(seed):
    rng = np.random.RandomState(seed)
    channel = np.zeros((300, 400), dtype=np.uint8)
    for _ in range(6):                                   # bright rectangles and discs
        x, y = rng.randint(0, 400), rng.randint(0, 300)
        cv2.circle(channel, (x, y), int(rng.randint(15, 60)), 255, -1)
        cv2.rectangle(channel, (x, y), (x + int(rng.randint(20, 90)), y + 40), 255, -1)
    image = np.repeat(channel[..., None], 3, axis=2)
    mask = (channel > 127).astype(np.uint8)
    augmentation = augment.draw_augmentation(PARAMS, rng)
    sample = augment.augment(image, mask, np.zeros((0, 18, 3)), (200.0, 150.0),
                             scale_for(rng.uniform(0.6, 1.6)), augmentation, PARAMS)
    # threshold the warped image (its padding 128 reads as "keep", like the mask's)
    expected = cv2.resize((sample.crop[..., 0] > 127).astype(np.float32), (GRID, GRID),
                          interpolation=cv2.INTER_AREA)
    loss_mask = sample.loss_mask[0]
    assert loss_mask.shape == (GRID, GRID) and loss_mask.dtype == np.float32
    assert (loss_mask == 0).sum() > 20 and (loss_mask == 1).sum() > 20
    # they differ only on edge pixels (nearest against linear interpolation)
    assert np.abs(loss_mask - expected).max() <= 0.25
    assert np.abs(loss_mask - expected).mean() < 0.01


def test_the_mask_is_one_outside_the_image_and_the_image_is_grey_there():
    image = np.full((40, 60, 3), 7, dtype=np.uint8)
    mask = np.zeros((40, 60), dtype=np.uint8)               # ignore the whole picture
    sample = augment.augment(image, mask, np.zeros((0, 18, 3)), (30.0, 20.0), scale_for(2.0),
                             augment.NO_AUGMENTATION, PARAMS)
    # the 60x40 image scaled by 2 covers crop pixels 124..243 x 144..223
    assert (sample.crop[:100] == 128).all() and (sample.crop[190, 190] == 7).all()
    assert (sample.loss_mask[0, :12] == 1).all() and (sample.loss_mask[0, :, :15] == 1).all()
    assert (sample.loss_mask[0, 19:27, 16:30] == 0).all()
    assert 0 < sample.loss_mask[0, 20, 15] < 1           # a cell on the left border


def test_no_mask_means_loss_everywhere():
    sample = augment.augment(np.zeros((50, 50, 3), np.uint8), None, np.zeros((0, 18, 3)),
                             (25.0, 25.0), 0.2, augment.NO_AUGMENTATION, PARAMS)
    assert (sample.loss_mask == 1).all() and sample.loss_mask.shape == (1, GRID, GRID)


# ----------------------------------------------------------------------------- sampling

def random_sample(seed, params=PARAMS):
    rng = np.random.RandomState(123)
    image = rng.randint(0, 256, (120, 160, 3)).astype(np.uint8)
    mask = (rng.uniform(size=(120, 160)) > 0.2).astype(np.uint8)
    parts = person(neck=(80.0, 40.0), right_hip=(70.0, 100.0), nose=(82.0, 25.0))
    return augment.make_sample(image, mask, parts, (80.0, 60.0), 0.3, params,
                               np.random.RandomState(seed))


def test_a_seed_gives_the_same_sample_and_another_seed_a_different_one():
    first, again, other = random_sample(5), random_sample(5), random_sample(6)
    for a, b in zip(first[:4], again[:4]):
        np.testing.assert_array_equal(a, b)
    assert first.augmentation == again.augmentation != other.augmentation
    assert not np.array_equal(first.data, other.data)


def test_draw_augmentation_ranges_and_probabilities():
    rng = np.random.RandomState(0)
    draws = [augment.draw_augmentation(PARAMS, rng) for _ in range(2000)]
    multipliers = np.array([d.scale_multiplier for d in draws])
    degrees = np.array([d.rotate_degree for d in draws])
    offsets = np.array([d.center_offset for d in draws])
    assert 0.5 <= multipliers.min() < 0.52 and 1.08 < multipliers.max() <= 1.1
    assert -40 <= degrees.min() < -39 and 39 < degrees.max() <= 40
    assert -40 <= offsets.min() < -39 and 39 < offsets.max() <= 40
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    fixed = augment.AugmentParams(scale_prob=0, flip_prob=0, max_rotate_degree=0,
                                  center_perturb_max=0)
    assert augment.draw_augmentation(fixed, rng) == augment.NO_AUGMENTATION


def test_normalisation_is_pixel_over_256_minus_half_in_bgr_order():
    crop = np.zeros((8, 8, 3), dtype=np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 0, 128, 255
    data = augment.normalise(crop)
    assert data.shape == (3, 8, 8) and data.dtype == np.float32
    assert (data[0] == -0.5).all() and (data[1] == 0).all()
    assert (data[2] == np.float32(255 / 256.0 - 0.5)).all()


def test_sample_shapes_and_types():
    params = augment.AugmentParams(crop_size=128)
    sample = random_sample(0, params)
    assert sample.data.shape == (3, 128, 128)
    assert sample.heatmap_label.shape == (19, 16, 16)
    assert sample.paf_label.shape == (38, 16, 16)
    assert sample.loss_mask.shape == (1, 16, 16)
    assert all(a.dtype == np.float32 for a in sample[:4])


def test_params_from_dict_casts_json_numbers_and_rejects_unknown_keys():
    params = augment.AugmentParams.from_dict({"crop_size": 256.0, "flip_prob": 1})
    assert params.crop_size == 256 and isinstance(params.crop_size, int)
    assert params.flip_prob == 1.0 and params.grid_size == 32
    with pytest.raises(ValueError, match="flip_probability"):
        augment.AugmentParams.from_dict({"flip_probability": 0.5})
    with pytest.raises(ValueError, match="crop_size"):
        augment.AugmentParams.from_dict({"crop_size": 100})           # not a multiple of 8
    with pytest.raises(ValueError, match="stride.*integer"):
        augment.AugmentParams.from_dict({"stride": 8.5})


def test_bad_inputs_are_named():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="mask_miss"):
        augment.augment(image, np.ones((9, 10), np.uint8), np.zeros((0, 18, 3)), (5, 5), 0.1,
                        augment.NO_AUGMENTATION, PARAMS)
    with pytest.raises(ValueError, match="mask_miss must hold 0 and 1"):
        augment.augment(image, np.full((10, 10), 255, np.uint8), np.zeros((0, 18, 3)), (5, 5),
                        0.1, augment.NO_AUGMENTATION, PARAMS)
    with pytest.raises(ValueError, match="parts"):
        augment.augment(image, None, np.zeros((1, 17, 3)), (5, 5), 0.1,
                        augment.NO_AUGMENTATION, PARAMS)
    with pytest.raises(ValueError, match="scale"):
        augment.augment(image, None, np.zeros((0, 18, 3)), (5, 5), 0.0,
                        augment.NO_AUGMENTATION, PARAMS)


# ----------------------------------------------------------------------------- properties

@st.composite
def annotated_images(draw):
    height = draw(st.integers(20, 200))
    width = draw(st.integers(20, 200))
    people = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.RandomState(seed)
    parts = np.concatenate([rng.uniform(-20, max(height, width) + 20, (people, 18, 2)),
                            rng.randint(0, 3, (people, 18, 1))], axis=2).astype(np.float32)
    parts[parts[..., 2] == 0] = 0
    if people and draw(st.booleans()):                  # zero-length limbs: parts on each other
        parts[:, :, :2] = parts[:, :1, :2]
    image = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
    mask = rng.randint(0, 2, (height, width)).astype(np.uint8)
    centre = (draw(st.floats(0, width)), draw(st.floats(0, height)))
    person_scale = draw(st.floats(0.02, 2.0))
    return image, mask, parts, centre, person_scale, seed


@settings(max_examples=30, deadline=None)
@given(annotated_images(), st.sampled_from([64, 128]))
def test_samples_are_finite_and_in_range(case, crop_size):
    image, mask, parts, centre, person_scale, seed = case
    params = augment.AugmentParams(crop_size=crop_size)
    sample = augment.make_sample(image, mask, parts, centre, person_scale, params,
                                 np.random.RandomState(seed))
    for array in sample[:4]:
        assert np.isfinite(array).all()
    assert -0.5 <= sample.data.min() and sample.data.max() < 0.5
    assert 0 <= sample.heatmap_label.min() and sample.heatmap_label.max() <= 1
    vectors = sample.paf_label.reshape(19, 2, params.grid_size, params.grid_size)
    assert (np.sqrt((vectors ** 2).sum(axis=1)) <= 1 + 1e-5).all()
    assert 0 <= sample.loss_mask.min() and sample.loss_mask.max() <= 1
