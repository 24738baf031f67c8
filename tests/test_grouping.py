"""Joint grouping: peaks, eq. 6 limb scores and greedy assembly, on rendered and hand-made maps."""
import collections

import numpy as np
import pytest

from conventions.keypoints import LIMBS, NUM_PARTS, PART
from inference import grouping, synthetic


def match(people, truth, tolerance=2.0):
    """Pair each true person with the recovered one nearest it; return the largest part error.

    Fails unless every person is found once, with exactly the labelled parts."""
    assert len(people.keypoints) == len(truth)
    used = set()
    worst = 0.0
    for person in truth:
        labelled = person[:, 2] > 0
        distances = [np.abs(found[labelled, :2] - person[labelled, :2]).max()
                     if (found[:, 2] > 0).tolist() == labelled.tolist() else np.inf
                     for found in people.keypoints]
        best = int(np.argmin(distances))
        assert best not in used and distances[best] <= tolerance, distances
        used.add(best)
        worst = max(worst, distances[best])
    return worst


@pytest.mark.parametrize("count, image_size", [(1, (368, 432)), (2, (368, 432)),
                                               (10, (368, 432)), (2, (480, 640))])
def test_recovers_every_person_from_rendered_maps(count, image_size):
    truth = synthetic.standing_people(count, image_size)
    heatmaps, pafs = synthetic.rendered_maps(truth, image_size)
    stats = collections.Counter()
    people = grouping.group_people(heatmaps, pafs, stats=stats)
    assert match(people, truth) <= 1.0
    assert (people.part_counts == NUM_PARTS).all()
    assert stats["dropped_few_parts"] == 0 and stats["conflicts"] == 0


# ----------------------------------------------------------------------------- peaks

def maps_with(values, shape=(9, 11)):
    """(H, W, 19) heatmaps, zero except {(part, y, x): value}."""
    maps = np.zeros(shape + (19,), dtype=np.float32)
    for (part, y, x), value in values.items():
        maps[y, x, part] = value
    return maps


def peak_list(peaks):
    return list(zip(peaks.part.tolist(), peaks.y.tolist(), peaks.x.tolist()))


def test_peaks_are_local_maxima_above_the_threshold_sorted_by_part():
    maps = maps_with({(3, 4, 5): 0.9, (3, 4, 6): 0.5, (0, 1, 1): 0.2, (0, 7, 9): 0.1,
                      (17, 8, 10): 0.3})
    peaks = grouping.find_peaks(maps)
    assert peak_list(peaks) == [(0, 1, 1), (3, 4, 5), (17, 8, 10)]   # 0.1 is not above 0.1
    assert peaks.score.tolist() == pytest.approx([0.2, 0.9, 0.3])


def test_a_two_pixel_plateau_gives_one_peak_the_left_or_upper_one():
    across = grouping.find_peaks(maps_with({(1, 4, 5): 0.7, (1, 4, 6): 0.7}))
    down = grouping.find_peaks(maps_with({(1, 4, 5): 0.7, (1, 5, 5): 0.7}))
    assert peak_list(across) == [(1, 4, 5)] and peak_list(down) == [(1, 4, 5)]


def test_background_channel_is_never_searched():
    maps = maps_with({(18, 4, 4): 1.0})
    assert len(grouping.find_peaks(maps).part) == 0


def test_nan_is_never_a_peak_and_no_map_means_no_people():
    maps = maps_with({(2, 4, 4): 0.8, (5, 2, 2): 0.8})
    maps[4, 5, 2] = np.nan                    # beside the first peak
    maps[6, 6, 7] = np.nan
    assert peak_list(grouping.find_peaks(maps)) == [(5, 2, 2)]
    people = grouping.group_people(np.zeros((20, 30, 19), np.float32),
                                   np.zeros((20, 30, 38), np.float32))
    assert people.keypoints.shape == (0, 18, 3) and people.scores.shape == (0,)


