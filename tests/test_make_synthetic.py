"""The synthetic demo dataset: COCO schema, pycocotools round trips, keypoints on the drawn people,
masks, rates, left/right and determinism. Runs in both sessions (numpy/OpenCV/pycocotools only)."""
import json
import os
import re

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data_prep import make_synthetic, synthetic_body, synthetic_scene
from conventions.keypoints import COCO_KEYPOINT_NAMES

SIZE = (128, 160)           # small pictures keep the suite fast; the defaults are 256x256
SEED = 7
RATES = {"unannotated_rate": 0.15, "crowd_rate": 0.2, "occluder_rate": 0.3}
KP = {name: k for k, name in enumerate(COCO_KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic.make_dataset(str(out), {"train": 60, "val": 12}, SIZE, SEED, RATES,
                                progress=False)
    return out


def load(dataset, split):
    return COCO(str(dataset / "annotations" / ("person_keypoints_%s.json" % split)))


def scenes_with_annotations(dataset, split):
    """Each image's scene, drawn again from its seed, next to the image's annotations."""
    coco = load(dataset, split)
    for index, image_id in enumerate(sorted(coco.getImgIds())):
        scene = synthetic_scene.render_scene(make_synthetic.scene_rng(SEED, split, index),
                                              SIZE[0], SIZE[1], **RATES)
        yield coco, scene, coco.loadAnns(coco.getAnnIds(imgIds=image_id))


def tree_bytes(folder):
    return {os.path.relpath(os.path.join(root, name), folder):
            open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


# ----------------------------------------------------------------------------- schema

def test_layout_and_coco_schema(dataset):
    for split in ("train", "val"):
        coco = load(dataset, split)
        assert coco.dataset["categories"][0]["keypoints"] == list(COCO_KEYPOINT_NAMES)
        skeleton = coco.dataset["categories"][0]["skeleton"]
        assert [KP["left_shoulder"] + 1, KP["left_elbow"] + 1] in skeleton
        assert all(1 <= k <= 17 for pair in skeleton for k in pair)
        images = coco.dataset["images"]
        assert len(images) == {"train": 60, "val": 12}[split]
        assert sorted(os.listdir(str(dataset / split))) == sorted(i["file_name"] for i in images)
        picture = cv2.imread(str(dataset / split / images[0]["file_name"]))
        assert picture.shape == SIZE + (3,)
        assert all((i["height"], i["width"]) == SIZE for i in images)
        ids = [a["id"] for a in coco.dataset["annotations"]]
        assert len(ids) == len(set(ids))
        for a in coco.dataset["annotations"]:
            keypoints = np.array(a["keypoints"]).reshape(17, 3)
            assert a["category_id"] == 1 and a["area"] > 0 and a["bbox"][2] > 0
            assert set(keypoints[:, 2]) <= {0, 1, 2}
            assert a["num_keypoints"] == (keypoints[:, 2] > 0).sum()
            assert (keypoints[keypoints[:, 2] == 0, :2] == 0).all()
            if a["iscrowd"]:
                assert a["num_keypoints"] == 0
                assert isinstance(a["segmentation"]["counts"], list)   # COCO's crowd format
                assert a["segmentation"]["size"] == list(SIZE)
            else:
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])


def test_ground_truth_as_results_scores_ap_one(dataset):
    coco = load(dataset, "val")
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0}
               for a in coco.dataset["annotations"] if a["num_keypoints"] > 0]
    evaluation = COCOeval(coco, coco.loadRes(results), "keypoints")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)      # AP
    assert evaluation.stats[5] == pytest.approx(1.0)      # AR


# ----------------------------------------------------------------------------- geometry

def test_annotated_keypoints_lie_on_the_drawn_person(dataset):
    visible, occluded = 0, 0
    for coco, scene, annotations in scenes_with_annotations(dataset, "val"):
        people = [p for p in scene.people if p.annotated]
        published = [a for a in annotations if not a["iscrowd"] and a["num_keypoints"] > 0]
        assert len(published) == sum(1 for p in people if (p.keypoints[:, 2] > 0).any())
        drawn = np.abs(scene.clean.astype(int) - scene.background.astype(int)).max(axis=2) > 0
        for person in people:
            assert person.visible.sum() >= synthetic_scene.MIN_SEEN_FRACTION * person.mask.sum()
            for k, (x, y, v) in enumerate(person.keypoints):
                if v == 0:
                    continue
                assert 0 <= x <= SIZE[1] - 1 and 0 <= y <= SIZE[0] - 1
                column, row = int(round(x)), int(round(y))
                assert person.mask[row, column], COCO_KEYPOINT_NAMES[k]
                if v == 2:
                    visible += 1
                    assert person.visible[row, column] and drawn[row, column]
                else:
                    occluded += 1
                    # hidden by something drawn later, or a face point behind the head
                    assert (not person.visible[row, column]
                            or COCO_KEYPOINT_NAMES[k] in synthetic_body.FACE_POINTS)
    assert visible > 100 and occluded > 5


def test_published_keypoints_are_the_scene_keypoints(dataset):
    for coco, scene, annotations in scenes_with_annotations(dataset, "val"):
        published = [np.array(a["keypoints"]).reshape(17, 3) for a in annotations
                     if a["num_keypoints"] > 0]
        expected = [p.keypoints for p in scene.people
                    if p.annotated and (p.keypoints[:, 2] > 0).any()]
        assert len(published) == len(expected)
        for got, want in zip(published, expected):
            np.testing.assert_allclose(got, want, atol=0.006)


