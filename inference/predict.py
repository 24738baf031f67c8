"""Multi-person pose estimation with a deploy net: images -> COCO keypoint results (+ pictures).

    python inference/predict.py --deploy prototxt/mln/deploy.prototxt --weights mln.caffemodel \
        --images DIR --out results.json [--backend opencv|caffe] [--scales 1.0 ...] [--viz DIR]
    python inference/predict.py ... --ann person_keypoints_val2017.json --images val2017/ ...

The command line of inference/prediction.py, which does the work and says how (OpenPose's test
code: resize, pad, forward, upsample, average the scales, group) and how odd inputs are handled.
--viz draws the skeletons. With --ann the images are those of the annotation file (image ids
from it; file_names may lie in subfolders); otherwise every file of the folder (image id = the
file name's number, as COCO names files; files without one get -1, -2, ..., and are named;
each result also carries its file_name). At the end a summary on stderr: images, people, the
skipped files with their reasons, the conversions and the grouping's counts (merges,
conflicts, people dropped, neck-less joins).

Bad input stops the run with one line naming the file or option, before anything is written:
the options, the annotation file, the net's files (weights that leave layers of the prototxt
without parameters included: inference/backends.py), and the folders of --out and --viz.

Resumable: finished images are appended to OUT.partial.jsonl; a second run with the same
result settings continues from there (the net's files compared by contents, so a path written
another way is the same), trying the skipped images again; --no-resume starts over,
--keep-finished goes on from images made with another --backend. OUT is written when all are
done; a run in which no image could be processed fails and writes nothing.
"""
import argparse
import collections
import json
import math
import os
import pathlib
import sys

from inference import backends, grouping, onnx_backends
from inference.prediction import (Checkpoint, CheckpointError, InputError, annotation_jobs,
                                  check_jobs_present, file_setting, folder_jobs, job_key,
                                  process_job)


def progress(items, description):
    """tqdm when it is installed, else a line every 10% on stderr."""
    try:
        from tqdm import tqdm
        return tqdm(items, desc=description, unit="image")
    except ImportError:
        return _plain_progress(items, description)


def _plain_progress(items, description):
    step = max(1, len(items) // 10)
    for index, item in enumerate(items):
        if index % step == 0:
            print("%s: %d/%d" % (description, index, len(items)), file=sys.stderr)
        yield item


def _say(message):
    print("predict: %s" % message, file=sys.stderr)


SHOWN_PER_REASON = 10       # skipped files named one by one; the rest are counted


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Multi-person pose estimation with a deploy net (MLN or the OpenPose "
                    "baseline): images -> COCO keypoint results JSON, optional skeleton "
                    "pictures. Resumable.")
    parser.add_argument("--deploy", required=True, help="deploy prototxt (output net_output)")
    parser.add_argument("--weights", required=True, help="caffemodel")
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--ann", help="COCO annotation JSON: process its images (ids from it)")
    parser.add_argument("--out", required=True, help="results JSON (COCO format) to write")
    parser.add_argument("--backend", choices=backends.BACKENDS, default="opencv",
                        help="opencv: OpenCV's DNN module (no Caffe needed; default); "
                             "caffe: pycaffe; openvino, onnxruntime: the net exported to ONNX "
                             "(fastest on CPUs; --precision bf16/int8)")
    onnx_backends.add_arguments(parser)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="input heights as multiples of 368, averaged (OpenPose's "
                             "multi-scale test: 0.5 1 1.5 2); default 1.0")
    parser.add_argument("--flip", action="store_true",
                        help="also run the mirrored image at every scale and average its maps, "
                             "mapped back with left and right swapped (test-time flip)")
    parser.add_argument("--viz", help="folder for pictures of the skeletons")
    parser.add_argument("--smooth-sigma", type=float, default=None,
                        help="blur heatmaps before peak finding (OpenPose's Python demo: %g); "
                             "default: no blur, as OpenPose's C++ and COCO evaluation code"
                             % grouping.DEMO_SMOOTH_SIGMA)
    parser.add_argument("--keep-neckless", action="store_true",
                        help="join neck-less partial people (see inference/README.md)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if OUT.partial.jsonl exists")
    parser.add_argument("--keep-finished", action="store_true",
                        help="resume from OUT.partial.jsonl although it was written with "
                             "another --backend (the same net: rounding differences only)")
    return parser.parse_args(argv)


