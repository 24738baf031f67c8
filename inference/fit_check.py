"""How well a net fits what it was trained on: COCO AP of snapshots on the training crops and on
the whole images, with keypoint displacement (the overfit check's evaluation, scripts/overfit.sh).

    python inference/fit_check.py --deploy D.prototxt --snapshots A.caffemodel [B ...] \
        --crops CROPS_DIR --ann ANN.json --images IMAGES_DIR [--viz DIR] [--json OUT]

CROPS_DIR is scripts/training_crops.py's output: crops.json with images/ (the exact,
un-augmented training inputs) and scales.json (per whole image, the predict scale that shows
its people at the trained size). Each snapshot is run through the deploy net with OpenCV's DNN
module by inference/prediction.py's functions, as inference/predict.py runs it, on every crop
at the crop's own size and on every whole image of ANN at its scale, and evaluated with
pycocotools. --backend openvino|onnxruntime with --precision bf16|int8 measures what a faster
runtime or precision costs in AP (inference/onnx_backends.py). Keypoint displacement:
the oracle's matching (inference/oracle.match_counts on COCOeval's own OKS matrix): each
ground-truth person found with OKS over 0.5, paired with its best detection.
"""
import argparse
import json
import os
import pathlib
import sys

from inference import backends, coco_export, evaluate, onnx_backends, oracle, scaling
from inference.prediction import draw_people, predict_image, read_image


def predict_dataset(backend, dataset, images_dir, scale_of, viz=None):
    """Run every image of a COCO dataset -> (results, people found)."""
    results = []
    for entry in dataset["images"]:
        image, _ = read_image(pathlib.Path(images_dir) / entry["file_name"])
        people = predict_image(backend, image, [scale_of(entry)])
        results.extend(coco_export.people_to_coco(people, entry["id"]))
        if viz:
            os.makedirs(viz, exist_ok=True)
            import cv2
            cv2.imwrite(os.path.join(viz, pathlib.Path(entry["file_name"]).stem + ".jpg"),
                        draw_people(image, people))
    return results


def score(annotation_path, results):
    """{"metrics": pycocotools' AP etc., "found": detections, "offset_px": mean (dx, dy),
    "median_error_px": median keypoint distance} of results against a ground truth file; the
    displacements are those of the people found (OKS over 0.5), as the oracle counts them."""
    ground_truth = evaluate.load_ground_truth(annotation_path)
    evaluation = evaluate.run_cocoeval(ground_truth, results)
    counts = oracle.match_counts(evaluation, ground_truth, ground_truth.getImgIds(), results)
    found_any = counts["people_found_oks_over_0.5"] > 0
    return {"metrics": evaluate.metrics_of(evaluation), "found": len(results),
            "offset_px": counts["keypoint_offset_px_mean"],
            "median_error_px": counts["keypoint_error_px_median"] if found_any else None}


def check_snapshot(deploy, weights, crops_dir, annotation_path, images_dir, viz=None,
                   backend="opencv", **backend_options):
    """{"crops": score on the training crops, "whole": score on the whole images}.
    backend, backend_options: as backends.make_backend takes them (precision, calibration)."""
    backend = backends.make_backend(backend, deploy, weights, **backend_options)
    crops_path = os.path.join(crops_dir, "crops.json")
    with open(crops_path) as handle:
        crops = json.load(handle)
    with open(os.path.join(crops_dir, "scales.json")) as handle:
        scales = json.load(handle)
    with open(annotation_path) as handle:
        whole = json.load(handle)
    whole["images"] = [entry for entry in whole["images"] if str(entry["id"]) in scales]
    crop_results = predict_dataset(
        backend, crops, os.path.join(crops_dir, "images"),
        lambda entry: entry["height"] / float(scaling.BOX_SIZE),
        os.path.join(viz, "crops") if viz else None)
    whole_results = predict_dataset(backend, whole, images_dir,
                                    lambda entry: scales[str(entry["id"])],
                                    os.path.join(viz, "whole") if viz else None)
    only_packed = dict(whole, annotations=[a for a in whole["annotations"]
                                          if str(a["image_id"]) in scales])
    packed_path = os.path.join(crops_dir, "whole.json")
    with open(packed_path, "w") as handle:
        json.dump(only_packed, handle)
    return {"crops": score(crops_path, crop_results),
            "whole": score(packed_path, whole_results),
            "people": sum(1 for a in only_packed["annotations"]
                          if not a.get("iscrowd") and a.get("num_keypoints"))}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="COCO AP of snapshots on their training crops and whole images.")
    parser.add_argument("--deploy", required=True)
    parser.add_argument("--snapshots", nargs="+", required=True, help="caffemodel files")
    parser.add_argument("--crops", required=True, help="scripts/training_crops.py's folder")
    parser.add_argument("--ann", required=True, help="the training images' COCO annotations")
    parser.add_argument("--images", required=True, help="the training images' folder")
    parser.add_argument("--viz", help="skeleton pictures of the last snapshot")
    parser.add_argument("--json", help="write {snapshot: check} here")
    parser.add_argument("--backend", choices=backends.BACKENDS, default="opencv",
                        help="the runtime of the deploy net (default opencv)")
    onnx_backends.add_arguments(parser)
    args = parser.parse_args(argv)
    checks = {}
    for index, weights in enumerate(args.snapshots):
        viz = args.viz if index == len(args.snapshots) - 1 else None
        try:
            checks[weights] = check = check_snapshot(
                args.deploy, weights, args.crops, args.ann, args.images, viz, args.backend,
                **onnx_backends.backend_options(args))
        except (backends.BackendError, evaluate.EvaluationError, OSError) as error:
            sys.exit("fit_check: %s: %s" % (weights, error))
        print("%s: AP crops %.3f, whole images %.3f (%d / %d detections)"
              % (os.path.basename(weights), check["crops"]["metrics"]["AP"],
                 check["whole"]["metrics"]["AP"], check["crops"]["found"],
                 check["whole"]["found"]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(checks, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
