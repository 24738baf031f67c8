"""The OpenVINO and ONNX Runtime backends (inference/onnx_backends.py) on a small net of MLN's
layer types, run for real: fp32 against OpenCV's DNN module, bf16, int8 calibrated on images
and its cache, predict.py with each backend, and what a new user runs into."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests import onnx_nets
from tests.conftest import REPO

pytest.importorskip("onnx", reason="onnx is in the deploy extra: pip install -e .[deploy]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the deploy extra")
ov = pytest.importorskip("openvino", reason="openvino is in the deploy extra")
pytest.importorskip("cv2")

from inference import backends, export_onnx, onnx_backends  # noqa: E402

BLOB = np.random.RandomState(3).uniform(-0.5, 0.5, (1, 3, 96, 120)).astype(np.float32)
# OPTIMIZATION_CAPABILITIES of a CPU without bf16 (an AVX2-only Xeon, say): no "BF16"
NO_BF16 = ["WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"]


@pytest.fixture
def net(tmp_path):
    return onnx_nets.write_net(tmp_path)


@pytest.fixture(scope="module")
def images(generated_coco):
    return generated_coco / "train"


def image_blob(images):
    """The network input of a calibration image, as predict.py makes it: int8 is judged on what
    it was calibrated for (uniform noise leaves the calibrated ranges)."""
    from inference import prediction, scaling
    image, _ = prediction.read_image(sorted(images.iterdir())[-1])
    return backends.image_to_blob(scaling.resize_and_pad(image)[0])


def predict(*args):
    return subprocess.run([sys.executable, str(REPO / "inference" / "predict.py")]
                          + [str(a) for a in args], cwd=str(REPO), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


def error_line(run):
    """predict's last stderr line, checked to be its one-line error (no traceback)."""
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return run.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", onnx_backends.NAMES)
def test_fp32_equals_opencv(name, net, tmp_path):
    deploy, weights = net
    backend = backends.make_backend(name, deploy, weights, cache=tmp_path / "cache")
    expected = backends.OpenCVBackend(deploy, weights).forward(BLOB)
    assert np.abs(backend.forward(BLOB) - expected).max() < 1e-4
    version = (ov if name == "openvino" else __import__("onnxruntime")).__version__
    assert backend.label.endswith("%s fp32" % ".".join(version.split(".")[:2]))


def test_bf16_runs_in_bf16(net, tmp_path):
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 (the fallback has its own test)")
    deploy, weights = net
    fp32 = backends.make_backend("openvino", deploy, weights, cache=tmp_path).forward(BLOB)
    bf16 = backends.make_backend("openvino", deploy, weights, "bf16", cache=tmp_path)
    difference = np.abs(bf16.forward(BLOB) - fp32).max()
    assert 1e-4 < difference < 0.05 * np.ptp(fp32)     # bf16 keeps 8 bits of mantissa
    assert bf16.label.endswith(" bf16")


def test_cpu_without_bf16_runs_fp32_with_a_notice(net, tmp_path, capsys):
    deploy, weights = net
    fp32 = backends.make_backend("openvino", deploy, weights, cache=tmp_path).forward(BLOB)
    backend = onnx_backends.make("openvino", deploy, weights, "bf16", cache=tmp_path,
                                 capabilities=NO_BF16)
    notice = capsys.readouterr().err.strip().splitlines()[-1]
    assert notice.startswith("backend: OpenVINO says this CPU (")
    assert notice.endswith("has no bf16 (capabilities: %s): running fp32" % ", ".join(NO_BF16))
    assert backend.precision == "fp32" and backend.label.endswith(" fp32")
    assert np.abs(backend.forward(BLOB) - fp32).max() < 1e-5       # really fp32


@pytest.mark.parametrize("name", onnx_backends.NAMES)
def test_int8_is_calibrated_once_and_cached(name, net, images, tmp_path, capsys):
    deploy, weights = net
    blob = image_blob(images)
    fp32 = backends.OpenCVBackend(deploy, weights).forward(blob)
    backend = backends.make_backend(name, deploy, weights, "int8", calibrate=images,
                                    calibration_images=4, cache=tmp_path)
    assert "calibrating int8 on 4 images of %s" % images in capsys.readouterr().err
    print(np.abs(backend.forward(blob) - fp32).max(), np.ptp(fp32))
    assert 1e-3 < np.abs(backend.forward(blob) - fp32).max() < 0.1 * np.ptp(fp32)
    int8, = tmp_path.glob("*.int8.onnx")
    record = json.loads(int8.with_suffix(".json").read_text())
    assert len(record["calibration_images"]) == 4
    assert record["quantiser"]["format"] == "QDQ"
    made = int8.stat().st_mtime_ns
    backends.make_backend(name, deploy, weights, "int8", calibrate=images,
                          calibration_images=4, cache=tmp_path)
    assert "calibrating" not in capsys.readouterr().err and int8.stat().st_mtime_ns == made
    backends.make_backend(name, deploy, weights, "int8", cache=tmp_path)  # no --calibrate: reused
    assert int8.stat().st_mtime_ns == made