def test_smoothing_merges_a_spike_into_the_broad_peak_beside_it():
    y, x = np.mgrid[:21, :21]
    maps = np.zeros((21, 21, 19), np.float32)
    maps[:, :, 4] = 0.8 * np.exp(-((x - 10) ** 2 + (y - 10) ** 2) / 50.0)
    maps[10, 13, 4] = 0.9                     # a one-pixel spike on the slope
    assert len(grouping.find_peaks(maps).part) == 2
    smoothed = grouping.find_peaks(maps, smooth_sigma=3.0)
    assert peak_list(smoothed) == [(4, 10, 10)]
    assert smoothed.score[0] == pytest.approx(0.8)          # the unblurred value


def test_gaussian_smooth_of_a_point_is_the_normalised_gaussian():
    point = np.zeros((41, 41, 1), np.float32)
    point[20, 20] = 1
    blurred = grouping.gaussian_smooth(point, 3.0)[:, :, 0]
    offsets = np.arange(-20, 21)
    expected = np.exp(-0.5 * (offsets[:, None] ** 2 + offsets[None, :] ** 2) / 9.0)
    expected[np.abs(offsets) > 12] = 0            # kernel truncated at 4 sigma
    expected[:, np.abs(offsets) > 12] = 0
    np.testing.assert_allclose(blurred, expected / expected.sum(), atol=1e-6)


def test_a_blur_of_sigma_0_finds_the_peaks_unblurred():
    maps = np.zeros((20, 20, 19), np.float32)
    maps[10, 10, 4] = 0.8
    assert peak_list(grouping.find_peaks(maps, smooth_sigma=0)) == [(4, 10, 10)]


# ----------------------------------------------------------------------------- limbs

def reference_scores(peaks, pafs, image_height):
    """Eq. 6 one pair at a time, straight from the definition (OpenPose's constants)."""
    kept = {}
    for limb, (first, second) in enumerate(LIMBS):
        for a in np.nonzero(peaks.part == first)[0]:
            for b in np.nonzero(peaks.part == second)[0]:
                start = np.array([peaks.x[a], peaks.y[a]], float)
                vector = np.array([peaks.x[b], peaks.y[b]], float) - start
                length = np.hypot(*vector)
                if length == 0:
                    continue
                dots = []
                for t in np.linspace(0, 1, 10):
                    px, py = np.floor(start + t * vector + 0.5).astype(int)
                    field = pafs[py, px, 2 * limb:2 * limb + 2]
                    dots.append(field.dot(vector / length))
                dots = np.array(dots)
                score = dots.mean() + min(0.5 * image_height / length - 1, 0)
                if (dots > 0.05).sum() > 8 and score > 0:
                    kept[(limb, a, b)] = score
    return kept


def test_all_limb_types_scored_at_once_agree_with_a_pair_by_pair_loop():
    state = np.random.RandomState(0)
    height, width = 40, 50
    count = 60
    peaks = grouping.Peaks(part=np.sort(state.randint(0, 18, count)),
                           x=state.randint(0, width, count), y=state.randint(0, height, count),
                           score=state.uniform(0.1, 1, count).astype(np.float32))
    # a smooth random field so that some candidates pass and some fail
    pafs = np.repeat(np.repeat(state.uniform(-1, 1, (8, 10, 38)), 5, axis=0), 5, axis=1)
    pafs = pafs.astype(np.float32)
    limbs = grouping.score_limbs(peaks, pafs, image_height=30)
    found = {(l, a, b): s for l, a, b, s in zip(*limbs)}
    expected = reference_scores(peaks, pafs, image_height=30)
    assert len(expected) > 10 and found.keys() == expected.keys()
    for key, score in expected.items():
        assert found[key] == pytest.approx(score, abs=1e-5)


