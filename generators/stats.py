"""Count a net's weights, biases, convolution MACs and fp32 size from the real Caffe net.

    scripts/caffe-env python generators/stats.py prototxt/mln/deploy.prototxt --compare-paper
    scripts/caffe-env python generators/stats.py prototxt/baseline/deploy.prototxt \
        --height 368 --width 656 --json

The net is built by Caffe (caffe.Net, TEST phase) and everything is read off its blobs: weights =
the first parameter blob of each layer (the paper counts weights without biases), biases = the
others, MACs of a convolution = out_h * out_w * (its weight blob's count), i.e.
out_h * out_w * out_c * in_c / group * kh * kw, per image. MB = 4 bytes x (weights + biases) / 1e6.

Deploy nets are the main target, ours or others' (an old-style `input:`/`input_dim:` header, as
in OpenPose's own prototxt, is read as an Input layer). A generated train net works too: its
Python data layer (which needs an LMDB) is replaced by Input layers of the same tops and shapes,
and every batch is set to 1 so that MACs are per image.
"""
import argparse
import collections
import json
import os
import sys
import tempfile

if __name__ == "__main__":
    # Keep Caffe's net-construction log quiet; only as a script, as child processes inherit it.
    os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from conventions.net_contract import (DATA_LAYER_CLASS, DATA_LAYER_MODULE,  # noqa: E402
                                      train_input_shapes)

# The paper's Table 2 (weights without biases; "FLOPs" are MACs at 368x432).
PAPER_TABLE_2 = collections.OrderedDict([
    ("MLN", dict(weights=21278912, macs=82.5e9, megabytes=85.2)),
    ("OpenPose", dict(weights=52298816, macs=159.6e9, megabytes=209.3)),
])
PAPER_INPUT = (368, 432)
BYTES_PER_VALUE = 4

LayerCount = collections.namedtuple("LayerCount", "name type weights biases macs")


def count_layers(net):
    """Per-layer LayerCount for every layer of a caffe.Net that has parameters, in net order."""
    counts = []
    for name, layer in zip(net._layer_names, net.layers):
        if len(layer.blobs) == 0:
            continue
        weights = layer.blobs[0].count
        biases = sum(blob.count for blob in list(layer.blobs)[1:])
        macs = 0
        if layer.type == "Convolution":
            output_shape = net.blobs[net.top_names[name][0]].shape
            macs = output_shape[2] * output_shape[3] * weights
        elif layer.type == "InnerProduct":
            macs = weights
        counts.append(LayerCount(name, layer.type, weights, biases, macs))
    return counts


def totals(counts):
    """Sums of a list of LayerCount, plus the fp32 size in MB (1e6 bytes)."""
    weights = sum(count.weights for count in counts)
    biases = sum(count.biases for count in counts)
    return dict(weights=weights, biases=biases, macs=sum(count.macs for count in counts),
                megabytes=BYTES_PER_VALUE * (weights + biases) / 1e6)


def _legacy_inputs_to_layer(proto):
    """Turns the old `input:` / `input_dim:` header (OpenPose's own prototxt) into an Input."""
    shapes = [list(shape.dim) for shape in proto.input_shape] or [
        list(proto.input_dim[start:start + 4]) for start in range(0, len(proto.input_dim), 4)]
    layer = caffe_pb2.LayerParameter(name="input", type="Input", top=list(proto.input))
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(shape)
    layers = [layer] + list(proto.layer)
    for field in ("input", "input_dim", "input_shape", "layer"):
        proto.ClearField(field)
    proto.layer.extend(layers)


def read_net_proto(path):
    """The NetParameter in the text file `path`; ValueError naming the file when it holds none
    (an image, a solver, an empty file), since caffe.Net would abort the process on it."""
    try:
        with open(path) as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise ValueError("%s is not a text prototxt (a binary file?): give a net prototxt, e.g. "
                         "prototxt/mln/deploy.prototxt" % path) from None
    proto = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, proto)
    except text_format.ParseError as error:
        raise ValueError(_not_a_net(path, text, error)) from None
    if not (len(proto.layer) or len(proto.input)):
        raise ValueError("%s holds no layers: give a net prototxt, e.g. "
                         "prototxt/mln/deploy.prototxt" % path)
    return proto


def _not_a_net(path, text, error):
    """The complaint about a prototxt that is not a net: a solver names the net to give."""
    solver = caffe_pb2.SolverParameter()
    try:
        text_format.Merge(text, solver)
    except text_format.ParseError:
        return "%s is not a net prototxt (%s): give a net prototxt, e.g. " \
               "prototxt/mln/deploy.prototxt" % (path, " ".join(str(error).split()))
    return "%s is a solver prototxt, not a net: give the net it trains (its net: %r)" % (
        path, solver.net or solver.train_net)


