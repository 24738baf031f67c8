"""People -> COCO keypoint results: the 18 -> 17 mapping, the format pycocotools reads."""
import json

import numpy as np
import pytest

from conventions.keypoints import COCO_KEYPOINT_NAMES, COCO_TO_PART, PART, coco_to_parts
from inference import coco_export, evaluate, grouping


def people_of(parts, totals):
    return grouping.People(keypoints=np.asarray(parts, np.float32),
                           scores=np.asarray(totals, np.float32),
                           part_counts=(np.asarray(parts)[..., 2] > 0).sum(axis=1))


def test_parts_map_to_coco_keypoints_without_the_neck():
    parts = np.zeros((1, 18, 3), np.float32)
    parts[0, :, 0] = np.arange(18) * 10 + 1       # part p at x = 10 p + 1
    parts[0, :, 1] = 200 - np.arange(18)
    parts[0, :, 2] = 0.5
    parts[0, PART["left_knee"]] = 0               # not found
    result, = coco_export.people_to_coco(people_of(parts, [9.0]), image_id=42)
    keypoints = np.asarray(result["keypoints"]).reshape(17, 3)
    for k, name in enumerate(COCO_KEYPOINT_NAMES):
        if name == "left_knee":
            assert keypoints[k].tolist() == [0, 0, 0]
        else:
            assert keypoints[k].tolist() == [PART[name] * 10 + 1, 200 - PART[name], 1]
    assert PART["neck"] * 10 + 1 not in keypoints[:, 0]
    assert result["image_id"] == 42 and result["category_id"] == 1
    assert result["score"] == pytest.approx(9.0 * 16)           # total x COCO keypoints found
    assert COCO_TO_PART[COCO_KEYPOINT_NAMES.index("left_knee")] == PART["left_knee"]


def test_no_people_give_no_results():
    empty = people_of(np.zeros((0, 18, 3)), [])
    assert coco_export.people_to_coco(empty, image_id=1) == []


def small_ground_truth(keypoints, image_size=(300, 400)):
    """A COCO keypoint dataset of one image with these people (list of 17x3)."""
    annotations = []
    for index, person in enumerate(keypoints, start=1):
        person = np.asarray(person, np.float64)
        labelled = person[:, 2] > 0
        x, y = person[labelled, 0], person[labelled, 1]
        box = [float(x.min()), float(y.min()), float(np.ptp(x)) + 1, float(np.ptp(y)) + 1]
        annotations.append({"id": index, "image_id": 7, "category_id": 1, "iscrowd": 0,
                            "keypoints": person.ravel().tolist(), "bbox": box,
                            "area": box[2] * box[3], "num_keypoints": int(labelled.sum())})
    return {"images": [{"id": 7, "height": image_size[0], "width": image_size[1],
                        "file_name": "7.jpg"}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person",
                            "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": []}]}


def test_results_load_in_pycocotools_and_score_the_round_trip_perfectly(tmp_path):
    state = np.random.RandomState(3)
    truth = np.zeros((3, 17, 3))
    for person, left in enumerate((20, 150, 280)):
        truth[person, :, 0] = state.randint(left, left + 100, 17)
        truth[person, :, 1] = state.randint(20, 280, 17)
        truth[person, :, 2] = 2
    truth[1, 3] = 0                                # an unlabelled ear
    (tmp_path / "gt.json").write_text(json.dumps(small_ground_truth(truth)))
    parts = coco_to_parts(truth)                   # COCO -> 18 parts (neck derived) -> COCO
    parts[..., 2] = np.where(parts[..., 2] > 0, 0.9, 0)
    results = coco_export.people_to_coco(people_of(parts, [10, 11, 12]), image_id=7)
    (tmp_path / "results.json").write_text(json.dumps(results))
    ground_truth = evaluate.load_ground_truth(tmp_path / "gt.json")
    loaded = ground_truth.loadRes(str(tmp_path / "results.json"))
    assert len(loaded.getAnnIds()) == 3
    metrics = evaluate.evaluate(ground_truth, evaluate.load_results(tmp_path / "results.json"))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