def single_limb(limb, start, end, shape=(100, 400), value=1.0):
    """Two peaks of `limb`'s parts at start and end (x, y) on a uniform field along start->end."""
    first, second = LIMBS[limb]
    peaks = grouping.Peaks(part=np.array([first, second]), x=np.array([start[0], end[0]]),
                           y=np.array([start[1], end[1]]), score=np.ones(2, np.float32))
    if first > second:
        peaks = grouping.Peaks(*(v[::-1] for v in peaks))
    direction = np.subtract(end, start) / max(np.hypot(*np.subtract(end, start)), 1.0)
    pafs = np.zeros(shape + (38,), np.float32)
    pafs[:, :, 2 * limb] = value * direction[0]
    pafs[:, :, 2 * limb + 1] = value * direction[1]
    return peaks, pafs


def test_limb_score_is_the_mean_agreement_plus_the_distance_prior():
    peaks, pafs = single_limb(14, (10, 50), (40, 50), value=0.9)   # neck -> nose, 30 px
    limbs = grouping.score_limbs(peaks, pafs, image_height=100)
    assert limbs.score.tolist() == pytest.approx([0.9])       # 0.5 * 100 / 30 > 1: no penalty
    peaks, pafs = single_limb(14, (10, 50), (390, 50), value=0.9)  # 380 px
    limbs = grouping.score_limbs(peaks, pafs, image_height=400)
    assert limbs.score.tolist() == pytest.approx([0.9 + 0.5 * 400 / 380 - 1])
    # in a 50 px high image the prior is 0.5 * 50 / 380 - 1 = -0.93: the total is negative
    assert len(grouping.score_limbs(peaks, pafs, image_height=50).limb) == 0


def test_a_limb_against_the_field_or_on_a_weak_field_is_refused():
    peaks, pafs = single_limb(14, (10, 50), (40, 50))
    assert len(grouping.score_limbs(peaks, -pafs, image_height=100).limb) == 0
    assert len(grouping.score_limbs(peaks, pafs * 0.05, image_height=100).limb) == 0
    pafs[50, 30:, 28] = 0           # the last 3 of 10 samples disagree: 70% is not > 80%
    assert len(grouping.score_limbs(peaks, pafs, image_height=100).limb) == 0


def test_peaks_at_the_same_pixel_make_no_limb_and_no_nan_warning():
    peaks, pafs = single_limb(14, (10, 50), (10, 50))
    with np.errstate(all="raise"):
        assert len(grouping.score_limbs(peaks, pafs, image_height=100).limb) == 0


# ----------------------------------------------------------------------------- assembly

def hand_made(parts_xy, limb_scores):
    """Peaks from {name: [(x, y), ...]} (score 1 each) and Limbs from
    [(first name, i, second name, j, score)] (i, j: positions within each part's list)."""
    part, x, y, first_index = [], [], [], {}
    for name in sorted(parts_xy, key=lambda n: PART[n]):
        first_index[name] = len(part)
        for px, py in parts_xy[name]:
            part.append(PART[name])
            x.append(px)
            y.append(py)
    peaks = grouping.Peaks(np.array(part), np.array(x), np.array(y),
                           np.ones(len(part), np.float32))
    rows = [(LIMBS.index((PART[a], PART[b])), first_index[a] + i, first_index[b] + j, s)
            for a, i, b, j, s in limb_scores]
    limb, a, b, score = (np.array(column) for column in zip(*rows))
    return peaks, grouping.Limbs(limb, a, b, score.astype(np.float32))


def test_highest_score_first_and_each_part_once_per_limb_type():
    peaks, limbs = hand_made(
        {"neck": [(0, 0), (10, 0)], "nose": [(0, -5), (10, -5)]},
        [("neck", 0, "nose", 0, 0.9), ("neck", 0, "nose", 1, 0.95), ("neck", 1, "nose", 1, 0.8),
         ("neck", 1, "nose", 0, 0.7)])
    people = grouping.assemble(peaks, limbs, min_parts=0, min_mean_score=0)
    pairs = sorted((p[PART["neck"], 0], p[PART["nose"], 0]) for p in people.keypoints)
    assert pairs == [(0, 10), (10, 0)]     # 0.95 first; then neck 1 may only take nose 0


