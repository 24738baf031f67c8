"""What goes in and out of the nets: the training data layer, the masked L2 losses, the deploy
input and the deploy output. Shared by both models.

The tops, blob names and shapes are conventions.net_contract's; this module writes the layers.
The data layer gets a JSON param_str holding source, batch_size, crop_size, stride, seed and any
extra keys. The same four tops can come from an Input layer instead (data_source "input"), so
that a train net can be fed directly from pycaffe.
"""
import collections
import json

from caffe import layers as L
from caffe import params as P

from conventions.keypoints import NUM_HEATMAPS, NUM_PAFS
from conventions.net_contract import (DATA_LAYER_CLASS, DATA_LAYER_MODULE, DEPLOY_INPUT,
                                      DEPLOY_OUTPUT, TRAIN_TOPS)

DATA_SOURCES = ("python", "input")
# The keys the generator itself writes into param_str; extra keys may not override them.
GENERATED_DATA_KEYS = ("source", "batch_size", "crop_size", "stride", "seed")

# The supervised outputs of a model body: `heatmaps` and `pafs` are lists of (name, Top), in the
# order the net computes them; the last of each is what the deploy net outputs. `name` names the
# loss layer (loss_<name>) and the masked prediction (masked_<name>) of the train net.
Outputs = collections.namedtuple("Outputs", "heatmaps pafs")


def data_param_str(source, batch_size, crop_size, stride, seed, extra):
    """The data layer's JSON param_str: the generated keys plus `extra` (a dict), keys sorted."""
    clashes = sorted(set(extra) & set(GENERATED_DATA_KEYS))
    if clashes:
        raise ValueError("data-layer parameters %s are set by their own options, not by the extra "
                         "JSON" % ", ".join(clashes))
    params = dict(extra, source=source, batch_size=batch_size, crop_size=crop_size,
                  stride=stride, seed=seed)
    return json.dumps(params, sort_keys=True)


def training_data(net, data_source, shapes, param_str):
    """Adds the layer producing TRAIN_TOPS (named "data"); returns their four Tops."""
    if data_source == "python":
        tops = L.Python(module=DATA_LAYER_MODULE, layer=DATA_LAYER_CLASS, param_str=param_str,
                        ntop=len(TRAIN_TOPS))
    elif data_source == "input":
        tops = L.Input(shape=[dict(dim=shape) for shape in shapes], ntop=len(TRAIN_TOPS))
    else:
        raise ValueError("data source must be one of %s, not %r" % (DATA_SOURCES, data_source))
    for name, top in zip(TRAIN_TOPS, tops):
        net[name] = top
    return tops


def masked_l2_losses(net, outputs, heatmap_label, paf_label, loss_mask):
    """The paper's eq. 3/4: sum over pixels of W(p) * |prediction - label|^2 per output.

    The mask is tiled to 19 and 38 channels once and the labels are masked once (shared by all
    outputs); each prediction is masked on its own, then EuclideanLoss (sum / 2N), weight 1.
    """
    masks_and_labels = {}
    for kind, label, channels in (("heatmap", heatmap_label, NUM_HEATMAPS),
                                  ("paf", paf_label, NUM_PAFS)):
        net[kind + "_mask"] = L.Tile(loss_mask, axis=1, tiles=channels)
        net[kind + "_label_masked"] = L.Eltwise(label, net[kind + "_mask"],
                                                operation=P.Eltwise.PROD)
        masks_and_labels[kind] = (net[kind + "_mask"], net[kind + "_label_masked"])
    for kind, named_predictions in (("heatmap", outputs.heatmaps), ("paf", outputs.pafs)):
        mask, masked_label = masks_and_labels[kind]
        for name, prediction in named_predictions:
            net["masked_" + name] = L.Eltwise(prediction, mask, operation=P.Eltwise.PROD)
            net["loss_" + name] = L.EuclideanLoss(net["masked_" + name], masked_label,
                                                  loss_weight=1)


def deploy_input(net, height, width):
    """The deploy net's image input, 1 x 3 x height x width (resized at run time as needed)."""
    net[DEPLOY_INPUT] = L.Input(shape=dict(dim=[1, 3, height, width]))
    return net[DEPLOY_INPUT]


def deploy_output(net, outputs, layer_name):
    """net_output = concat(final heatmaps 19, final PAFs 38) along channels."""
    net[DEPLOY_OUTPUT] = L.Concat(outputs.heatmaps[-1][1], outputs.pafs[-1][1], axis=1,
                                  name=layer_name)
    return net[DEPLOY_OUTPUT]
