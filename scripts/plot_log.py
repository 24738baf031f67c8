"""Plot every loss of a Caffe training log against the iterations, as a PNG.

    python scripts/plot_log.py CAFFE_LOG --out losses.png [--logy] [--title TEXT]
    scripts/plot_log CAFFE_LOG --out losses.png          (the same, inside Caffe's environment)

Reads the solver's display lines of `caffe train` (or pycaffe) output:
    Iteration 100 (2.3 iter/s, 43.1s/100 iters), loss = 0.52        -> the curve "total"
    Train net output #3: loss_stage2_L1 = 0.11 (* 1 = 0.11 loss)    -> the curve "loss_stage2_L1"
    Test net output #0: accuracy = 0.9                              -> the curve "test accuracy"
"total" is the solver's loss, the weighted sum of the loss outputs averaged over the solver's
`average_loss` iterations; the named curves are the unweighted outputs at each display. A log
that holds a resumed run continues the curves at the resumed iterations.
"""
import argparse
import collections
import os
import re
import sys

TOTAL = "total"

# "Iteration N (speed), loss = X" (Caffe 1.0) or "Iteration N, loss = X" (older Caffe)
ITERATION_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")
ITERATION = re.compile(r"Iteration (\d+)")
NET_OUTPUT = re.compile(
    r"(Train|Test) net output #\d+: (\S+) = (\S+)(?: \(\* (\S+) = \S+ loss\))?")

Series = collections.namedtuple("Series", ["iterations", "values", "weight"])


def parse_caffe_log(lines):
    """{curve name: Series(iterations, values, loss weight or None)}, in order of appearance.

    Net outputs belong to the last iteration named before them.
    """
    curves = collections.OrderedDict()
    iteration = None

    def add(name, at, value, weight=None):
        series = curves.setdefault(name, Series([], [], weight))
        series.iterations.append(at)
        series.values.append(float(value))

    for line in lines:
        output = NET_OUTPUT.search(line)
        if output and iteration is not None:
            phase, name, value, weight = output.groups()
            add(name if phase == "Train" else "test " + name, iteration, value,
                float(weight) if weight is not None else None)
            continue
        total = ITERATION_LOSS.search(line)
        if total:
            iteration = int(total.group(1))
            add(TOTAL, iteration, total.group(2))
            continue
        named = ITERATION.search(line)
        if named:
            iteration = int(named.group(1))
    return curves


def read_log(path):
    try:
        with open(path, errors="replace") as handle:
            curves = parse_caffe_log(handle)
    except OSError as error:
        raise ValueError("cannot read %s: %s" % (path, error)) from error
    if TOTAL not in curves:
        raise ValueError("no 'Iteration N ..., loss = X' line in %s: is it the output of "
                         "`caffe train` (glog writes to stderr: caffe train ... 2>&1 | tee LOG)?"
                         % path)
    return curves


def concatenate(stages):
    """Curves of trainings run one after the other (each from the previous one's final weights)
    as one: each stage's iterations continue where the previous stage's ended, and a later
    stage's iteration 0 (the previous weights before any update) is left out."""
    joined, offset = collections.OrderedDict(), 0
    for curves in stages:
        for name, series in curves.items():
            target = joined.setdefault(name, Series([], [], series.weight))
            for iteration, value in zip(series.iterations, series.values):
                if iteration > 0 or offset == 0:
                    target.iterations.append(offset + iteration)
                    target.values.append(value)
        offset += curves[TOTAL].iterations[-1]
    return joined


def plot_curves(curves, out_path, title="", log_y=False):
    """One line per curve (the total thick and black) against the iteration, written as PNG."""
    import matplotlib
    matplotlib.use("Agg")                      # no display: write files only
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(10, 6))
    for name, series in curves.items():
        if name == TOTAL:
            continue
        label = name if series.weight in (None, 1.0) else "%s (x %g)" % (name, series.weight)
        axes.plot(series.iterations, series.values, linewidth=1, label=label)
    total = curves[TOTAL]
    axes.plot(total.iterations, total.values, color="black", linewidth=2.5, label=TOTAL)
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss")
    if log_y:
        axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", ncol=1 + len(curves) // 16, loc="upper right")
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    pyplot.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Plot each loss of a Caffe training log against the iterations (PNG).",
        epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="+",
                        help="Caffe training log (stderr of caffe train); several: trainings "
                             "run one after the other, plotted as one")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--logy", action="store_true", help="logarithmic loss axis")
    parser.add_argument("--title", help="plot title (default: the log's file name)")
    args = parser.parse_args(argv)
    try:
        curves = concatenate([read_log(path) for path in args.log])
    except ValueError as error:
        sys.exit("plot_log: error: %s" % error)
    plot_curves(curves, args.out, args.title or os.path.basename(args.log[0]), args.logy)
    print("wrote %s: %s over %d displays"
          % (args.out, ", ".join(curves), len(curves[TOTAL].iterations)))


if __name__ == "__main__":
    main()
