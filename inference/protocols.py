"""Named evaluation protocols: predict and evaluate a set the way a published number was made.

    scripts/evaluate.sh --deploy P --weights W --ann ANN --images DIR --out DIR
        [--protocol single openpose4 openpose4-flip] [--image-ids FILE] [predict.py options]

Most "the AP does not reproduce" reports are a protocol mismatch: OpenPose's published COCO
figures average the maps of four input heights, 368 x (0.5, 1, 1.5, 2) (ZheC's evalCOCO.m;
thresholds 0.1 / 0.05, which inference/grouping.py keeps), while a single 368 px pass scores
several points lower. Each protocol here fixes the scales and the flip; the row it writes says
which, on how many images, through which backend, and how long it took, so that tables compare
like with like.

For each protocol: inference/predict.py into OUT/PROTOCOL/results.json (resumable: an
interrupted run goes on from its checkpoint; a finished one with the same settings is not run
again), inference/evaluate.py on it, then OUT/metrics.json ({PROTOCOL: {"AP", "AP50", "AP75",
"APM", "APL", "AR", "images", "scales", "flip", "backend", "seconds"}}, merged with the
protocols already there) and OUT/metrics.md (one Markdown row per protocol).
"""
import argparse
import json
import math
import pathlib
import sys
import time

from inference import evaluate, predict

# name -> (scales as multiples of the 368 px box, flip)
PROTOCOLS = {
    "single": ((1.0,), False),
    "openpose4": ((0.5, 1.0, 1.5, 2.0), False),
    "openpose4-flip": ((0.5, 1.0, 1.5, 2.0), True),
}
COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


class ProtocolError(Exception):
    """Bad options or files, with a message naming them."""


def read_image_ids(path):
    """A file of image ids, one a line (blank lines and # comments allowed) -> [int]."""
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ProtocolError("cannot read --image-ids %s: %s" % (path, error))
    ids = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise ProtocolError("--image-ids %s line %d: %r is not an image id (one integer a "
                                "line)" % (path, number, text))
    if not ids:
        raise ProtocolError("--image-ids %s lists no image id" % path)
    return ids


def subset_annotations(annotation_file, image_ids, out_path):
    """Write the ground truth restricted to image_ids -> how many images it holds. Every id
    must be in the ground truth (a subset list made for another split is refused)."""
    ground_truth = evaluate.read_json(annotation_file, "ground truth %s" % annotation_file)
    evaluate.check_ground_truth(ground_truth, "ground truth %s" % annotation_file)
    known = {image["id"] for image in ground_truth["images"]}
    missing = sorted(set(image_ids) - known)
    if missing:
        raise ProtocolError("%d of the --image-ids are not images of %s (e.g. %s): is the list "
                            "made for this split?" % (len(missing), annotation_file, missing[0]))
    wanted = set(image_ids)
    subset = dict(ground_truth,
                  images=[i for i in ground_truth["images"] if i["id"] in wanted],
                  annotations=[a for a in ground_truth["annotations"]
                               if a["image_id"] in wanted])
    pathlib.Path(out_path).write_text(json.dumps(subset))
    return len(subset["images"])


def protocol_scales(protocol, base_scale):
    """The input heights of a protocol, as multiples of the 368 px box."""
    return [round(scale * base_scale, 6) for scale in PROTOCOLS[protocol][0]]


def predict_arguments(args, protocol, results, passthrough):
    flip = PROTOCOLS[protocol][1]
    argv = ["--deploy", args.deploy, "--weights", args.weights, "--images", args.images,
            "--ann", args.annotations, "--out", str(results), "--backend", args.backend,
            "--precision", args.precision, "--scales"] + [str(s) for s in protocol_scales(protocol, args.base_scale)]
    argv += passthrough
    return argv + (["--flip"] if flip else [])


def run_protocol(args, protocol, out, passthrough, images):
    """Predict (unless already done with the same arguments) and evaluate -> the row's dict."""
    folder = out / protocol
    folder.mkdir(exist_ok=True)
    results, done_file = folder / "results.json", folder / "done.json"
    argv = predict_arguments(args, protocol, results, passthrough)
    done = json.loads(done_file.read_text()) if done_file.is_file() else None
    if done and done.get("predict") == argv and results.is_file():
        seconds = done["seconds"]
        print("%s: predicted before (%s), evaluating" % (protocol, results))
    else:
        print("%s: predicting %d images at scales %s%s" % (
            protocol, images, " ".join(map(str, protocol_scales(protocol, args.base_scale))),
            " with flip" if PROTOCOLS[protocol][1] else ""))
        started = time.time()
        code = predict.main(argv)
        if code != 0:
            raise ProtocolError("protocol %s: predict.py stopped (exit %d, its message is "
                                "above); run the same command again to go on" % (protocol, code))
        seconds = round(time.time() - started, 1)
        done_file.write_text(json.dumps({"predict": argv, "seconds": seconds}))
    metrics = evaluate.evaluate(evaluate.load_ground_truth(args.annotations),
                                evaluate.load_results(str(results)))
    return dict(metrics, images=images, scales=protocol_scales(protocol, args.base_scale),
                flip=PROTOCOLS[protocol][1],
                backend=backend_label(args), seconds=seconds)


