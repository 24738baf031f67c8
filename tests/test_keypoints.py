"""The keypoint/limb table against the specification (conventions/README.md), written out
independently here."""
import numpy as np
import pytest

from conventions import keypoints as kp

# conventions/README.md, copied by hand: the tables in the module are derived from names instead.
SPEC_COCO_TO_PART = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
SPEC_LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4),
              (2, 16), (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16),
              (15, 17)]
SPEC_FLIP_PAIRS = [(2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17)]


def test_tables_match_the_specification():
    assert kp.NUM_PARTS == 18 and kp.NUM_HEATMAPS == 19 and kp.BACKGROUND_CHANNEL == 18
    assert kp.NUM_LIMBS == 19 and kp.NUM_PAFS == 38
    assert list(kp.COCO_TO_PART) == SPEC_COCO_TO_PART
    assert list(kp.LIMBS) == SPEC_LIMBS
    assert [(p, q) for p, q in enumerate(kp.FLIP_PERMUTATION) if p < q] == SPEC_FLIP_PAIRS
    assert kp.PART["neck"] == 1 and kp.PART["left_ear"] == 17


def test_flip_permutation_is_an_involution_that_swaps_only_the_pairs():
    permutation = np.array(kp.FLIP_PERMUTATION)
    assert (permutation[permutation] == np.arange(18)).all()
    swapped = {p for pair in SPEC_FLIP_PAIRS for p in pair}
    for part in range(18):
        assert (permutation[part] != part) == (part in swapped)


def coco_person(labelled):
    """A COCO person whose keypoint k sits at (10 k, 100 + k) with visibility labelled[k]."""
    return np.array([[10.0 * k, 100.0 + k, labelled[k]] for k in range(17)], dtype=np.float32)


def test_coco_to_parts_moves_every_keypoint_and_derives_the_neck():
    visibility = [2, 1, 2, 2, 0, 2, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2]
    parts = kp.coco_to_parts(coco_person(visibility))
    for k, part in enumerate(SPEC_COCO_TO_PART):
        assert tuple(parts[part]) == (10.0 * k, 100.0 + k, visibility[k])
    # shoulders are COCO 5 (left, v=2) and 6 (right, v=1)
    assert tuple(parts[1]) == (55.0, 105.5, 1.0)


@pytest.mark.parametrize("missing", [5, 6])
def test_neck_is_unlabelled_without_both_shoulders(missing):
    visibility = [2] * 17
    visibility[missing] = 0
    assert tuple(kp.coco_to_parts(coco_person(visibility))[1]) == (0, 0, 0)


def test_coco_round_trip_drops_only_the_neck():
    coco = np.stack([coco_person([2] * 17), coco_person([1] * 17)])
    np.testing.assert_array_equal(kp.parts_to_coco(kp.coco_to_parts(coco)), coco)


def test_bad_shapes_are_refused_with_the_shape_named():
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 3\)"):
        kp.coco_to_parts(np.zeros((18, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 18, 3\)"):
        kp.parts_to_coco(np.zeros((17, 3)))
