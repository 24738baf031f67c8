"""Turn one image and its COCO annotations into one record (or a counted reason why not).

This is the per-image work that the packer (data_prep/packer.py) runs in parallel worker
processes.

Persons and main persons
------------------------
The selection rule is OpenPose's (ZheC/Realtime_Multi-Person_Pose_Estimation, training/genJSON.m;
CMU-Perceptual-Computing-Lab/openpose_train, training/a4_coco_matToRefinedJson.m), which MLN
keeps (conventions/README.md). People are visited in the order of their annotations in
the file (OpenPose reads the annotation list sequentially); a person is a main person when

1. it has at least 5 labelled keypoints (OpenPose: COCO's num_keypoints >= 5; we count the
   labelled keypoints that survive the checks below, which equals num_keypoints for valid data),
2. its segmentation `area` (COCO's field, not the box area) is at least 32 * 32, and
3. its box centre (x + w/2, y + h/2) is not closer than 0.3 * max(w, h) -- w, h of the *earlier*
   person's box -- to the centre of any main person accepted before it in the same image
   (strictly closer rejects, as in OpenPose).

Its scale is OpenPose's scale_provided, box height / 368 (data_prep.record.box_scales). Crowd
annotations are never persons. Other people of the image are kept in the record as non-main
persons when they have at least one labelled keypoint (OpenPose's joint_others).

Masks (OpenPose's genCOCOMask.m / a3_coco_matToMasks.m, rasterised with pycocotools)
-------------------------------------------------------------------------------------
- mask_all  = union of every annotation's segmentation, crowd regions included.
- mask_miss = 0 on the segmentation of every non-crowd annotation that is not a person of the
  record (no labelled keypoint, or left out for a problem below), and 0 on crowd regions minus
  the pixels of individually segmented people (OpenPose subtracts the people's masks from the
  crowd region, so a labelled person standing in front of a crowd keeps its loss); 1 elsewhere.
Differences from OpenPose's Matlab, all deliberate: every polygon of a person is used (the Matlab
used only the first one), every crowd region (it handled one per image), and the result does not
depend on the order of the annotations.

Bad input (each counted under a reason of data_prep.skip_reasons)
------------------------------------------------------------------
- A malformed annotation (keypoints not 17 triplets, visibility not 0/1/2, bbox not 4 numbers,
  an unreadable segmentation: polygons with fewer than 3 points or non-finite or absurd (beyond
  +-1e5 px) coordinates, an RLE whose size is not the image's or whose runs do not add up to it)
  rules out the whole image (image_bad_annotation): its masks could not be trusted.
- A person with a NaN/infinite labelled keypoint, or a box of zero or negative width or height
  (or a non-finite box or area), is left out of the persons and masked out like an unlabelled
  person: the loss never sees it, and it is counted.
- Labelled keypoints within 1 px outside the image (COCO rounds to whole pixels, so a point on the
  border can land on x = width) are moved onto the border (keypoint_clipped). Keypoints further
  out (negative coordinates included) are annotation errors: moving them would put a label where
  the body is not, so they are dropped (v = 0) and counted (keypoint_outside_image).
- Image files are read only for images that will make a record: missing, not JPEG, truncated,
  undecodable, or of a size other than the annotation file's -> the image is skipped.
"""
import math
import os
import traceback

import numpy as np
from pycocotools import mask as coco_mask

from conventions import keypoints as kp
from data_prep import record
from data_prep.jpeg_check import JpegProblem, check_decodes, jpeg_size
from data_prep.skip_reasons import Problem

MIN_KEYPOINTS = 5
MIN_AREA = 32 * 32
MIN_CENTER_DISTANCE = 0.3          # times max(w, h) of the earlier main person's box
KEYPOINT_CLIP_TOLERANCE = 1.0      # pixels outside the image that are still moved onto it
MAX_ABS_COORDINATE = 1e5           # pycocotools rasterises in int arithmetic; keep it sane


class Outcome(object):
    """The result for one image: `record` (bytes or None), `counts` (reason -> number, plus
    'records', 'persons', 'main_persons') and `problems` (the Problems met, in order: the first
    one stops --strict; they give the summary its examples)."""

    def __init__(self, index):
        self.index = index
        self.record = None
        self.counts = {}
        self.problems = []

    def count(self, reason, number=1):
        self.counts[reason] = self.counts.get(reason, 0) + number

    def add(self, problem, number=1):
        self.count(problem.reason, number)
        self.problems.append(problem)
        return self


class _Malformed(ValueError):
    """An annotation field that cannot be used (message: the field and why)."""


def _numbers(value, count, field):
    if not isinstance(value, list) or len(value) != count \
            or not all(type(v) in (int, float) for v in value):
        raise _Malformed("field %r must be a list of %d numbers" % (field, count))
    return np.array(value, dtype=np.float64)


