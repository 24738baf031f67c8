"""Train and deploy NetParameters of either model, from one set of options."""
import dataclasses

import caffe

from conventions.geometry import BOX_SIZE, STRIDE
from conventions.net_contract import train_input_shapes
from generators import baseline, mln
from generators.fillers import DEFAULT_FILLERS, apply_fillers, check_fillers
from generators.net_io import (data_param_str, deploy_input, deploy_output, masked_l2_losses,
                               training_data)

MODELS = ("mln", "baseline")


@dataclasses.dataclass
class NetOptions:
    """Everything that shapes the generated nets (defaults: the paper's setup)."""
    deploy_height: int = BOX_SIZE
    deploy_width: int = 432
    crop_size: int = BOX_SIZE
    batch_size: int = 28
    lmdb: str = "data/coco_train2017.lmdb"    # relative to where training runs
    seed: int = 0
    data_param: dict = dataclasses.field(default_factory=dict)   # extra data-layer keys
    wiring: str = "a"                         # MLN only, see generators/mln.py
    data_source: str = "python"               # "python" (the data layer) or "input"
    fillers: str = None                       # generators/fillers.py; None: the model's default


def _build_body(model, net, image, options):
    """Adds the model's layers on `image`; returns (Outputs, name of the net_output layer)."""
    if model == "mln":
        return mln.build(net, image, options.wiring), mln.OUTPUT_LAYER
    if model == "baseline":
        return baseline.build(net, image), baseline.OUTPUT_LAYER
    raise ValueError("model must be one of %s, not %r" % (MODELS, model))


def fillers_of(model, options):
    """The filler scheme the nets of `model` get: options.fillers, or the model's default."""
    if model not in MODELS:
        raise ValueError("model must be one of %s, not %r" % (MODELS, model))
    return check_fillers(options.fillers or DEFAULT_FILLERS[model])


def _finish(net, model, options, outputs, kind):
    """NetSpec -> NetParameter named <model>_<kind>, with the model's initial-weight fillers."""
    supervised = [top for _, top in outputs.heatmaps + outputs.pafs]
    output_layers = [name for name, top in net.tops.items()
                     if any(top is wanted for wanted in supervised)]
    proto = net.to_proto()
    proto.name = "%s_%s" % (model, kind)
    return apply_fillers(proto, fillers_of(model, options), output_layers)


def train_net(model, options):
    """The train NetParameter: data layer, model, masked L2 loss on every supervised output."""
    net = caffe.NetSpec()
    shapes = train_input_shapes(options.batch_size, options.crop_size, STRIDE)
    param_str = data_param_str(options.lmdb, options.batch_size, options.crop_size, STRIDE,
                               options.seed, options.data_param)
    image, heatmap_label, paf_label, loss_mask = training_data(
        net, options.data_source, shapes, param_str)
    outputs, _ = _build_body(model, net, image, options)
    masked_l2_losses(net, outputs, heatmap_label, paf_label, loss_mask)
    return _finish(net, model, options, outputs, "train")


def deploy_net(model, options):
    """The deploy NetParameter: Input (1, 3, H, W), model, net_output (heatmaps + PAFs)."""
    net = caffe.NetSpec()
    image = deploy_input(net, options.deploy_height, options.deploy_width)
    outputs, output_layer = _build_body(model, net, image, options)
    deploy_output(net, outputs, output_layer)
    return _finish(net, model, options, outputs, "deploy")
