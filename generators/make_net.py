"""Write the train, deploy and solver prototxt files of MLN and/or the OpenPose baseline.

    scripts/caffe-env python generators/make_net.py     # both models into prototxt/, defaults
    scripts/caffe-env python generators/make_net.py --model mln --wiring b --out runs/nets
    scripts/caffe-env python generators/make_net.py --model baseline --data-source input --crop 96

Writes <out>/<model>/train.prototxt, deploy.prototxt and solver.prototxt. The solver's `net`
and `snapshot_prefix` are written as given (relative paths are resolved by Caffe against the
directory it is started from; the defaults assume the repository root). From Python (e.g. the
training driver): generators.net_files.write_net_files(model, out_dir, NetOptions(...),
SolverOptions(...)).
"""
import argparse
import dataclasses
import sys

from generators.fillers import FILLERS
from generators.mln import WIRINGS
from generators.net_io import DATA_SOURCES
from generators.net_files import option_error, parse_json_object, write_net_files
from generators.nets import MODELS, NetOptions
from generators.solver import SOLVER_MODES, SOLVER_TYPES, SolverOptions

def parse_size(text):
    """'368x432' -> (368, 432), height first."""
    try:
        height, width = (int(value) for value in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected HEIGHTxWIDTH, e.g. 368x432, not %r" % text)
    return height, width


def build_parser():
    nets, solvers = NetOptions(), SolverOptions()
    parser = argparse.ArgumentParser(
        description="Generate the train, deploy and solver prototxt files of MLN and the "
                    "OpenPose COCO baseline (written to OUT/<model>/).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=MODELS + ("all",), default="all")
    parser.add_argument("--out", default="prototxt",
                        help="output folder; the default, run from the repository root, "
                             "overwrites the committed prototxt/<model>/ files (which "
                             "tests/caffe/test_net_counts.py checks): give another folder for "
                             "nets of other settings")
    net = parser.add_argument_group("nets")
    net.add_argument("--deploy-size", type=parse_size,
                     default="%dx%d" % (nets.deploy_height, nets.deploy_width),
                     help="deploy input HEIGHTxWIDTH (the deploy net can be reshaped later)")
    net.add_argument("--crop", type=int, default=nets.crop_size,
                     help="square training crop in pixels, a multiple of 8")
    net.add_argument("--batch", type=int, default=nets.batch_size, help="training batch size")
    net.add_argument("--lmdb", default=nets.lmdb,
                     help="training LMDB, written into the data layer's param_str as `source`")
    net.add_argument("--seed", type=int, default=nets.seed,
                     help="data-layer seed and the solver's random_seed")
    net.add_argument("--data-param", type=parse_json_object, default={},
                     help="JSON object of extra data-layer keys (e.g. '{\"workers\": 4}'), "
                          "added to the param_str")
    net.add_argument("--wiring", choices=WIRINGS, default=nets.wiring,
                     help="MLN's transfer/refinement wiring (all give the paper's counts)")
    net.add_argument("--data-source", choices=DATA_SOURCES, default=nets.data_source,
                     help="train-net input: the Python data layer, or Input layers with the "
                          "same four tops (to feed the net from pycaffe)")
    net.add_argument("--fillers", choices=FILLERS,
                     help="initial-weight fillers (default: msra for MLN, openpose for the "
                          "baseline; generators/fillers.py)")
    solver = parser.add_argument_group("solver")
    solver.add_argument("--solver", choices=sorted(SOLVER_TYPES), default=solvers.solver_type,
                        help="sgd (the paper) or adam")
    solver.add_argument("--base-lr", type=float, default=solvers.base_lr)
    solver.add_argument("--weight-decay", type=float, default=solvers.weight_decay)
    solver.add_argument("--clip-gradients", type=float, default=None,
                        help="scale the gradient down when its L2 norm exceeds this")
    solver.add_argument("--max-iter", type=int, default=solvers.max_iter)
    solver.add_argument("--stepsize", type=int, default=solvers.stepsize,
                        help="iterations between learning-rate drops (x gamma %g)" % solvers.gamma)
    solver.add_argument("--iter-size", type=int, default=solvers.iter_size,
                        help="batches accumulated per update (effective batch = batch x this)")
    solver.add_argument("--display", type=int, default=solvers.display,
                        help="print the (averaged) losses every this many iterations")
    solver.add_argument("--snapshot-every", type=int, default=solvers.snapshot_every)
    solver.add_argument("--snapshot-prefix", default=solvers.snapshot_prefix,
                        help="snapshot path prefix; {model} is replaced by the model name; "
                             "its folder must exist when training starts")
    solver.add_argument("--solver-mode", choices=SOLVER_MODES, default=solvers.solver_mode)
    return parser


def options_from_args(args):
    height, width = args.deploy_size
    net_options = NetOptions(
        deploy_height=height, deploy_width=width, crop_size=args.crop, batch_size=args.batch,
        lmdb=args.lmdb, seed=args.seed, data_param=args.data_param, wiring=args.wiring,
        data_source=args.data_source, fillers=args.fillers)
    solver_options = dataclasses.replace(
        SolverOptions(), solver_type=args.solver, weight_decay=args.weight_decay,
        clip_gradients=args.clip_gradients, base_lr=args.base_lr, max_iter=args.max_iter,
        stepsize=args.stepsize, iter_size=args.iter_size, display=args.display, snapshot_every=args.snapshot_every,
        snapshot_prefix=args.snapshot_prefix, solver_mode=args.solver_mode,
        random_seed=args.seed)
    return net_options, solver_options


# The options option_error checks (net_files.py), by their attribute in the parsed arguments.
CHECKED_OPTIONS = ("deploy_size", "crop", "batch", "seed", "base_lr", "weight_decay",
                   "clip_gradients", "max_iter", "stepsize", "iter_size", "display",
                   "snapshot_every")


def argument_errors(args):
    """The complaints about the parsed options' values, in option order."""
    errors = (option_error(name.replace("_", "-"), getattr(args, name))
              for name in CHECKED_OPTIONS)
    return [error for error in errors if error]


def main(argv=None):
    args = build_parser().parse_args(argv)
    errors = argument_errors(args)
    if errors:
        sys.exit("make_net.py: error: %s" % errors[0])
    net_options, solver_options = options_from_args(args)
    models = MODELS if args.model == "all" else (args.model,)
    try:
        for model in models:
            for path in write_net_files(model, args.out, net_options, solver_options).values():
                print(path)
    except ValueError as error:
        sys.exit("make_net.py: error: %s" % error)
    except OSError as error:
        sys.exit("make_net.py: error: --out %s: cannot write %s (%s): give a folder you can "
                 "write to" % (args.out, error.filename or args.out, error.strerror or error))


if __name__ == "__main__":
    main()