def backend_label(args):
    """'opencv', 'openvino int8', ...: the backend, and its precision where it has a choice."""
    return args.backend + ("" if args.precision == "fp32" else " " + args.precision)


def markdown(rows):
    """Rows {protocol: row} -> a Markdown table."""
    lines = ["| protocol | images | scales | flip | backend | " + " | ".join(COLUMNS)
             + " | seconds |", "|---" * (len(COLUMNS) + 6) + "|"]
    for protocol, row in rows.items():
        images = ("subset of %d images" % row["images"]) if row.get("subset") else str(
            row["images"])
        lines.append("| %s | %s | %s | %s | %s | %s | %.0f |" % (
            protocol, images, " ".join("%g" % s for s in row["scales"]),
            "yes" if row["flip"] else "no", row["backend"],
            " | ".join("%.3f" % row[c] for c in COLUMNS), row["seconds"]))
    return "\n".join(lines) + "\n"


def run(args, passthrough):
    if not (math.isfinite(args.base_scale) and args.base_scale > 0):
        raise ProtocolError("--base-scale must be a positive number, got %s" % args.base_scale)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ProtocolError("--out %s is a file: name a folder for the protocols' results" % out)
    out.mkdir(parents=True, exist_ok=True)
    subset = args.image_ids is not None
    if subset:
        args.annotations = str(out / "annotations_subset.json")
        images = subset_annotations(args.ann, read_image_ids(args.image_ids), args.annotations)
    else:
        args.annotations = args.ann
        ground_truth = evaluate.read_json(args.ann, "ground truth %s" % args.ann)
        evaluate.check_ground_truth(ground_truth, "ground truth %s" % args.ann)
        images = len(ground_truth["images"])
    metrics_file = out / "metrics.json"
    rows = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    for protocol in args.protocol:
        rows[protocol] = dict(run_protocol(args, protocol, out, passthrough, images),
                              subset=subset)
        metrics_file.write_text(json.dumps(rows, indent=1))
        (out / "metrics.md").write_text(markdown(rows))
        print("%s: AP %.3f (AP50 %.3f) on %d images in %.0f s"
              % (protocol, rows[protocol]["AP"], rows[protocol]["AP50"], images,
                 rows[protocol]["seconds"]))
    print("\n" + (out / "metrics.md").read_text())
    return 0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="scripts/evaluate.sh",
        description="Predict and evaluate a COCO set under named protocols (single: one 368 px "
                    "pass; openpose4: heights 368 x 0.5, 1, 1.5, 2 averaged, as OpenPose's "
                    "published figures; openpose4-flip: the same with test-time flip). Other "
                    "options (--precision, --calibrate, --smooth-sigma, ...) go to predict.py.")
    parser.add_argument("--deploy", required=True, help="deploy prototxt")
    parser.add_argument("--weights", required=True, help="caffemodel")
    parser.add_argument("--ann", required=True, help="COCO keypoint ground truth")
    parser.add_argument("--images", required=True, help="folder of the images")
    parser.add_argument("--out", required=True, help="folder for results and metrics")
    parser.add_argument("--protocol", nargs="+", choices=sorted(PROTOCOLS), default=["single"],
                        help="one or more (default single)")
    parser.add_argument("--image-ids", help="file of image ids, one a line: evaluate only these "
                                            "(e.g. OpenPose's 1160-image val subset)")
    parser.add_argument("--backend", default="opencv", help="predict.py's --backend")
    parser.add_argument("--precision", default="fp32", help="predict.py's --precision (the row "
                                                            "names it)")
    parser.add_argument("--base-scale", type=float, default=1.0,
                        help="multiplies every protocol scale: the input height a net was "
                             "trained for over 368 (default 1: COCO nets; 0.3478 = 128/368 for "
                             "the demo's and the overfit check's nets, trained on 128 px crops)")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, passthrough = parse_arguments(sys.argv[1:] if argv is None else argv)
    fixed = [option for option in passthrough if option.split("=")[0] in ("--scales", "--flip")]
    if fixed:
        print("evaluate.sh: error: %s is set by the protocol (%s); choose --protocol instead"
              % (fixed[0], ", ".join("%s = scales %s%s" % (name, " ".join(map(str, scales)),
                                                         " + flip" if flip else "")
                                     for name, (scales, flip) in PROTOCOLS.items())),
              file=sys.stderr)
        return 2
    try:
        return run(args, passthrough)
    except (ProtocolError, evaluate.EvaluationError) as error:
        print("evaluate.sh: error: %s" % error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
