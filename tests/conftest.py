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