def test_segmentations_cover_the_drawn_people(dataset):
    ious = []
    for coco, scene, annotations in scenes_with_annotations(dataset, "val"):
        people = [a for a in annotations if not a["iscrowd"]]
        assert len(people) == len(scene.people)
        for annotation, person in zip(people, scene.people):
            mask = coco.annToMask(annotation).astype(bool)
            ious.append((mask & person.mask).sum() / float((mask | person.mask).sum()))
            assert annotation["area"] == pytest.approx(mask.sum())
        crowds = [a for a in annotations if a["iscrowd"]]
        assert len(crowds) == (scene.crowd_mask is not None)
        for crowd in crowds:
            np.testing.assert_array_equal(coco.annToMask(crowd).astype(bool), scene.crowd_mask)
    assert min(ious) > 0.8 and np.mean(ious) > 0.9


def test_clip_polygon_keeps_the_part_inside_the_image():
    square = np.array([[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0]])
    clipped = make_synthetic.clip_polygon(square, width=20, height=5)
    assert clipped[:, 0].min() == 0 and clipped[:, 1].min() == 0
    assert clipped[:, 0].max() == 10 and clipped[:, 1].max() == 5
    assert cv2.contourArea(clipped.astype(np.float32)) == pytest.approx(50)


def test_persons_face_the_viewer_so_right_is_on_the_left_of_the_body_axis(dataset):
    upright = 0
    for split in ("train", "val"):
        for a in load(dataset, split).dataset["annotations"]:
            k = np.array(a["keypoints"], dtype=float).reshape(17, 3)
            names = ("right_shoulder", "left_shoulder", "right_hip", "left_hip")
            if any(k[KP[n], 2] == 0 for n in names):
                continue
            rs, ls, rh, lh = (k[KP[n], :2] for n in names)
            up = (rs + ls) / 2 - (rh + lh) / 2                    # hips to shoulders
            for right, left in ((rs, ls), (rh, lh)):
                across = left - right
                # image y points down: a viewer-facing person's left-minus-right crossed with
                # its upward axis is negative, however the person is turned in the image
                assert across[0] * up[1] - across[1] * up[0] < 0
            if up[1] < -2 * abs(up[0]):                           # roughly upright
                upright += 1
                assert rs[0] < ls[0] and rh[0] < lh[0]
    assert upright > 50


# ----------------------------------------------------------------------------- rates

def test_unannotated_people_and_crowds_appear_at_their_rates(dataset):
    people = unannotated = crowds = images = 0
    for split in ("train", "val"):
        data = load(dataset, split).dataset
        persons = [a for a in data["annotations"] if not a["iscrowd"]]
        people += len(persons)
        unannotated += sum(1 for a in persons if a["num_keypoints"] == 0)
        crowds += sum(1 for a in data["annotations"] if a["iscrowd"])
        images += len(data["images"])
    # ~165 people and 72 images: a wide band around the rates, but the counts are exact for a
    # seed, so this cannot flicker
    assert 0.07 < unannotated / float(people) < 0.25
    assert 0.1 < crowds / float(images) < 0.32


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rates_reach_their_extremes(rate):
    scenes = [synthetic_scene.render_scene(np.random.RandomState(i), 96, 96,
                                            unannotated_rate=rate, crowd_rate=rate,
                                            occluder_rate=rate) for i in range(8)]
    assert all(p.annotated == (rate == 0) for s in scenes for p in s.people)
    assert all((s.crowd_mask is not None) == (rate == 1) for s in scenes)


# ----------------------------------------------------------------------------- determinism, CLI

def test_same_seed_same_bytes_and_more_images_keep_the_first(tmp_path):
    def make(name, train, seed=3):
        make_synthetic.make_dataset(str(tmp_path / name), {"train": train, "val": 2}, (96, 128),
                                    seed, RATES, progress=False)
        return tree_bytes(str(tmp_path / name))

    first, again, other, longer = make("a", 4), make("b", 4), make("c", 4, seed=4), make("d", 6)
    assert first == again
    assert set(other) == set(first) and all(other[n] != first[n] for n in first)
    assert all(longer[n] == first[n] for n in first if n.endswith(".jpg"))
    assert len(longer) == len(first) + 2


def test_cli_writes_a_summary_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = str(tmp_path / "data")
    os.makedirs(os.path.join(out, make_synthetic.PARTIAL_PREFIX + "killed", "train"))
    make_synthetic.main(["--out", out, "--train", "3", "--val", "1", "--size", "96x128"])
    printed = capsys.readouterr().out
    assert re.search(r"train +3 images", printed) and re.search(r"val +1 images", printed)
    with open(os.path.join(out, "annotations", "person_keypoints_val.json")) as f:
        assert json.load(f)["images"][0]["height"] == 96
    assert sorted(os.listdir(out)) == ["annotations", "train", "val"]    # no partial folders
    with pytest.raises(SystemExit) as stop:
        make_synthetic.main(["--out", out, "--train", "1", "--val", "1"])
    assert stop.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    make_synthetic.main(["--out", out, "--train", "2", "--val", "1", "--overwrite"])
    assert len(os.listdir(os.path.join(out, "train"))) == 2