def countable_proto(path, height=None, width=None):
    """The NetParameter of `path`, with the training data layer replaced by Input layers, every
    Input batch set to 1 and, when given, the (single) input's height and width set."""
    for option, value in (("--height", height), ("--width", width)):
        if value is not None and value < 1:
            # caffe.Net would abort the process on an empty blob (a glog check, no exception)
            raise ValueError("%s must be at least 1 pixel, got %r" % (option, value))
    proto = read_net_proto(path)
    if len(proto.input):
        _legacy_inputs_to_layer(proto)
    for layer in proto.layer:
        if layer.type == "Python" and (layer.python_param.module, layer.python_param.layer) == (
                DATA_LAYER_MODULE, DATA_LAYER_CLASS):
            params = json.loads(layer.python_param.param_str)
            shapes = train_input_shapes(1, params["crop_size"], params["stride"])
            layer.type = "Input"
            layer.ClearField("python_param")
            for shape in shapes:
                layer.input_param.shape.add().dim.extend(shape)
    input_layers = [layer for layer in proto.layer if layer.type == "Input"]
    for layer in input_layers:
        for shape in layer.input_param.shape:
            shape.dim[0] = 1
    if height is not None or width is not None:
        if len(input_layers) != 1 or len(input_layers[0].input_param.shape) != 1:
            raise ValueError("%s: --height/--width need a net with a single Input (a deploy "
                             "net); a train net's size is its crop" % path)
        dims = input_layers[0].input_param.shape[0].dim
        dims[2] = dims[2] if height is None else height
        dims[3] = dims[3] if width is None else width
    return proto


def load_net(path, height=None, width=None):
    """A caffe.Net (TEST phase) of the prototxt at `path`, prepared by countable_proto."""
    proto = countable_proto(path, height, width)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as handle:
        handle.write(text_format.MessageToString(proto))
        handle.flush()
        return caffe.Net(handle.name, caffe.TEST)


def net_stats(path, height=None, width=None):
    """{"net", "input_shape", "layers": [LayerCount dicts], "total": totals} of a prototxt."""
    net = load_net(path, height, width)
    counts = count_layers(net)
    return dict(net=path, input_shape=list(net.blobs[net.inputs[0]].shape),
                layers=[count._asdict() for count in counts], total=totals(counts))


def format_stats(stats, show_layers=True, compare_paper=False):
    lines = ["net: %s   input: %s" % (stats["net"], "x".join(map(str, stats["input_shape"])))]
    row = "%-34s %-12s %12s %9s %16s %9s"
    if show_layers:
        lines.append(row % ("layer", "type", "weights", "biases", "MACs", "MB"))
        for count in stats["layers"]:
            lines.append(row % (count["name"], count["type"], "{:,}".format(count["weights"]),
                                "{:,}".format(count["biases"]), "{:,}".format(count["macs"]),
                                "%.3f" % (BYTES_PER_VALUE * (count["weights"] + count["biases"])
                                          / 1e6)))
    total = stats["total"]
    lines.append(row % ("total", "", "{:,}".format(total["weights"]),
                        "{:,}".format(total["biases"]), "{:,}".format(total["macs"]),
                        "%.2f" % total["megabytes"]))
    if compare_paper:
        lines.append("")
        compare = "%-24s %20s %16s %14s"
        lines.append(compare % ("", "weights (no biases)", "MACs", "fp32 MB"))
        lines.append(compare % ("this net", "{:,}".format(total["weights"]),
                                "%.2fe9" % (total["macs"] / 1e9), "%.2f" % total["megabytes"]))
        for name, paper in PAPER_TABLE_2.items():
            lines.append(compare % ("paper Table 2: " + name, "{:,}".format(paper["weights"]),
                                    "%.1fe9" % (paper["macs"] / 1e9), "%.1f" % paper["megabytes"]))
        if tuple(stats["input_shape"][2:]) != PAPER_INPUT:
            lines.append("note: the paper's MACs are at %dx%d" % PAPER_INPUT)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Weights (no biases), biases, convolution MACs per image and fp32 size of "
                    "a Caffe net, read off the real caffe.Net, per layer and in total.")
    parser.add_argument("prototxt", help="a net prototxt (deploy, or a generated train net)")
    parser.add_argument("--height", type=int, help="input height (deploy nets; default: as in "
                                                   "the prototxt)")
    parser.add_argument("--width", type=int, help="input width (deploy nets)")
    parser.add_argument("--compare-paper", action="store_true",
                        help="print the paper's Table 2 rows (MLN, OpenPose) beside ours")
    parser.add_argument("--totals-only", action="store_true", help="leave out the per-layer rows")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--json-file", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.prototxt):
        sys.exit("stats.py: error: no such file: %s" % args.prototxt)
    try:
        stats = net_stats(args.prototxt, args.height, args.width)
    except ValueError as error:
        sys.exit("stats.py: error: %s" % error)
    table = format_stats(stats, not args.totals_only, args.compare_paper)
    if args.compare_paper:
        stats["paper_table_2"] = PAPER_TABLE_2
    if args.totals_only:
        del stats["layers"]
    print(json.dumps(stats, indent=1) if args.json else table)
    if args.json_file:
        try:
            with open(args.json_file, "w") as handle:
                json.dump(stats, handle, indent=1)
        except OSError as error:
            sys.exit("stats.py: error: --json-file %s: cannot write it (%s)"
                     % (args.json_file, error.strerror or error))


if __name__ == "__main__":
    main()
