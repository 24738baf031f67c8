"""Image geometry and normalisation, the same for training and inference by construction: the
data layer (python_layers.augment, python_layers.labels), the packer's person scale
(data_prep.record), the generators' default sizes and the inference chain (inference.scaling,
inference.backends) import these instead of restating them.
"""
import numpy as np

# The backbone's three 2x2 max-pools: one output cell per 8x8 input pixels. Label cell x is
# centred on input pixel STRIDE * x + (STRIDE - 1) / 2 (python_layers.labels), which is where
# inference's exact-size cubic upsampling puts it (inference.scaling).
STRIDE = 8

# OpenPose's box: the square training crop, the network input height at inference scale 1, and
# the reference height of a person's scale (data_prep's scale_provided = box height / 368).
BOX_SIZE = 368

# Grey level of the pixels outside the picture, in the training crop's warp and in the padding
# of the inference input.
PAD_VALUE = 128

# The paper's input normalisation: pixel / 256 - 0.5, BGR channel order (OpenCV's).
PIXEL_DIVISOR = 256.0
PIXEL_OFFSET = 0.5


def normalise(image_bgr):
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 pixel / 256 - 0.5, channels first (Caffe's)."""
    data = np.asarray(image_bgr).transpose(2, 0, 1).astype(np.float32)
    data *= 1.0 / PIXEL_DIVISOR
    data -= PIXEL_OFFSET
    return data
