"""Building blocks shared by the MLN and baseline generators (pycaffe NetSpec).

Every function takes the NetSpec it adds layers to and the names of the layers it creates, and
returns the Top(s) the next block consumes. Nothing here knows which net it is building.

Convolutions follow OpenPose's training setup: biases 0; weights lr_mult 1 / decay_mult 1,
biases lr_mult 2 / decay_mult 0. Padding is kernel_size // 2 so that every convolution after the
backbone keeps the stride-8 map's size. The weight filler written here is OpenPose's
Gaussian(0.01); generators/nets.py then sets each convolution's filler for the model's scheme
(generators/fillers.py), which knows which convolutions are outputs.
"""
import collections

from caffe import layers as L
from caffe import params as P

from generators.fillers import GAUSSIAN as WEIGHT_FILLER
BIAS_FILLER = dict(type="constant", value=0)
WEIGHT_AND_BIAS_LEARNING = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]

# One convolution of a chain: its layer (and top) name, the name of its in-place ReLU (None for
# an output layer, which has no ReLU), its output channels and its square kernel size.
ConvSpec = collections.namedtuple("ConvSpec", "name relu_name num_output kernel_size")


def output_chain_specs(shapes, conv_name, relu_name):
    """ConvSpecs of a chain ending in an output convolution (the only one without ReLU).

    shapes: [(output channels, kernel size), ...]; conv_name and relu_name are templates with
    "{k}" for the 1-based position, e.g. "Mconv{k}_stage2_L1".
    """
    return [ConvSpec(conv_name.format(k=k), None if k == len(shapes) else relu_name.format(k=k),
                     channels, kernel)
            for k, (channels, kernel) in enumerate(shapes, start=1)]


def conv(net, spec, bottom):
    """Convolution (same padding) and, unless spec.relu_name is None, an in-place ReLU."""
    net[spec.name] = L.Convolution(
        bottom, num_output=spec.num_output, kernel_size=spec.kernel_size,
        pad=spec.kernel_size // 2, weight_filler=WEIGHT_FILLER, bias_filler=BIAS_FILLER,
        param=WEIGHT_AND_BIAS_LEARNING)
    if spec.relu_name is None:
        return net[spec.name]
    # The next layer must take the ReLU's Top (same blob) so NetSpec orders it after the ReLU.
    net[spec.relu_name] = L.ReLU(net[spec.name], in_place=True)
    return net[spec.relu_name]


def branch(net, specs, bottom):
    """A chain of convolutions; returns the Top of every convolution, in order."""
    outputs = []
    for spec in specs:
        bottom = conv(net, spec, bottom)
        outputs.append(bottom)
    return outputs


def concat(net, name, bottoms):
    """Channel concatenation; the layer and its top are both called `name`."""
    net[name] = L.Concat(*bottoms, axis=1)
    return net[name]


def max_pool(net, name, bottom):
    """2x2 max pooling, stride 2."""
    net[name] = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    return net[name]


def three_conv_block(net, prefix, bottom, channels=128):
    """MLN's block: three chained 3x3 convolutions (ReLU each) whose outputs are concatenated.

    Layers: <prefix>_conv1..3, <prefix>_relu1..3, <prefix>_concat (3 x channels outputs).
    """
    specs = [ConvSpec("%s_conv%d" % (prefix, k), "%s_relu%d" % (prefix, k), channels, 3)
             for k in (1, 2, 3)]
    return concat(net, prefix + "_concat", branch(net, specs, bottom))


def two_branch_stage(net, bottom, first_specs, second_specs):
    """Two convolution chains on one input (OpenPose's stage, MLN's detection module).

    The layers are interleaved branch by branch, as in OpenPose's prototxt. Returns, for each
    branch, the Tops of all its convolutions in order (the last one is the branch's output).
    """
    if len(first_specs) != len(second_specs):
        raise ValueError("both branches of a stage need the same number of convolutions")
    first, second = [bottom], [bottom]
    for first_spec, second_spec in zip(first_specs, second_specs):
        first.append(conv(net, first_spec, first[-1]))
        second.append(conv(net, second_spec, second[-1]))
    return first[1:], second[1:]
