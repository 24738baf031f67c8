"""Caffe's own forward pass of a deploy net on saved inputs, for comparing other runtimes with it.

    scripts/caffe-env python -m tests.caffe_forward --deploy P --weights W --out OUT.npz \
        INPUT.npy [INPUT.npy ...]

(run as a module from the repository root: as a file, tests/caffe/ would shadow the caffe
package). Each input (1, 3, h, w) float32 is forwarded at its own size (the input blob is
reshaped); OUT.npz holds output_0, output_1, ... (net_output of each input, in order).
"""
import argparse
import sys

import numpy as np

from conventions.net_contract import DEPLOY_OUTPUT
from inference.backends import import_caffe_quietly


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args(argv)
    caffe = import_caffe_quietly()
    caffe.set_mode_cpu()
    net = caffe.Net(args.deploy, args.weights, caffe.TEST)
    outputs = {}
    for index, path in enumerate(args.inputs):
        blob = np.load(path)
        net.blobs[net.inputs[0]].reshape(*blob.shape)
        net.reshape()
        net.blobs[net.inputs[0]].data[...] = blob
        net.forward()
        outputs["output_%d" % index] = net.blobs[DEPLOY_OUTPUT].data.copy()
    np.savez(args.out, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
