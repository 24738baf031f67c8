"""benchmark.py from the host: it reaches Caffe's environment and the deploy venv, and writes
the table and the JSON. Timings are not asserted (speed belongs to the benchmark itself)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_benchmark(*args):
    return subprocess.run([sys.executable, str(REPO / "inference" / "benchmark.py"),
                           "--repeats", "1", "--group-repeats", "3"] + [str(a) for a in args],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def onnx_labels(venv):
    """The labels the deploy venv's ONNX runtimes should have: runtime, version, precision."""
    import openvino
    short = {name: ".".join(venv[name].split(".")[:2]) for name in ("onnxruntime", "openvino")}
    labels = ["ONNX Runtime %s %s" % (short["onnxruntime"], p) for p in ("fp32", "int8")]
    precisions = ["fp32", "int8"]
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        precisions.append("bf16")
    return labels + ["OpenVINO %s %s" % (short["openvino"], p) for p in precisions]


def test_both_nets_through_every_runtime_and_precision(tiny_nets, generated_coco, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the deploy extra")
    pytest.importorskip("openvino", reason="openvino is in the deploy extra")
    run = run_benchmark("--deploy-mln", tiny_nets / "random.prototxt",
                        "--deploy-baseline", tiny_nets / "codec.prototxt",
                        "--cache", tmp_path / "cache", "--json", tmp_path / "bench.json",
                        "--md", tmp_path / "bench.md", "--caffe-time",
                        "--calibrate", generated_coco / "train", "--calibration-images", 3)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert sorted(report["grouping_ms"]) == sorted(report["nms_ms"]) == ["10", "2"]
    assert all(v > 0 for v in list(report["grouping_ms"].values())
               + list(report["nms_ms"].values()))
    assert sorted(report["environments"]) == ["caffe env", "deploy venv"]
    venv = report["environments"]["deploy venv"]
    opencv = "OpenCV %s DNN" % venv["opencv"]
    for model in ("mln", "baseline"):
        runtimes = report["network_ms"][model]
        assert sorted(runtimes) == sorted(
            ["Caffe 1.0, pycaffe forward", "caffe time (CLI)"]
            + ["OpenCV %s DNN" % env["opencv"] for env in report["environments"].values()]
            + onnx_labels(venv))
        # image to people for every runtime of the venv, and no faster than its forward pass
        totals = report["image_to_people_total_ms"][model]
        assert sorted(totals) == sorted([opencv] + onnx_labels(venv))
        assert all(totals[label] > runtimes[label] for label in totals)
        differences = report["output_max_abs_diff"][model]
        assert differences[opencv] == 0          # the venv's reference
        assert all(differences[label] < 1e-4 for label in differences if label.endswith("fp32"))
    table = (tmp_path / "bench.md").read_text()
    assert "| runtime | MLN | baseline | baseline / MLN | MLN output max abs diff |" in table
    assert "| runtime | MLN | baseline | baseline / MLN | MLN target | MLN CPU time / " in table
    assert sorted(report["image_to_people_cpu_ms"]["mln"]) == sorted([opencv] + onnx_labels(venv))
    for label in onnx_labels(venv):
        assert "| %s |" % label in table
    assert "Machine: %s, %d cores" % (report["machine"]["cpu"], report["machine"]["cores"]) \
        in table
    assert len(list((tmp_path / "cache").glob("*.caffemodel"))) == 2
    assert len(list((tmp_path / "cache").glob("*.int8.onnx"))) == 2


def test_missing_deploy_nets_leave_the_grouping_rows(tmp_path):
    run = run_benchmark("--deploy-mln", tmp_path / "none.prototxt",
                        "--deploy-baseline", tmp_path / "none.prototxt",
                        "--json", tmp_path / "bench.json")
    assert run.returncode == 0, run.stderr
    assert "mln deploy net not found at %s" % (tmp_path / "none.prototxt") in run.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["network_ms"] == {} and report["grouping_ms"]["10"] > 0
