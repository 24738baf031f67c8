"""COCO keypoint evaluation of a results file (pycocotools' COCOeval, iouType "keypoints").

    python inference/evaluate.py --ann person_keypoints_val2017.json --results results.json \
        [--json metrics.json] [--only-result-images]

Prints AP, AP50, AP75, APM, APL (the columns of the MLN paper's Table 1) and AR; --json writes
{"AP": ..., "AP50": ..., "AP75": ..., "APM": ..., "APL": ..., "AR": ...}.

Which images count: by default every image of the ground truth, as pycocotools does, so an
image missing from the results counts as people missed (images without labelled people add
nothing unless something is detected there). --only-result-images restricts the evaluation to
the images that appear in the results, for a run on part of a set.

Both files are checked before pycocotools sees them (it fails with bare assertions and
KeyErrors, or prints -1 for every metric): a problem stops the run with one line naming the
file, the entry and the field. The COCO annotation file's reading and its image list's checks
live here, and inference/prediction.py uses them for predict.py's --ann.
"""
import argparse
import contextlib
import io
import json
import math
import numbers
import os
import sys

METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
# positions of those metrics in COCOeval.stats for keypoints
_STATS_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APM": 3, "APL": 4, "AR": 5}
KEYPOINT_VALUES = 51            # 17 COCO keypoints x (x, y, v)
# what COCOeval reads of each ground-truth annotation (iouType "keypoints")
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "iscrowd", "num_keypoints", "area",
                     "bbox", "keypoints")
KEYPOINT_FILE = "pass a COCO keypoint annotation file (person_keypoints_*.json)"


class EvaluationError(Exception):
    """Bad ground truth or results, with a message that names the file and the problem."""


# ----------------------------------------------------------------------------- COCO files