def rle_string_counts(counts):
    """The run lengths of a compressed COCO RLE string (COCO's 6-bit-per-character format:
    5 value bits, a continuation bit; runs after the second are stored as differences to the run
    two before). Parsed here to validate a stranger's RLE before pycocotools, which trusts it."""
    runs, position = [], 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise _Malformed("segmentation RLE string ends inside a number")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise _Malformed("segmentation RLE string has character %r" % counts[position])
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def segmentation_rle(segmentation, height, width):
    """A validated COCO segmentation -> pycocotools RLE (None for an empty polygon list)."""
    if isinstance(segmentation, list):
        polygons = []
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2 \
                    or not all(type(v) in (int, float) for v in polygon):
                raise _Malformed("segmentation polygons must be lists of at least 3 (x, y) pairs")
            values = np.array(polygon, dtype=np.float64)
            if not np.isfinite(values).all() or np.abs(values).max() > MAX_ABS_COORDINATE:
                raise _Malformed("segmentation polygon has non-finite or absurd coordinates")
            polygons.append([float(v) for v in values])
        if not polygons:
            return None
        return coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict):
        if segmentation.get("size") != [height, width]:
            raise _Malformed("segmentation RLE size %r is not the image's [%d, %d]"
                             % (segmentation.get("size"), height, width))
        counts = segmentation.get("counts")
        if isinstance(counts, list):
            if not all(type(c) is int for c in counts):
                raise _Malformed("segmentation RLE counts must be integers")
            runs = counts
        elif isinstance(counts, str):
            runs = rle_string_counts(counts)
        else:
            raise _Malformed("segmentation RLE counts must be a list or a string")
        if any(r < 0 for r in runs) or sum(runs) != height * width:
            raise _Malformed("segmentation RLE runs do not add up to %d x %d pixels"
                             % (height, width))
        if isinstance(counts, list):
            return coco_mask.frPyObjects(segmentation, height, width)
        return {"size": [height, width], "counts": counts.encode("ascii")}
    raise _Malformed("segmentation must be a list of polygons or an RLE object")


def union_mask(rles, height, width):
    rles = [r for r in rles if r is not None]
    if not rles:
        return np.zeros((height, width), dtype=np.uint8)
    return coco_mask.decode(coco_mask.merge(rles, intersect=0))


def clean_keypoints(raw, height, width):
    """(17, 3) float64 COCO keypoints -> (keypoints, clipped, dropped, nonfinite): unlabelled
    ones zeroed, near-border ones clipped, far-outside ones dropped (see the module docstring)."""
    keypoints = raw.copy()
    labelled = keypoints[:, 2] > 0
    keypoints[~labelled] = 0
    if not np.isfinite(keypoints[labelled, :2]).all():
        return keypoints, 0, 0, True
    x, y = keypoints[:, 0], keypoints[:, 1]
    tolerance = KEYPOINT_CLIP_TOLERANCE
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    near = ((x >= -tolerance) & (x <= width - 1 + tolerance)
            & (y >= -tolerance) & (y <= height - 1 + tolerance))
    clipped = labelled & ~inside & near
    dropped = labelled & ~near
    keypoints[clipped, 0] = np.clip(x[clipped], 0, width - 1)
    keypoints[clipped, 1] = np.clip(y[clipped], 0, height - 1)
    keypoints[dropped] = 0
    return keypoints, int(clipped.sum()), int(dropped.sum()), False


def select_main_persons(num_labelled, areas, boxes):
    """OpenPose's main-person rule (module docstring) -> (P,) bool, persons in file order."""
    centers = record.box_centers(boxes)
    accepted = []
    for person in range(len(areas)):
        if num_labelled[person] < MIN_KEYPOINTS or areas[person] < MIN_AREA:
            continue
        if any(math.hypot(*(centers[person] - centers[other]))
               < MIN_CENTER_DISTANCE * max(boxes[other][2], boxes[other][3])
               for other in accepted):
            continue
        accepted.append(person)
    is_main = np.zeros(len(areas), dtype=bool)
    is_main[accepted] = True
    return is_main


def _parse_annotation(annotation, height, width):
    """-> dict with id, crowd, rle and, for non-crowd ones, keypoints (17, 3), box, area."""
    if not isinstance(annotation, dict):
        raise _Malformed("an annotation is not a JSON object")
    parsed = {"id": annotation.get("id")}
    if type(parsed["id"]) is not int:
        raise _Malformed("field 'id' must be an integer")
    if annotation.get("category_id") is None:
        raise _Malformed("field 'category_id' is missing")
    crowd = annotation.get("iscrowd")
    if crowd not in (0, 1) or type(crowd) is bool:
        raise _Malformed("field 'iscrowd' must be 0 or 1, got %r" % (crowd,))
    parsed["crowd"] = crowd == 1
    if "segmentation" not in annotation:
        raise _Malformed("field 'segmentation' is missing")
    parsed["rle"] = segmentation_rle(annotation["segmentation"], height, width)
    if parsed["crowd"]:
        return parsed       # a crowd region is a mask only; its keypoints (all 0 in COCO) unused
    raw = _numbers(annotation.get("keypoints"), 3 * kp.NUM_COCO_KEYPOINTS, "keypoints")
    raw = raw.reshape(kp.NUM_COCO_KEYPOINTS, 3)
    if not np.isin(raw[:, 2], (0, 1, 2)).all():
        raise _Malformed("field 'keypoints': visibility must be 0, 1 or 2")
    parsed["keypoints"] = raw
    parsed["box"] = _numbers(annotation.get("bbox"), 4, "bbox")
    area = annotation.get("area")
    if type(area) not in (int, float):
        raise _Malformed("field 'area' must be a number")
    parsed["area"] = float(area)
    return parsed


