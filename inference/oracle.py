"""The AP ceiling of the decoding chain: perfect maps, decoded and evaluated.

    python inference/oracle.py --ann person_keypoints_train2017.json --images DIR [--json OUT]

For every image with labelled people, the ground truth is rendered into heatmaps and PAFs by the
training label code (python_layers.labels) at the network's resolution (the image resized as
inference resizes it: height 368, padded to a multiple of 8, stride 8), upsampled exactly as
inference/prediction.py upsamples the network's output (the same function), decoded by
inference/grouping.py and evaluated by inference/evaluate.py. What is lost on the way is lost
by the decoding (and by the labels' definition), not by a network: it is the ceiling of any net
trained on these labels, and a check that labels and grouping agree. The faithful decoding and
the --keep-neckless assembly option are reported side by side, with the counts of what limits
the figure.
"""
import argparse
import collections
import json
import pathlib
import sys

import cv2
import numpy as np

from conventions.keypoints import LIMBS, NUM_COCO_KEYPOINTS, NUM_PARTS, PART, coco_to_parts
from inference import coco_export, evaluate, grouping, prediction, scaling
from python_layers import labels

VARIANTS = (("default", False), ("keep_neckless", True))


def ground_truth_parts(coco, image_id):
    """Parts (P, 18, 3) of the image's people with labelled keypoints (crowds aside)."""
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))
    keypoints = [a["keypoints"] for a in annotations if a.get("num_keypoints", 0) > 0]
    if not keypoints:
        return np.zeros((0, NUM_PARTS, 3), dtype=np.float32)
    return coco_to_parts(np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_COCO_KEYPOINTS, 3))


def to_network(parts, image_size, scale=1.0):
    """Parts in image pixels -> (parts in the resized image's pixels, resized (h, w), label grid
    (h'/8, w'/8)), the image resized and padded as prediction.py does it."""
    height, width = image_size
    resized = scaling.scaled_size(height, width, scale)
    padded = scaling.padded_size(*resized)
    moved = np.array(parts, dtype=np.float32, copy=True)
    labelled = moved[..., 2] > 0
    for axis, (before, after) in enumerate(((width, resized[1]), (height, resized[0]))):
        moved[..., axis] = np.where(
            labelled, scaling.rescale_coordinates(moved[..., axis], before, after), 0)
    return moved, resized, (padded[0] // scaling.STRIDE, padded[1] // scaling.STRIDE)


def rendered_outputs(parts, image_size, scale=1.0):
    """Perfect 'network outputs' for an image: [(maps (57, h'/8, w'/8), resized size)]."""
    moved, resized, grid = to_network(parts, image_size, scale)
    heatmaps, pafs = labels.render_labels(moved, grid, stride=scaling.STRIDE)
    return [(np.concatenate([heatmaps, pafs]), resized)]


def limbs_without_field(parts, image_size):
    """Labelled limbs (both parts labelled, apart) that get no PAF cell at all at the
    network's resolution: too short or too thin for the stride-8 grid."""
    moved, _, grid = to_network(parts, image_size)
    missing = 0
    for person in moved:
        fields = labels.part_affinity_fields(person[None], grid, stride=scaling.STRIDE)
        for limb, (first, second) in enumerate(LIMBS):
            if (person[first, 2] > 0 and person[second, 2] > 0
                    and not np.array_equal(person[first, :2], person[second, :2])
                    and not fields[2 * limb:2 * limb + 2].any()):
                missing += 1
    return missing


def oracle_images(coco, images_dir):
    """(image id, (H, W)) of the images with labelled people; checks the image files."""
    chosen = []
    for image_id in sorted(coco.getImgIds()):
        if not any(a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)
                   for a in coco.imgToAnns.get(image_id, [])):
            continue
        entry = coco.imgs[image_id]
        path = pathlib.Path(images_dir) / entry["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SystemExit("oracle: image %d: cannot read %s" % (image_id, path))
        if image.shape[:2] != (entry["height"], entry["width"]):
            raise SystemExit("oracle: image %d: %s is %dx%d, the annotation says %dx%d"
                             % (image_id, path, image.shape[1], image.shape[0],
                                entry["width"], entry["height"]))
        chosen.append((image_id, (entry["height"], entry["width"])))
    return chosen


def label_counts(all_parts):
    """What the labels themselves make impossible or hard, per person."""
    all_parts = np.concatenate(all_parts) if all_parts else np.zeros((0, NUM_PARTS, 3), np.float32)
    labelled = (all_parts[..., 2] > 0).sum(axis=1)
    neckless = all_parts[:, PART["neck"], 2] <= 0
    return {
        "people": int(len(all_parts)),
        "people_under_4_parts": int((labelled < grouping.MIN_PARTS).sum()),
        "people_without_neck": int(neckless.sum()),
        "people_without_neck_4_parts_or_more": int((neckless
                                                     & (labelled >= grouping.MIN_PARTS)).sum()),
    }


def match_counts(evaluation, coco, image_ids, results):
    """Per ground-truth person, its best detection by OKS: how many people are found (OKS over
    0.5 and 0.9), how many detections are extra pieces of a person, which of a found person's
    labelled keypoints are missing, and the pixel error of the others."""
    best_oks, fragments, errors, offsets, missed = [], 0, [], [], 0
    for image_id in image_ids:
        ground = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False))
                  if a.get("num_keypoints", 0) > 0]
        # COCOeval's OKS matrix: detections by descending score x all ground truth of the image
        oks = np.asarray(evaluation.ious.get((image_id, 1), []) if evaluation else [])
        if oks.size == 0:
            best_oks.extend([0.0] * len(ground))
            continue
        ids = [a["id"] for a in evaluation._gts[image_id, 1]]
        oks = oks[:, [ids.index(a["id"]) for a in ground]]
        detections = sorted((r for r in results if r["image_id"] == image_id),
                            key=lambda r: -r["score"])
        owners = oks.argmax(axis=1)[oks.max(axis=1) > 0]
        fragments += len(owners) - len(set(owners.tolist()))
        for person, truth in enumerate(ground):
            best_oks.append(float(oks[:, person].max()))
            if best_oks[-1] <= 0.5:
                continue
            truth = np.asarray(truth["keypoints"], np.float64).reshape(NUM_COCO_KEYPOINTS, 3)
            found = np.asarray(detections[int(oks[:, person].argmax())]["keypoints"],
                               np.float64).reshape(NUM_COCO_KEYPOINTS, 3)
            labelled, detected = truth[:, 2] > 0, found[:, 2] > 0
            missed += int((labelled & ~detected).sum())
            both = labelled & detected
            errors.extend(np.hypot(*(truth[both, :2] - found[both, :2]).T).tolist())
            offsets.extend((found[both, :2] - truth[both, :2]).tolist())
    best_oks = np.asarray(best_oks)
    errors = np.asarray(errors) if errors else np.zeros(1)
    return {
        "people_found_oks_over_0.5": int((best_oks > 0.5).sum()),
        "people_found_oks_over_0.9": int((best_oks > 0.9).sum()),
        "extra_pieces_of_people": int(fragments),
        "keypoints_missed_in_found_people": missed,
        "keypoint_error_px_median": round(float(np.median(errors)), 2),
        "keypoint_error_px_95th": round(float(np.percentile(errors, 95)), 2),
        # found minus labelled, mean over the keypoints of found people: a systematic shift
        "keypoint_offset_px_mean": (np.round(np.mean(offsets, axis=0), 2).tolist() if offsets
                                    else None),
    }