def check_arguments(args):
    """Options that cannot work stop the run before anything is read or written."""
    bad = [s for s in args.scales if not (math.isfinite(s) and s > 0)]
    if bad:
        raise InputError("--scales must be positive finite numbers, got %s"
                         % " ".join(str(s) for s in bad))
    if args.smooth_sigma is not None and not (math.isfinite(args.smooth_sigma)
                                              and args.smooth_sigma >= 0):
        raise InputError("--smooth-sigma must be a finite number >= 0, got %s"
                         % args.smooth_sigma)
    if not pathlib.Path(args.images).is_dir():
        raise InputError("--images %s is not a folder: pass the folder of the images"
                         % args.images)
    out = pathlib.Path(args.out)
    if out.is_dir():
        raise InputError("--out %s is a folder: name the results file (e.g. %s)"
                         % (out, out / "results.json"))
    if not out.absolute().parent.is_dir():
        raise InputError("--out %s: the folder %s does not exist: create it or name another"
                         % (out, out.absolute().parent))
    if args.viz and pathlib.Path(args.viz).exists() and not pathlib.Path(args.viz).is_dir():
        raise InputError("--viz %s is a file: name a folder for the pictures" % args.viz)


def image_jobs(args):
    """The images to process, with a word on those that are missing or have no id."""
    if args.ann:
        jobs = annotation_jobs(args.ann, args.images)
        missing = check_jobs_present(jobs, args.images, args.ann)
        if missing:
            _say("%d of the %d images of --ann %s are not in --images %s (e.g. %s): they are "
                 "skipped" % (len(missing), len(jobs), args.ann, args.images, missing[0].key))
        return jobs
    jobs = folder_jobs(args.images)
    unnumbered = [job_key(job) for job in jobs if job.image_id < 0]
    if unnumbered:
        ids = "-1" if len(unnumbered) == 1 else "-1 to -%d" % len(unnumbered)
        _say("files with no COCO number for a name, or sharing one: %d of %d (%s%s): image "
             "ids %s, which no ground truth has; their results carry file_name"
             % (len(unnumbered), len(jobs), ", ".join(unnumbered[:3]),
                ", ..." if len(unnumbered) > 3 else "", ids))
    return jobs


def run_settings(args):
    """What the checkpoint records and compares (prediction.RESULT_SETTINGS): the net's files
    by their contents, the folder by its real path."""
    return {"deploy": file_setting(args.deploy), "weights": file_setting(args.weights),
            "images": os.path.realpath(args.images),
            "ann": os.path.realpath(args.ann) if args.ann else None,
            "backend": args.backend, "precision": args.precision,
            # an int8 model is only as good as the images it was calibrated on
            "calibration": ({"images": os.path.realpath(args.calibrate) if args.calibrate
                             else None, "count": args.calibration_images}
                            if args.precision == "int8" else None),
            "scales": args.scales, "flip": args.flip, "smooth_sigma": args.smooth_sigma,
            "keep_neckless": args.keep_neckless}


def open_checkpoint(args, settings):
    path = str(args.out) + ".partial.jsonl"
    try:
        return Checkpoint(path, settings, not args.no_resume, args.keep_finished)
    except OSError as error:
        raise InputError("cannot write %s beside --out: %s: name a folder you can write in"
                         % (path, error.strerror or error))


