"""Random weights for a deploy net, saved as a caffemodel: for speed measurements and tests
before trained weights exist (OpenCV's DNN module needs a caffemodel to load a net).

    scripts/caffe-env python inference/random_weights.py --deploy NET.prototxt --out NET.caffemodel

Runs where Caffe is. Every weight blob is drawn from N(0, 2 / fan_in) (He), so activations keep
their scale through the ReLUs; biases are 0.
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


def write_random_weights(deploy, out, seed=0):
    caffe = import_caffe_quietly()
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    fill_random(net, seed)
    net.save(str(out))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a caffemodel of random weights (He-normal, biases 0) for a deploy "
                    "prototxt. Runs where Caffe is: scripts/caffe-env python ...")
    parser.add_argument("--deploy", required=True, help="deploy prototxt")
    parser.add_argument("--out", required=True, help="caffemodel to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.deploy):
        parser.error("no such prototxt: %s" % args.deploy)
    write_random_weights(args.deploy, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
