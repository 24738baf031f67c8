"""Grouping on overlapping people: crossing arms, one person in front of another, neck-less pieces.

tests/test_grouping.py decodes people standing apart. Here the maps are those a perfect network
would give for people that overlap: the training label code (python_layers.labels) renders them
at the network's resolution, the image resized as inference resizes it (inference.scaling), and
inference.scaling.upsample_maps brings them back; inference.grouping decodes them. The truth is
the keypoints placed here: every part of a decoded person must lie on a true keypoint of the same
part type (the nearest of all true keypoints, of every type and person), all of a decoded
person's parts must belong to one true person, each true person must be decoded once and whole,
and no one else.

Found on the way (not fixed here): keep_neckless joins pieces of two different neck-less people
standing 0.375 of their height apart or closer (test_neckless_people_closer_together_..., a
strict xfail). Also beyond what these scenes ask of it, and inherent to greedy eq. 6 grouping
rather than a defect of this code: where two people's limbs of one type lie nearly in line
(one person just above and behind the other), a candidate joining the two people scores as high
as the true limbs on perfect maps and may win; the scenes here keep clear of that.
"""
import collections

import numpy as np
import pytest

from conventions.geometry import STRIDE
from conventions.keypoints import NUM_PARTS, PART, PART_NAMES
from inference import grouping, scaling
from inference.synthetic import STANDING
from python_layers import labels

IMAGE_SIZE = (400, 480)          # resized to 368 x 442 (padded 448): a real resize both ways
TOLERANCE = 3.0                  # image pixels between a decoded part and its true keypoint
TALL = 320                       # a standing person's height, image pixels

# A person facing the camera, 1 unit tall (inference.synthetic's pose; right side on the left).
FRONT = STANDING


def person(centre_x, top, tall=TALL, moved=None, unlabelled=()):
    """Parts (18, 3) in image pixels, v = 2; `moved`: {name: (x, y)} replaces the template's
    position; `unlabelled`: names set to (0, 0, 0) (a missing shoulder also removes the neck,
    as conventions.keypoints.coco_to_parts does)."""
    parts = np.zeros((NUM_PARTS, 3), np.float32)
    for name, (x, y) in FRONT.items():
        parts[PART[name]] = (round(centre_x + x * tall), round(top + y * tall), 2)
    for name, xy in (moved or {}).items():
        parts[PART[name], :2] = xy
    names = set(unlabelled)
    if names & {"right_shoulder", "left_shoulder"}:
        names.add("neck")
    for name in names:
        parts[PART[name]] = 0
    return parts


