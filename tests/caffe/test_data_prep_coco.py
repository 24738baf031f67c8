"""The packer on the real COCO slice: which images and persons it keeps, the masks against
pycocotools' own rasterisation, crowd RLEs in both encodings, the reader API, inspect_lmdb."""
import collections
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from data_prep.record import LmdbReader, RecordError
from tests.caffe.data_prep_helpers import database_content, run_packer
from tests.conftest import REPO

ANNOTATIONS = "person_keypoints_train2017.json"


@pytest.fixture(scope="module")
def slice_db(coco_mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("slice") / "db"
    done = run_packer(coco_mini / ANNOTATIONS, coco_mini / "images", out, "--workers", 2)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def dataset(coco_mini):
    with open(str(coco_mini / ANNOTATIONS)) as stream:
        return json.load(stream)


def expected_main_persons(dataset):
    """{image id: [main annotation ids]} in file order, worked out from the JSON alone with
    OpenPose's rule as conventions/README.md states it (written apart from data_prep/packing.py):
    >= 5 keypoints, area >= 32*32, box centre not within 0.3*max(w, h) of an accepted one."""
    annotations = collections.defaultdict(list)
    for annotation in dataset["annotations"]:
        annotations[annotation["image_id"]].append(annotation)
    expected = collections.OrderedDict()
    for image in dataset["images"]:
        accepted = []
        for a in annotations[image["id"]]:
            if a["iscrowd"] or a["num_keypoints"] < 5 or a["area"] < 32 * 32:
                continue
            x, y, w, h = a["bbox"]
            centre = (x + w / 2.0, y + h / 2.0)
            if all(math.hypot(centre[0] - c[0], centre[1] - c[1]) >= 0.3 * reach
                   for c, reach, _ in accepted):
                accepted.append((centre, max(w, h), a["id"]))
        if accepted:
            expected[image["id"]] = [annotation_id for _, _, annotation_id in accepted]
    return expected


def test_records_and_main_persons_follow_the_rule(slice_db, dataset):
    expected = expected_main_persons(dataset)
    # Hand-checked constants for this slice (80 images, 172 annotations): 36 images have
    # annotations, 25 of them a main person, 65 main persons in all; 86 persons have keypoints,
    # 3 of them in images without a main person, so 83 persons in records; 81 non-crowd
    # annotations have no keypoint; 44 images have no annotation; 5 crowd regions.
    assert len(expected) == 25
    assert sum(len(ids) for ids in expected.values()) == 65
    with LmdbReader(slice_db) as reader:
        assert len(reader) == 25
        assert [r.image_id for r in reader] == list(expected)
        by_image = collections.defaultdict(list)
        for a in dataset["annotations"]:
            if not a["iscrowd"] and a["num_keypoints"] > 0:
                by_image[a["image_id"]].append(a["id"])
        for item in reader:
            assert item.annotation_ids[item.is_main].tolist() == expected[item.image_id]
            assert item.annotation_ids.tolist() == by_image[item.image_id]
        summary = reader.metadata["summary"]
    assert (summary["images_read"], summary["records"], summary["persons"],
            summary["main_persons"]) == (80, 25, 83, 65)
    assert summary["reasons"] == {"no_person": 44, "no_main_person": 11,
                                  "person_no_keypoints": 81}


def test_record_fields_match_the_annotations(slice_db, dataset, coco_mini):
    annotations = {a["id"]: a for a in dataset["annotations"]}
    images = {i["id"]: i for i in dataset["images"]}
    with LmdbReader(slice_db) as reader:
        for item in reader:
            entry = images[item.image_id]
            assert (item.file_name, item.height, item.width) == (
                entry["file_name"], entry["height"], entry["width"])
            with open(str(coco_mini / "images" / item.file_name), "rb") as stream:
                assert item.jpeg == stream.read()           # the original file, byte for byte
            for p, annotation_id in enumerate(item.annotation_ids):
                a = annotations[int(annotation_id)]
                coco = np.array(a["keypoints"], dtype=np.float32).reshape(17, 3)
                np.testing.assert_array_equal(item.keypoints[p], coco)
                np.testing.assert_allclose(item.boxes[p], a["bbox"], rtol=1e-6)
                x, y, w, h = a["bbox"]
                np.testing.assert_allclose(item.centers[p], [x + w / 2, y + h / 2], rtol=1e-6)
                np.testing.assert_allclose(item.scales[p], h / 368.0, rtol=1e-6)
                assert item.areas[p] == pytest.approx(a["area"], rel=1e-6)
                # the neck (part 1) is the shoulders' midpoint (COCO 5 and 6), when both exist
                shoulders = coco[[5, 6]]
                if (shoulders[:, 2] > 0).all():
                    np.testing.assert_allclose(item.parts[p, 1, :2], shoulders[:, :2].mean(0))
                else:
                    assert (item.parts[p, 1] == 0).all()


def test_masks_equal_pycocotools_rasterisation(slice_db, coco_mini):
    coco = COCO(str(coco_mini / ANNOTATIONS))
    crowd_records = 0
    with LmdbReader(slice_db) as reader:
        for item in reader:
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[item.image_id], iscrowd=None))
            shape = (item.height, item.width)
            union = lambda anns: np.any([coco.annToMask(a) > 0 for a in anns] +
                                        [np.zeros(shape, bool)], axis=0)
            people = union([a for a in annotations if not a["iscrowd"]])
            crowd = union([a for a in annotations if a["iscrowd"]])
            unlabelled = union([a for a in annotations
                                if not a["iscrowd"] and a["num_keypoints"] == 0])
            crowd_records += bool(crowd.any())
            np.testing.assert_array_equal(item.mask_all(), people | crowd)
            # OpenPose's mask_miss: people without keypoints and crowd regions (minus the pixels
            # of individually segmented people) get no loss.
            np.testing.assert_array_equal(item.mask_miss(), ~(unlabelled | (crowd & ~people)))
    assert crowd_records == 5          # every crowd region of the slice is in a record