def test_int8_cache_from_other_weights_is_rebuilt(tmp_path, images, capsys):
    """The user re-exports M.onnx from new weights; M.int8.onnx beside it is stale."""
    deploy, old_weights = onnx_nets.write_net(tmp_path, seed=1)
    model = export_onnx.export(deploy, old_weights, tmp_path / "m.onnx")
    onnx_backends.make("onnxruntime", deploy, model, "int8", calibrate=images,
                       calibration_images=12)
    new_weights = onnx_nets.write_weights(tmp_path / "new.caffemodel", seed=2)
    export_onnx.export(deploy, new_weights, model)
    capsys.readouterr()
    backend = onnx_backends.make("onnxruntime", deploy, model, "int8")
    assert ("the int8 cache %s was made from other weights: rebuilding it"
            % (tmp_path / "m.int8.onnx")) in capsys.readouterr().err
    blob = image_blob(images)
    fp32 = {w: backends.OpenCVBackend(deploy, w).forward(blob) for w in (old_weights, new_weights)}
    got = backend.forward(blob)
    print({w.name: (np.abs(got - o).max(), np.ptp(o)) for w, o in fp32.items()})
    assert np.abs(got - fp32[new_weights]).max() < 0.1 * np.ptp(fp32[new_weights])
    assert np.abs(got - fp32[old_weights]).max() > 0.3 * np.ptp(fp32[old_weights])


def test_calibration_folder_without_images(net, tmp_path):
    deploy, weights = net
    empty = tmp_path / "calibration"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    run = predict("--deploy", deploy, "--weights", weights, "--images", empty, "--out",
                  tmp_path / "out.json", "--backend", "openvino", "--precision", "int8",
                  "--calibrate", empty, "--onnx-cache", tmp_path / "cache")
    assert error_line(run) == (
        "predict: error: --calibrate %s holds no image OpenCV can read (of its 1 files): int8 "
        "needs real images, ideally ~100 like those you will run on" % empty)


def test_int8_without_calibration_images_says_what_to_pass(net, images, tmp_path):
    deploy, weights = net
    run = predict("--deploy", deploy, "--weights", weights, "--images", images, "--out",
                  tmp_path / "out.json", "--backend", "onnxruntime", "--precision", "int8",
                  "--onnx-cache", tmp_path / "cache")
    assert error_line(run).startswith(
        "predict: error: --precision int8 needs --calibrate DIR (a folder of real images) the "
        "first time")


@pytest.mark.parametrize("backend, precision, message", [
    ("onnxruntime", "bf16", "ONNX Runtime's CPU provider has no bf16 mode on x86: use "
                            "--backend openvino --precision bf16"),
    ("opencv", "int8", "--precision int8 needs --backend openvino or onnxruntime (opencv runs "
                       "fp32 only)")])
def test_precisions_a_backend_lacks_are_refused(backend, precision, message, net, images,
                                                tmp_path):
    deploy, weights = net
    run = predict("--deploy", deploy, "--weights", weights, "--images", images, "--out",
                  tmp_path / "out.json", "--backend", backend, "--precision", precision)
    assert error_line(run) == "predict: error: " + message


def test_unknown_layer_through_predict(tmp_path, images):
    deploy, weights = onnx_nets.write_net(tmp_path, extra=(
        'layer { name: "squash" type: "Sigmoid" bottom: "heat2" top: "heat2" }\n'))
    run = predict("--deploy", deploy, "--weights", weights, "--images", images, "--out",
                  tmp_path / "out.json", "--backend", "openvino", "--onnx-cache", tmp_path)
    assert error_line(run) == (
        "predict: error: %s: layer 'squash' of type Sigmoid is not supported by the exporter "
        "(it converts Input, Convolution, ReLU, Pooling, Concat)" % deploy)


def test_predict_with_every_backend_and_precision(net, images, tmp_path):
    """predict.py end to end, without Caffe: fp32 through ONNX gives OpenCV's results."""
    deploy, weights = net
    results = {}
    for backend, precision in (("opencv", "fp32"), ("onnxruntime", "fp32"),
                               ("onnxruntime", "int8"), ("openvino", "fp32"),
                               ("openvino", "bf16"), ("openvino", "int8")):
        out = tmp_path / ("%s_%s.json" % (backend, precision))
        run = predict("--deploy", deploy, "--weights", weights, "--images", images, "--out", out,
                      "--backend", backend, "--precision", precision, "--calibrate", images,
                      "--calibration-images", 4, "--onnx-cache", tmp_path / "cache")
        assert run.returncode == 0, run.stderr
        results[backend, precision] = json.loads(out.read_text())
    for backend in onnx_backends.NAMES:
        got, expected = results[backend, "fp32"], results["opencv", "fp32"]
        assert [r["image_id"] for r in got] == [r["image_id"] for r in expected]
        assert np.allclose([r["keypoints"] for r in got], [r["keypoints"] for r in expected],
                           atol=0.5)
