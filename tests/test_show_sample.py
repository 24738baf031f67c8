"""The label picture tool on real COCO images: its JSON source (data_prep's packing of one
image: persons, centres, scales, the loss mask of crowds and people without keypoints), the PNG
it writes and its errors. The LMDB sources: tests/caffe/test_show_sample_lmdb.py."""
import json

import cv2
import numpy as np
import pytest

from python_layers import augment
from scripts import show_sample

IMAGE_ID = 129648          # 9 people with keypoints, 4 without, 1 crowd region
NO_MAIN_PERSON = "000000551757.jpg"      # one person with 4 keypoints


@pytest.fixture(scope="module")
def coco_json(coco_mini):
    with open(str(coco_mini / "person_keypoints_train2017.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def record(coco_mini):
    return show_sample.record_from_coco(str(coco_mini / "person_keypoints_train2017.json"),
                                        str(coco_mini / "images" / "000000129648.jpg"))


def annotations_of(coco_json, image_id):
    return [a for a in coco_json["annotations"] if a["image_id"] == image_id]


def test_the_json_record_holds_the_people_with_keypoints(record, coco_json):
    people = [a for a in annotations_of(coco_json, IMAGE_ID)
              if not a["iscrowd"] and a["num_keypoints"] > 0]
    assert record.image_id == IMAGE_ID and record.is_main.any()
    assert record.parts.shape == (len(people), 18, 3) == (9, 18, 3)
    x, y, w, h = people[0]["bbox"]
    np.testing.assert_allclose(record.centers[0], (x + w / 2, y + h / 2), rtol=1e-6)
    assert record.scales[0] == pytest.approx(h / 368.0)
    assert (record.parts[..., 2] > 0).sum() >= sum(a["num_keypoints"] for a in people)  # + necks


def test_the_json_mask_ignores_crowds_and_people_without_keypoints(record, coco_json):
    mask = record.mask_miss()
    assert mask.shape == (record.height, record.width) and mask.dtype == np.uint8
    ignored = [a for a in annotations_of(coco_json, IMAGE_ID)
               if a["iscrowd"] or a["num_keypoints"] == 0]
    area = sum(a["area"] for a in ignored)
    assert 0.85 * area < (mask == 0).sum() <= 1.02 * area
    for annotation in ignored:                       # zeros inside each ignored box
        x, y, w, h = (int(round(v)) for v in annotation["bbox"])
        assert (mask[y:y + h, x:x + w] == 0).any()
    centre = record.centers[0].astype(int)
    assert mask[centre[1], centre[0]] == 1


def test_show_sample_writes_the_four_panels(tmp_path, coco_mini):
    out = tmp_path / "pictures" / "sample.png"
    args = ["--image", str(coco_mini / "images" / "000000129648.jpg"),
            "--ann", str(coco_mini / "person_keypoints_train2017.json"),
            "--out", str(out), "--seed", "3", "--flip", "yes", "--crop", "128", "--person", "2"]
    show_sample.main(args)
    picture = cv2.imread(str(out))
    assert picture.shape == (show_sample.HEADER_PIXELS + 2 * 128, 2 * 128, 3)
    first = picture.copy()
    show_sample.main(args)                                # same seed, same picture
    np.testing.assert_array_equal(cv2.imread(str(out)), first)


def test_the_picture_shows_the_labels_where_they_are(record):
    params = augment.AugmentParams()
    sample = augment.sample_from_record(record, 0, params, None,
                                        augmentation=augment.NO_AUGMENTATION)
    picture = show_sample.sample_picture(sample, params, "title", record.centers[0])
    top = show_sample.HEADER_PIXELS
    # the heatmap panel is brightest in colour where the label is strongest
    heat = sample.heatmap_label[:18].max(axis=0)
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    panel = picture[top:top + 368, 368:].astype(int)
    pixel = panel[row * 8 + 4, col * 8 + 4]
    assert pixel.max() - pixel.min() > 150                # a saturated part colour
    row, col = np.argwhere(heat == 0)[0]
    pixel = panel[row * 8 + 4, col * 8 + 4]
    assert pixel.max() <= 0.4 * 255 + 1                   # elsewhere the darkened crop


def test_an_unknown_image_id_is_a_clear_error(coco_mini, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        show_sample.main(["--image", str(coco_mini / "images" / "000000129648.jpg"),
                          "--ann", str(coco_mini / "person_keypoints_train2017.json"),
                          "--image-id", "12345", "--out", str(tmp_path / "x.png")])
    assert "image id 12345" in str(exit_info.value)
    assert "person_keypoints_train2017.json" in str(exit_info.value)


def test_an_image_without_a_main_person_says_why(coco_mini, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        show_sample.main(["--image", str(coco_mini / "images" / NO_MAIN_PERSON),
                          "--ann", str(coco_mini / "person_keypoints_train2017.json"),
                          "--out", str(tmp_path / "x.png")])
    assert "makes no training record" in str(exit_info.value)
    assert "no_main_person" in str(exit_info.value)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--lmdb", "db"], "--lmdb needs --index I or --position P"),
    (["--ann", "a.json"], "give a source"),
    (["--lmdb", "db", "--index", "1", "--ann", "a.json"], "choose one source"),
    (["--lmdb", "db", "--position", "1", "--person", "2"], "leave out --person"),
])
def test_sources_are_checked(arguments, message, capsys):
    with pytest.raises(SystemExit):
        show_sample.parse_args(arguments + ["--out", "x.png"])
    assert message in capsys.readouterr().err
