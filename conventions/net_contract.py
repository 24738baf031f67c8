"""What goes in and out of the nets, shared by the generators (which write the layers), the Caffe
data layer (which fills them) and the inference backends (which read them).

Training: the Python layer DATA_LAYER_MODULE.DATA_LAYER_CLASS (or Input layers, to feed a train
net from pycaffe) produces TRAIN_TOPS in this order,
    data (N, 3, C, C), heatmap_label (N, 19, C/8, C/8), paf_label (N, 38, C/8, C/8),
    loss_mask (N, 1, C/8, C/8).
Deploy: input blob DEPLOY_INPUT (1, 3, h, w), output blob DEPLOY_OUTPUT (1, 57, h/8, w/8): the
19 heatmaps (18 parts, then the background), then the 38 PAFs (conventions.keypoints' order).
"""
from conventions.keypoints import NUM_HEATMAPS, NUM_PAFS

DATA_LAYER_MODULE = "python_layers.data_layer"
DATA_LAYER_CLASS = "CocoPoseDataLayer"
TRAIN_TOPS = ("data", "heatmap_label", "paf_label", "loss_mask")
DEPLOY_INPUT = "data"
DEPLOY_OUTPUT = "net_output"
OUTPUT_CHANNELS = NUM_HEATMAPS + NUM_PAFS     # 57: heatmaps first, then PAFs


def train_input_shapes(batch_size, crop_size, stride):
    """Shapes of the four training tops (TRAIN_TOPS order) for square crops."""
    if crop_size % stride:
        raise ValueError("crop size %d is not a multiple of the stride %d" % (crop_size, stride))
    cells = crop_size // stride
    return [[batch_size, 3, crop_size, crop_size], [batch_size, NUM_HEATMAPS, cells, cells],
            [batch_size, NUM_PAFS, cells, cells], [batch_size, 1, cells, cells]]
