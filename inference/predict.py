"""Multi-person pose estimation with a deploy net: images -> COCO keypoint results (+ pictures).

    python inference/predict.py --deploy prototxt/mln/deploy.prototxt --weights mln.caffemodel \
        --images DIR --out results.json [--backend opencv|caffe] [--scales 1.0 ...] [--viz DIR]
    python inference/predict.py ... --ann person_keypoints_val2017.json --images val2017/ ...

The command line of inference/prediction.py, which does the work and says how (OpenPose's test
code: resize, pad, forward, upsample, average the scales, group) and how odd inputs are handled.
--viz draws the skeletons. With --ann the images are those of the annotation file (image ids
from it); otherwise every file of the folder (image id = the file name's number, as COCO names
files, else its position in the sorted listing; each result also carries its file_name). At the
end a summary on stderr: images, people, the skipped files with their reasons, the conversions
and the grouping's counts (merges, conflicts, people dropped, neck-less joins).

Resumable: finished images are appended to OUT.partial.jsonl; a second run with the same
settings continues from there (--no-resume starts over); OUT is written when all are done.
"""
import argparse
import collections
import json
import os
import pathlib
import sys

from inference import backends, grouping
from inference.prediction import (Checkpoint, CheckpointError, annotation_jobs, folder_jobs,
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


def main(argv=None, on_image=None):
    """-> exit code. on_image: called with each image's checkpoint entry once it is saved (the
    tests interrupt a run there)."""
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
                             "caffe: pycaffe")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="input heights as multiples of 368, averaged (OpenPose's "
                             "multi-scale test: 0.5 1 1.5 2); default 1.0")
    parser.add_argument("--viz", help="folder for pictures of the skeletons")
    parser.add_argument("--smooth-sigma", type=float, default=None,
                        help="blur heatmaps before peak finding (OpenPose's Python demo: %g); "
                             "default: no blur, as OpenPose's C++ and COCO evaluation code"
                             % grouping.DEMO_SMOOTH_SIGMA)
    parser.add_argument("--keep-neckless", action="store_true",
                        help="join neck-less partial people (see inference/README.md)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if OUT.partial.jsonl exists")
    args = parser.parse_args(argv)
    if any(s <= 0 for s in args.scales):
        parser.error("--scales must be positive")
    if not pathlib.Path(args.images).is_dir():
        parser.error("--images %s is not a folder" % args.images)
    if args.viz:
        pathlib.Path(args.viz).mkdir(parents=True, exist_ok=True)

    jobs = annotation_jobs(args.ann, args.images) if args.ann else folder_jobs(args.images)
    settings = {"deploy": str(args.deploy), "weights": str(args.weights),
                "backend": args.backend, "scales": args.scales, "ann": args.ann,
                "smooth_sigma": args.smooth_sigma, "keep_neckless": args.keep_neckless}
    try:
        checkpoint = Checkpoint(str(args.out) + ".partial.jsonl", settings, not args.no_resume)
    except CheckpointError as error:
        _say("%s; delete it or pass --no-resume" % error)
        return 1
    todo = [job for job in jobs if job.path.name not in checkpoint.done]
    if len(todo) < len(jobs):
        _say("resuming: %d of %d images already done" % (len(jobs) - len(todo), len(jobs)))
    try:
        backend = backends.make_backend(args.backend, args.deploy, args.weights)
        stats = collections.Counter()
        for job in progress(todo, "predict"):
            entry = process_job(job, backend, args.scales, args.smooth_sigma,
                                args.keep_neckless, args.viz, stats)
            checkpoint.add(entry)
            if on_image is not None:
                on_image(entry)
    except backends.BackendError as error:
        _say("error: %s" % error)
        return 1
    except KeyboardInterrupt:
        _say("interrupted after %d of %d images; run the same command again to go on"
             % (len(checkpoint.done), len(jobs)))
        return 130
    finally:
        checkpoint.close()

    results, skipped = [], collections.Counter()
    for job in jobs:
        entry = checkpoint.done[job.path.name]
        if "skipped" in entry:
            skipped[entry["skipped"]] += 1
            _say("skipped %s: %s" % (job.path.name, entry["skipped"]))
        else:
            results.extend(entry["results"])
    temporary = str(args.out) + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(results, handle)
    os.replace(temporary, str(args.out))
    os.remove(str(checkpoint.path))
    with_people = len({r["image_id"] for r in results})
    _say("%d images, %d people on %d of them -> %s"
         % (len(jobs) - sum(skipped.values()), len(results), with_people, args.out))
    for reason, count in sorted(skipped.items()):
        _say("skipped (%s): %d" % (reason, count))
    for note, count in sorted(stats.items()):
        _say("%s: %d" % (note, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
