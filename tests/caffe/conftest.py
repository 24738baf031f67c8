"""Fixtures of the Caffe session: the COCO slice, and a small synthetic set, packed once by
data_prep's packer."""
import pytest

from tests.caffe.data_prep_helpers import run_packer


@pytest.fixture(scope="session")
def coco_mini_lmdb(coco_mini, tmp_path_factory):
    """The COCO slice as a training LMDB (25 records, 65 main persons), packed once per session."""
    out = tmp_path_factory.mktemp("coco_mini_lmdb") / "db"
    done = run_packer(coco_mini / "person_keypoints_train2017.json", coco_mini / "images", out,
                      "--workers", 0)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def synthetic_lmdb(tmp_path_factory):
    """4 images of data_prep/make_synthetic.py (seed 0, 256x256, 8 main persons) as a training
    LMDB, packed once per session: training tests that need no real photographs (and no
    ../shared) use it."""
    from data_prep import make_synthetic
    base = tmp_path_factory.mktemp("synthetic_lmdb")
    make_synthetic.main(["--out", str(base / "coco"), "--train", "4", "--val", "0"])
    out = base / "db"
    done = run_packer(base / "coco" / "annotations" / "person_keypoints_train.json",
                      base / "coco" / "train", out, "--workers", 0)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def generated_lmdb(generated_coco, tmp_path_factory):
    """generated_coco (tests/conftest.py: 12 drawn images with crowd regions and unannotated
    people) as a training LMDB, packed once per session: the data, training and packing tests
    that run without ../shared use it."""
    out = tmp_path_factory.mktemp("generated_lmdb") / "db"
    done = run_packer(generated_coco / "annotations" / "person_keypoints_train.json",
                      generated_coco / "train", out, "--workers", 0)
    assert done.returncode == 0, done.stderr
    return out
