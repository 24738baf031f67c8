"""./scripts/overfit.sh, reduced: one synthetic image learnt by heart from scratch (the field's
first sanity check of a training chain), and the check's refusals of bad input."""
import json
import subprocess

import pytest

from tests.conftest import REPO

OVERFIT = str(REPO / "scripts" / "overfit.sh")
ITERATIONS = 150


def overfit(*args, timeout=900):
    return subprocess.run([OVERFIT] + [str(a) for a in args], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit") / "one"
    # seed 30's first image: one person, all 17 keypoints labelled, no crowd
    run = overfit("--synthetic", 1, "--seed", 30, "--augmentation", "none",
                  "--iters", ITERATIONS, "--checks", 1, "--gpu", "cpu", "--out", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run, json.loads((out / "report.json").read_text())


def test_one_image_is_learnt_below_the_background_only_loss(one_image):
    _, _, report = one_image
    assert report["iterations"] == ITERATIONS
    assert report["loss_first"] == pytest.approx(report["loss_zero"], rel=0.3)
    # below what knowing only the background scores: parts and limbs are located
    assert report["loss_last"] < report["background_only"], report["curve"][-5:]


def test_one_image_is_found_exactly_on_its_training_crops(one_image):
    out, run, report = one_image
    assert report["AP_crops"] >= 0.9, report["checks"]
    check = report["checks"][-1]
    assert check["crops_median_error_px"] < 3.0
    assert "AP by iteration" in run.stdout and "background only" in run.stdout


def test_the_report_and_the_final_network_are_written(one_image):
    out, _, report = one_image
    for key in ("AP", "AP50", "AP_crops", "iterations", "seconds", "loss_first", "loss_last",
                "background_only", "people", "found"):
        assert key in report, key
    assert report["people"] == 1 and report["seconds"] > 0
    assert (out / "deploy.prototxt").read_text().count("net_output") >= 1
    assert (out / "final.caffemodel").stat().st_size > 80e6          # MLN's 85 MB of fp32
    assert list((out / "pictures" / "crops").glob("*.jpg"))
    assert list((out / "pictures" / "whole").glob("*.jpg"))


@pytest.mark.parametrize("args, message", [
    (["--image-ids", "790"], "--image-ids needs --coco"),
    (["--iters", "0"], "must be at least 1"),
    (["--image-ids", "7x"], "expected image ids separated by commas"),
])
def test_bad_options_are_refused_in_one_line(tmp_path, args, message):
    run = overfit("--out", tmp_path / "o", *args, timeout=120)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_an_image_id_missing_from_the_annotations_is_named(tmp_path, coco_mini):
    run = overfit("--out", tmp_path / "o", "--coco", coco_mini / "person_keypoints_train2017.json",
                  coco_mini / "images", "--image-ids", "790,12345678", timeout=300)
    assert run.returncode == 1
    assert "image id(s) 12345678 are not in" in run.stderr and "Traceback" not in run.stderr
