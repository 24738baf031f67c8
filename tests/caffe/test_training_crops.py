"""scripts/training_crops.py: the crops it writes are exactly the data layer's samples
without augmentation, with the people's keypoints where the labels put them."""
import json

import cv2
import numpy as np
import pytest

from conventions.keypoints import NUM_PARTS, parts_to_coco
from data_prep.make_synthetic import make_dataset
from data_prep.record import LmdbReader
from python_layers import augment
from python_layers.batch_source import list_samples
from scripts import training_crops
from tests.caffe.data_prep_helpers import run_packer

CROP = 96
NO_AUGMENTATION = {"scale_prob": 0, "max_rotate_degree": 0, "center_perturb_max": 0,
                   "flip_prob": 0}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    make_dataset(str(folder / "synthetic"), {"train": 3, "val": 0}, (160, 200), seed=5,
                 rates={"unannotated_rate": 0.15, "crowd_rate": 0.2, "occluder_rate": 0.3},
                 progress=False)
    lmdb = folder / "db"
    done = run_packer(folder / "synthetic" / "annotations" / "person_keypoints_train.json",
                      folder / "synthetic" / "train", lmdb, "--workers", 0)
    assert done.returncode == 0, done.stderr
    params = augment.AugmentParams(crop_size=CROP, **NO_AUGMENTATION)
    summary = training_crops.write_crops(str(lmdb), params, str(folder / "out"))
    return lmdb, folder / "out", params, summary


def test_crops_are_the_data_layers_unaugmented_samples(packed):
    lmdb, out, params, summary = packed
    dataset = json.loads((out / "crops.json").read_text())
    by_id = {entry["id"]: entry for entry in dataset["images"]}
    with LmdbReader(str(lmdb)) as reader:
        samples = list_samples(reader)
        assert summary["crops"] == len(samples) == len(dataset["images"]) > 0
        for record_index, person in samples:
            record = reader[record_index]
            sample = augment.sample_from_record(record, person, params, None,
                                                augment.NO_AUGMENTATION)
            entry = by_id[training_crops.crop_image_id(record.image_id, person)]
            written = cv2.imread(str(out / "images" / entry["file_name"]))
            np.testing.assert_array_equal(written, sample.crop)
            # the data layer, drawing its own (disabled) augmentation, makes the same input
            drawn = augment.sample_from_record(record, person, params, np.random.RandomState(0))
            np.testing.assert_array_equal(drawn.crop, sample.crop)


def test_keypoints_are_the_labelled_parts_inside_the_crop(packed):
    lmdb, out, params, _ = packed
    dataset = json.loads((out / "crops.json").read_text())
    with LmdbReader(str(lmdb)) as reader:
        records = {reader[i].image_id: reader[i] for i in range(len(reader))}
    checked = crowds = 0
    for entry in dataset["images"]:
        image_id, person = divmod(entry["id"], 1000)
        record = records[image_id]
        sample = augment.sample_from_record(record, person, params, None,
                                            augment.NO_AUGMENTATION)
        expected = parts_to_coco(sample.parts)
        annotations = [a for a in dataset["annotations"] if a["image_id"] == entry["id"]]
        for annotation in annotations:
            keypoints = np.asarray(annotation["keypoints"]).reshape(17, 3)
            # one of the record's people, moved by the crop's matrix; outside ones dropped
            matches = [p for p in expected
                       if np.allclose(keypoints[keypoints[:, 2] > 0, :2],
                                      p[keypoints[:, 2] > 0, :2], atol=1e-2)]
            assert matches, annotation
            inside = keypoints[:, 2] > 0
            assert annotation["num_keypoints"] == int(inside.sum())
            assert np.all((keypoints[inside, :2] >= 0) & (keypoints[inside, :2] <= CROP - 1))
            # a person the grouping cannot assemble from the crop (neck outside, or under 4 of
            # the 18 parts inside) is an ignore region
            parts = [p for p in sample.parts
                     if np.allclose(parts_to_coco(p)[inside, :2], keypoints[inside, :2],
                                    atol=1e-2)][0]
            in_crop = (parts[:, 2] > 0) & np.all((parts[:, :2] >= 0) & (parts[:, :2] <= CROP - 1),
                                                 axis=1)
            assemblable = bool(in_crop[1]) and int(in_crop.sum()) >= 4      # part 1: the neck
            assert annotation["iscrowd"] == (0 if assemblable else 1), annotation
            crowds += annotation["iscrowd"]
            checked += 1
    assert checked >= len(dataset["images"])        # every crop shows at least its person
    assert 0 < crowds < checked                     # both kinds occur in this data
    assert NUM_PARTS == 18


def test_whole_image_scale_brings_people_to_the_trained_height(packed):
    lmdb, out, params, _ = packed
    scales = json.loads((out / "scales.json").read_text())
    with LmdbReader(str(lmdb)) as reader:
        for index in range(len(reader)):
            record = reader[index]
            # predict.py resizes the image to height 368 x scale: people grow by that / height
            factor = 368 * scales[str(record.image_id)] / record.height
            median_height = float(np.median(record.boxes[:, 3])) * factor
            assert median_height == pytest.approx(params.target_dist * CROP, rel=1e-6)
