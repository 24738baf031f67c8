"""The main job, end to end, into one folder with a report (run it through ./scripts/demo.sh).

    ./scripts/demo.sh [--quick] [--coco ANN.json IMAGES_DIR] [--out runs/demo] [--gpu 0|cpu]

Steps, each timed, its output shown as it runs and kept in OUT/logs/<step>.log; a failing step
stops the demo with its name and its log:

  nets      MLN and baseline nets (generators/make_net.py), counted by generators/stats.py
            beside the paper's Table 2
  data      the embedded synthetic dataset (data_prep/make_synthetic.py), or a train / held-out
            split of --coco's annotation file
  pack      the training LMDB with its loss masks (data_prep/coco_to_lmdb.py)
  init      the untrained network: the deploy net's own fillers, seeded
            (inference/random_weights.py --init fillers); training starts from exactly these
  train     MLN from those weights with scripts/recipe.py's curriculum (Adam; the exact crops,
            then shifted), one scripts/train.sh run per stage (scripts/steps.py); the GPU when
            Caffe has one, else the CPU
  reference before each stage, what two trivial predictions (all zero; the background channel
            alone) score on its stream (python_layers/reference_losses.py): what the loss curve
            means
  predict   the held-out images through the untrained and the trained network, the first
            training images through the trained one (inference/predict.py, OpenCV's DNN
            module), skeleton pictures of the trained one
  evaluate  pycocotools keypoint AP of all three (inference/evaluate.py)
  report    OUT/report.md: what ran, with which settings, how long each step took, the figures

This file needs only Python's standard library: demo.sh runs it with the deploy venv's Python
and every step in the environment it needs (scripts/caffe-env for Caffe, lmdb and the packer).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import sys
import time

from recipe import AUGMENTATIONS, FROM_SCRATCH, SEED, stages
from steps import (CAFFE_PYTHON, REPO, VENV_PYTHON, StepFailed, Steps, prepare_out, run_steps,
                   select_images, train_in_stages)
MARKER = ".mln-demo"            # marks a folder the demo made, so a rerun may replace it
INFERENCE_BOX = 368             # OpenPose's inference height for scale 1 (a 368 training crop)
METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")

# The two modes. Training costs ~0.9 s per sample at crop 128 on the 2-core machine (Caffe CPU,
# MLN forward and backward), which sets the iteration counts: --quick finishes within 3 minutes
# after Caffe's setup, the default within 15. Training follows scripts/recipe.py (what learns
# fastest from scratch: a few images learnt by heart); `fit_images` of the training images are
# evaluated too.
MODES = {
    "quick": dict(train_images=4, val_images=8, fit_images=4, iters=40, batch=2),
    "default": dict(train_images=6, val_images=40, fit_images=6, iters=400, batch=2),
}
SCHEDULE = "curriculum"          # scripts/recipe.py: the exact crops first, then shifted


def split_coco(annotation_file, out_dir, every=10):
    """Write a train and a held-out annotation file from a COCO keypoint file: every `every`-th
    image that has a labelled person (by image id) is held out. -> (train json, val json)."""
    try:
        with open(str(annotation_file)) as handle:
            coco = json.load(handle)
        images, annotations = coco["images"], coco["annotations"]
    except (OSError, ValueError, KeyError) as error:
        raise StepFailed("step 'data' failed: cannot read the COCO keypoint file %s: %s"
                         % (annotation_file, error))
    with_people = sorted({a["image_id"] for a in annotations
                          if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0})
    if len(with_people) < 2:
        raise StepFailed("step 'data' failed: %s has %d images with labelled people; the demo "
                         "needs at least 2 (one to train on, one to hold out)"
                         % (annotation_file, len(with_people)))
    held_out = set(with_people[every - 1::every]) or {with_people[-1]}
    paths = []
    for name, keep in (("train", lambda i: i not in held_out), ("val", lambda i: i in held_out)):
        part = dict(coco, images=[i for i in images if keep(i["id"])],
                    annotations=[a for a in annotations if keep(a["image_id"])])
        path = out_dir / ("person_keypoints_%s.json" % name)
        path.write_text(json.dumps(part))
        paths.append(path)
    return paths


def count_people(annotation_file):
    annotations = json.loads(pathlib.Path(annotation_file).read_text())["annotations"]
    return sum(1 for a in annotations if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0)


def read_stats(path):
    stats = json.loads(path.read_text())
    return stats["total"], stats["paper_table_2"]


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def opencv_version():
    import cv2          # the deploy venv's, which predict.py used; not needed for --help
    return cv2.__version__


def machine_description():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            found = re.search(r"model name\s*:\s*(.*)", handle.read())
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    return "%s, %d cores, %s" % (model, os.cpu_count() or 0, platform.system())


def caffe_description():
    state = pathlib.Path(os.environ.get("MLN_CAFFE_DIR", REPO / ".caffe"))
    if (state / "host.env").is_file():
        return "the host's own Caffe (%s)" % (state / "host.env")
    return "the embedded Caffe 1.0 (Debian bullseye, CPU build) in %s" % (state / "root")


def write_report(out, args, settings, facts, demo):
    nets = facts["nets"]
    train = facts["train"]
    evaluation = facts["evaluation"]
    lines = ["# MLN demo report", "",
             "Command: `./scripts/demo.sh %s` — %s mode, written %s." % (
                 " ".join(args.argv), "quick" if args.quick else "default",
                 datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
             "",
             "- Machine: %s." % machine_description(),
             "- Caffe: %s; training ran on the %s." % (caffe_description(),
                                                      train["device"].upper()),
             "- Inference: OpenCV %s DNN module in the deploy venv (`inference/predict.py`)."
             % facts["opencv"],
             "", "## Steps", "", "| step | seconds |", "|---|---|"]
    for step, seconds in demo.seconds.items():
        lines.append("| %s | %.1f |" % (step, seconds))
    lines += ["| **total** | **%.1f** |" % sum(demo.seconds.values()), "",
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
                  settings["weight_decay"], SEED, len(settings["stages"]),
                  ", then ".join("%d iterations with augmentation `%s` (`--data-param '%s'`)"
                                 % (count, preset, json.dumps(AUGMENTATIONS[preset],
                                                              sort_keys=True))
                                 for preset, count in settings["stages"]),
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
              "every part and limb zero %.1f (`python_layers/reference_losses.py`)."
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
    for picture in sorted((out / "pictures" / "trained").glob("*"))[:6]:
        lines.append("- [%s](pictures/trained/%s)" % (picture.name, picture.name))
    lines += ["", "## Files", "",
              "`nets/` generated nets and their counts; `data/` the dataset; `train.lmdb`; "
              "`untrained.caffemodel`; `train/` the training run (nets for its settings, "
              "settings, Caffe's log, snapshots); `results/` COCO results and metrics of each "
              "evaluation; `logs/` every step's output.", ""]
    (out / "report.md").write_text("\n".join(lines))


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


# ------------------------------------------------------------------------------ the steps

def run_demo(args):
    settings = dict(FROM_SCRATCH, **MODES["quick" if args.quick else "default"])
    out = pathlib.Path(args.out).resolve()
    prepare_out(out, MARKER, "scripts/demo.py")
    demo = Steps(out)
    facts = {}

    demo.section("nets", "generate MLN and the baseline, count them against Table 2")
    demo.run("nets", CAFFE_PYTHON + ["generators/make_net.py", "--model", "all",
                                     "--out", out / "nets"])
    facts["nets"] = {}
    for name in ("mln", "baseline"):
        counts = out / "nets" / ("%s_stats.json" % name)
        demo.run("nets", CAFFE_PYTHON + ["generators/stats.py",
                                         out / "nets" / name / "deploy.prototxt",
                                         "--compare-paper", "--totals-only", "--json-file", counts])
        facts["nets"][name] = read_stats(counts)

    demo.section("data", "the embedded synthetic dataset" if not args.coco
                 else "a train / held-out split of %s" % args.coco[0])
    data_dir = out / "data"
    if args.coco:
        annotation_file, images = pathlib.Path(args.coco[0]), pathlib.Path(args.coco[1])
        if not images.is_dir():
            raise StepFailed("step 'data' failed: no image folder %s" % images)
        data_dir.mkdir()
        started = time.time()
        train_json, val_json = split_coco(annotation_file, data_dir)
        demo.seconds["data"] = time.time() - started
        train_images = val_images = images.resolve()
        source = "COCO-format data from %s (images %s)" % (annotation_file, images)
    else:
        demo.run("data", VENV_PYTHON + ["data_prep/make_synthetic.py", "--out", data_dir,
                                        "--train", settings["train_images"],
                                        "--val", settings["val_images"], "--seed", SEED])
        train_json = data_dir / "annotations" / "person_keypoints_train.json"
        val_json = data_dir / "annotations" / "person_keypoints_val.json"
        train_images, val_images = data_dir / "train", data_dir / "val"
        source = ("the embedded synthetic dataset (`data_prep/make_synthetic.py --seed %d`: "
                  "procedurally drawn people, occlusion, unannotated people, crowd regions)"
                  % SEED)

    demo.section("pack", "the training LMDB with its loss masks")
    pack_log = demo.run("pack", CAFFE_PYTHON + ["data_prep/coco_to_lmdb.py", "--ann", train_json,
                                                "--images", train_images,
                                                "--out", out / "train.lmdb"])
    packed = pack_log.read_text(errors="replace")
    records = int(re.search(r"records written\s+(\d+)", packed).group(1))
    if records == 0:
        demo.fail("pack", "no record written: no training image has a main person; the "
                          "reasons each image was left out are in the log")
    facts["data"] = {
        "source": source,
        "train_images": len(json.loads(train_json.read_text())["images"]),
        "records": records,
        "main_persons": int(re.search(r"main persons\s+(\d+)", packed).group(1)),
        "val_images": len(json.loads(val_json.read_text())["images"]),
        "val_people": count_people(val_json),
    }

    demo.section("init", "the untrained network (the deploy net's own fillers, seed %d)" % SEED)
    deploy = out / "nets" / "mln" / "deploy.prototxt"
    untrained = out / "untrained.caffemodel"
    demo.run("init", CAFFE_PYTHON + ["inference/random_weights.py", "--deploy", deploy,
                                     "--out", untrained, "--init", "fillers", "--seed", SEED])

    settings["stages"] = stages(SCHEDULE, settings["iters"])
    curve, snapshots, reference, run_dir = train_in_stages(
        demo, out, "mln", out / "train.lmdb", settings["stages"], settings["batch"],
        settings["iters"], ["--gpu", args.gpu, "--workers", 1], initial_weights=untrained)
    params = json.loads((run_dir / "params.json").read_text())
    facts["train"] = {"device": params["sessions"][-1]["device"], "losses": curve}
    demo.run("train", [REPO / "scripts" / "plot_log"]
             + sorted((out / "train").glob("stage*/caffe.log")) + ["--out", out / "loss.png",
                                                                  "--title", "MLN, the demo"])
    trained = snapshots[-1][1]
    facts["reference"] = reference

    facts["scale"] = settings["crop"] / float(INFERENCE_BOX)
    fit_json = data_dir / "person_keypoints_fit.json"
    first_ids = [entry["id"] for entry in
                 json.loads(train_json.read_text())["images"][:settings["fit_images"]]]
    facts["data"]["fit_images"] = select_images(train_json, first_ids, fit_json)
    demo.section("predict", "%d held-out images through the untrained and the trained network, "
                 "%d training images through the trained one"
                 % (facts["data"]["val_images"], facts["data"]["fit_images"]))
    (out / "results").mkdir()
    evaluations = {"untrained": (untrained, val_json, val_images),
                   "trained": (trained, val_json, val_images),
                   "trained_on_training_images": (trained, fit_json, train_images)}
    for name, (weights, annotations, images) in evaluations.items():
        command = VENV_PYTHON + ["inference/predict.py", "--deploy", run_dir / "mln" /
                                 "deploy.prototxt", "--weights", weights, "--ann", annotations,
                                 "--images", images, "--out",
                                 out / "results" / ("%s.json" % name),
                                 "--scales", "%.4f" % facts["scale"]]
        if name != "untrained":
            command += ["--viz", out / "pictures" / name]
        demo.run("predict", command)

    demo.section("evaluate", "pycocotools keypoint AP")
    facts["evaluation"] = {}
    for name, (_, annotations, _) in evaluations.items():
        results = out / "results" / ("%s.json" % name)
        metrics = out / "results" / ("%s_metrics.json" % name)
        demo.run("evaluate", VENV_PYTHON + ["inference/evaluate.py", "--ann", annotations,
                                            "--results", results, "--json", metrics])
        facts["evaluation"][name] = (json.loads(metrics.read_text()),
                                     len(json.loads(results.read_text())))

    facts["opencv"] = opencv_version()
    demo.section("report", "%s" % (out / "report.md"))
    write_report(out, args, settings, facts, demo)
    print((out / "report.md").read_text())
    print("demo: done in %.0f s; everything is in %s" % (sum(demo.seconds.values()), out))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="./scripts/demo.sh",
        description="MLN end to end: nets and their Table 2 counts, data, LMDB, a short training "
                    "run, prediction and COCO evaluation of the untrained and the trained "
                    "network, and OUT/report.md.")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller run: within 3 minutes after Caffe's setup on 2 cores "
                             "(default mode: within 15)")
    parser.add_argument("--coco", nargs=2, metavar=("ANN_JSON", "IMAGES_DIR"),
                        help="real COCO-format keypoint data instead of the embedded synthetic "
                             "set; every 10th image with people is held out for evaluation")
    parser.add_argument("--out", default=str(REPO / "runs" / "demo"),
                        help="output folder (default runs/demo; a previous demo's is replaced)")
    parser.add_argument("--gpu", default="0",
                        help="GPU id for training, or cpu (default 0: the GPU when Caffe has "
                             "CUDA and one is present, else the CPU with a notice)")
    args = parser.parse_args(argv)
    args.argv = argv
    return run_steps("demo", run_demo, args)


if __name__ == "__main__":
    sys.exit(main())
