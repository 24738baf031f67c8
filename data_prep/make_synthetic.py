"""Write a COCO person-keypoints dataset of procedurally drawn people: the demo's embedded data.

    python data_prep/make_synthetic.py --out DIR [--train 400] [--val 40] [--size 256x256]
                                       [--seed 0] [--unannotated-rate 0.15] [--crowd-rate 0.2]
                                       [--occluder-rate 0.3] [--overwrite]

writes DIR/train/*.jpg, DIR/val/*.jpg and DIR/annotations/person_keypoints_{train,val}.json in
the schema of COCO's person_keypoints files. Everything is drawn by this project
(data_prep/synthetic_body.py, data_prep/synthetic_scene.py); nothing is downloaded or copied.
data_prep/SYNTHETIC.md explains what is drawn and why.

Per person: 17 keypoints in COCO's order with v = 2 visible, 1 hidden (by a person or an object
drawn in front, or a face point behind the person's own head), 0 outside the image (then
x = y = 0). The segmentation is the list of the drawn body's polygons (capsules, torso hull, head,
hands, shoes, grown by half a pixel to match OpenCV's fill), the whole body including what is
hidden; area and bbox are pycocotools' of that segmentation. People left unannotated have
num_keypoints 0 (keypoints all 0) but a segmentation, as COCO's small people do. A crowd is one
iscrowd=1 annotation whose segmentation is an uncompressed RLE (COCO's crowd format) of where its
small people are seen.

Deterministic: each image has its own RandomState seeded by (seed, split, index), so the same seed
gives the same bytes (with the same OpenCV and libjpeg), and a larger --train keeps the first
images. The dataset is drawn in a hidden folder inside DIR and moved into place when complete.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from data_prep import synthetic_scene
from conventions.keypoints import COCO_KEYPOINT_NAMES, LIMB_NAMES

try:
    from tqdm import tqdm
except ImportError:         # the deploy venv has no tqdm; generation takes seconds anyway
    tqdm = None

SPLITS = ("train", "val")
IMAGE_IDS_PER_SPLIT = 1000000       # val image ids start at 1000001, train ones at 1
ANNOTATION_IDS_PER_IMAGE = 100      # annotation id = image id * 100 + k
JPEG_QUALITY = 92


def coco_number(value):
    """A coordinate for the JSON: 0.01 px, and never "-0.0" (the same text everywhere)."""
    return round(float(value), 2) + 0.0


def parse_size(text):
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size must be HxW, e.g. 256x256, got %r" % text)
    if height < 64 or width < 64:
        raise argparse.ArgumentTypeError("size must be at least 64x64, got %r" % text)
    return height, width


def coco_skeleton():
    """COCO's 1-based keypoint pairs, derived from the project's limb table.

    The neck is not a COCO keypoint: a limb from the neck to a side's hip becomes that side's
    shoulder-hip, the neck-shoulder limbs become shoulder-shoulder, and neck-nose is dropped.
    """
    index = {name: k + 1 for k, name in enumerate(COCO_KEYPOINT_NAMES)}
    pairs = []
    for first, second in LIMB_NAMES:
        if first == "neck":
            side = second.split("_")[0]
            if second.endswith("_hip"):
                first = side + "_shoulder"
            elif second.endswith("_shoulder"):
                first, second = "left_shoulder", "right_shoulder"
            else:
                continue
        pair = [index[first], index[second]]
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def categories():
    return [{"supercategory": "person", "id": 1, "name": "person",
             "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": coco_skeleton()}]


# ----------------------------------------------------------------------------- segmentations

def clip_polygon(polygon, width, height):
    """Sutherland-Hodgman clip of a polygon (N, 2) to [0, width] x [0, height]."""
    points = [tuple(p) for p in polygon]
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False),
                                    (1, height, True)):
        def inside(p):
            return p[axis] <= limit if keep_below else p[axis] >= limit
        clipped = []
        for k, current in enumerate(points):
            previous = points[k - 1]
            if inside(current) != inside(previous):
                t = (limit - previous[axis]) / (current[axis] - previous[axis])
                clipped.append(tuple(previous[i] + t * (current[i] - previous[i])
                                     for i in range(2)))
            if inside(current):
                clipped.append(current)
        points = clipped
        if not points:
            break
    return np.array(points).reshape(-1, 2)


def coco_polygons(polygons, height, width):
    """Drawn polygons (pixel centres at integers) -> COCO segmentation lists (pixel corners).

    Shifted by +0.5 so that pycocotools' rasterisation covers the pixels that were drawn, clipped
    to the image as COCO's polygons are, rounded to 0.01 px.
    """
    out = []
    for polygon in polygons:
        polygon = np.asarray(polygon, dtype=np.float64) + 0.5
        if polygon.min() < 0 or polygon[:, 0].max() > width or polygon[:, 1].max() > height:
            polygon = clip_polygon(polygon, width, height)
        if len(polygon) >= 3:
            out.append([coco_number(v) for v in polygon.ravel()])
    return out


def uncompressed_rle(mask):
    """(H, W) bool -> COCO's uncompressed RLE: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def area_and_bbox(segmentation, height, width):
    """pycocotools' area and bbox (x, y, w, h) of a polygon list or an uncompressed RLE."""
    rles = mask_utils.frPyObjects(segmentation, height, width)
    rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
    bbox = [coco_number(v) for v in mask_utils.toBbox(rle)]
    return float(mask_utils.area(rle)), bbox


