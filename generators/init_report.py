"""How the signal and the gradient travel through a generated net at initialisation.

    scripts/caffe-env python generators/init_report.py --model mln|baseline
        [--fillers msra|openpose] [--weights W.caffemodel] [--size 184] [--seed 0] [--json OUT]

Builds the model's deploy net (for the activations) and its train net fed by Input layers (for
the gradients) from the generators with the chosen fillers, lets Caffe fill them (seeded), copies
--weights by layer name over them (e.g. a VGG-19 backbone), and runs one real picture through:
a synthetic scene with labelled people (data_prep.synthetic_scene, seeded), normalised as in
training, its labels rendered by python_layers.labels. Prints, per convolution, the std of its
output (after the in-place ReLU) relative to the input's std, the std of the loss's gradient
with respect to that output and of its weight gradient, and flags every layer whose signal falls
under FLOOR of the input's or grows past CEILING (generators/README.md reports both nets).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
from google.protobuf import text_format

from conventions.geometry import STRIDE, normalise
from conventions.keypoints import coco_to_parts
from conventions.net_contract import DEPLOY_OUTPUT
from data_prep.synthetic_scene import render_scene
from generators.fillers import FILLERS
from generators.nets import MODELS, NetOptions, deploy_net, fillers_of, train_net
from inference.backends import import_caffe_quietly
from python_layers.labels import render_labels

FLOOR = 1e-2        # a convolution whose output std is under FLOOR x the input's is flagged
CEILING = 1e2       # ... or over CEILING x the input's
DEFAULT_SIZE = 184  # small enough for a quick probe; any multiple of the stride works


def probe_sample(size, seed):
    """(data (1, 3, S, S), heatmap labels (1, 19, G, G), PAF labels (1, 38, G, G)) of a seeded
    synthetic scene with its people's labels, normalised as the data layer does."""
    scene = render_scene(np.random.RandomState(seed), size, size)
    coco = [person.keypoints for person in scene.people if person.annotated]
    parts = (coco_to_parts(np.asarray(coco, dtype=np.float32).reshape(-1, 17, 3)) if coco
             else np.zeros((0, 18, 3), np.float32))
    grid = (size // STRIDE,) * 2
    heatmaps, pafs = render_labels(parts, grid)
    return normalise(scene.image)[None], heatmaps[None], pafs[None]


def _write(proto, folder, name):
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(text_format.MessageToString(proto))
    return path


def _std(array):
    return float(np.asarray(array, dtype=np.float64).std())


def measure(model, fillers=None, weights=None, size=DEFAULT_SIZE, seed=0):
    """-> report dict: the settings, and per convolution (in net order) its output std ratio,
    gradient stds and whether it is flagged."""
    if size <= 0 or size % STRIDE:
        raise ValueError("--size must be a positive multiple of %d, got %d" % (STRIDE, size))
    caffe = import_caffe_quietly()
    caffe.set_mode_cpu()
    options = NetOptions(deploy_height=size, deploy_width=size, crop_size=size, batch_size=1,
                         data_source="input", fillers=fillers)
    data, heatmap_label, paf_label = probe_sample(size, seed)
    with tempfile.TemporaryDirectory() as folder:
        caffe.set_random_seed(seed)
        deploy = caffe.Net(_write(deploy_net(model, options), folder, "deploy.prototxt"),
                           caffe.TEST)
        train = caffe.Net(_write(train_net(model, options), folder, "train.prototxt"),
                          caffe.TRAIN)
    if weights:
        deploy.copy_from(weights)
    for name, blobs in deploy.params.items():      # the same initial weights in both nets
        for target, source in zip(train.params[name], blobs):
            target.data[...] = source.data
    deploy.blobs["data"].data[...] = data
    deploy.forward()
    train.blobs["data"].data[...] = data
    train.blobs["heatmap_label"].data[...] = heatmap_label
    train.blobs["paf_label"].data[...] = paf_label
    train.blobs["loss_mask"].data[...] = 1
    losses = train.forward()
    train.backward()

    input_std = _std(data)
    layers = []
    for layer_name, layer in zip(deploy._layer_names, deploy.layers):
        if layer.type != "Convolution":
            continue
        top = deploy.top_names[layer_name][0]
        ratio = _std(deploy.blobs[top].data) / input_std
        layers.append({
            "layer": layer_name,
            "output_std_ratio": ratio,
            "gradient_std": _std(train.blobs[top].diff),
            "weight_gradient_std": _std(train.params[layer_name][0].diff),
            "flag": "low" if ratio < FLOOR else "high" if ratio > CEILING else None,
        })
    return {"model": model, "fillers": fillers_of(model, options), "weights": weights,
            "size": size, "seed": seed, "input_std": input_std,
            "initial_loss": float(sum(losses.values())),
            "net_output_std_ratio": _std(deploy.blobs[DEPLOY_OUTPUT].data) / input_std,
            "floor": FLOOR, "ceiling": CEILING,
            "flagged": [entry["layer"] for entry in layers if entry["flag"]],
            "layers": layers}


def format_report(report):
    lines = ["%s, fillers %s, weights %s, %dx%d synthetic probe (seed %d); input std %.3g; "
             "initial loss %.1f" % (report["model"], report["fillers"],
                                    report["weights"] or "none (fillers only)", report["size"],
                                    report["size"], report["seed"], report["input_std"],
                                    report["initial_loss"]),
             "%-32s %12s %12s %12s" % ("convolution", "out/in std", "grad std", "dW std")]
    for entry in report["layers"]:
        lines.append("%-32s %12.3g %12.3g %12.3g%s" % (
            entry["layer"], entry["output_std_ratio"], entry["gradient_std"],
            entry["weight_gradient_std"],
            "  << %s" % entry["flag"] if entry["flag"] else ""))
    lines.append("net_output std / input std: %.3g" % report["net_output_std_ratio"])
    flagged = report["flagged"]
    lines.append("flagged (output std under %g or over %g of the input's): %s"
                 % (report["floor"], report["ceiling"],
                    ", ".join(flagged) if flagged else "none"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Per-layer activation and gradient scale of a generated net at "
                    "initialisation. Runs where Caffe is: scripts/caffe-env python ...")
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--fillers", choices=FILLERS,
                        help="default: the model's (msra for MLN, openpose for the baseline)")
    parser.add_argument("--weights", help="caffemodel copied by layer name over the fillers "
                                          "(e.g. a VGG-19 backbone)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help="square probe side in pixels, a multiple of 8")
    parser.add_argument("--seed", type=int, default=0,
                        help="Caffe's filler seed and the probe scene's")
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.weights and not os.path.isfile(args.weights):
        parser.error("--weights %s: no such file" % args.weights)
    try:
        report = measure(args.model, args.fillers, args.weights, args.size, args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