def read_json(path, what):
    """A JSON file -> its value. what: how messages name it ("ground truth x.json")."""
    try:
        with open(str(path)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise EvaluationError("%s does not exist" % what)
    except IsADirectoryError:
        raise EvaluationError("%s is a folder, not a JSON file" % what)
    except OSError as error:
        raise EvaluationError("cannot read %s: %s" % (what, error.strerror or error))
    except ValueError as error:          # JSONDecodeError, or bytes that are not text
        raise EvaluationError("%s is not JSON (%s): is it complete?" % (what, error))


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _list_field(data, field, what):
    if not isinstance(data, dict):
        raise EvaluationError("%s holds a JSON %s, not a COCO annotation object "
                              "({\"images\": [...], ...}): %s"
                              % (what, type(data).__name__, KEYPOINT_FILE))
    if not isinstance(data.get(field), list):
        raise EvaluationError("%s has no \"%s\" list: %s" % (what, field, KEYPOINT_FILE))
    if not data[field]:
        raise EvaluationError("%s has an empty \"%s\" list: %s" % (what, field, KEYPOINT_FILE))
    return data[field]


def check_images(data, what):
    """The "images" list of a COCO annotation file (data: its parsed JSON), checked: entries
    that are objects with distinct integer ids. -> the list."""
    images = _list_field(data, "images", what)
    seen = {}
    for index, entry in enumerate(images):
        if not isinstance(entry, dict):
            raise EvaluationError("%s: images[%d] is not an object" % (what, index))
        if not _is_integer(entry.get("id")):
            raise EvaluationError("%s: images[%d] has id %s, not an integer: COCO image ids "
                                  "are integers" % (what, index, json.dumps(entry.get("id"))))
        if entry["id"] in seen:
            raise EvaluationError("%s: image id %d is given twice (images[%d] and images[%d])"
                                  % (what, entry["id"], seen[entry["id"]], index))
        seen[entry["id"]] = index
    return images


def _numbers(count):
    return lambda value: (isinstance(value, list) and len(value) == count
                          and all(_is_number(v) for v in value))


# the values COCOeval computes with: checked, so that it neither fails nor computes nonsense
_ANNOTATION_VALUES = {
    "keypoints": (_numbers(KEYPOINT_VALUES), "%d numbers (x, y, v of the 17 COCO keypoints)"
                  % KEYPOINT_VALUES),
    "bbox": (_numbers(4), "4 numbers (x, y, width, height)"),
    "area": (_is_number, "a number"),
    "num_keypoints": (_is_integer, "an integer"),
    "iscrowd": (lambda value: value in (0, 1), "0 or 1"),
}


def _describe(value):
    """A value in a message: lists by their length, the rest as JSON, cut short."""
    if isinstance(value, list):
        return "a list of %d values" % len(value)
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_ground_truth(data, what):
    """A parsed COCO keypoint annotation file, checked for what COCOeval reads: images,
    categories, and annotations with every field of ANNOTATION_FIELDS, 51 keypoint values, and
    image and category ids that exist; at least one labelled person."""
    image_ids = {entry["id"] for entry in check_images(data, what)}
    categories = _list_field(data, "categories", what)
    category_ids = {c.get("id") for c in categories if isinstance(c, dict)}
    people = 0
    for index, annotation in enumerate(_list_field(data, "annotations", what)):
        where = "%s: annotations[%d]" % (what, index)
        if not isinstance(annotation, dict):
            raise EvaluationError("%s is not an object" % where)
        missing = [field for field in ANNOTATION_FIELDS if field not in annotation]
        if missing:
            raise EvaluationError("%s lacks %s: %s" % (where, ", ".join(missing), KEYPOINT_FILE))
        for field, (valid, expected) in _ANNOTATION_VALUES.items():
            if not valid(annotation[field]):
                raise EvaluationError("%s (id %s): %s is %s, expected %s"
                                      % (where, annotation["id"], field,
                                         _describe(annotation[field]), expected))
        if annotation["image_id"] not in image_ids:
            raise EvaluationError("%s (id %s) is on image %s, which \"images\" lacks"
                                  % (where, annotation["id"], annotation["image_id"]))
        if annotation["category_id"] not in category_ids:
            raise EvaluationError("%s (id %s) has category_id %s, which \"categories\" lacks"
                                  % (where, annotation["id"], annotation["category_id"]))
        people += bool(annotation["num_keypoints"]) and not annotation["iscrowd"]
    if not people:
        raise EvaluationError("%s has no labelled person (num_keypoints > 0, iscrowd 0): every "
                              "AP would be undefined (-1)" % what)


def load_ground_truth(path):
    """A COCO keypoint annotation file -> pycocotools COCO object, checked first."""
    from pycocotools.coco import COCO
    what = "ground truth %s" % path
    data = read_json(path, what)
    check_ground_truth(data, what)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = data
        ground_truth.createIndex()
    return ground_truth


def load_results(path):
    """A results file -> list of detections, each checked for what COCOeval reads."""
    what = "results %s" % path
    results = read_json(path, what)
    if not isinstance(results, list):
        raise EvaluationError("%s: expected a JSON list of detections" % what)
    for index, result in enumerate(results):
        if not isinstance(result, dict):
            raise EvaluationError("%s: detection %d is not an object" % (what, index))
        missing = [key for key in ("image_id", "category_id", "keypoints", "score")
                   if key not in result]
        if missing:
            raise EvaluationError("%s: detection %d lacks %s" % (what, index, missing))
        keypoints = result["keypoints"]
        if not isinstance(keypoints, list) or len(keypoints) != KEYPOINT_VALUES:
            raise EvaluationError("%s: detection %d has %s keypoint values, expected %d"
                                  % (what, index, len(keypoints) if isinstance(keypoints, list)
                                     else "no list of", KEYPOINT_VALUES))
        if not all(_is_number(value) for value in keypoints):
            raise EvaluationError("%s: detection %d has keypoint values that are not finite "
                                  "numbers" % (what, index))
        if not _is_number(result["score"]):
            raise EvaluationError("%s: detection %d has score %s, not a finite number"
                                  % (what, index, json.dumps(result["score"])))
        for key in ("image_id", "category_id"):
            if not _is_integer(result[key]):
                raise EvaluationError("%s: detection %d has %s %s, not an integer"
                                      % (what, index, key, json.dumps(result[key])))
    return results


# ----------------------------------------------------------------------------- evaluation

def check_results_fit(ground_truth, results):
    """Results whose image or category ids the ground truth lacks are refused: pycocotools
    would fail on the first and silently ignore the second."""
    unknown = sorted({r["image_id"] for r in results} - set(ground_truth.getImgIds()))
    if unknown:
        hint = ""
        if any(image_id < 0 for image_id in unknown):
            hint = (" (negative ids are predict.py's for files whose names are not COCO image "
                    "numbers: predict with --ann to take the ids from the ground truth)")
        raise EvaluationError("results name %d image ids that the ground truth lacks, e.g. %s%s"
                              % (len(unknown), unknown[:5], hint))
    categories = sorted({r["category_id"] for r in results} - set(ground_truth.getCatIds()))
    if categories:
        raise EvaluationError("results have category_id %s, the ground truth's categories are %s"
                              % (categories, sorted(ground_truth.getCatIds())))


def run_cocoeval(ground_truth, results, only_result_images=False):
    """pycocotools' COCOeval (iouType "keypoints") of `results` (a list of result dicts), run
    and summarised; None when there are no detections at all.

    ground_truth: a pycocotools COCO object.
    """
    from pycocotools.cocoeval import COCOeval
    check_results_fit(ground_truth, results)
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes adds keys (area, bbox, id) to the dicts it is given: give it copies
        detections = ground_truth.loadRes([dict(result) for result in results])
        evaluation = COCOeval(ground_truth, detections, "keypoints")
        if only_result_images:
            evaluation.params.imgIds = sorted({r["image_id"] for r in results})
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def metrics_of(evaluation):
    """{metric: value} from a summarised COCOeval (every metric 0 for None: no detections).

    COCOeval gives -1 where the ground truth has no person of a kind (e.g. no medium people)."""
    if evaluation is None:
        return {name: 0.0 for name in METRICS}
    return {name: float(evaluation.stats[index]) for name, index in _STATS_INDEX.items()}


def evaluate(ground_truth, results, only_result_images=False):
    """COCO keypoint metrics of `results` -> {"AP": ..., ..., "AR": ...}."""
    if only_result_images and results:
        images = {r["image_id"] for r in results}
        labelled = [a for a in ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=list(images)))
                    if a["num_keypoints"] and not a["iscrowd"]]
        if not labelled:
            raise EvaluationError("the %d images of the results have no labelled person in the "
                                  "ground truth: AP is undefined there; evaluate without "
                                  "--only-result-images" % len(images))
    return metrics_of(run_cocoeval(ground_truth, results, only_result_images))


