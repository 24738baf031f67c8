"""predict.py through pycaffe, and Caffe against OpenCV's DNN module on the same files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from inference import backends, evaluate
from tests.conftest import REPO
from tests.tiny_nets import write_codec_images


@pytest.mark.parametrize("size", [(64, 80), (368, 432), (96, 40)])
def test_caffe_and_opencv_agree_and_the_input_follows_each_image(tiny_nets, size):
    caffe_net = backends.CaffeBackend(tiny_nets / "random.prototxt",
                                      tiny_nets / "random.caffemodel")
    opencv_net = backends.OpenCVBackend(tiny_nets / "random.prototxt",
                                        tiny_nets / "random.caffemodel")
    blob = np.random.RandomState(2).uniform(-0.5, 0.5, (1, 3) + size).astype(np.float32)
    ours = caffe_net.forward(blob)
    assert ours.shape == (1, 57, size[0] // 8, size[1] // 8)
    np.testing.assert_allclose(opencv_net.forward(blob), ours, rtol=1e-4,
                               atol=1e-4 * np.abs(ours).max())


def test_predict_with_caffe_finds_the_people_and_equals_opencv(tiny_nets, tmp_path):
    annotation = write_codec_images(tmp_path / "images")
    outputs = {}
    for backend in ("caffe", "opencv"):
        out = tmp_path / (backend + ".json")
        run = subprocess.run([sys.executable, str(REPO / "inference" / "predict.py"),
                              "--deploy", str(tiny_nets / "codec.prototxt"),
                              "--weights", str(tiny_nets / "codec.caffemodel"),
                              "--images", str(tmp_path / "images"), "--ann", str(annotation),
                              "--out", str(out), "--backend", backend],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        assert run.returncode == 0, run.stderr
        outputs[backend] = json.loads(out.read_text())
    metrics = evaluate.evaluate(evaluate.load_ground_truth(annotation), outputs["caffe"])
    assert metrics["AP"] == pytest.approx(1.0)
    assert outputs["caffe"] == outputs["opencv"]


def test_a_net_without_net_output_is_named(tiny_nets, tmp_path):
    prototxt = (tiny_nets / "random.prototxt").read_text().replace('"net_output"', '"maps"')
    (tmp_path / "renamed.prototxt").write_text(prototxt)
    with pytest.raises(backends.BackendError, match="renamed.prototxt has no blob 'net_output'"):
        backends.CaffeBackend(tmp_path / "renamed.prototxt", tiny_nets / "random.caffemodel")
