"""Random weights for a deploy net, saved as a caffemodel: for speed measurements and tests
before trained weights exist (OpenCV's DNN module needs a caffemodel to load a net), and for the
untrained starting point of a training run.

    scripts/caffe-env python inference/random_weights.py --deploy NET.prototxt --out NET.caffemodel
        [--init he|fillers] [--seed S]

Runs where Caffe is. --init he (default): every weight blob drawn from N(0, 2 / fan_in), so
activations keep their scale through the ReLUs (what speed runs want); biases 0. --init fillers:
the prototxt's own fillers with Caffe's random seed S, i.e. the weights `caffe train` would start
from (for MLN the generators' MSRA in the hidden convolutions and Gaussian std 0.01 in the
outputs, biases 0; generators/fillers.py): train from this file with --weights and it is exactly
the untrained network.
"""
import argparse
import os
import sys

import numpy as np

from inference.backends import import_caffe_quietly


def fill_random(net, seed=0):
    """Set every parameter blob of a caffe.Net in place: weights He-normal, biases 0."""
    state = np.random.RandomState(seed)
    for blobs in net.params.values():
        weights = blobs[0].data
        fan_in = int(np.prod(weights.shape[1:])) or 1
        weights[...] = state.normal(0.0, np.sqrt(2.0 / fan_in), weights.shape)
        for extra in list(blobs)[1:]:
            extra.data[...] = 0


INITS = ("he", "fillers")


def write_random_weights(deploy, out, seed=0, init="he"):
    if init not in INITS:
        raise ValueError("init must be one of %s, got %r" % (INITS, init))
    caffe = import_caffe_quietly()
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)          # the fillers draw from Caffe's own generator
    net = caffe.Net(str(deploy), caffe.TEST)
    if init == "he":
        fill_random(net, seed)
    net.save(str(out))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a caffemodel of random weights for a deploy prototxt. Runs where "
                    "Caffe is: scripts/caffe-env python ...")
    parser.add_argument("--deploy", required=True, help="deploy prototxt")
    parser.add_argument("--out", required=True, help="caffemodel to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", choices=INITS, default="he",
                        help="he: N(0, 2/fan_in), for speed runs; fillers: the prototxt's own "
                             "fillers, i.e. where training starts (default he)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.deploy):
        parser.error("no such prototxt: %s" % args.deploy)
    write_random_weights(args.deploy, args.out, args.seed, args.init)
    return 0


if __name__ == "__main__":
    sys.exit(main())
