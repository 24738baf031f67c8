"""benchmark.py from the host: it reaches Caffe's environment and the deploy venv, and writes
the table and the JSON. Timings are not asserted (speed belongs to the benchmark itself)."""
import json
import subprocess
import sys

from tests.conftest import REPO


def run_benchmark(*args):
    return subprocess.run([sys.executable, str(REPO / "inference" / "benchmark.py"),
                           "--repeats", "1", "--group-repeats", "3"] + [str(a) for a in args],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def test_both_nets_through_caffe_and_both_opencvs(tiny_nets, tmp_path):
    run = run_benchmark("--deploy-mln", tiny_nets / "random.prototxt",
                        "--deploy-baseline", tiny_nets / "codec.prototxt",
                        "--cache", tmp_path / "cache", "--json", tmp_path / "bench.json",
                        "--md", tmp_path / "bench.md", "--caffe-time")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert sorted(report["grouping_ms"]) == sorted(report["nms_ms"]) == ["10", "2"]
    assert all(v > 0 for v in list(report["grouping_ms"].values())
               + list(report["nms_ms"].values()))
    assert sorted(report["environments"]) == ["caffe env", "deploy venv"]
    for model in ("mln", "baseline"):
        runtimes = report["network_ms"][model]
        assert "Caffe 1.0, pycaffe forward" in runtimes
        assert sorted(runtimes) == sorted(
            ["Caffe 1.0, pycaffe forward", "caffe time (CLI)"]
            + ["OpenCV %s DNN" % env["opencv"] for env in report["environments"].values()])
    assert "forward" in report["image_to_people_ms"]
    table = (tmp_path / "bench.md").read_text()
    assert "| runtime | MLN | baseline | baseline / MLN |" in table
    assert "total, 10 people" in table and "cores" in table
    assert len(list((tmp_path / "cache").glob("*.caffemodel"))) == 2


def test_missing_deploy_nets_leave_the_grouping_rows(tmp_path):
    run = run_benchmark("--deploy-mln", tmp_path / "none.prototxt",
                        "--deploy-baseline", tmp_path / "none.prototxt",
                        "--json", tmp_path / "bench.json")
    assert run.returncode == 0, run.stderr
    assert "mln deploy net not found at %s" % (tmp_path / "none.prototxt") in run.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["network_ms"] == {} and report["grouping_ms"]["10"] > 0
