"""The backbone both nets share: VGG-19's first ten convolutions and OpenPose's two CPM layers.

Layer names are VGG-19's own (conv1_1 ... conv4_2, relu1_1 ..., pool1..pool3), so that
VGG_ILSVRC_19_layers.caffemodel initialises the backbone by name, and OpenPose's for the two
layers it adds (conv4_3_CPM, conv4_4_CPM). Three 2x2 pools make the output stride
(conventions.geometry.STRIDE, 8).
"""
from generators.blocks import ConvSpec, conv, max_pool

OUTPUT = "conv4_4_CPM"          # the 128-channel "bifurcation layer", MLN's global context
OUTPUT_CHANNELS = 128

# (conv name, output channels) per VGG-19 group; each group but the last ends with a pool.
_VGG_GROUPS = (
    (("conv1_1", 64), ("conv1_2", 64)),
    (("conv2_1", 128), ("conv2_2", 128)),
    (("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256)),
    (("conv4_1", 512), ("conv4_2", 512), ("conv4_3_CPM", 256), (OUTPUT, OUTPUT_CHANNELS)),
)


def backbone(net, image):
    """Adds the backbone on `image` (a Top, N x 3 x H x W); returns the conv4_4_CPM Top."""
    top = image
    for group_index, group in enumerate(_VGG_GROUPS, start=1):
        for name, channels in group:
            top = conv(net, ConvSpec(name, name.replace("conv", "relu", 1), channels, 3), top)
        if group_index < len(_VGG_GROUPS):
            top = max_pool(net, "pool%d" % group_index, top)
    return top
