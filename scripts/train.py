"""Train MLN or the OpenPose COCO baseline with Caffe on data_prep's LMDB (./scripts/train.sh).

The command line of scripts/training_run.py, which says what a run directory holds, how Caffe is
watched and which devices are used (run `./scripts/train.sh --help`).
"""
import argparse
import signal
import sys

from conventions.geometry import STRIDE
from generators.fillers import FILLERS
from generators.net_files import parse_json_object
from generators.mln import WIRINGS
from generators.nets import MODELS
from generators.solver import SOLVER_TYPES
from scripts import training_run
from scripts.training_run import DEFAULTS, TrainError, train


def build_parser():
    parser = argparse.ArgumentParser(
        prog="train.sh", description=__doc__.split("\n\n")[0],
        epilog=training_run.__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", choices=MODELS, help="network (a new run needs it)")
    add("--lmdb", help="training database made by data_prep/coco_to_lmdb.py (a new run needs "
                       "it; with --resume: the run's database at a new place)")
    add("--run-dir", help="run directory (default: runs/<model>-<date>-<time>)")
    add("--resume", action="store_true",
        help="continue the run in --run-dir from its latest .solverstate, with its settings")
    add("--gpu", help="GPU id, several as 0,1, or cpu (default 0: the GPU when Caffe has CUDA "
                      "and the device exists, else the CPU with a notice)")
    add("--iters", type=int, help="train up to this iteration (solver max_iter; default %d)" % DEFAULTS["iters"])
    add("--batch", type=int, help="samples per forward pass, per GPU (default %d, the paper)" % DEFAULTS["batch"])
    add("--iter-size", type=int,
        help="forward passes per update (default %d): batch 7 x iter-size 4 = the paper's 28"
             % DEFAULTS["iter_size"])
    add("--crop", type=int, help="square training crop, a multiple of %d (default %d)"
                              % (STRIDE, DEFAULTS["crop"]))
    add("--base-lr", type=float, help="learning rate (default %g, the paper)" % DEFAULTS["base_lr"])
    add("--solver", choices=sorted(SOLVER_TYPES),
        help="sgd (default: the paper's SGD with momentum 0.9) or adam (Caffe's Adam: what "
             "trains MLN from scratch, generators/README.md)")
    add("--weight-decay", type=float, help="L2 weight decay (default %g, the paper)" % DEFAULTS["weight_decay"])
    add("--clip-gradients", type=float,
        help="scale the gradient down when its L2 norm exceeds this (default: no clipping)")
    add("--fillers", choices=FILLERS,
        help="initial-weight fillers of the generated nets (default: msra for MLN, openpose "
             "for the baseline; generators/fillers.py)")
    add("--seed", type=int, help="data order, augmentation and initial weights (default %d)"
                              % DEFAULTS["seed"])
    add("--wiring", choices=WIRINGS, help="MLN's wiring (generators/README.md; default %s)"
                                            % DEFAULTS["wiring"])
    add("--data-param", type=parse_json_object,
        help="JSON object of extra data-layer keys, e.g. '{\"flip_prob\": 0}' "
             "(python_layers/README.md)")
    add("--weights", help="initial weights copied by layer name (e.g. VGG-19 from "
                          "scripts/vgg19_keras_to_caffe.py); not with --resume")
    add("--workers", type=int,
        help="data-layer worker processes (default: the layer's, cores up to 4; 0 = in Caffe)")
    add("--display", type=int, help="print (averaged) losses every N iterations (default %d)"
                               % DEFAULTS["display"])
    add("--snapshot-every", type=int, help="snapshot every N iterations (default %d)"
                                      % DEFAULTS["snapshot_every"])
    add("--verbose", action="store_true",
        help="show Caffe's whole output here, not one progress line per displayed iteration "
             "(it is always in the run directory's caffe.log)")
    return parser


def main(argv=None):
    # train.sh starts us with Ctrl-C ignored (so that the sandbox around us survives it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return train(args, argv)
    except TrainError as error:
        sys.stderr.write("train: error: %s\n" % error)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
