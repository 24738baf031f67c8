"""The main job, end to end, into one folder with a report (run it through ./scripts/demo.sh).

    ./scripts/demo.sh [--quick] [--coco ANN.json IMAGES_DIR] [--out runs/demo] [--gpu 0|cpu]

Steps, each timed, its output shown as it runs and kept in OUT/logs/<step>.log; a failing step
stops the demo with its name and its log:

  nets      MLN and baseline nets (generators/make_net.py), counted by generators/stats.py
            beside the paper's Table 2
  data      the embedded synthetic dataset (data_prep/make_synthetic.py), or a train / held-out
            split of --coco's annotation file
  pack      the training LMDB with its loss masks (data_prep/coco_to_lmdb.py); its metadata,
            the packing summary with it, as JSON (data_prep/inspect_lmdb.py --json)
  init      the untrained network: the deploy net's own fillers, seeded
            (inference/random_weights.py --init fillers); training starts from exactly these
  train     MLN from those weights with scripts/recipe.py's settings and curriculum (the exact
            crops, then shifted, then the exact crops at a tenth of the rate), one
            scripts/train.sh run per stage (scripts/steps.py); the
            GPU when Caffe has one, else the CPU
  reference before each stage, what two trivial predictions (all zero; the background channel
            alone) score on its stream (scripts/reference_losses.py): what the loss curve
            means
  predict   the held-out images through the untrained and the trained network, the first
            training images through the trained one (inference/predict.py, OpenCV's DNN
            module), skeleton pictures of the trained one
  evaluate  pycocotools keypoint AP of all three (inference/evaluate.py)
  report    OUT/facts.json, the figures the steps collected from the tools' JSON files, and
            OUT/report.md rendered from it (scripts/demo_report.py)

This file needs only Python's standard library to start (--help): demo.sh runs it with the
deploy venv's Python and every step in the environment it needs (scripts/steps.py).
"""
import argparse
import datetime
import json
import pathlib
import sys
import time

from demo_report import write_report
from recipe import AUGMENTATIONS, FROM_SCRATCH, SEED, stages
from steps import (CAFFE_DIR, CAFFE_PYTHON, REPO, VENV_PYTHON, StepFailed, Steps, prepare_out,
                   run_steps, select_images, train_in_stages)
MARKER = ".mln-demo"            # marks a folder the demo made, so a rerun may replace it

# The two modes. Training costs ~0.9 s per sample at crop 128 on the 2-core machine (Caffe CPU,
# MLN forward and backward), which sets the iteration counts: --quick finishes within 3 minutes
# after Caffe's setup, the default within 15. Training follows scripts/recipe.py (what learns
# fastest from scratch: a few images learnt by heart); `fit_images` of the training images are
# evaluated too.
MODES = {
    "quick": dict(train_images=4, val_images=8, fit_images=4, iters=40, batch=2),
    "default": dict(train_images=6, val_images=40, fit_images=6, iters=400, batch=2),
}
SCHEDULE = "curriculum"          # scripts/recipe.py: exact crops, shifted, exact at lr / 10


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


def caffe_description():
    if (CAFFE_DIR / "host.env").is_file():
        return "the host's own Caffe (%s)" % (CAFFE_DIR / "host.env")
    return "the embedded Caffe 1.0 (Debian bullseye, CPU build) in %s" % (CAFFE_DIR / "root")


def environment():
    """The machine and the software the demo ran on, for the report."""
    import cv2          # the deploy venv's, which predict.py used; not needed for --help
    from inference.benchmark import machine
    return {"machine": machine(), "caffe": caffe_description(), "opencv": cv2.__version__}


# ------------------------------------------------------------------------------ the steps

def make_nets(demo, out):
    demo.section("nets", "generate MLN and the baseline, count them against Table 2")
    demo.run("nets", CAFFE_PYTHON + ["generators/make_net.py", "--model", "all",
                                     "--out", out / "nets"])
    nets = {}
    for name in ("mln", "baseline"):
        counts = out / "nets" / ("%s_stats.json" % name)
        demo.run("nets", CAFFE_PYTHON + ["generators/stats.py",
                                         out / "nets" / name / "deploy.prototxt",
                                         "--compare-paper", "--totals-only", "--json-file", counts])
        nets[name] = read_stats(counts)
    return nets


def make_data(demo, out, args, settings):
    """-> (train json, val json, train images folder, val images folder, source in words)."""
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
        return (train_json, val_json, images.resolve(), images.resolve(),
                "COCO-format data from %s (images %s)" % (annotation_file, images))
    demo.run("data", VENV_PYTHON + ["data_prep/make_synthetic.py", "--out", data_dir,
                                    "--train", settings["train_images"],
                                    "--val", settings["val_images"], "--seed", SEED])
    return (data_dir / "annotations" / "person_keypoints_train.json",
            data_dir / "annotations" / "person_keypoints_val.json",
            data_dir / "train", data_dir / "val",
            "the embedded synthetic dataset (`data_prep/make_synthetic.py --seed %d`: "
            "procedurally drawn people, occlusion, unannotated people, crowd regions)" % SEED)


