"""inference/export_onnx.py without Caffe: the exported model run by ONNX Runtime against
OpenCV's DNN module reading the same Caffe files (Caffe's own forward: tests/host/
test_export_onnx_caffe.py), and what it refuses."""
import subprocess
import sys

import numpy as np
import pytest

from tests import onnx_nets
from tests.conftest import REPO

onnx = pytest.importorskip("onnx", reason="onnx is in the deploy extra: pip install -e .[deploy]")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the deploy extra")
cv2 = pytest.importorskip("cv2")

from inference import backends, export_onnx  # noqa: E402


def export_cli(deploy, weights, out):
    return subprocess.run([sys.executable, str(REPO / "inference" / "export_onnx.py"),
                           "--deploy", str(deploy), "--weights", str(weights), "--out", str(out)],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def test_export_equals_opencv_at_any_size(tmp_path):
    """Sizes that are not multiples of 8 make Caffe's ceil rounding of the pools visible (100
    -> 50 -> 25 -> 13); one session serves them all (dynamic height and width)."""
    deploy, weights = onnx_nets.write_net(tmp_path)
    run = export_cli(deploy, weights, tmp_path / "net.onnx")
    assert run.returncode == 0, run.stderr
    model = onnx.load(str(tmp_path / "net.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == ["net_output"]
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    opencv = backends.OpenCVBackend(deploy, weights)
    for size in ((64, 64), (100, 124), (36, 52)):
        blob = np.random.RandomState(sum(size)).uniform(-0.5, 0.5, (1, 3) + size)
        blob = blob.astype(np.float32)
        expected = opencv.forward(blob)
        got = session.run(None, {"data": blob})[0]
        assert got.shape == expected.shape, size
        assert np.abs(got - expected).max() < 1e-4, size


def test_unknown_layer_is_refused_by_name(tmp_path):
    deploy, weights = onnx_nets.write_net(tmp_path, extra=(
        'layer { name: "squash" type: "Sigmoid" bottom: "heat2" top: "heat2" }\n'))
    run = export_cli(deploy, weights, tmp_path / "net.onnx")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "export_onnx: %s: layer 'squash' of type Sigmoid is not supported by the exporter (it "
        "converts Input, Convolution, ReLU, Pooling, Concat)" % deploy)
    assert not (tmp_path / "net.onnx").exists()


def test_a_layer_off_the_output_path_is_not_exported(tmp_path):
    """Side branches that do not lead to net_output need no support."""
    deploy, weights = onnx_nets.write_net(tmp_path, extra=(
        'layer { name: "side" type: "Sigmoid" bottom: "heat2" top: "side" }\n'))
    model = export_onnx.caffe_to_onnx(deploy, weights)
    assert "side" not in [node.name for node in model.graph.node]


def test_weights_of_another_net_are_refused(tmp_path):
    deploy, _ = onnx_nets.write_net(tmp_path)
    weights = onnx_nets.write_weights(tmp_path / "partial.caffemodel", skip=("paf2",))
    run = export_cli(deploy, weights, tmp_path / "net.onnx")
    assert run.returncode == 1
    assert "layer 'paf2': no weights of that name" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_average_pooling_is_refused(tmp_path):
    deploy, weights = onnx_nets.write_net(tmp_path)
    deploy.write_text(deploy.read_text().replace("pool: MAX", "pool: AVE", 1))
    with pytest.raises(export_onnx.ExportError, match="layer 'pool1' .*Pooling AVE"):
        export_onnx.caffe_to_onnx(deploy, weights)
