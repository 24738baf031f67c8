"""Fixtures shared by both suites (inside the Caffe env and tests/host in the deploy venv).

Nothing here imports Caffe: this file is loaded by both sessions.
"""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = pathlib.Path(
    os.environ.get("MLN_COCO_MINI", REPO.parent / "shared" / "data" / "coco_train2017_mini"))


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def coco_mini():
    """The real COCO train2017 slice beside the repository (read-only; never copied in)."""
    if not (COCO_MINI / "person_keypoints_train2017.json").is_file():
        pytest.skip("COCO slice not found at %s (set MLN_COCO_MINI)" % COCO_MINI)
    return COCO_MINI


GENERATED_IMAGES, GENERATED_SEED = 12, 0


@pytest.fixture(scope="session")
def generated_coco(tmp_path_factory):
    """A COCO-format dataset drawn by data_prep/make_synthetic.py (12 train images, 256x256,
    seed 0), made once per session and needing no ../shared: 34 annotations, 3 of them crowd
    regions (iscrowd RLEs, in images 3, 5 and 7) and 3 unannotated people (num_keypoints 0).
    -> folder with annotations/person_keypoints_train.json and train/*.jpg."""
    from data_prep import make_synthetic
    out = tmp_path_factory.mktemp("generated_coco") / "coco"
    make_synthetic.main(["--out", str(out), "--train", str(GENERATED_IMAGES), "--val", "0",
                         "--seed", str(GENERATED_SEED)])
    return out


@pytest.fixture(scope="session")
def tiny_nets(tmp_path_factory):
    """Folder with the tiny deploy nets of tests/tiny_nets.py (made once, through caffe-env, so
    that the deploy venv's tests get them too); skips where Caffe is not set up."""
    import subprocess
    out = tmp_path_factory.mktemp("tiny_nets")
    run = subprocess.run([str(REPO / "scripts" / "caffe-env"), "python", "-m", "tests.tiny_nets",
                          str(out)], cwd=str(REPO), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    if run.returncode == 125:       # caffe-env's own error: no Caffe set up here
        pytest.skip("no Caffe to make the tiny nets with: %s" % run.stdout.strip()[-300:])
    assert run.returncode == 0, run.stdout[-3000:]
    return out


@pytest.fixture(scope="session")
def codec_images(tmp_path_factory):
    """(folder of images that carry their own maps for the tiny codec net, their COCO
    annotation file): synthetic standing people, 1, 2 and 10 an image (tests/tiny_nets.py)."""
    from tests.tiny_nets import write_codec_images
    folder = tmp_path_factory.mktemp("codec") / "images"
    return folder, write_codec_images(folder)
