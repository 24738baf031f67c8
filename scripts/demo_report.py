"""The demo's report: OUT/report.md rendered from OUT/facts.json, which scripts/demo.py writes.

    python3 scripts/demo_report.py OUT/facts.json [--out OUT/report.md]   # render it again

The report reads nothing but the facts file: every figure in it was collected by the demo's steps
from the JSON files of the tools (stats, LMDB metadata, reference losses, training parameters,
metrics), never from their printed text. The facts (JSON object):

    command      [str] the demo's arguments            mode      "quick" | "default"
    written      "YYYY-MM-DD HH:MM"                     machine   inference/benchmark.py's machine()
    caffe        which Caffe ran (text)                 opencv    the deploy venv's OpenCV version
    seconds      {step: seconds}, in the order the steps ran
    nets         {"mln" | "baseline": [generators/stats.py's totals, its paper_table_2]}
    data         source (text), train_images, records, main_persons, val_images, val_people,
                 fit_images
    settings     scripts/recipe.py's FROM_SCRATCH (solver, base_lr, weight_decay, crop) with
                 batch, iters, seed, stages [[preset, iterations, lr]], augmentations {preset: params}
    train        device ("cpu" | "gpu"), losses [[iteration, total loss]] across the stages
    reference    the last stage's trivial-prediction losses (scripts/reference_losses.py)
    scale        the inference scale of the evaluation
    evaluation   {"untrained" | "trained" | "trained_on_training_images":
                  [inference/evaluate.py's metrics, people found]}
    pictures     [file names in OUT/pictures/trained/]

Standard library only.
"""
import argparse
import json
import pathlib
import sys

METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def render(facts):
    """report.md's text from the facts (the module docstring lists them)."""
    nets = facts["nets"]
    train = facts["train"]
    settings = facts["settings"]
    evaluation = facts["evaluation"]
    machine = facts["machine"]
    lines = ["# MLN demo report", "",
             "Command: `./scripts/demo.sh %s` — %s mode, written %s." % (
                 " ".join(facts["command"]), facts["mode"], facts["written"]),
             "",
             "- Machine: %s, %d cores, %s." % (machine["cpu"], machine["cores"] or 0,
                                               machine["system"]),
             "- Caffe: %s; training ran on the %s." % (facts["caffe"], train["device"].upper()),
             "- Inference: OpenCV %s DNN module in the deploy venv (`inference/predict.py`)."
             % facts["opencv"],
             "", "## Steps", "", "| step | seconds |", "|---|---|"]
    for step, seconds in facts["seconds"].items():
        lines.append("| %s | %.1f |" % (step, seconds))
    lines += ["| **total** | **%.1f** |" % sum(facts["seconds"].values()), "",
              "## The networks against the paper's Table 2", "",
              "Counted by `generators/stats.py` from the real `caffe.Net` of the generated "
              "deploy nets (weights without biases; convolution MACs at 368x432; fp32 size "
              "with biases).", "",
              "| net | weights | paper | MACs | paper | MB | paper |",
              "|---|---|---|---|---|---|---|"]
    for name, paper_name in (("mln", "MLN"), ("baseline", "OpenPose")):
        ours, paper = nets[name]
        lines.append("| %s | %s | %s | %.2fe9 | %.1fe9 | %.2f | %.1f |" % (
            name, "{:,}".format(ours["weights"]), "{:,}".format(paper[paper_name]["weights"]),
            ours["macs"] / 1e9, paper[paper_name]["macs"] / 1e9, ours["megabytes"],
            paper[paper_name]["megabytes"]))
    data = facts["data"]
    lines += ["", "## Data", "",
              "- Source: %s." % data["source"],
              "- Training: %s images, packed into %s LMDB records (%s main persons: the "
              "training samples)." % (data["train_images"], data["records"],
                                      data["main_persons"]),
              "- Held out: %d images with %d labelled people." % (data["val_images"],
                                                                  data["val_people"]),
              "", "## Training", "",
              "`scripts/train.sh --model mln --batch %d --crop %d --solver %s --base-lr %g "
              "--weight-decay %g --seed %d` in %d stages (scripts/recipe.py), the first from "
              "`untrained.caffemodel` (the generators' fillers: MSRA in the hidden "
              "convolutions, Gaussian std 0.01 in the outputs; no VGG-19), each next from the "
              "previous one's final weights: %s; %d samples seen." % (
                  settings["batch"], settings["crop"], settings["solver"], settings["base_lr"],
                  settings["weight_decay"], settings["seed"], len(settings["stages"]),
                  ", then ".join("%d iterations at lr %g with augmentation `%s` "
                                 "(`--data-param '%s'`)"
                                 % (count, lr, preset, json.dumps(
                                     settings["augmentations"][preset], sort_keys=True))
                                 for preset, count, lr in settings["stages"]),
                  settings["iters"] * settings["batch"]), ""]
    curve = train["losses"]
    reference = facts["reference"]
    if curve:
        head, tail = [v for _, v in curve[:3]], [v for _, v in curve[-3:]]
        lines += ["Total loss (Caffe's EuclideanLoss, summed over the 4 outputs): %.1f at "
                  "iteration %d, %.1f at iteration %d; mean of the first three displayed "
                  "values %.1f, of the last three %.1f (%+.0f%%)." % (
                      curve[0][1], curve[0][0], curve[-1][1], curve[-1][0], mean(head),
                      mean(tail), 100.0 * (mean(tail) / mean(head) - 1)), ""]
    lines += ["On the last stage's training stream, two trivial predictions score: all outputs "
              "zero (what the untrained net predicts) %.1f; the background channel exact and "
              "every part and limb zero %.1f (`scripts/reference_losses.py`)."
              % (reference["zero"], reference["background_only"]), ""]
    lines += ["![loss](loss.png)", "",
              "## Evaluation", "",
              "pycocotools' keypoint evaluation (OKS) of whole images, predicted at scale %.3f "
              "(the training crop over OpenPose's 368 box, so people appear at about the size "
              "the net was trained on): the %d held-out images, and the first %d training "
              "images (how well the net has learnt what it saw)."
              % (facts["scale"], data["val_images"], data["fit_images"]), "",
              "| network | images | %s | people found |" % " | ".join(METRICS),
              "|---|---|%s---|" % ("---|" * len(METRICS))]
    for name, label, images in (
            ("untrained", "untrained (iteration 0)", "held-out"),
            ("trained", "trained (iteration %d)" % settings["iters"], "held-out"),
            ("trained_on_training_images", "trained (iteration %d)" % settings["iters"],
             "training")):
        metrics, found = evaluation[name]
        lines.append("| %s | %s | %s | %d |" % (label, images, " | ".join(
            "%.3f" % metrics[m] for m in METRICS), found))
    lines += ["", "What this shows: " + verdict(
        {name: metrics["AP"] for name, (metrics, _) in evaluation.items()}, curve, reference,
        settings), "",
              "## Pictures", "",
              "Skeletons found by the trained network (limbs coloured per limb, as the paper's "
              "Fig. 3): `pictures/trained/` (held-out images) and "
              "`pictures/trained_on_training_images/`."]
    for name in sorted(facts["pictures"])[:6]:
        lines.append("- [%s](pictures/trained/%s)" % (name, name))
    lines += ["", "## Files", "",
              "`nets/` generated nets and their counts; `data/` the dataset; `train.lmdb` with "
              "`packing.json` (its metadata: what was packed, the packing summary); "
              "`untrained.caffemodel`; `train/` the training run (nets for its settings, "
              "settings, Caffe's log, snapshots); `results/` COCO results and metrics of each "
              "evaluation; `logs/` every step's output; `facts.json` the figures of this "
              "report (`python3 scripts/demo_report.py facts.json` renders it again).", ""]
    return "\n".join(lines)


