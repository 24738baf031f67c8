"""The COCO-18 keypoint convention (OpenPose's COCO model, which MLN keeps).

This is the one home of parts, limbs and left/right flips: data preparation, label generation,
augmentation, grouping and the COCO export all read these tables. Everything is keyed by name;
the index tables are derived from the names so that they cannot drift apart.

Parts are heatmap channels 0..17 and channel 18 is the background. Limb i owns PAF channels 2i (x)
and 2i+1 (y); its vector points from its first part to its second. COCO has 17 keypoints and no
neck: the neck is the midpoint of the shoulders, labelled only when both shoulders are.
"""
import numpy as np

PART_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
PART = {name: index for index, name in enumerate(PART_NAMES)}
NUM_PARTS = len(PART_NAMES)               # 18
BACKGROUND_CHANNEL = NUM_PARTS            # heatmap channel 18
NUM_HEATMAPS = NUM_PARTS + 1              # 19

# Limb i: (from, to). The order fixes the PAF channels and follows OpenPose's COCO model, so that
# its released weights and ours agree channel for channel.
LIMB_NAMES = (
    ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("neck", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("right_shoulder", "right_ear"),
    ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("left_shoulder", "left_ear"),
    ("neck", "nose"), ("nose", "right_eye"), ("nose", "left_eye"),
    ("right_eye", "right_ear"), ("left_eye", "left_ear"),
)
LIMBS = tuple((PART[a], PART[b]) for a, b in LIMB_NAMES)    # part indices
NUM_LIMBS = len(LIMBS)                    # 19
NUM_PAFS = 2 * NUM_LIMBS                  # 38

# COCO's own keypoint order (the 17 "keypoints" of person_keypoints_*.json).
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_COCO_KEYPOINTS = len(COCO_KEYPOINT_NAMES)   # 17
COCO_TO_PART = tuple(PART[name] for name in COCO_KEYPOINT_NAMES)


def _mirror_name(name):
    if name.startswith("left_"):
        return "right_" + name[len("left_"):]
    if name.startswith("right_"):
        return "left_" + name[len("right_"):]
    return name


# After a horizontal flip, part p of the mirrored image is part FLIP_PERMUTATION[p] of the
# original: the right wrist of the flipped picture is the person's left wrist.
FLIP_PERMUTATION = tuple(PART[_mirror_name(name)] for name in PART_NAMES)


def _mirror_limb(a, b):
    """(index of the limb joining the mirrored parts, +1 when it runs the same way, -1 if not)."""
    mirrored = (_mirror_name(a), _mirror_name(b))
    if mirrored in LIMB_NAMES:
        return LIMB_NAMES.index(mirrored), 1
    return LIMB_NAMES.index(mirrored[::-1]), -1


# After a horizontal flip, limb l of the mirrored image is limb FLIP_LIMB_PERMUTATION[l] of the
# original, its vector times FLIP_LIMB_SIGN[l] (-1 where that limb is listed the other way
# round) and with x negated by the mirror itself. Test-time flip averaging reads these.
FLIP_LIMB_PERMUTATION, FLIP_LIMB_SIGN = (tuple(column) for column in zip(
    *(_mirror_limb(a, b) for a, b in LIMB_NAMES)))


def coco_to_parts(coco_keypoints):
    """COCO keypoints (..., 17, 3) as (x, y, v) -> parts (..., 18, 3) in this module's order.

    v keeps COCO's meaning: 0 not labelled, 1 labelled but occluded, 2 visible. The neck is the
    shoulders' midpoint with v = min of theirs, and unlabelled (0, 0, 0) unless both are labelled.
    """
    coco = np.asarray(coco_keypoints, dtype=np.float32)
    if coco.shape[-2:] != (NUM_COCO_KEYPOINTS, 3):
        raise ValueError("expected COCO keypoints of shape (..., 17, 3), got %s" % (coco.shape,))
    parts = np.zeros(coco.shape[:-2] + (NUM_PARTS, 3), dtype=np.float32)
    parts[..., COCO_TO_PART, :] = coco
    right, left = parts[..., PART["right_shoulder"], :], parts[..., PART["left_shoulder"], :]
    both = (right[..., 2] > 0) & (left[..., 2] > 0)
    neck = np.where(both[..., None],
                    np.concatenate([(right[..., :2] + left[..., :2]) / 2,
                                    np.minimum(right[..., 2:], left[..., 2:])], axis=-1),
                    0)
    parts[..., PART["neck"], :] = neck
    return parts


def parts_to_coco(parts):
    """Parts (..., 18, 3) -> COCO keypoints (..., 17, 3): the neck is dropped.

    A part not found should be given as (0, 0, 0), which is what COCO expects for it.
    """
    parts = np.asarray(parts)
    if parts.shape[-2:] != (NUM_PARTS, 3):
        raise ValueError("expected parts of shape (..., 18, 3), got %s" % (parts.shape,))
    return parts[..., COCO_TO_PART, :]