def run_oracle(annotation, images_dir, keep_neckless=False, smooth_sigma=None):
    """Render, decode and evaluate: {"metrics": {...}, "counts": {...}}."""
    coco = evaluate.load_ground_truth(annotation)
    chosen = oracle_images(coco, images_dir)
    results, all_parts, stats = [], [], collections.Counter()
    unseen_limbs = 0
    for image_id, size in chosen:
        parts = ground_truth_parts(coco, image_id)
        all_parts.append(parts)
        unseen_limbs += limbs_without_field(parts, size)
        people = prediction.decode_net_outputs(rendered_outputs(parts, size), size,
                                                smooth_sigma, keep_neckless, stats)
        results.extend(coco_export.people_to_coco(people, image_id))
    evaluation = evaluate.run_cocoeval(coco, results)
    counts = {"images": len(chosen), "detections": len(results)}
    counts.update(label_counts(all_parts))
    counts["labelled_limbs_without_paf"] = unseen_limbs
    counts.update({key: int(stats[key]) for key in
                   ("merges", "conflicts", "dropped_few_parts", "dropped_low_score",
                    "neckless_joins")})
    counts.update(match_counts(evaluation, coco, [i for i, _ in chosen], results))
    return {"metrics": evaluate.metrics_of(evaluation), "counts": counts}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="AP ceiling of the decoding chain: render the ground truth with the "
                    "training label code, decode it with the grouping code, evaluate with "
                    "pycocotools. Prints the faithful decoding and --keep-neckless side by side.")
    parser.add_argument("--ann", required=True, help="COCO keypoint annotation JSON")
    parser.add_argument("--images", required=True, help="the images' folder (sizes are checked)")
    parser.add_argument("--json", help="write {variant: {metrics, counts}} to this file")
    parser.add_argument("--smooth-sigma", type=float, default=None,
                        help="blur heatmaps before peak finding (OpenPose's Python demo: %g)"
                             % grouping.DEMO_SMOOTH_SIGMA)
    args = parser.parse_args(argv)
    reports = {name: run_oracle(args.ann, args.images, neckless, args.smooth_sigma)
               for name, neckless in VARIANTS}
    names = [name for name, _ in VARIANTS]
    print("| | %s |" % " | ".join(names))
    print("|---|%s|" % "|".join(["---"] * len(names)))
    for metric in evaluate.METRICS:
        print("| %s | %s |" % (metric, " | ".join("%.3f" % reports[n]["metrics"][metric]
                                                    for n in names)))
    for count in reports[names[0]]["counts"]:
        print("| %s | %s |" % (count, " | ".join(str(reports[n]["counts"][count])
                                                   for n in names)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(reports, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
