"""The exported fp32 ONNX model against Caffe's own forward pass, both deploy nets and a net of
every option the exporter converts.

Caffe runs in its environment (scripts/caffe-env: Python 3.9, numpy 1.19, for which ONNX
Runtime and OpenVINO have no wheels that fit), ONNX Runtime and OpenVINO in the deploy venv: a
caffe-env step (tests/caffe_forward.py) writes Caffe's outputs to a file, which this test, in
the venv, compares with the runtimes' outputs. Weights: He-normal with non-zero biases, written
without Caffe (tests/onnx_nets.py). Inputs whose sides are not multiples of 8 make Caffe's
rounding of the pools count (100 -> 50 -> 25 -> 13)."""
import subprocess

import numpy as np
import pytest

from tests import onnx_nets
from tests.conftest import REPO

pytest.importorskip("onnx", reason="onnx is in the deploy extra: pip install -e .[deploy]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the deploy extra")
pytest.importorskip("openvino", reason="openvino is in the deploy extra")

from inference import export_onnx, onnx_backends  # noqa: E402

TOLERANCE = 1e-4            # max abs difference, outputs of range ~5-10 on random weights
SIZES = ((100, 124), (64, 72))

# Every option the exporter maps: stride, dilation, groups, no bias, leaky ReLU, floor rounding
# with padding, ceil rounding, a concat of branches of different depths, the old net-level
# input. The input sizes make both pools round (b is 18x22 and 20x24: floor of 8.5, ceil of
# 7.5 and 9.5).
OPTIONS_NET = """name: "options"
input: "data"
input_shape { dim: 1 dim: 3 dim: 35 dim: 43 }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "leaky" type: "ReLU" bottom: "a" top: "a" relu_param { negative_slope: 0.1 } }
layer { name: "b" type: "Convolution" bottom: "a" top: "b"
  convolution_param { num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 stride: 2
                      group: 2 bias_term: false } }
layer { name: "floor" type: "Pooling" bottom: "b" top: "floor"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR } }
layer { name: "ceil" type: "Pooling" bottom: "b" top: "ceil"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "c" type: "Convolution" bottom: "ceil" top: "c"
  convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "net_output" type: "Concat" bottom: "floor" bottom: "c" top: "net_output" }
"""


def caffe_outputs(deploy, weights, inputs, out):
    run = subprocess.run([str(REPO / "scripts" / "caffe-env"), "python", "-m",
                          "tests.caffe_forward", "--deploy", str(deploy), "--weights",
                          str(weights), "--out", str(out)] + [str(i) for i in inputs],
                         cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if run.returncode == 125:       # caffe-env's own error: no Caffe set up here
        pytest.skip("no Caffe to compare with: %s" % run.stdout.strip()[-300:])
    assert run.returncode == 0, run.stdout[-3000:]
    loaded = np.load(str(out))
    return [loaded["output_%d" % index] for index in range(len(inputs))]


def compare_with_caffe(deploy, tmp_path, sizes):
    weights = onnx_nets.write_random_weights(deploy, tmp_path / "random.caffemodel")
    inputs = []
    for size in sizes:
        inputs.append(tmp_path / ("input_%dx%d.npy" % size))
        np.save(str(inputs[-1]), np.random.RandomState(sum(size)).uniform(
            -0.5, 0.5, (1, 3) + size).astype(np.float32))
    expected = caffe_outputs(deploy, weights, inputs, tmp_path / "caffe.npz")
    model = export_onnx.export(deploy, weights, tmp_path / "net.onnx")
    for backend in (onnx_backends.OnnxRuntimeBackend(model, "fp32"),
                    onnx_backends.OpenVINOBackend(model, "fp32")):
        for path, caffe in zip(inputs, expected):
            got = backend.forward(np.load(str(path)))
            assert got.shape == caffe.shape, (backend.label, path.name)
            assert np.abs(got - caffe).max() < TOLERANCE, (backend.label, path.name)
            assert np.abs(caffe).max() > 0.5        # not a net of zeros


@pytest.mark.parametrize("model", ["mln", "baseline"])
def test_deploy_net_equals_caffe(model, tmp_path):
    compare_with_caffe(REPO / "prototxt" / model / "deploy.prototxt", tmp_path, SIZES)


def test_every_converted_option_equals_caffe(tmp_path):
    deploy = tmp_path / "options.prototxt"
    deploy.write_text(OPTIONS_NET)
    compare_with_caffe(deploy, tmp_path, ((35, 43), (40, 47)))
