"""The overfit check: can the whole chain (labels, net, solver, decoding, COCO export) make a
net learn a handful of images by heart? Run it through ./scripts/overfit.sh.

    ./scripts/overfit.sh --out DIR [--coco ANN.json IMAGES_DIR [--image-ids 790,84533]]
        [--synthetic N] [--iters N] [--checks K] [--model mln] [--gpu 0|cpu]

Steps (each logged in DIR/logs/<step>.log, as the demo does):
  data      the images: --coco's annotation file (only --image-ids, when given), or N embedded
            synthetic images (data_prep/make_synthetic.py, default 4)
  pack      the training LMDB (data_prep/coco_to_lmdb.py)
  crops     every main person's un-augmented training crop as a COCO dataset, and per whole
            image the scale that shows its people at the trained size
            (scripts/training_crops.py)
  reference the all-zero and background-only losses on the training stream
            (scripts/reference_losses.py)
  train     scripts/train.sh with scripts/recipe.py's FROM_SCRATCH (the settings measured to
            learn fastest from scratch) and its augmentation preset
  check     AP of every snapshot on the training crops (the exact inputs: the geometry check)
            and on the whole images (inference/fit_check.py, OpenCV's DNN module)
Writes DIR/report.json, DIR/deploy.prototxt + DIR/final.caffemodel, DIR/pictures/ and prints
the loss curve beside the references and AP by iteration. Exit code 0 when it ran, whatever
the AP: the figures are the result.
"""
import argparse
import json
import pathlib
import shutil
import sys
import time

from steps import (CAFFE_PYTHON, VENV_PYTHON, StepFailed, Steps, prepare_out, run_steps,
                   select_images, train_in_stages)
from recipe import FROM_SCRATCH, SCHEDULES, stages

BATCH = 2                    # many small updates learn faster than few large ones (measured)
DEFAULT_ITERS = 900
DEFAULT_SYNTHETIC = 4
MARKER = ".mln-overfit"


def parse_ids(text):
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected image ids separated by commas, e.g. "
                                         "463557,790; got %r" % text)


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %s" % text)
    return value


def print_summary(report, curve, checks):
    print("\nloss (total of the 4 outputs) against the references: all-zero %.1f, "
          "background only %.1f" % (report["loss_zero"], report["background_only"]))
    step = max(1, len(curve) // 12)
    for iteration, value in curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else []):
        bar = "#" * min(60, int(40 * value / report["loss_zero"]))
        print("  iteration %5d  loss %7.1f  %s" % (iteration, value, bar))
    print("\nAP by iteration (pycocotools keypoint AP):")
    print("  iteration | crops AP | whole AP | whole AP50 | found")
    for check in checks:
        print("  %9d | %8.3f | %8.3f | %10.3f | %d" % (
            check["iteration"], check["AP_crops"], check["AP"], check["AP50"], check["found"]))


