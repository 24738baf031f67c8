"""Synthetic people for tests and benchmarks: standing skeletons placed side by side.

Their maps come from the training label code (python_layers.labels via oracle.rendered_outputs),
upsampled as predict.py upsamples the network's output, so the grouping sees what a perfect
network would give it.
"""
import numpy as np

from conventions.keypoints import NUM_PARTS, PART
from inference import oracle, scaling

# A person facing the camera, 1 unit tall: (x from the body's axis, y from the top of the head).
# Their right side is on the picture's left.
STANDING = {
    "nose": (0.0, 0.09), "neck": (0.0, 0.2),
    "right_shoulder": (-0.1, 0.2), "right_elbow": (-0.13, 0.35), "right_wrist": (-0.15, 0.49),
    "left_shoulder": (0.1, 0.2), "left_elbow": (0.13, 0.35), "left_wrist": (0.15, 0.49),
    "right_hip": (-0.06, 0.52), "right_knee": (-0.07, 0.74), "right_ankle": (-0.07, 0.96),
    "left_hip": (0.06, 0.52), "left_knee": (0.07, 0.74), "left_ankle": (0.07, 0.96),
    "right_eye": (-0.025, 0.06), "left_eye": (0.025, 0.06),
    "right_ear": (-0.055, 0.075), "left_ear": (0.055, 0.075),
}


def standing_people(count, image_size, rows=None):
    """`count` standing people in a grid over an image of image_size (H, W): parts (P, 18, 3),
    v = 2, integer pixel positions (as COCO's keypoints are)."""
    height, width = image_size
    rows = rows or (1 if count <= 3 else 2)
    columns = -(-count // rows)
    cell_w, cell_h = width / float(columns), height / float(rows)
    tall = min(0.9 * cell_h, 2.2 * cell_w)
    template = np.zeros((NUM_PARTS, 2))
    for name, xy in STANDING.items():
        template[PART[name]] = xy
    parts = np.zeros((count, NUM_PARTS, 3), dtype=np.float32)
    for person in range(count):
        row, column = divmod(person, columns)
        centre_x = (column + 0.5) * cell_w
        top = row * cell_h + 0.05 * cell_h
        parts[person, :, 0] = np.round(centre_x + template[:, 0] * tall)
        parts[person, :, 1] = np.round(top + template[:, 1] * tall)
        parts[person, :, 2] = 2
    return parts


def rendered_maps(parts, image_size):
    """Perfect maps of these people over the image, as predict.py's upsampling of a network
    output would give them: (part heatmaps (H, W, 18), PAFs (H, W, 38))."""
    (net_maps, resized), = oracle.rendered_outputs(parts, image_size)
    return scaling.upsample_maps(net_maps, resized, image_size)