def format_table(metrics):
    header = " | ".join("%-5s" % name for name in METRICS)
    values = " | ".join("%.3f" % metrics[name] for name in METRICS)
    return "| %s |\n|%s|\n| %s |" % (header, "|".join(["-------"] * len(METRICS)), values)


def check_writable_file(path, flag):
    """An output file's folder must exist and the path must not be a folder: checked before the
    work, so that nothing is computed only to be lost."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise EvaluationError("%s %s is a folder: name a file" % (flag, path))
    if not os.path.isdir(folder):
        raise EvaluationError("%s %s: the folder %s does not exist: create it or name another"
                              % (flag, path, folder))


def write_metrics(metrics, path):
    try:
        with open(path, "w") as handle:
            json.dump(metrics, handle, indent=1)
    except OSError as error:
        raise EvaluationError("cannot write --json %s: %s" % (path, error.strerror or error))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="COCO keypoint AP of a results file (pycocotools COCOeval, iouType "
                    "'keypoints'). Prints AP, AP50, AP75, APM, APL and AR.")
    parser.add_argument("--ann", required=True, help="COCO keypoint ground truth (JSON)")
    parser.add_argument("--results", required=True,
                        help="results JSON: a list of {image_id, category_id, keypoints, score}")
    parser.add_argument("--json", help="write the metrics to this JSON file")
    parser.add_argument("--only-result-images", action="store_true",
                        help="evaluate only the images present in the results (default: every "
                             "ground-truth image, so images without results count as misses)")
    args = parser.parse_args(argv)
    try:
        if args.json:
            check_writable_file(args.json, "--json")
        ground_truth = load_ground_truth(args.ann)
        results = load_results(args.results)
        try:
            metrics = evaluate(ground_truth, results, args.only_result_images)
        except EvaluationError as error:        # a mismatch of the two files: name both
            raise EvaluationError("results %s against ground truth %s: %s"
                                  % (args.results, args.ann, error))
        if not results:
            print("evaluate: %s holds no detections: every metric is 0" % args.results,
                  file=sys.stderr)
        print(format_table(metrics))
        if args.json:
            write_metrics(metrics, args.json)
    except EvaluationError as error:
        print("evaluate: error: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