def pack(demo, out, train_json, train_images):
    """The training LMDB -> its packing summary (data_prep/coco_to_lmdb.py's, from the LMDB's
    metadata)."""
    demo.section("pack", "the training LMDB with its loss masks")
    lmdb = out / "train.lmdb"
    demo.run("pack", CAFFE_PYTHON + ["data_prep/coco_to_lmdb.py", "--ann", train_json,
                                     "--images", train_images, "--out", lmdb])
    metadata = out / "packing.json"
    demo.run("pack", CAFFE_PYTHON + ["data_prep/inspect_lmdb.py", lmdb, "--json", metadata])
    summary = json.loads(metadata.read_text())["summary"]
    if summary["records"] == 0:
        demo.fail("pack", "no record written: no training image has a main person; the "
                          "reasons each image was left out are in the log")
    return summary


def predict_and_evaluate(demo, out, facts, evaluations, deploy):
    """Predict and evaluate each of evaluations {name: (weights, annotation file, images)} ->
    {name: (metrics, people found)}."""
    demo.section("predict", "%d held-out images through the untrained and the trained network, "
                 "%d training images through the trained one"
                 % (facts["data"]["val_images"], facts["data"]["fit_images"]))
    (out / "results").mkdir()
    for name, (weights, annotations, images) in evaluations.items():
        command = VENV_PYTHON + ["inference/predict.py", "--deploy", deploy,
                                 "--weights", weights, "--ann", annotations,
                                 "--images", images, "--out",
                                 out / "results" / ("%s.json" % name),
                                 "--scales", "%.4f" % facts["scale"]]
        if name != "untrained":
            command += ["--viz", out / "pictures" / name]
        demo.run("predict", command)

    demo.section("evaluate", "pycocotools keypoint AP")
    evaluation = {}
    for name, (_, annotations, _) in evaluations.items():
        results = out / "results" / ("%s.json" % name)
        metrics = out / "results" / ("%s_metrics.json" % name)
        demo.run("evaluate", VENV_PYTHON + ["inference/evaluate.py", "--ann", annotations,
                                            "--results", results, "--json", metrics])
        evaluation[name] = (json.loads(metrics.read_text()),
                            len(json.loads(results.read_text())))
    return evaluation


def run_demo(args):
    from conventions.geometry import BOX_SIZE   # the deploy venv's package; not for --help
    settings = dict(FROM_SCRATCH, **MODES["quick" if args.quick else "default"])
    out = pathlib.Path(args.out).resolve()
    prepare_out(out, MARKER, "scripts/demo.py")
    demo = Steps(out)
    facts = {"command": [str(a) for a in args.argv],
             "mode": "quick" if args.quick else "default"}

    facts["nets"] = make_nets(demo, out)
    train_json, val_json, train_images, val_images, source = make_data(demo, out, args, settings)
    summary = pack(demo, out, train_json, train_images)
    facts["data"] = {
        "source": source,
        "train_images": len(json.loads(train_json.read_text())["images"]),
        "records": summary["records"],
        "main_persons": summary["main_persons"],
        "val_images": len(json.loads(val_json.read_text())["images"]),
        "val_people": count_people(val_json),
    }

    demo.section("init", "the untrained network (the deploy net's own fillers, seed %d)" % SEED)
    deploy = out / "nets" / "mln" / "deploy.prototxt"
    untrained = out / "untrained.caffemodel"
    demo.run("init", CAFFE_PYTHON + ["inference/random_weights.py", "--deploy", deploy,
                                     "--out", untrained, "--init", "fillers", "--seed", SEED])

    settings["stages"] = stages(SCHEDULE, settings["iters"])
    settings["seed"] = SEED
    settings["augmentations"] = {preset: AUGMENTATIONS[preset] for preset, _, _ in settings["stages"]}
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
    facts["settings"] = settings

    facts["scale"] = settings["crop"] / float(BOX_SIZE)
    fit_json = out / "data" / "person_keypoints_fit.json"
    first_ids = [entry["id"] for entry in
                 json.loads(train_json.read_text())["images"][:settings["fit_images"]]]
    facts["data"]["fit_images"] = select_images(train_json, first_ids, fit_json)
    facts["evaluation"] = predict_and_evaluate(demo, out, facts, {
        "untrained": (untrained, val_json, val_images),
        "trained": (trained, val_json, val_images),
        "trained_on_training_images": (trained, fit_json, train_images)},
        run_dir / "mln" / "deploy.prototxt")
    facts["pictures"] = sorted(p.name for p in (out / "pictures" / "trained").glob("*"))

    facts.update(environment())
    facts["seconds"] = demo.seconds
    facts["written"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    demo.section("report", "%s" % (out / "report.md"))
    (out / "facts.json").write_text(json.dumps(facts, indent=1))
    print(write_report(out / "facts.json", out / "report.md"))
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