def perfect_maps(truth, image_size=IMAGE_SIZE, scale=1.0):
    """What a perfect network gives for these people, upsampled to the image as inference does:
    (heatmaps (H, W, 18), PAFs (H, W, 38))."""
    height, width = image_size
    resized = scaling.scaled_size(height, width, scale)
    padded = scaling.padded_size(*resized)
    in_network = np.array(truth, np.float32, copy=True)
    labelled = in_network[..., 2] > 0
    for axis, (before, after) in enumerate(((width, resized[1]), (height, resized[0]))):
        # pixel centres aligned, as the image is resized
        moved = (in_network[..., axis] + 0.5) * after / float(before) - 0.5
        in_network[..., axis] = np.where(labelled, moved, 0)
    heatmaps, pafs = labels.render_labels(in_network, (padded[0] // STRIDE, padded[1] // STRIDE),
                                          stride=STRIDE)
    return scaling.upsample_maps(np.concatenate([heatmaps, pafs]), resized, image_size)


def decode(truth, keep_neckless=False):
    stats = collections.Counter()
    people = grouping.group_people(*perfect_maps(truth), keep_neckless=keep_neckless, stats=stats)
    return people, stats


def owners(people, truth):
    """For each decoded person, [(part name, true person, true part name, distance)] of its
    parts, each matched to the nearest true keypoint of any type and person."""
    labelled = truth[..., 2] > 0
    who, which = np.nonzero(labelled)
    where = truth[who, which, :2]
    found = []
    for decoded in people.keypoints:
        matches = []
        for part in np.nonzero(decoded[:, 2] > 0)[0]:
            distance = np.hypot(*(where - decoded[part, :2]).T)
            nearest = int(np.argmin(distance))
            matches.append((PART_NAMES[part], int(who[nearest]), PART_NAMES[which[nearest]],
                            round(float(distance[nearest]), 1)))
        found.append(matches)
    return found


def check_people(people, truth):
    """Each true person decoded once, whole, from their own parts only; nobody else."""
    found = owners(people, truth)
    report = "\n".join("decoded %d: %s" % (i, m) for i, m in enumerate(found))
    assert len(people.keypoints) == len(truth), ("decoded %d people, placed %d\n%s"
                                                 % (len(people.keypoints), len(truth), report))
    decoded_owner = []
    for matches in found:
        for name, _, true_name, distance in matches:
            assert name == true_name and distance <= TOLERANCE, (
                "a decoded %s lies on a true %s, %.1f px away\n%s"
                % (name, true_name, distance, report))
        people_in_it = sorted(set(m[1] for m in matches))
        assert len(people_in_it) == 1, "parts of people %s in one person\n%s" % (people_in_it,
                                                                                 report)
        decoded_owner.append(people_in_it[0])
    assert sorted(decoded_owner) == list(range(len(truth))), report
    for decoded, owner in zip(people.keypoints, decoded_owner):
        missing = (truth[owner, :, 2] > 0) & ~(decoded[:, 2] > 0)
        assert not missing.any(), ("person %d lacks %s\n%s"
                                   % (owner, [PART_NAMES[p] for p in np.nonzero(missing)[0]],
                                      report))


def keypoints_apart(truth, at_least=2 * TOLERANCE):
    """The scene's own sanity: no two true keypoints closer than `at_least` (so that 'the
    nearest true keypoint' names one)."""
    xy = truth[truth[..., 2] > 0][:, :2]
    distance = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(distance, np.inf)
    return distance.min() >= at_least


def segments_cross(p, q, r, s):
    """Whether segments p-q and r-s cross (proper intersection)."""
    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
    return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0


def limb(truth, who, first, second):
    return truth[who, PART[first], :2], truth[who, PART[second], :2]


# ----------------------------------------------------------------------------- the checks

def test_the_checks_see_a_part_given_to_the_wrong_person():
    """check_people itself: a wrist swapped between two decoded people, a person decoded in
    two pieces, and a missing part all fail it."""
    truth = np.stack([person(140, 40), person(340, 40)])
    people = grouping.People(keypoints=truth.copy(), scores=np.ones(2, np.float32),
                             part_counts=np.full(2, NUM_PARTS))
    check_people(people, truth)
    swapped = truth.copy()
    swapped[[0, 1], PART["left_wrist"]] = swapped[[1, 0], PART["left_wrist"]]
    with pytest.raises(AssertionError, match="parts of people"):
        check_people(people._replace(keypoints=swapped), truth)
    split = np.concatenate([truth, truth[:1]])
    split[0, :9], split[2, 9:] = 0, 0
    with pytest.raises(AssertionError):
        check_people(people._replace(keypoints=split), truth)
    missing = truth.copy()
    missing[1, PART["nose"]] = 0
    with pytest.raises(AssertionError, match="lacks"):
        check_people(people._replace(keypoints=missing), truth)


def test_people_standing_apart_are_decoded_as_they_are():
    truth = np.stack([person(140, 40), person(340, 40)])
    check_people(decode(truth)[0], truth)


# ----------------------------------------------------------------------------- crossing arms

def crossing_arms(same_limb_type):
    """Two people side by side; an arm of each reaches over to the other, the forearms cross.
    same_limb_type: both are left forearms (their PAF labels overlap and are averaged where they
    cross); otherwise the left forearm of the person on the picture's left crosses the right
    forearm of the other."""
    left = person(150, 40, moved={"left_elbow": (215, 140), "left_wrist": (290, 175)})
    if same_limb_type:
        right = person(330, 40, moved={"left_shoulder": (360, 104), "left_elbow": (280, 125),
                                       "left_wrist": (205, 170)})
        other = ("left_elbow", "left_wrist")
    else:
        right = person(330, 40, moved={"right_elbow": (270, 130), "right_wrist": (195, 170)})
        other = ("right_elbow", "right_wrist")
    truth = np.stack([left, right])
    assert segments_cross(*limb(truth, 0, "left_elbow", "left_wrist"), *limb(truth, 1, *other))
    assert keypoints_apart(truth)
    return truth


@pytest.mark.parametrize("same_limb_type", [False, True], ids=["left_x_right", "left_x_left"])
def test_crossing_forearms_stay_with_their_people(same_limb_type):
    truth = crossing_arms(same_limb_type)
    people, stats = decode(truth)
    check_people(people, truth)
    assert stats["conflicts"] == 0


# ----------------------------------------------------------------------------- occlusion

def in_front(occluded_parts_labelled):
    """A person partly in front of another who stands behind, a little higher and smaller; their
    boxes overlap by more than half and parts of the same type lie 29 to 69 px apart.
    occluded_parts_labelled: the parts of the person behind that the one in front hides are
    labelled (COCO's v = 1) or not labelled at all."""
    front = person(220, 60, tall=300)
    hidden = () if occluded_parts_labelled else ("right_hip", "right_knee", "right_ankle",
                                                 "right_elbow", "right_wrist")
    behind = person(245, 45, tall=250, unlabelled=hidden)
    truth = np.stack([front, behind])
    boxes = [(p[p[:, 2] > 0, :2].min(axis=0), p[p[:, 2] > 0, :2].max(axis=0)) for p in truth]
    overlap = np.prod(np.maximum(0, np.minimum(boxes[0][1], boxes[1][1])
                                 - np.maximum(boxes[0][0], boxes[1][0])))
    assert overlap > 0.5 * np.prod(boxes[1][1] - boxes[1][0])
    both = (truth[0, :, 2] > 0) & (truth[1, :, 2] > 0)
    same_type = np.hypot(*(truth[0, both, :2] - truth[1, both, :2]).T)
    assert same_type.min() < 30 and np.median(same_type) < 45
    assert keypoints_apart(truth)
    return truth


@pytest.mark.parametrize("occluded_parts_labelled", [True, False], ids=["labelled", "unlabelled"])
def test_a_person_in_front_of_another_is_told_apart(occluded_parts_labelled):
    truth = in_front(occluded_parts_labelled)
    people, _ = decode(truth)
    check_people(people, truth)


# ----------------------------------------------------------------------------- neck-less pieces

def neckless_pair(gap):
    """Two people `gap` px apart, the one on the left without their left shoulder, the other
    without their right one: neither has a neck, so each falls apart into head and arm, the
    other forearm, and the two legs, and the pieces of the two stand close together."""
    centre = IMAGE_SIZE[1] / 2.0
    truth = np.stack([person(centre - gap / 2.0, 40, unlabelled=("left_shoulder",)),
                      person(centre + gap / 2.0, 40, unlabelled=("right_shoulder",))])
    assert keypoints_apart(truth)
    return truth


def test_neckless_people_fall_apart_without_keep_neckless():
    truth = neckless_pair(140)
    people, stats = decode(truth)
    # only the head + arm pieces (8 parts each) are large enough to be kept
    assert len(people.keypoints) == 2 and stats["dropped_few_parts"] == 6
    assert all(len(set(m[1] for m in matches)) == 1 for matches in owners(people, truth))


def test_neckless_pieces_close_together_are_joined_to_their_own_people():
    truth = neckless_pair(140)
    people, stats = decode(truth, keep_neckless=True)
    check_people(people, truth)
    assert stats["neckless_joins"] == 6


@pytest.mark.xfail(strict=True, reason=(
    "known defect of join_neckless: people 320 px tall, 115 px apart (it fails up to 120, "
    "passes from 124): the left forearm of one and the right forearm of the other are two pieces "
    "with no part type in common whose roots, the elbows, are 32 px apart (0.71 of the longer "
    "limb of the two pieces), nearer than each forearm is to its own leg (elbow to hip 58 px, 0.83 "
    "of a leg's limb): they are joined first, and 3 people come out, one with the other's "
    "forearm"))
def test_neckless_people_closer_together_are_still_told_apart():
    truth = neckless_pair(115)
    people, _ = decode(truth, keep_neckless=True)
    check_people(people, truth)
