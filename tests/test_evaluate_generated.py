"""evaluate.py on the generated dataset (tests/conftest.py's generated_coco: crowd regions and
unannotated people included): the ground truth given as results scores 1.0 everywhere. Runs in
a fresh clone without ../shared; test_evaluate.py does the same on the real COCO slice."""
import json
import subprocess
import sys

import pytest

from inference import evaluate
from tests.conftest import REPO
from tests.test_evaluate import ground_truth_as_results


def test_ground_truth_as_results_scores_one(generated_coco, tmp_path):
    annotations = generated_coco / "annotations" / "person_keypoints_train.json"
    results = tmp_path / "results.json"
    results.write_text(json.dumps(ground_truth_as_results(annotations)))
    run = subprocess.run([sys.executable, str(REPO / "inference" / "evaluate.py"),
                          "--ann", str(annotations), "--results", str(results),
                          "--json", str(tmp_path / "metrics.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert sorted(metrics) == sorted(evaluate.METRICS)
    assert all(value == pytest.approx(1.0) for value in metrics.values()), metrics
    assert "| AP " in run.stdout and "1.000" in run.stdout