def run_overfit(args):
    settings = dict(FROM_SCRATCH, iters=args.iters, augmentation=args.augmentation,
                    stages=stages(args.augmentation, args.iters))
    out = pathlib.Path(args.out).resolve()
    prepare_out(out, MARKER, "scripts/overfit.py")
    started = time.time()
    run = Steps(out)

    run.section("data", "the images to learn")
    data = out / "data"
    data.mkdir()
    if args.coco:
        annotation_file = data / "train.json"
        images = pathlib.Path(args.coco[1]).resolve()
        if not images.is_dir():
            raise StepFailed("step 'data' failed: no image folder %s" % images)
        count = select_images(args.coco[0], args.image_ids, annotation_file)
        print("%d images of %s" % (count, args.coco[0]))
    else:
        run.run("data", VENV_PYTHON + ["data_prep/make_synthetic.py", "--out", data,
                                       "--train", args.synthetic, "--val", 0,
                                       "--seed", args.seed])
        annotation_file = data / "annotations" / "person_keypoints_train.json"
        images = data / "train"

    run.section("pack", "the training LMDB")
    lmdb = out / "train.lmdb"
    run.run("pack", CAFFE_PYTHON + ["data_prep/coco_to_lmdb.py", "--ann", annotation_file,
                                    "--images", images, "--out", lmdb])

    run.section("crops", "the un-augmented training crops and the whole-image scales")
    crops = out / "crops"
    run.run("crops", CAFFE_PYTHON + ["scripts/training_crops.py", "--lmdb", lmdb,
                                     "--crop", settings["crop"], "--out", crops])
    samples = len(json.loads((crops / "crops.json").read_text())["images"])
    if samples == 0:
        run.fail("crops", "no main person in the database")
    batch = min(samples, BATCH)

    every = max(1, args.iters // args.checks)
    curve, snapshots, references, train_dir = train_in_stages(
        run, out, args.model, lmdb, stages(args.augmentation, args.iters), batch, every,
        ["--gpu", args.gpu, "--workers", 1])

    run.section("check", "AP of the snapshots on the training crops and the whole images")
    deploy = train_dir / args.model / "deploy.prototxt"
    checks_file = out / "checks.json"
    run.run("check", VENV_PYTHON + ["inference/fit_check.py", "--deploy", deploy,
                                    "--snapshots"] + [path for _, path in snapshots] + [
        "--crops", crops, "--ann", annotation_file, "--images", images,
        "--viz", out / "pictures", "--json", checks_file])
    by_snapshot = json.loads(checks_file.read_text())
    checks = []
    for iteration, path in snapshots:
        check = by_snapshot[str(path)]
        checks.append({"iteration": iteration,
                       "AP": check["whole"]["metrics"]["AP"],
                       "AP50": check["whole"]["metrics"]["AP50"],
                       "AP_crops": check["crops"]["metrics"]["AP"],
                       "found": check["whole"]["found"],
                       "people": check["people"],
                       "whole_median_error_px": check["whole"]["median_error_px"],
                       "crops_median_error_px": check["crops"]["median_error_px"],
                       "crops_offset_px": check["crops"]["offset_px"]})
    shutil.copy(str(deploy), str(out / "deploy.prototxt"))
    shutil.copy(str(snapshots[-1][1]), str(out / "final.caffemodel"))
    final = checks[-1]
    report = {"AP": final["AP"], "AP50": final["AP50"], "AP_crops": final["AP_crops"],
              "iterations": final["iteration"], "seconds": round(time.time() - started, 1),
              "loss_first": curve[0][1] if curve else None,
              "loss_last": curve[-1][1] if curve else None,
              "background_only": references["background_only"],
              "loss_zero": references["zero"], "people": final["people"],
              "found": final["found"], "samples": samples, "batch": batch,
              "model": args.model, "recipe": settings,
              "curve": curve, "checks": checks, "step_seconds": run.seconds}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print_summary(report, curve, checks)
    print("\noverfit: AP %.3f on the whole images, %.3f on the training crops, after %d "
          "iterations in %.0f s; everything is in %s"
          % (report["AP"], report["AP_crops"], report["iterations"], report["seconds"], out))
    return report


def build_parser():
    parser = argparse.ArgumentParser(
        prog="./scripts/overfit.sh",
        description="The overfit check: train on a handful of images, then evaluate the "
                    "snapshots on their training crops and on the whole images.")
    parser.add_argument("--out", required=True, help="output folder (a previous check's is "
                                                     "replaced)")
    parser.add_argument("--coco", nargs=2, metavar=("ANN_JSON", "IMAGES_DIR"),
                        help="COCO-format keypoint data (default: embedded synthetic images)")
    parser.add_argument("--image-ids", type=parse_ids,
                        help="with --coco: only these images, e.g. 463557,535506,84533,790")
    parser.add_argument("--synthetic", type=positive, default=DEFAULT_SYNTHETIC,
                        help="without --coco: how many synthetic images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="without --coco: the synthetic images' seed (default %(default)s)")
    parser.add_argument("--iters", type=positive, default=DEFAULT_ITERS,
                        help="training iterations (default %(default)s)")
    parser.add_argument("--checks", type=positive, default=4,
                        help="snapshots evaluated, evenly spaced (default %(default)s)")
    parser.add_argument("--augmentation", choices=sorted(SCHEDULES), default="curriculum",
                        help="curriculum (default): 30%% of the iterations on the exact "
                             "crops, 55%% shifted and rescaled so that whole images are found, "
                             "the last 15%% on the exact crops at a tenth of the rate "
                             "(scripts/recipe.py); none: the exact crops only (learnt fastest; "
                             "only the crop AP means something); mild, shift: that augmentation "
                             "throughout")
    parser.add_argument("--model", choices=("mln", "baseline"), default="mln")
    parser.add_argument("--gpu", default="0",
                        help="GPU id, or cpu (default 0: the GPU when Caffe has one)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.image_ids and not args.coco:
        build_parser().error("--image-ids needs --coco")
    return run_steps("overfit", run_overfit, args)


if __name__ == "__main__":
    sys.exit(main())
