"""The label maths (paper eq. 1 and 2) on hand-placed people, and properties on random ones."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conventions.keypoints import LIMBS, PART
from python_layers import labels

GRID = (46, 46)   # a 368 crop at stride 8


def person(**positions):
    """Parts (1, 18, 3): the named parts at (x, y) with v = 2, the rest unlabelled."""
    parts = np.zeros((1, 18, 3), dtype=np.float32)
    for name, (x, y) in positions.items():
        parts[0, PART[name]] = (x, y, 2)
    return parts


def centre(cell):
    return cell * 8 + 3.5


def limb_channels(first, second):
    i = LIMBS.index((PART[first], PART[second]))
    return 2 * i, 2 * i + 1


# ----------------------------------------------------------------------------- heatmaps

def test_heatmap_peaks_at_the_keypoints_cell_with_value_one():
    maps = labels.heatmaps(person(nose=(centre(10), centre(20))), GRID)
    assert maps.shape == (19, 46, 46) and maps.dtype == np.float32
    assert np.unravel_index(maps[PART["nose"]].argmax(), GRID) == (20, 10)
    assert maps[PART["nose"], 20, 10] == pytest.approx(1.0)
    assert maps[:18].sum() == pytest.approx(maps[PART["nose"]].sum())   # nothing elsewhere


@pytest.mark.parametrize("form, denominator", [("code", 2 * 49.0), ("paper", 49.0)])
def test_heatmap_value_follows_the_gaussian(form, denominator):
    maps = labels.heatmaps(person(nose=(centre(10), centre(20))), GRID, form=form)
    # one cell right and one down: d^2 = 64 + 64
    assert maps[PART["nose"], 21, 11] == pytest.approx(math.exp(-128 / denominator), rel=1e-5)


def test_heatmap_between_cells_peaks_at_the_nearest_cell():
    maps = labels.heatmaps(person(neck=(centre(7) + 2.0, centre(30) - 3.0)), GRID)
    assert np.unravel_index(maps[PART["neck"]].argmax(), GRID) == (30, 7)
    assert maps[PART["neck"], 30, 7] == pytest.approx(math.exp(-13 / 98.0), rel=1e-5)


def test_heatmap_is_cut_where_the_exponent_exceeds_ln_100():
    maps = labels.heatmaps(person(nose=(centre(10), centre(20))), GRID)
    row = maps[PART["nose"], 20]
    # exp(-d^2/98) >= 0.01 for d <= 21.2 px: 2 cells (16 px) kept, 3 cells (24 px) cut
    assert row[12] > 0.01 and row[13] == 0 and row[8] > 0.01 and row[7] == 0


def test_people_combine_by_max_not_sum():
    a = person(nose=(centre(10), centre(10)))
    b = person(nose=(centre(11), centre(10)))
    together = labels.heatmaps(np.concatenate([a, b]), GRID)[PART["nose"]]
    expected = np.maximum(labels.heatmaps(a, GRID)[PART["nose"]],
                          labels.heatmaps(b, GRID)[PART["nose"]])
    np.testing.assert_array_equal(together, expected)
    assert together.max() == pytest.approx(1.0)


def test_background_is_one_minus_the_max_over_parts():
    maps = labels.heatmaps(person(nose=(centre(10), centre(10)), neck=(centre(11), centre(12))),
                           GRID)
    np.testing.assert_allclose(maps[18], 1 - maps[:18].max(axis=0), atol=1e-6)
    assert maps[18, 10, 10] == pytest.approx(0.0, abs=1e-6) and maps[18, 40, 40] == 1.0


def test_unlabelled_and_non_finite_parts_give_nothing():
    parts = person(nose=(centre(10), centre(10)))
    parts[0, PART["nose"], 2] = 0
    parts[0, PART["neck"]] = (np.nan, 5.0, 2)
    maps = labels.heatmaps(parts, GRID)
    assert maps[:18].max() == 0 and (maps[18] == 1).all()


def test_no_people_gives_background_only():
    maps = labels.heatmaps(np.zeros((0, 18, 3)), (5, 7))
    assert maps.shape == (19, 5, 7) and maps[:18].max() == 0 and (maps[18] == 1).all()


def test_unknown_gaussian_form_is_refused():
    with pytest.raises(ValueError, match="form"):
        labels.heatmaps(person(), GRID, form="sum")


# -------------------------------------------------------------------------------- PAFs

def test_paf_is_the_unit_vector_from_the_first_part_to_the_second():
    # neck -> right hip, pointing down and right at 45 degrees
    fields = labels.part_affinity_fields(
        person(neck=(centre(10), centre(10)), right_hip=(centre(20), centre(20))), GRID)
    cx, cy = limb_channels("neck", "right_hip")
    assert fields[cx, 15, 15] == pytest.approx(math.sqrt(0.5))
    assert fields[cy, 15, 15] == pytest.approx(math.sqrt(0.5))
    other = [c for c in range(38) if c not in (cx, cy)]
    assert fields[other].max() == 0


def test_paf_direction_follows_the_part_order_not_the_drawing_order():
    # the same segment with the parts exchanged points the other way
    down = labels.part_affinity_fields(
        person(neck=(centre(10), centre(5)), nose=(centre(10), centre(15))), GRID)
    up = labels.part_affinity_fields(
        person(neck=(centre(10), centre(15)), nose=(centre(10), centre(5))), GRID)
    _, cy = limb_channels("neck", "nose")
    assert down[cy, 10, 10] == pytest.approx(1.0) and up[cy, 10, 10] == pytest.approx(-1.0)


def test_paf_covers_cells_within_one_label_cell_of_the_segment():
    fields = labels.part_affinity_fields(
        person(neck=(centre(10), centre(20)), left_hip=(centre(30), centre(20))), GRID)
    cx, _ = limb_channels("neck", "left_hip")
    column = fields[cx, :, 20]
    assert list(np.nonzero(column)[0]) == [19, 20, 21]      # 8 px either side, inclusive
    row = fields[cx, 20]
    assert list(np.nonzero(row)[0]) == list(range(9, 32))   # and 8 px past either part
    # past the ends the band is rounded: a cell one over and one along (11.3 px) is outside
    assert fields[cx, 21, 9] == 0 and fields[cx, 21, 10] == 1


def test_limb_shorter_than_a_cell_still_gets_a_field():
    fields = labels.part_affinity_fields(
        person(nose=(centre(10), centre(10)), right_eye=(centre(10) + 3, centre(10) - 2)), GRID)
    cx, cy = limb_channels("nose", "right_eye")
    norm = np.hypot(3, 2)
    assert (fields[cx, 10, 10], fields[cy, 10, 10]) == pytest.approx((3 / norm, -2 / norm))


def test_overlapping_limbs_of_two_people_are_averaged():
    horizontal = person(neck=(centre(5), centre(10)), left_hip=(centre(15), centre(10)))
    vertical = person(neck=(centre(10), centre(5)), left_hip=(centre(10), centre(15)))
    fields = labels.part_affinity_fields(np.concatenate([horizontal, vertical]), GRID)
    cx, cy = limb_channels("neck", "left_hip")
    assert (fields[cx, 10, 10], fields[cy, 10, 10]) == pytest.approx((0.5, 0.5))
    assert (fields[cx, 10, 6], fields[cy, 10, 6]) == pytest.approx((1.0, 0.0))   # alone there


def test_zero_length_limb_and_half_labelled_limb_give_nothing():
    same_place = person(neck=(centre(10), centre(10)), right_hip=(centre(10), centre(10)),
                        right_ankle=(centre(30), centre(30)))   # its knee is unlabelled
    fields = labels.part_affinity_fields(same_place, GRID)
    assert np.isfinite(fields).all() and fields.max() == 0 and fields.min() == 0


def test_render_labels_returns_both_blocks():
    heat, paf = labels.render_labels(person(neck=(50, 60), nose=(50, 30)), (12, 10))
    assert heat.shape == (19, 12, 10) and paf.shape == (38, 12, 10)


# -------------------------------------------------------------------------- properties

coordinate = st.floats(min_value=-100, max_value=500, allow_nan=False, width=32)
keypoint = st.tuples(coordinate, coordinate, st.sampled_from([0, 1, 2]))
people = st.lists(st.lists(keypoint, min_size=18, max_size=18), min_size=0, max_size=6)


@settings(max_examples=60, deadline=None)
@given(people=people, height=st.integers(1, 50), width=st.integers(1, 50),
       form=st.sampled_from(labels.GAUSSIAN_FORMS))
def test_labels_of_random_people_are_finite_and_bounded(people, height, width, form):
    parts = np.array(people, dtype=np.float32).reshape(-1, 18, 3)
    heat, paf = labels.render_labels(parts, (height, width), form=form)
    assert np.isfinite(heat).all() and np.isfinite(paf).all()
    assert heat.min() >= 0 and heat.max() <= 1
    norms = np.sqrt(paf[0::2] ** 2 + paf[1::2] ** 2)
    assert norms.max(initial=0) <= 1 + 1e-5
