"""The training recipe that learns fastest from scratch on a CPU, shared by the overfit check
(scripts/overfit.py) and the demo (scripts/demo.py). Standard library only.

Measured (generators/README.md, "Training from scratch"): MLN with its default MSRA fillers,
Caffe's Adam at lr 1e-4 without weight decay, crops of 128 and small batches. The paper's SGD at
6e-5 diverges from these fillers; SGD at 1e-5 stalls above the background-only loss.
"""
FROM_SCRATCH = {"solver": "adam", "base_lr": 1e-4, "weight_decay": 0.0, "crop": 128}
SEED = 0                    # data order, augmentation and initial weights of every stage

# Data-layer augmentation presets (python_layers/augment.py's AugmentParams keys).
AUGMENTATIONS = {
    # OpenPose's kinds, milder: enough scale and translation that the net cannot memorise where
    # in the crop a person sits (whole images could not be evaluated then), little rotation,
    # flips with left/right swapped.
    "mild": {"scale_min": 0.6, "scale_max": 1.4, "max_rotate_degree": 10,
             "center_perturb_max": 32},
    # only what evaluating whole images needs: the person anywhere in the crop (centre jitter)
    # and at somewhat different sizes; no rotation, no flip
    "shift": {"scale_min": 0.8, "scale_max": 1.25, "max_rotate_degree": 0,
              "center_perturb_max": 32, "flip_prob": 0},
    # the exact crops every time: fastest to learn, says nothing about whole images
    "none": {"scale_prob": 0, "max_rotate_degree": 0, "center_perturb_max": 0, "flip_prob": 0},
}


def train_arguments(recipe, data_param_json):
    """scripts/train.sh options for a recipe (crop and solver) and a data-param JSON."""
    return ["--crop", recipe["crop"], "--solver", recipe["solver"],
            "--base-lr", recipe["base_lr"], "--weight-decay", recipe["weight_decay"],
            "--data-param", data_param_json]

# Augmentation schedules: (preset, fraction of the iterations, learning-rate factor) in order,
# one training run each, the next starting from the previous one's final weights (Adam's moments
# start afresh in each). "curriculum" first learns the exact crops (which leaves the
# background-only plateau fast: measured, augmented training from scratch sat on it for 200+
# iterations), then the same images shifted and rescaled, so that whole images are found, not
# memorised crops, and ends on the exact crops at a tenth of the rate, which settles the
# keypoints to about a pixel without unlearning the shifts. Measured on the 4 COCO images of the
# overfit check at 900 iterations (README, "The overfit check"): crops / whole-image AP 0.805 /
# 0.744 without the last stage (3/8 exact, 5/8 shifted), 0.864 / 0.682 with it at the full rate,
# and with it at a tenth of the rate the figures of the README's table.
SCHEDULES = {"none": [("none", 1.0, 1.0)], "mild": [("mild", 1.0, 1.0)],
             "shift": [("shift", 1.0, 1.0)],
             "curriculum": [("none", 0.3, 1.0), ("shift", 0.55, 1.0), ("none", 0.15, 0.1)]}


def stages(schedule, iterations, base_lr=FROM_SCRATCH["base_lr"]):
    """[(augmentation preset, iterations, learning rate)] of a schedule; every stage gets at
    least one iteration."""
    parts = SCHEDULES[schedule]
    counts = [max(1, int(round(iterations * fraction))) for _, fraction, _ in parts[:-1]]
    counts.append(max(1, iterations - sum(counts)))
    return [(preset, count, base_lr * factor)
            for (preset, _, factor), count in zip(parts, counts)]