# ----------------------------------------------------------------------------- one image

def image_annotations(scene, image_id, height, width):
    """COCO annotations for one scene: its people, then its crowd region."""
    annotations = []
    for person in scene.people:
        segmentation = coco_polygons(person.polygons, height, width)
        if not segmentation:
            continue                                        # entirely outside the picture
        area, bbox = area_and_bbox(segmentation, height, width)
        keypoints = person.keypoints if person.annotated else np.zeros_like(person.keypoints)
        flat = []
        for x, y, v in keypoints:
            flat += [coco_number(x), coco_number(y), int(v)]
        annotations.append({
            "id": image_id * ANNOTATION_IDS_PER_IMAGE + len(annotations),
            "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": flat, "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            "segmentation": segmentation, "area": round(area, 2), "bbox": bbox,
        })
    if scene.crowd_mask is not None:
        rle = uncompressed_rle(scene.crowd_mask)
        area, bbox = area_and_bbox(rle, height, width)
        annotations.append({
            "id": image_id * ANNOTATION_IDS_PER_IMAGE + len(annotations),
            "image_id": image_id, "category_id": 1, "iscrowd": 1,
            "keypoints": [0] * (3 * len(COCO_KEYPOINT_NAMES)), "num_keypoints": 0,
            "segmentation": rle, "area": round(area, 2), "bbox": bbox,
        })
    return annotations


def scene_rng(seed, split, index):
    """The RandomState of one image: independent of the other images and of the counts."""
    return np.random.RandomState([seed, SPLITS.index(split), index])


def write_split(folder, split, count, size, seed, rates, progress):
    """Draw `count` images into folder/split/ and return the COCO dict of the split."""
    height, width = size
    os.makedirs(os.path.join(folder, split))
    images, annotations = [], []
    indices = range(count)
    if progress and tqdm is not None:
        indices = tqdm(indices, desc="make_synthetic %s" % split, unit="img", leave=False)
    for index in indices:
        image_id = SPLITS.index(split) * IMAGE_IDS_PER_SPLIT + index + 1
        scene = synthetic_scene.render_scene(scene_rng(seed, split, index), height, width,
                                              **rates)
        file_name = "%012d.jpg" % image_id
        ok, jpeg = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode image %d as JPEG" % image_id)
        with open(os.path.join(folder, split, file_name), "wb") as f:
            f.write(jpeg.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": height,
                       "width": width})
        annotations += image_annotations(scene, image_id, height, width)
    return {
        "info": {"description": "synthetic people drawn by data_prep/make_synthetic.py",
                 "split": split, "seed": seed, "size": [height, width], "rates": rates},
        "licenses": [], "images": images, "annotations": annotations,
        "categories": categories(),
    }


def summarise(split, dataset):
    """One line of counts for a split."""
    people = [a for a in dataset["annotations"] if not a["iscrowd"]]
    annotated = [a for a in people if a["num_keypoints"] > 0]
    visibility = np.array([a["keypoints"][2::3] for a in annotated]).reshape(-1)
    crowds = sum(1 for a in dataset["annotations"] if a["iscrowd"])
    return ("%-5s %4d images: %d people annotated, %d unannotated, %d crowd regions; "
            "keypoints %d visible, %d occluded, %d outside" % (
                split, len(dataset["images"]), len(annotated), len(people) - len(annotated),
                crowds, (visibility == 2).sum(), (visibility == 1).sum(),
                (visibility == 0).sum()))


