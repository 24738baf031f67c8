"""Bad input: each case is left out under its own counted reason; --strict stops at the first
problem naming the file and id; an unusable annotation file is a clear error."""
import cv2
import numpy as np
import pytest

from data_prep.record import LmdbReader
from tests.caffe.data_prep_helpers import (person, run_packer, square, write_annotations,
                                           write_jpeg)

W, H = 160, 120
MAIN_BOX = [10, 10, 60, 100]          # 17 keypoints, area 6000: a main person


def image(image_id, name, width=W, height=H):
    return {"id": image_id, "file_name": name, "width": width, "height": height}


def crowd(annotation_id, image_id, counts):
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 1,
            "bbox": [0, 0, 10, 10], "area": 100.0, "num_keypoints": 0, "keypoints": [0] * 51,
            "segmentation": {"size": [H, W], "counts": counts}}


def corrupt_jpeg(data):
    """Wipe the Huffman table definition: libjpeg gives up, OpenCV returns nothing."""
    start = data.find(b"\xff\xc4")
    return data[:start + 5] + b"\xff" * 16 + data[start + 21:]


@pytest.fixture
def bad_input(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("good.jpg", "dup_a.jpg", "dup_b.jpg", "dups.jpg", "short_keypoints.jpg",
                 "crowd.jpg", "empty.jpg", "small.jpg", "bad_rle.jpg"):
        write_jpeg(folder / name, W, H)
    whole = write_jpeg(folder / "truncated.jpg", W, H, seed=1)
    (folder / "truncated.jpg").write_bytes(whole[:int(len(whole) * 0.7)])
    write_jpeg(folder / "wrong_size.jpg", W, H)
    (folder / "not_jpeg.jpg").write_bytes(cv2.imencode(".png", np.zeros((H, W), np.uint8))[1]
                                          .tobytes())
    (folder / "corrupt.jpg").write_bytes(corrupt_jpeg(write_jpeg(folder / "corrupt.jpg", W, H)))

    outside = person(103, 1, [90, 10, 50, 50], labelled=6, area=500.0)
    outside["keypoints"][0] = W            # 1 px beyond the last column: moved onto it
    outside["keypoints"][3] = -5           # 5 px outside: dropped
    nan_person = person(104, 1, [100, 70, 30, 30], labelled=6)
    nan_person["keypoints"][1] = float("nan")
    not_a_person = dict(person(106, 1, [0, 0, 8, 8]), category_id=2)
    short = person(901, 9, MAIN_BOX)
    short["keypoints"] = short["keypoints"][:50]
    images = [
        image(1, "good.jpg"), image(2, "truncated.jpg"), image(3, "missing.jpg"),
        image(4, "wrong_size.jpg", width=200), image(5, "not_jpeg.jpg"), image(6, "corrupt.jpg"),
        image(7, "dup_a.jpg"), image(7, "dup_b.jpg"), image(8, "dups.jpg"),
        image(9, "short_keypoints.jpg"), image(10, "crowd.jpg"), image(11, "empty.jpg"),
        image(12, "small.jpg"), image(13, "../escape.jpg"), image(14, "bad_rle.jpg"),
    ]
    annotations = [
        not_a_person,
        person(101, 1, MAIN_BOX), person(102, 1, [75, 60, 20, 20], labelled=0), outside,
        nan_person, person(105, 1, [120, 80, 0, 30], labelled=6, segmentation=square(120, 80, 9)),
        person(201, 2, MAIN_BOX), person(301, 3, MAIN_BOX), person(401, 4, MAIN_BOX),
        person(501, 5, MAIN_BOX), person(601, 6, MAIN_BOX), person(701, 7, MAIN_BOX),
        person(801, 8, MAIN_BOX), person(801, 8, [80, 10, 60, 100]), short,
        crowd(1001, 10, [100, 50, H * W - 150]), person(1201, 12, MAIN_BOX, labelled=4),
        person(1301, 13, MAIN_BOX), person(1401, 14, MAIN_BOX),
        crowd(1402, 14, "0a0"),                             # runs add up to nothing near H*W
        person(9001, 999, MAIN_BOX),                        # an image that does not exist
        {"id": 9002, "category_id": 1},                     # no image_id at all
    ]
    ann = write_annotations(tmp_path / "bad.json", images, annotations)
    return ann, folder, tmp_path / "db"


def test_every_bad_case_is_counted_under_its_reason(bad_input):
    ann, folder, out = bad_input
    done = run_packer(ann, folder, out, "--workers", 2)
    assert done.returncode == 0, done.stderr
    with LmdbReader(out) as reader:
        summary = reader.metadata["summary"]
        assert len(reader) == 1
        item = reader[0]
    assert summary["images_read"] == 15 and summary["records"] == 1
    assert summary["reasons"] == {
        "no_person": 1, "crowd_only": 1, "no_main_person": 1, "image_entry_malformed": 1,
        "image_duplicate_id": 2, "image_duplicate_annotation_id": 1, "image_bad_annotation": 2,
        "image_missing": 1, "image_not_jpeg": 1, "image_truncated": 1, "image_corrupt": 1,
        "image_size_mismatch": 1,
        "person_no_keypoints": 1, "person_nonfinite_keypoints": 1, "person_bad_box": 1,
        "keypoint_clipped": 1, "keypoint_outside_image": 1,
        "annotation_malformed": 1, "annotation_unknown_image": 1, "annotation_not_person": 1,
    }
    # The summary names where each problem is.
    assert "truncated.jpg (image 2)" in summary["examples"]["image_truncated"][0]
    assert "annotation 104" in summary["examples"]["person_nonfinite_keypoints"][0]
    assert "annotation 9002" in summary["examples"]["annotation_malformed"][0]
    assert "image_duplicate_id" in done.stdout and "PROBLEM" in done.stdout

    # The one record: the two usable persons, the clipped and the dropped keypoint.
    assert item.image_id == 1 and item.annotation_ids.tolist() == [101, 103]
    assert item.is_main.tolist() == [True, False]
    assert item.keypoints[1, 0].tolist() == [W - 1, 11, 2]
    assert item.keypoints[1, 1].tolist() == [0, 0, 0]
    assert not np.isnan(item.keypoints).any()
    # Persons left out (no keypoints, NaN keypoint, zero-width box) get no loss; the
    # non-person annotation is in no mask.
    mask_miss, mask_all = item.mask_miss(), item.mask_all()
    for x, y in ((80, 65), (105, 75), (124, 84)):
        assert mask_miss[y, x] == 0 and mask_all[y, x] == 1
    assert mask_miss[40, 30] == 1 and mask_all[40, 30] == 1      # the main person
    assert mask_all[2, 2] == 0 and mask_miss[2, 2] == 1


def test_strict_stops_at_the_first_problem_naming_file_and_id(bad_input, tmp_path):
    ann, folder, out = bad_input
    stopped = run_packer(ann, folder, out, "--strict")
    assert stopped.returncode == 1
    # annotation-level problems are found before any image is packed, in file order
    assert "annotation_not_person" in stopped.stderr and "annotation 106" in stopped.stderr

    images = [image(11, "empty.jpg"), image(1, "good.jpg"), image(2, "truncated.jpg"),
              image(12, "small.jpg")]
    annotations = [person(101, 1, MAIN_BOX), person(201, 2, MAIN_BOX),
                   person(1201, 12, MAIN_BOX, labelled=4)]
    ann2 = write_annotations(tmp_path / "strict.json", images, annotations)
    out2 = tmp_path / "strict_db"
    stopped = run_packer(ann2, folder, out2, "--strict", "--workers", 2)
    assert stopped.returncode == 1
    assert "image_truncated" in stopped.stderr and "truncated.jpg (image 2)" in stopped.stderr
    # what came before the problem is saved (an image without people is no problem)
    with LmdbReader(out2, allow_incomplete=True) as reader:
        assert reader.metadata["progress"]["next_image"] == 2 and len(reader) == 1
    finished = run_packer(ann2, folder, out2)
    assert finished.returncode == 0, finished.stderr
    with LmdbReader(out2) as reader:
        assert reader.metadata["summary"]["reasons"] == {
            "no_person": 1, "image_truncated": 1, "no_main_person": 1}


@pytest.mark.parametrize("text, message", [
    ('{"images": [{"id": 1,\n "file_name": ', "line 2 column 15"),
    ('{"images": [], "categories": []}', "key 'annotations' is missing"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}]}',
     "one category named 'person'"),
    ("[1, 2]", "top level is not a JSON object"),
])
def test_unusable_annotation_file_is_a_clear_error(tmp_path, text, message):
    ann = tmp_path / "broken.json"
    ann.write_text(text)
    failed = run_packer(ann, tmp_path, tmp_path / "db")
    assert failed.returncode == 2
    assert str(ann) in failed.stderr and message in failed.stderr
    assert not (tmp_path / "db").exists()


def test_rle_strings_are_parsed_like_pycocotools():
    """The packer validates compressed RLE strings itself before pycocotools (which trusts
    them); its parser must agree with pycocotools on real encodings."""
    from pycocotools import mask as coco_mask
    from data_prep.packing import rle_string_counts
    random = np.random.RandomState(0)
    for trial in range(30):
        height, width = random.randint(1, 40, 2)
        mask = np.asfortranarray(random.rand(height, width) < random.rand())
        counts = coco_mask.encode(mask.astype(np.uint8))["counts"].decode("ascii")
        runs = rle_string_counts(counts)
        assert sum(runs) == height * width and min(runs) >= 0
        values = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
        np.testing.assert_array_equal(values, mask.ravel(order="F"))


def test_missing_images_folder_is_a_clear_error(tmp_path):
    ann = write_annotations(tmp_path / "ann.json", [image(1, "good.jpg")],
                            [person(101, 1, MAIN_BOX)])
    failed = run_packer(ann, tmp_path / "no_such_folder", tmp_path / "db")
    assert failed.returncode == 2 and "images folder does not exist" in failed.stderr