def process_image(task, images_dir):
    """ImageTask -> Outcome; never raises (an unexpected error becomes 'internal_error')."""
    try:
        return _process_image(task, images_dir)
    except Exception:     # one bad image must not end hours of work; it is counted and shown
        entry = task.entry if isinstance(task.entry, dict) else {}
        return Outcome(task.index).add(Problem(
            "internal_error", entry.get("file_name"), entry.get("id"), None,
            traceback.format_exc(limit=4).strip().replace("\n", " | ")))


def _process_image(task, images_dir):
    outcome = Outcome(task.index)
    if task.problem is not None:
        return outcome.add(task.problem)
    entry = task.entry
    image_id, file_name = entry["id"], entry["file_name"]
    height, width = entry["height"], entry["width"]

    def problem(reason, annotation_id, detail):
        return Problem(reason, file_name, image_id, annotation_id, detail)

    persons, masked_out, individual, crowd = [], [], [], []
    for annotation in task.annotations:
        try:
            parsed = _parse_annotation(annotation, height, width)
        except _Malformed as error:
            annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
            return Outcome(task.index).add(problem("image_bad_annotation", annotation_id,
                                                   str(error)))
        if parsed["crowd"]:
            crowd.append(parsed["rle"])
            continue
        individual.append(parsed["rle"])
        keypoints, clipped, dropped, nonfinite = clean_keypoints(parsed["keypoints"], height, width)
        if clipped:
            outcome.count("keypoint_clipped", clipped)
        if dropped:
            outcome.add(problem("keypoint_outside_image", parsed["id"],
                                "%d labelled keypoint(s) more than %g px outside the %dx%d image"
                                % (dropped, KEYPOINT_CLIP_TOLERANCE, width, height)), dropped)
        x, y, w, h = parsed["box"]
        if nonfinite:
            outcome.add(problem("person_nonfinite_keypoints", parsed["id"],
                                "a labelled keypoint is not a finite number"))
        elif not (keypoints[:, 2] > 0).any():
            outcome.count("person_no_keypoints")
        elif not (np.isfinite(parsed["box"]).all() and w > 0 and h > 0
                  and math.isfinite(parsed["area"]) and parsed["area"] >= 0):
            outcome.add(problem("person_bad_box", parsed["id"], "bbox %s, area %r"
                                % (parsed["box"].tolist(), parsed["area"])))
        else:
            persons.append(dict(parsed, keypoints=keypoints))
            continue
        masked_out.append(parsed["rle"])

    if not task.annotations:
        outcome.count("no_person")
        return outcome
    if not individual:
        outcome.count("crowd_only")
        return outcome
    boxes = np.array([p["box"] for p in persons], dtype=np.float64).reshape(-1, 4)
    is_main = select_main_persons([int((p["keypoints"][:, 2] > 0).sum()) for p in persons],
                                  [p["area"] for p in persons], boxes)
    if not is_main.any():
        outcome.count("no_main_person")
        return outcome

    try:
        with open(os.path.join(images_dir, file_name), "rb") as stream:
            jpeg = stream.read()
    except OSError as error:
        return outcome.add(problem("image_missing", None, "%s: %s"
                                   % (os.path.join(images_dir, file_name),
                                      error.strerror or error)))
    try:
        size = jpeg_size(jpeg)
        if size != (height, width):
            return outcome.add(problem("image_size_mismatch", None,
                                       "the JPEG is %dx%d, the annotation file says %dx%d"
                                       % (size[1], size[0], width, height)))
        check_decodes(jpeg)
    except JpegProblem as error:
        return outcome.add(problem(error.reason, None, str(error)))

    everyone = union_mask(individual, height, width)
    crowd_region = union_mask(crowd, height, width)
    mask_all = everyone | crowd_region
    ignored = union_mask(masked_out, height, width) | (crowd_region & (1 - everyone))
    mask_miss = 1 - ignored
    outcome.record = record.encode_record(
        image_id, file_name, height, width, jpeg, [p["id"] for p in persons],
        [p["keypoints"] for p in persons], boxes, [p["area"] for p in persons], is_main,
        mask_miss, mask_all)
    outcome.count("records")
    outcome.count("persons", len(persons))
    outcome.count("main_persons", int(is_main.sum()))
    return outcome