def run_images(jobs, checkpoint, backend, args, on_image):
    """Process the images not finished yet -> the grouping's and the conversions' counts."""
    # a finished image counts only with the id this run gives it (--ann may have changed)
    todo = [job for job in jobs
            if checkpoint.done.get(job_key(job), {}).get("image_id") != job.image_id]
    if len(todo) < len(jobs):
        _say("resuming: %d of %d images already done" % (len(jobs) - len(todo), len(jobs)))
    if args.viz:
        pathlib.Path(args.viz).mkdir(parents=True, exist_ok=True)
    stats = collections.Counter()
    for job in progress(todo, "predict"):
        entry = process_job(job, backend, args.scales, args.smooth_sigma, args.keep_neckless,
                            args.viz, stats, args.flip)
        checkpoint.add(entry)
        if on_image is not None:
            on_image(entry)
    return stats


def report_skipped(jobs, done):
    """Name the skipped images (the first few of each reason), count them -> how many."""
    skipped = collections.defaultdict(list)
    for job in jobs:
        reason = done[job_key(job)].get("skipped")
        if reason is not None:
            skipped[reason].append(job_key(job))
    for reason, keys in sorted(skipped.items()):
        for key in keys[:SHOWN_PER_REASON]:
            _say("skipped %s: %s" % (key, reason))
        if len(keys) > SHOWN_PER_REASON:
            _say("... and %d more: %s" % (len(keys) - SHOWN_PER_REASON, reason))
        _say("skipped (%s): %d" % (reason, len(keys)))
    return sum(len(keys) for keys in skipped.values())


def write_results(results, out, checkpoint):
    """Write the results file (through a temporary, so that it is whole or absent), then drop
    the checkpoint; when it cannot be written the checkpoint stays, for the next run."""
    temporary = str(out) + ".tmp"
    try:
        with open(temporary, "w") as handle:
            json.dump(results, handle)
        os.replace(temporary, str(out))
    except OSError as error:
        if os.path.isfile(temporary):
            os.remove(temporary)
        raise InputError("cannot write --out %s: %s; the finished images stay in %s: run the "
                         "same command again once it can be written"
                         % (out, error.strerror or error, checkpoint.path))
    os.remove(str(checkpoint.path))


def main(argv=None, on_image=None):
    """-> exit code. on_image: called with each image's checkpoint entry once it is saved (the
    tests interrupt a run there)."""
    args = parse_arguments(argv)
    try:
        return run(args, on_image)
    except (InputError, CheckpointError, backends.BackendError) as error:
        _say("error: %s" % error)
        return 1
    except KeyboardInterrupt:               # while loading the net: nothing was written yet
        _say("interrupted before the first image")
        return 130


def run(args, on_image):
    # everything is checked before the checkpoint is written: a typo leaves nothing behind
    check_arguments(args)
    jobs = image_jobs(args)
    backend = backends.make_backend(args.backend, args.deploy, args.weights,
                                    **onnx_backends.backend_options(args))
    checkpoint = open_checkpoint(args, run_settings(args))
    try:
        stats = run_images(jobs, checkpoint, backend, args, on_image)
    except KeyboardInterrupt:
        _say("interrupted after %d of %d images; run the same command again to go on"
             % (len(checkpoint.done), len(jobs)))
        return 130
    except backends.BackendError:
        checkpoint.close()
        checkpoint.remove_if_unfinished()
        raise
    finally:
        checkpoint.close()

    skipped = report_skipped(jobs, checkpoint.done)
    if skipped == len(jobs):
        checkpoint.remove_if_unfinished()
        raise InputError("none of the %d images could be processed (the reasons are above); "
                         "nothing written to %s" % (len(jobs), args.out))
    results = [result for job in jobs
               for result in checkpoint.done[job_key(job)].get("results", [])]
    write_results(results, args.out, checkpoint)
    with_people = len({r["image_id"] for r in results})
    _say("%d images, %d people on %d of them -> %s"
         % (len(jobs) - skipped, len(results), with_people, args.out))
    for note, count in sorted(stats.items()):
        _say("%s: %d" % (note, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
