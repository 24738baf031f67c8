"""People (COCO-18 parts, OpenPose's order) -> COCO keypoint results (17 keypoints).

A result is {"image_id": int, "category_id": 1, "keypoints": [x1, y1, v1, ... x17, y17, v17],
"score": float}, the format of pycocotools' COCO.loadRes. The neck is dropped
(conventions.keypoints.parts_to_coco); a part not found is (0, 0, 0); a found part has v = 1, as
OpenPose's COCO evaluation writes it (COCOeval reads only x and y of results). Coordinates are
in COCO's own frame, which data_prep reads as pixel centres at integers: no shift.

The score follows OpenPose's COCO evaluation code: the person's total score (peak scores plus
limb scores) times the number of COCO keypoints found. Only its order matters to COCOeval, and
it ranks complete, confident people first.
"""
import numpy as np

from conventions.keypoints import parts_to_coco

PERSON_CATEGORY = 1


def person_score(total_score, coco_keypoints_found):
    """OpenPose's COCO result score: total score x number of COCO keypoints found."""
    return float(total_score) * int(coco_keypoints_found)


def people_to_coco(people, image_id, decimals=2):
    """People (grouping.People) of one image -> list of COCO result dicts."""
    keypoints = parts_to_coco(people.keypoints)                 # (P, 17, 3)
    results = []
    for person, total in zip(keypoints, people.scores):
        found = person[:, 2] > 0
        triplets = np.zeros((len(person), 3), dtype=np.float64)
        triplets[found, :2] = np.round(person[found, :2].astype(np.float64), decimals)
        triplets[found, 2] = 1
        results.append({
            "image_id": int(image_id),
            "category_id": PERSON_CATEGORY,
            "keypoints": [float(v) for v in triplets.ravel()],
            "score": round(person_score(total, found.sum()), 4),
        })
    return results
