"""What a net was trained on, as COCO data that predict.py and evaluate.py can read.

    scripts/caffe-env python scripts/training_crops.py --lmdb DB --crop 128 --out DIR \
        [--data-param JSON]

Writes, for a database made by data_prep/coco_to_lmdb.py:

- DIR/images/<image id>_<person>.png and DIR/crops.json: the crop of every main person exactly
  as the data layer makes it without random augmentation (scale multiplier 1, no rotation, no
  offset, no flip: the same `augment.crop_matrix` and `warp_image`), and every person of the
  record moved into it by the same matrix (keypoints outside the crop dropped, area and box
  scaled). Evaluating a net on these inputs checks the chain from labels to COCO results
  without any question of scale or position: the overfit check's "geometry check".
- DIR/scales.json: {image id: predict.py --scales value} that resizes the whole image so that
  its people appear at the size the net was trained on (the median box height of the image's
  persons becomes target_dist x crop, the size of an un-augmented training person).

Runs where the LMDB reader is (the Caffe environment); no Caffe is used.
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np

from conventions.geometry import BOX_SIZE
from conventions.keypoints import PART, parts_to_coco
from data_prep.record import LmdbReader
from inference.grouping import MIN_PARTS
from python_layers import augment
from python_layers.data_layer import parse_param_str


NECK = PART["neck"]


def crop_image_id(image_id, person):
    """The crop's own COCO image id: unique while a record has fewer than 1000 persons."""
    return int(image_id) * 1000 + int(person)


def crop_annotations(record, matrix, crop_size, crop_id, first_annotation_id):
    """COCO annotations of the record's persons inside one crop (those with a keypoint in it).

    A person the crop cuts so that the decoding cannot assemble it by design (its neck outside
    the crop, or fewer than grouping.MIN_PARTS of its parts inside: OpenPose's grouping builds
    people from the neck and drops smaller pieces) is an ignore region (iscrowd 1, as COCO marks
    crowds): finding it or not does not count. Without this, the neighbours cut by the crop's
    border cap the crops' AP well below 1 (measured: the decoding of the ground truth itself
    scores 0.742 on the overfit check's crops), and the crops would no longer check geometry.
    """
    moved = augment.transform_parts(record.parts, matrix)
    inside_parts = ((moved[..., 2] > 0) & (moved[..., 0] >= 0) & (moved[..., 1] >= 0)
                    & (moved[..., 0] <= crop_size - 1) & (moved[..., 1] <= crop_size - 1))
    assemblable = inside_parts[:, NECK] & (inside_parts.sum(axis=1) >= MIN_PARTS)
    coco = parts_to_coco(moved).astype(np.float64)
    inside = parts_to_coco(inside_parts[..., None].repeat(3, axis=-1))[..., 0]
    coco[~inside] = 0
    # The crop's matrix is a similarity: lengths scale by sqrt(|det|), areas by |det|.
    area_scale = abs(float(np.linalg.det(np.asarray(matrix)[:, :2])))
    annotations = []
    for person in range(record.num_persons):
        count = int(inside[person].sum())
        if count == 0:
            continue
        x, y, width, height = (float(v) for v in record.boxes[person])
        corners = np.array([[x, y], [x + width, y], [x, y + height], [x + width, y + height]])
        corners = corners @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]
        low = np.clip(corners.min(axis=0), 0, crop_size)
        high = np.clip(corners.max(axis=0), 0, crop_size)
        annotations.append({
            "id": first_annotation_id + len(annotations), "image_id": crop_id, "category_id": 1,
            "iscrowd": int(not assemblable[person]), "num_keypoints": count,
            "keypoints": [round(float(v), 3) for v in coco[person].ravel()],
            "area": float(record.areas[person]) * area_scale,
            "bbox": [float(low[0]), float(low[1]), float(high[0] - low[0]),
                     float(high[1] - low[1])]})
    return annotations


def write_crops(lmdb_path, params, out_dir):
    """Writes the crops, crops.json and scales.json (see the module docstring); -> summary."""
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    images, annotations, scales = [], [], {}
    with LmdbReader(lmdb_path) as reader:
        for index in range(len(reader)):
            record = reader[index]
            image = record.image()
            for person in np.nonzero(record.is_main)[0]:
                matrix = augment.crop_matrix(record.centers[person], record.scales[person],
                                             augment.NO_AUGMENTATION, params)
                crop = augment.warp_image(image, matrix, params.crop_size, params.pad_value)
                crop_id = crop_image_id(record.image_id, person)
                name = "%d_%d.png" % (record.image_id, person)
                if not cv2.imwrite(os.path.join(image_dir, name), crop):
                    raise OSError("cannot write %s" % os.path.join(image_dir, name))
                images.append({"id": crop_id, "file_name": name, "height": params.crop_size,
                               "width": params.crop_size})
                annotations.extend(crop_annotations(record, matrix, params.crop_size, crop_id,
                                                    len(annotations) + 1))
            person_height = float(np.median(record.boxes[:, 3]))
            trained_height = params.target_dist * params.crop_size
            scales[str(record.image_id)] = record.height * trained_height / (
                person_height * BOX_SIZE)
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": 1, "name": "person", "supercategory": "person",
                               "keypoints": [], "skeleton": []}]}
    with open(os.path.join(out_dir, "crops.json"), "w") as handle:
        json.dump(dataset, handle)
    with open(os.path.join(out_dir, "scales.json"), "w") as handle:
        json.dump(scales, handle, indent=1, sort_keys=True)
    return {"crops": len(images), "people": len(annotations), "images": len(scales)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="The un-augmented training crops of an LMDB as a COCO dataset, and the "
                    "scale that shows each whole image at the trained size.")
    parser.add_argument("--lmdb", required=True, help="database made by data_prep/coco_to_lmdb.py")
    parser.add_argument("--crop", type=int, required=True, help="training crop size")
    parser.add_argument("--data-param", default="{}",
                        help="the training's extra data-layer JSON (target_dist matters)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        extra = json.loads(args.data_param)
        if not isinstance(extra, dict):
            raise ValueError("--data-param must be a JSON object")
        extra = dict(extra, source=args.lmdb, batch_size=1, crop_size=args.crop)
        _, params = parse_param_str(json.dumps(extra))
    except ValueError as error:
        parser.error(str(error))
    summary = write_crops(args.lmdb, params, args.out)
    print("%(crops)d crops with %(people)d people from %(images)d images" % summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
