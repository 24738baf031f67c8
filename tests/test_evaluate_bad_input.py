"""evaluate.py on bad ground truth, results and --json: one line naming the file and the entry,
no traceback, no -1.000 rows passed off as a result.

Runs evaluate.main in-process (a traceback would fail the test) on a small ground truth made
here: two images, one with a labelled person.
"""
import json

import pytest

from inference import evaluate

PERSON = [float(v) for k in range(17) for v in (100 + 3 * k, 50 + 10 * k, 2)]


def ground_truth():
    return {
        "images": [{"id": 1, "file_name": "1.jpg", "height": 300, "width": 300},
                   {"id": 2, "file_name": "2.jpg", "height": 300, "width": 300}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "num_keypoints": 17, "area": 4000.0, "bbox": [100, 50, 48, 160],
                         "keypoints": list(PERSON)}],
        "categories": [{"id": 1, "name": "person"}]}


def detection(image_id=1, **changes):
    return dict({"image_id": image_id, "category_id": 1, "keypoints": list(PERSON),
                 "score": 0.9}, **changes)


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def evaluated(capsys, tmp_path, truth, results, *extra):
    """-> (exit code, stdout, error lines) of evaluate.main on these two files."""
    code = evaluate.main(["--ann", str(write(tmp_path / "gt.json", truth)),
                          "--results", str(write(tmp_path / "res.json", results))]
                         + [str(e) for e in extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, [l for l in captured.err.splitlines() if "error:" in l]


def refused(capsys, tmp_path, truth, results, *fragments, extra=()):
    code, out, errors = evaluated(capsys, tmp_path, truth, results, *extra)
    assert code == 1 and len(errors) == 1 and out == "", (out, errors)
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_the_small_ground_truth_scores_one_on_itself(tmp_path, capsys):
    # the checks below refuse only what is wrong: the valid file goes through
    code, out, errors = evaluated(capsys, tmp_path, ground_truth(), [detection()],
                                  "--json", tmp_path / "m.json")
    assert code == 0 and not errors
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)


def without(field):
    data = ground_truth()
    del data[field]
    return data


def changed_annotation(**changes):
    data = ground_truth()
    data["annotations"][0].update(changes)
    return data


@pytest.mark.parametrize("truth, fragments", [
    ([ground_truth()], ["holds a JSON list, not a COCO annotation object"]),
    (without("images"), ['has no "images" list', "person_keypoints_*.json"]),
    (without("categories"), ['has no "categories" list']),
    (without("annotations"), ['has no "annotations" list']),
    (dict(ground_truth(), annotations=[]), ['has an empty "annotations" list']),
    (changed_annotation(keypoints=PERSON[:34]),
     ["annotations[0] (id 7): keypoints is a list of 34 values, expected 51 numbers"]),
    (changed_annotation(bbox=None), ["annotations[0] (id 7): bbox is null, expected 4 numbers"]),
    (changed_annotation(image_id=3), ["annotations[0] (id 7) is on image 3"]),
    (changed_annotation(category_id=2), ["annotations[0] (id 7) has category_id 2"]),
    (changed_annotation(num_keypoints=0), ["has no labelled person", "undefined (-1)"]),
    ({"images": [{"id": "1"}], "annotations": [], "categories": []},
     ['images[0] has id "1", not an integer']),
], ids=["list", "no-images", "no-categories", "no-annotations", "empty-annotations",
        "short-keypoints", "bbox", "unknown-image", "unknown-category", "nobody", "string-id"])
def test_bad_ground_truth_is_named_in_one_line(tmp_path, capsys, truth, fragments):
    refused(capsys, tmp_path, truth, [detection()],
            "ground truth %s" % (tmp_path / "gt.json"), *fragments)


def test_a_missing_or_broken_ground_truth_file_is_named(tmp_path, capsys):
    code = evaluate.main(["--ann", str(tmp_path / "absent.json"),
                          "--results", str(write(tmp_path / "res.json", []))])
    assert code == 1
    assert capsys.readouterr().err == "evaluate: error: ground truth %s does not exist\n" % (
        tmp_path / "absent.json")
    (tmp_path / "cut.json").write_text(json.dumps(ground_truth())[:50])
    code = evaluate.main(["--ann", str(tmp_path / "cut.json"),
                          "--results", str(tmp_path / "res.json")])
    error = capsys.readouterr().err
    assert code == 1 and error.startswith("evaluate: error: ground truth %s is not JSON ("
                                          % (tmp_path / "cut.json"))
    assert error.count("\n") == 1


@pytest.mark.parametrize("results, fragments", [
    ({"image_id": 1}, ["expected a JSON list of detections"]),
    ([[1, 2]], ["detection 0 is not an object"]),
    ([detection(keypoints=PERSON[:50])], ["detection 0 has 50 keypoint values, expected 51"]),
    ([detection(keypoints=7)], ["detection 0 has no list of keypoint values"]),
    ([detection(), detection(score="high")], ['detection 1 has score "high"']),
    ([detection(image_id="1")], ['detection 0 has image_id "1", not an integer']),
    ([detection(category_id=2)], ["results have category_id [2], the ground truth's "
                                  "categories are [1]"]),
    ([detection(image_id=-1)], ["results name 1 image ids that the ground truth lacks, e.g. "
                                "[-1]", "predict with --ann"]),
], ids=["object", "not-object", "short-keypoints", "keypoints-number", "score", "string-id",
        "category", "negative-id"])
def test_bad_results_are_named_in_one_line(tmp_path, capsys, results, fragments):
    refused(capsys, tmp_path, ground_truth(), results, "results %s" % (tmp_path / "res.json"),
            *fragments)


def test_only_result_images_without_people_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, ground_truth(), [detection(image_id=2)],
            "the 1 images of the results have no labelled person",
            "evaluate without --only-result-images", extra=["--only-result-images"])


def test_a_json_in_a_missing_folder_is_refused_before_the_work(tmp_path, capsys):
    refused(capsys, tmp_path, ground_truth(), [detection()],
            "--json %s: the folder %s does not exist" % (tmp_path / "no" / "m.json",
                                                        tmp_path / "no"),
            extra=["--json", tmp_path / "no" / "m.json"])
    (tmp_path / "folder").mkdir()
    refused(capsys, tmp_path, ground_truth(), [detection()], "is a folder: name a file",
            extra=["--json", tmp_path / "folder"])
