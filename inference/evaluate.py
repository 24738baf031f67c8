"""COCO keypoint evaluation of a results file (pycocotools' COCOeval, iouType "keypoints").

    python inference/evaluate.py --ann person_keypoints_val2017.json --results results.json \
        [--json metrics.json] [--only-result-images]

Prints AP, AP50, AP75, APM, APL (the columns of the MLN paper's Table 1) and AR; --json writes
{"AP": ..., "AP50": ..., "AP75": ..., "APM": ..., "APL": ..., "AR": ...}.

Which images count: by default every image of the ground truth, as pycocotools does, so an
image missing from the results counts as people missed (images without labelled people add
nothing unless something is detected there). --only-result-images restricts the evaluation to
the images that appear in the results, for a run on part of a set.
"""
import argparse
import contextlib
import io
import json
import sys

METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
# positions of those metrics in COCOeval.stats for keypoints
_STATS_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APM": 3, "APL": 4, "AR": 5}


class EvaluationError(Exception):
    """Bad ground truth or results, with a message that names the file and the problem."""


def load_ground_truth(path):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return COCO(str(path))
        except (OSError, ValueError, KeyError) as error:
            raise EvaluationError("cannot read ground truth %s: %s" % (path, error))


def load_results(path):
    try:
        with open(str(path)) as handle:
            results = json.load(handle)
    except (OSError, ValueError) as error:
        raise EvaluationError("cannot read results %s: %s" % (path, error))
    if not isinstance(results, list):
        raise EvaluationError("results %s: expected a JSON list of detections" % path)
    for index, result in enumerate(results):
        missing = [key for key in ("image_id", "category_id", "keypoints", "score")
                   if key not in result]
        if missing:
            raise EvaluationError("results %s: detection %d lacks %s" % (path, index, missing))
        if len(result["keypoints"]) != 51:
            raise EvaluationError("results %s: detection %d has %d keypoint values, expected 51"
                                  % (path, index, len(result["keypoints"])))
    return results


def run_cocoeval(ground_truth, results, only_result_images=False):
    """pycocotools' COCOeval (iouType "keypoints") of `results` (a list of result dicts), run
    and summarised; None when there are no detections at all.

    ground_truth: a pycocotools COCO object.
    """
    from pycocotools.cocoeval import COCOeval
    unknown = sorted({r["image_id"] for r in results} - set(ground_truth.getImgIds()))
    if unknown:
        raise EvaluationError("results name %d image ids that the ground truth lacks, e.g. %s"
                              % (len(unknown), unknown[:5]))
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
    return metrics_of(run_cocoeval(ground_truth, results, only_result_images))


def format_table(metrics):
    header = " | ".join("%-5s" % name for name in METRICS)
    values = " | ".join("%.3f" % metrics[name] for name in METRICS)
    return "| %s |\n|%s|\n| %s |" % (header, "|".join(["-------"] * len(METRICS)), values)


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
        ground_truth = load_ground_truth(args.ann)
        results = load_results(args.results)
        metrics = evaluate(ground_truth, results, args.only_result_images)
    except EvaluationError as error:
        print("evaluate: error: %s" % error, file=sys.stderr)
        return 1
    if not results:
        print("evaluate: %s holds no detections: every metric is 0" % args.results,
              file=sys.stderr)
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(metrics, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