OUTPUTS = ("train", "val", "annotations")     # annotations last: complete means usable
PARTIAL_PREFIX = ".partial-"                    # the folder a run draws in


def make_dataset(out, counts, size, seed, rates, overwrite=False, progress=True):
    """Write the dataset to `out`: drawn in a hidden folder inside it, then moved into place.

    `out` itself is never removed or renamed (caffe-env binds a folder named on the command line
    at its own path, and a mount point cannot be renamed); with `overwrite`, its train/, val/
    and annotations/ are replaced.
    """
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith(PARTIAL_PREFIX):         # left by a killed run
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    if os.listdir(out) and not overwrite:
        raise FileExistsError("%s is not empty; pass --overwrite to replace the dataset in it"
                              % out)
    work = tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=out)
    try:
        os.makedirs(os.path.join(work, "annotations"))
        datasets = {}
        for split in SPLITS:
            datasets[split] = write_split(work, split, counts[split], size, seed, rates,
                                          progress)
            path = os.path.join(work, "annotations", "person_keypoints_%s.json" % split)
            with open(path, "w") as f:
                # dumps, not dump: only the one-shot encoder is the fast C one
                f.write(json.dumps(datasets[split], separators=(",", ":")))
        for name in reversed(OUTPUTS):              # old annotations go first
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in OUTPUTS:
            os.rename(os.path.join(work, name), os.path.join(out, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return datasets


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a COCO person-keypoints dataset of procedurally drawn people "
                    "(the demo's embedded data): DIR/{train,val}/*.jpg and "
                    "DIR/annotations/person_keypoints_{train,val}.json. "
                    "What is drawn and why: data_prep/SYNTHETIC.md.")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (new or empty)")
    parser.add_argument("--train", type=int, default=400, metavar="N",
                        help="training images (400)")
    parser.add_argument("--val", type=int, default=40, metavar="N",
                        help="held-out images (40)")
    parser.add_argument("--size", type=parse_size, default=(256, 256), metavar="HxW",
                        help="image size (256x256)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed, 0..2^32-1 (0); image i of a split depends only on "
                             "(seed, split, i)")
    parser.add_argument("--unannotated-rate", type=float, default=0.15, metavar="P",
                        help="probability that a person is drawn small and left unannotated "
                             "(num_keypoints 0, in the loss mask) (0.15)")
    parser.add_argument("--crowd-rate", type=float, default=0.2, metavar="P",
                        help="probability that an image holds a crowd region (0.2)")
    parser.add_argument("--occluder-rate", type=float, default=0.3, metavar="P",
                        help="probability that an object is drawn in front of a person (0.3)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace train/, val/ and annotations/ of a non-empty --out")
    args = parser.parse_args(argv)
    if args.train < 0 or args.val < 0:
        parser.error("--train and --val must be >= 0")
    if not 0 <= args.seed < 2 ** 32:
        parser.error("--seed must be in 0..2^32-1")
    for name in ("unannotated_rate", "crowd_rate", "occluder_rate"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error("--%s must be in [0, 1]" % name.replace("_", "-"))

    rates = {"unannotated_rate": args.unannotated_rate, "crowd_rate": args.crowd_rate,
             "occluder_rate": args.occluder_rate}
    start = time.time()
    try:
        datasets = make_dataset(args.out, {"train": args.train, "val": args.val}, args.size,
                                args.seed, rates, overwrite=args.overwrite,
                                progress=sys.stderr.isatty())
    except FileExistsError as error:
        parser.exit(2, "make_synthetic: error: %s\n" % error)
    except KeyboardInterrupt:
        parser.exit(130, "make_synthetic: interrupted; nothing was written to %s\n" % args.out)
    seconds = time.time() - start
    total = args.train + args.val
    print("make_synthetic: wrote %s (%dx%d, seed %d) in %.1f s, %.0f images/s" % (
        args.out, args.size[0], args.size[1], args.seed, seconds, total / max(seconds, 1e-9)))
    for split in SPLITS:
        print("  " + summarise(split, datasets[split]))


if __name__ == "__main__":
    main()