def test_people_grow_along_the_tree_and_scores_add_up():
    peaks, limbs = hand_made(
        {"neck": [(50, 20)], "right_shoulder": [(40, 20)], "right_elbow": [(38, 40)],
         "right_wrist": [(36, 60)]},
        [("neck", 0, "right_shoulder", 0, 0.9), ("right_shoulder", 0, "right_elbow", 0, 0.8),
         ("right_elbow", 0, "right_wrist", 0, 0.7)])
    people = grouping.assemble(peaks, limbs)
    assert people.part_counts.tolist() == [4]
    assert people.scores.tolist() == pytest.approx([4 + 0.9 + 0.8 + 0.7])


def test_loop_limbs_join_two_partial_people_but_never_start_one():
    # the right arm and the head, apart until the shoulder-ear limb joins them
    parts = {"right_shoulder": [(40, 20)], "right_elbow": [(38, 40)], "nose": [(50, 5)],
             "right_eye": [(47, 3)], "right_ear": [(44, 5)], "left_shoulder": [(60, 20)],
             "left_ear": [(56, 5)]}
    limb_scores = [("right_shoulder", 0, "right_elbow", 0, 0.9),
                   ("nose", 0, "right_eye", 0, 0.9), ("right_eye", 0, "right_ear", 0, 0.9),
                   ("right_shoulder", 0, "right_ear", 0, 0.5),
                   ("left_shoulder", 0, "left_ear", 0, 0.9)]
    stats = collections.Counter()
    people = grouping.assemble(*hand_made(parts, limb_scores), min_parts=0, min_mean_score=0,
                               stats=stats)
    assert stats["merges"] == 1 and people.part_counts.tolist() == [5]
    assert people.keypoints[0, PART["left_shoulder"], 2] == 0     # never started a person


def test_people_with_few_parts_or_a_low_mean_score_are_dropped():
    parts = {"neck": [(50, 20), (150, 20)], "right_shoulder": [(40, 20), (140, 20)],
             "right_elbow": [(38, 40), (138, 40)], "right_wrist": [(36, 60)]}
    limb_scores = [("neck", 0, "right_shoulder", 0, 0.9), ("neck", 1, "right_shoulder", 1, 0.9),
                   ("right_shoulder", 0, "right_elbow", 0, 0.8),
                   ("right_shoulder", 1, "right_elbow", 1, 0.8),
                   ("right_elbow", 0, "right_wrist", 0, 0.7)]
    peaks, limbs = hand_made(parts, limb_scores)
    stats = collections.Counter()
    people = grouping.assemble(peaks, limbs, stats=stats)
    assert people.part_counts.tolist() == [4] and stats["dropped_few_parts"] == 1
    weak = peaks._replace(score=np.full(len(peaks.score), 0.05, np.float32))
    limbs = limbs._replace(score=np.full(len(limbs.score), 0.05, np.float32))
    stats = collections.Counter()
    assert len(grouping.assemble(weak, limbs, stats=stats).scores) == 0
    assert stats["dropped_low_score"] == 1


def test_a_person_without_a_neck_falls_apart_unless_kept_together():
    truth = synthetic.standing_people(2, (368, 432))
    truth[0, PART["left_shoulder"]] = 0          # no left shoulder, so no neck
    truth[0, PART["neck"]] = 0
    heatmaps, pafs = synthetic.rendered_maps(truth, (368, 432))
    stats = collections.Counter()
    faithful = grouping.group_people(heatmaps, pafs, stats=stats)
    assert len(faithful.scores) == 2               # the whole one and the head + right arm
    assert stats["dropped_few_parts"] == 3         # left arm, right leg, left leg
    stats = collections.Counter()
    together = grouping.group_people(heatmaps, pafs, keep_neckless=True, stats=stats)
    assert stats["neckless_joins"] == 3
    assert match(together, truth) <= 1.0
