"""The packer on the generated dataset (tests/conftest.py's generated_coco, packed by
generated_lmdb): which images become records and which persons are main persons, derived here
from the JSON alone; runs in a fresh clone without ../shared."""
import json
import math

from data_prep.record import LmdbReader


def expected_records(annotation_file):
    """{image_id: ([annotation ids of the persons], [is main])} by the rule of
    data_prep/packing.py (conventions/README.md): persons are the non-crowd annotations with a
    labelled keypoint, in file order; a main person has >= 5 labelled keypoints, area >= 32*32,
    and a box centre not closer than 0.3 * max(w, h) of an earlier main person's box to its
    centre. An image is a record when it has a main person."""
    with open(str(annotation_file)) as handle:
        data = json.load(handle)
    out = {}
    for image in data["images"]:
        persons, main, accepted = [], [], []
        for annotation in data["annotations"]:
            if annotation["image_id"] != image["id"] or annotation["iscrowd"]:
                continue
            labelled = sum(1 for v in annotation["keypoints"][2::3] if v > 0)
            if labelled == 0:
                continue
            x, y, w, h = annotation["bbox"]
            centre = (x + w / 2, y + h / 2)
            is_main = labelled >= 5 and annotation["area"] >= 32 * 32 and not any(
                math.hypot(centre[0] - c[0], centre[1] - c[1]) < 0.3 * size
                for c, size in accepted)
            if is_main:
                accepted.append((centre, max(w, h)))
            persons.append(annotation["id"])
            main.append(is_main)
        if any(main):
            out[image["id"]] = (persons, main)
    return out


def test_records_and_main_persons_follow_the_rule(generated_coco, generated_lmdb):
    expected = expected_records(generated_coco / "annotations" / "person_keypoints_train.json")
    with LmdbReader(str(generated_lmdb)) as reader:
        packed = {record.image_id: (record.annotation_ids.tolist(), record.is_main.tolist())
                  for record in reader}
    assert packed == expected
    assert len(packed) >= 10 and sum(sum(main) for _, main in packed.values()) >= 15