def test_compressed_crowd_rle_gives_the_same_records(slice_db, dataset, coco_mini, tmp_path):
    """COCO's crowd regions come as uncompressed RLE (the slice) or compressed strings (what
    pycocotools writes): both must give byte-identical records."""
    converted = json.loads(json.dumps(dataset))
    strings = 0
    for a in converted["annotations"]:
        if a["iscrowd"]:
            height, width = a["segmentation"]["size"]
            rle = coco_mask.frPyObjects(a["segmentation"], height, width)
            a["segmentation"] = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
            strings += 1
    assert strings == 5
    ann = tmp_path / "compressed.json"
    ann.write_text(json.dumps(converted))
    done = run_packer(ann, coco_mini / "images", tmp_path / "db", "--workers", 0)
    assert done.returncode == 0, done.stderr
    assert database_content(tmp_path / "db")[b"records"] == database_content(slice_db)[b"records"]


def test_reader_api(slice_db, coco_mini):
    with LmdbReader(slice_db) as reader:
        meta = reader.metadata
        assert meta["schema_version"] == 1 and meta["complete"] and meta["records"] == 25
        assert meta["run"]["annotation_file"]["path"] == str(coco_mini / ANNOTATIONS)
        item = reader[len(reader) - 1]
        P = item.num_persons
        assert item.parts.shape == (P, 18, 3) and item.parts.dtype == np.float32
        assert item.boxes.shape == (P, 4) and item.centers.shape == (P, 2)
        assert item.areas.shape == item.scales.shape == item.is_main.shape == (P,)
        assert item.is_main.dtype == bool
        pixels = item.image()
        assert pixels.shape == (item.height, item.width, 3) and pixels.dtype == np.uint8
        for mask in (item.mask_miss(), item.mask_all()):
            assert mask.shape == (item.height, item.width) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1}
        with pytest.raises(IndexError):
            reader[len(reader)]
        # A forked child (a data-layer worker) reads through its own LMDB handle.
        pid = os.fork()
        if pid == 0:
            try:
                same = reader[len(reader) - 1].image_id == item.image_id
                os._exit(0 if same and reader[0].mask_all().any() else 1)
            except BaseException:
                os._exit(2)
        assert os.waitpid(pid, 0)[1] == 0


def test_inspect_lmdb_draws_a_record(slice_db, tmp_path):
    with LmdbReader(slice_db) as reader:
        index = next(i for i, r in enumerate(reader) if (r.mask_miss() == 0).any())
        item = reader[index]
    png = tmp_path / "record.png"
    done = subprocess.run([sys.executable, str(REPO / "data_prep" / "inspect_lmdb.py"),
                           str(slice_db), "--index", str(index), "--out", str(png)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert done.returncode == 0, done.stderr
    assert "records written          25" in done.stdout
    assert "main_persons                   65" in done.stdout
    picture = cv2.imread(str(png))
    assert picture.shape == (item.height, item.width, 3)
    # Where the loss is off the picture is tinted red: redder than the image itself.
    no_loss = item.mask_miss() == 0
    original = item.image()
    assert picture[no_loss][:, 2].mean() > original[no_loss][:, 2].mean() + 20


def test_reader_refuses_what_is_not_a_database(tmp_path):
    with pytest.raises(RecordError, match="not a packed database"):
        LmdbReader(tmp_path)
