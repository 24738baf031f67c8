"""evaluate.py: pycocotools' own numbers, on the real COCO slice (and the generated dataset)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from inference import evaluate
from tests.conftest import REPO

ANNOTATIONS = "person_keypoints_train2017.json"


def ground_truth_as_results(annotation_file):
    with open(str(annotation_file)) as handle:
        data = json.load(handle)
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
             "score": 1.0}
            for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]


def plain_pycocotools(annotation_file, results_file):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    ground_truth = COCO(str(annotation_file))
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), "keypoints")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APM", "APL", "AR"), evaluation.stats[:6]))


def test_ground_truth_as_results_scores_one(coco_mini, tmp_path):
    check_ground_truth_scores_one(coco_mini / ANNOTATIONS, tmp_path)


def test_ground_truth_of_the_generated_dataset_scores_one(generated_coco, tmp_path):
    """The same on tests/conftest.py's generated dataset (crowd regions and unannotated people
    included): runs in a fresh clone without ../shared."""
    check_ground_truth_scores_one(
        generated_coco / "annotations" / "person_keypoints_train.json", tmp_path)


def check_ground_truth_scores_one(annotations, tmp_path):
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


def test_a_prediction_file_gets_exactly_plain_pycocotools_numbers(coco_mini, tmp_path):
    state = np.random.RandomState(0)
    predictions = []
    for result in ground_truth_as_results(coco_mini / ANNOTATIONS):
        if state.rand() < 0.2:
            continue                                            # a missed person
        keypoints = np.asarray(result["keypoints"], np.float64).reshape(17, 3)
        keypoints[:, :2] += state.normal(0, 2, (17, 2))        # localisation noise
        keypoints[state.rand(17) < 0.1] = 0                     # parts not found
        predictions.append(dict(result, keypoints=keypoints.ravel().tolist(),
                                score=float(state.rand())))
        if state.rand() < 0.3:                                  # a false positive beside it
            shifted = keypoints.copy()
            shifted[:, 0] += 60
            predictions.append(dict(result, keypoints=shifted.ravel().tolist(),
                                    score=float(state.rand())))
    results = tmp_path / "predictions.json"
    results.write_text(json.dumps(predictions))
    ours = evaluate.evaluate(evaluate.load_ground_truth(coco_mini / ANNOTATIONS),
                             evaluate.load_results(results))
    plain = plain_pycocotools(coco_mini / ANNOTATIONS, results)
    assert ours == {name: float(value) for name, value in plain.items()}
    again = evaluate.evaluate(evaluate.load_ground_truth(coco_mini / ANNOTATIONS), predictions)
    assert again == ours and all("area" not in p for p in predictions)   # input left alone
    assert 0.1 < ours["AP"] < 0.95          # a file with misses, noise and false positives


def test_images_without_results_count_unless_restricted(coco_mini):
    ground_truth = evaluate.load_ground_truth(coco_mini / ANNOTATIONS)
    results = ground_truth_as_results(coco_mini / ANNOTATIONS)
    first_images = sorted({r["image_id"] for r in results})[:10]
    some = [r for r in results if r["image_id"] in first_images]
    assert evaluate.evaluate(ground_truth, some)["AR"] < 0.8
    restricted = evaluate.evaluate(ground_truth, some, only_result_images=True)
    assert restricted["AP"] == pytest.approx(1.0)


def test_no_detections_score_zero_and_bad_results_are_named(coco_mini, tmp_path):
    ground_truth = evaluate.load_ground_truth(coco_mini / ANNOTATIONS)
    assert evaluate.evaluate(ground_truth, []) == {name: 0.0 for name in evaluate.METRICS}
    stray = [{"image_id": 123456789, "category_id": 1, "keypoints": [0] * 51, "score": 1}]
    with pytest.raises(evaluate.EvaluationError, match="123456789"):
        evaluate.evaluate(ground_truth, stray)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "keypoints": [0] * 51, "score": 1}]))
    with pytest.raises(evaluate.EvaluationError, match="bad.json.*category_id"):
        evaluate.load_results(bad)
    bad.write_text("{not json")
    with pytest.raises(evaluate.EvaluationError, match="bad.json"):
        evaluate.load_results(bad)
