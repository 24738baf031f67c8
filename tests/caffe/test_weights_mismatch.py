"""Weights that do not fit the prototxt are refused before Caffe or OpenCV loads them: MLN's
weights in the baseline's deploy net used to run through Caffe with the unmatched layers at
their fillers (rc 0, "0 people"), and to fail in OpenCV with a bare `!blobs.empty()`."""
import subprocess
import sys

import caffe
import cv2
import numpy as np
import pytest

from inference import backends
from inference.random_weights import write_random_weights
from tests.conftest import REPO

DEPLOY = {model: REPO / "prototxt" / model / "deploy.prototxt" for model in ("mln", "baseline")}


@pytest.fixture(scope="module")
def mln_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("mismatch") / "mln.caffemodel"
    write_random_weights(DEPLOY["mln"], path, seed=0)
    return path


def layers_caffe_leaves_at_their_fillers(weights):
    """The baseline's layers with parameters that MLN's caffemodel has no layer of that name
    for, as pycaffe lists them (Caffe copies by name)."""
    mln = caffe.Net(str(DEPLOY["mln"]), str(weights), caffe.TEST).params
    baseline = caffe.Net(str(DEPLOY["baseline"]), caffe.TEST).params
    return [name for name in baseline if name not in mln], len(baseline)


@pytest.mark.parametrize("backend", ["opencv", "caffe"])
def test_predict_refuses_mlns_weights_for_the_baseline(mln_weights, tmp_path, backend):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "1.png"), np.zeros((64, 80, 3), np.uint8))
    run = subprocess.run([sys.executable, str(REPO / "inference" / "predict.py"),
                          "--deploy", str(DEPLOY["baseline"]), "--weights", str(mln_weights),
                          "--images", str(tmp_path / "images"),
                          "--out", str(tmp_path / "r.json"), "--backend", backend],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=600)
    missing, total = layers_caffe_leaves_at_their_fillers(mln_weights)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("predict: error: weights %s do not fit %s: %d of its %d layers "
                                 "with parameters get none or the wrong ones (%s: no weights of "
                                 "that name; %s: no weights of that name; %s: no weights of "
                                 "that name; and %d more): pass the caffemodel trained with "
                                 "this prototxt" % ((mln_weights, DEPLOY["baseline"],
                                                     len(missing), total) + tuple(missing[:3])
                                                    + (len(missing) - 3,))), run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_the_caffe_backend_refuses_before_caffe_loads_the_net(mln_weights):
    with pytest.raises(backends.BackendError, match="do not fit .*baseline/deploy.prototxt"):
        backends.CaffeBackend(DEPLOY["baseline"], mln_weights)
