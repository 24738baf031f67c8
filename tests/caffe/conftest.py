"""Fixtures of the Caffe session: the COCO slice packed once by data_prep's packer."""
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
