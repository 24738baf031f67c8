"""Initial weights of the generated nets: which filler each convolution gets.

Two schemes (`NetOptions.fillers`, `make_net.py --fillers`):

  openpose  every convolution Gaussian(std 0.01), biases 0: OpenPose's training prototxt,
            where a VGG-19 backbone and 7-layer stages follow.
  msra      He et al. 2015 ("MSRA": Gaussian with std sqrt(2 / fan_in), Caffe's `msra` filler
            with variance_norm FAN_IN) in every hidden convolution, so that a ReLU stack keeps
            the scale of its signal; the supervised output convolutions (the heatmap and PAF
            predictions) keep Gaussian(std 0.01), so the first predictions are near zero and
            the first losses near the all-zero reference. Biases 0.

Why MSRA is MLN's default (generators/README.md has the measurement, from init_report.py): with
Gaussian(0.01) each 3x3x128 convolution multiplies the signal's std by about
0.01 * sqrt(9 * 128) / sqrt(2) ~ 0.24, and MLN stacks up to 27 of them after the backbone
(detection 4, transfer 7, refinement 23), so its outputs start 1e-13 of the input and neither
the signal nor the gradient reaches the early layers. OpenPose's stages are 5-7 convolutions
deep, each stage restarting from the backbone's features, which is why its released training
copes with 0.01. The baseline keeps `openpose` by default to reproduce that training.
"""
FILLERS = ("msra", "openpose")
DEFAULT_FILLERS = {"mln": "msra", "baseline": "openpose"}
OUTPUT_STD = 0.01           # Gaussian std of the supervised output convolutions (both schemes)
GAUSSIAN = dict(type="gaussian", std=OUTPUT_STD)
MSRA = dict(type="msra")    # Caffe's default variance_norm is FAN_IN: std = sqrt(2 / fan_in)


def check_fillers(name):
    if name not in FILLERS:
        raise ValueError("unknown fillers %r: choose one of %s" % (name, ", ".join(FILLERS)))
    return name


def weight_filler(scheme, is_output):
    """The weight filler (a dict of FillerParameter fields) of one convolution."""
    check_fillers(scheme)
    return dict(GAUSSIAN) if scheme == "openpose" or is_output else dict(MSRA)


def apply_fillers(proto, scheme, output_layers):
    """Set the weight filler of every Convolution of a NetParameter for `scheme`.

    output_layers: names of the supervised output convolutions. Biases are left as the blocks
    write them (constant 0)."""
    check_fillers(scheme)
    found = set()
    for layer in proto.layer:
        if layer.type != "Convolution":
            continue
        is_output = layer.name in output_layers
        found.update([layer.name] if is_output else [])
        filler = layer.convolution_param.weight_filler
        filler.Clear()
        for field, value in weight_filler(scheme, is_output).items():
            setattr(filler, field, value)
    missing = sorted(set(output_layers) - found)
    if missing:
        raise ValueError("output convolution(s) %s are not in the net" % ", ".join(missing))
    return proto