def verdict(ap, curve, reference, settings):
    """What the figures show, in words, from the figures alone. ap: {evaluation name: AP}."""
    samples = settings["iters"] * settings["batch"]
    last = mean([v for _, v in curve[-3:]])
    first = mean([v for _, v in curve[:3]])
    parts = ["over %d iterations (%d samples) the loss %s, from %.1f to %.1f."
             % (settings["iters"], samples, "fell" if last < first else "did NOT fall",
                first, last)]
    background_only = reference["background_only"]
    if last < 0.9 * background_only:
        parts.append("It is below what knowing the background alone scores (%.1f): the net "
                     "locates parts and limbs." % background_only)
    elif last <= 1.25 * background_only:
        parts.append("That is near (within 25%% of) what knowing the background channel alone "
                     "scores (%.1f): the net is learning where people are not, but not yet to "
                     "locate parts and limbs." % background_only)
    else:
        parts.append("That is still well above what knowing the background channel alone "
                     "scores (%.1f): not even the background is learnt yet." % background_only)
    fit, held_out, untrained = (ap["trained_on_training_images"], ap["trained"],
                                ap["untrained"])
    if fit >= 0.5:
        parts.append("It finds the people of its training images (AP %.3f)." % fit)
    elif fit > untrained:
        parts.append("It begins to find the people of its training images (AP %.3f); more "
                     "iterations raise it (AP by iteration: the README's \"The overfit "
                     "check\")." % fit)
    else:
        parts.append("It does not yet find the people of its training images (AP %.3f)." % fit)
    if held_out > untrained:
        parts.append("On held-out images it finds people the untrained network does not (AP "
                     "%.3f against %.3f): it has started to generalise; the paper's training "
                     "(VGG-19 backbone, hundreds of thousands of iterations of 28 samples on a "
                     "GPU) is what makes that strong." % (held_out, untrained))
    else:
        parts.append("On held-out images it does not find people better than the untrained "
                     "network (AP %.3f against %.3f): a few hundred samples from scratch teach "
                     "these images, not people in general; the paper trains from VGG-19 for "
                     "hundreds of thousands of iterations of 28 samples on a GPU."
                     % (held_out, untrained))
    return " ".join(parts)


def write_report(facts_path, report_path):
    """Render the facts file into report_path -> the report's text."""
    text = render(json.loads(pathlib.Path(facts_path).read_text()))
    pathlib.Path(report_path).write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Render the demo's report.md from the facts.json that scripts/demo.py "
                    "wrote beside it.")
    parser.add_argument("facts", help="the demo's OUT/facts.json")
    parser.add_argument("--out", help="report file (default: report.md beside the facts)")
    args = parser.parse_args(argv)
    facts = pathlib.Path(args.facts)
    try:
        write_report(facts, args.out or facts.with_name("report.md"))
    except (OSError, ValueError, KeyError) as error:
        print("demo_report: cannot render %s: %s" % (facts, error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
