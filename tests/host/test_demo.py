"""./scripts/demo.sh, the README's first command, as a new user runs it (from the host)."""
import json
import re
import subprocess

import pytest

from scripts.demo_report import render
from tests.conftest import REPO

DEMO = str(REPO / "scripts" / "demo.sh")
STEPS = ("nets", "data", "pack", "init", "train", "reference", "predict", "evaluate")


def demo(*args):
    return subprocess.run([DEMO] + [str(a) for a in args], cwd=str(REPO), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=900)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    run = demo("--quick", "--out", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run


def test_quick_demo_writes_the_report_with_every_step(quick_demo):
    out, run = quick_demo
    report = (out / "report.md").read_text()
    for step in STEPS:
        assert re.search(r"^\| %s \| \d+\.\d \|$" % step, report, re.M), step
        assert (out / "logs" / ("%s.log" % step)).is_file() or step == "data"
    assert "demo: done" in run.stdout


def test_report_puts_our_counts_beside_table_2(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    assert "| mln | 21,278,912 | 21,278,912 | 82.52e9 | 82.5e9 | 85.16 | 85.2 |" in report
    assert "| baseline | 52,298,816 | 52,298,816 | 159.57e9 | 159.6e9 | 209.25 | 209.3 |" in report


def test_report_shows_the_loss_falling_with_its_plot(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    found = re.search(r"mean of the first three displayed values ([\d.]+), of the last three "
                      r"([\d.]+)", report)
    assert found, report
    first, last = float(found.group(1)), float(found.group(2))
    assert last < 0.85 * first
    references = re.search(r"all outputs zero \(what the untrained net predicts\) ([\d.]+); the "
                           r"background channel exact and every part and limb zero ([\d.]+)",
                           report)
    assert references, report
    zero, background_only = float(references.group(1)), float(references.group(2))
    assert 0 < background_only < zero
    assert 0.6 * zero < first < 1.4 * zero       # the untrained net scores the all-zero reference
    assert "What this shows: over" in report
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_is_rendered_from_the_facts_and_the_lmdb_metadata(quick_demo):
    out, _ = quick_demo
    facts = json.loads((out / "facts.json").read_text())
    assert render(facts) == (out / "report.md").read_text()
    packing = json.loads((out / "packing.json").read_text())      # the LMDB's metadata
    assert packing["complete"] and packing["records"] == packing["summary"]["records"] > 0
    assert (facts["data"]["records"], facts["data"]["main_persons"]) == (
        packing["summary"]["records"], packing["summary"]["main_persons"])
    assert "- Training: %d images, packed into %d LMDB records (%d main persons" % (
        facts["data"]["train_images"], packing["records"], packing["summary"]["main_persons"]
    ) in (out / "report.md").read_text()


def test_report_evaluates_both_networks_held_out_and_the_trained_one_on_training_images(
        quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    rows = re.findall(r"^\| (untrained \(iteration 0\)|trained \(iteration \d+\)) \| "
                      r"(held-out|training) \| ([\d.]+) \|.*\| (\d+) \|$", report, re.M)
    assert [(name.split()[0], images) for name, images, _, _ in rows] == [
        ("untrained", "held-out"), ("trained", "held-out"), ("trained", "training")]
    for (_, _, ap, found), name in zip(rows, ("untrained", "trained",
                                              "trained_on_training_images")):
        results = json.loads((out / "results" / ("%s.json" % name)).read_text())
        metrics = json.loads((out / "results" / ("%s_metrics.json" % name)).read_text())
        assert float(ap) == pytest.approx(metrics["AP"], abs=5e-4)
        assert int(found) == len(results)
    # the held-out images are not among the training images; the training images evaluated are
    annotations = out / "data" / "annotations"
    train = {i["file_name"] for i in json.loads(
        (annotations / "person_keypoints_train.json").read_text())["images"]}
    val = {i["file_name"] for i in json.loads(
        (annotations / "person_keypoints_val.json").read_text())["images"]}
    assert val and not (train & val)
    assert sorted(p.name for p in (out / "pictures" / "trained").iterdir()) == sorted(val)
    fit = {p.name for p in (out / "pictures" / "trained_on_training_images").iterdir()}
    assert fit and fit <= train


def test_training_started_from_the_untrained_network_with_the_recipe(quick_demo):
    out, _ = quick_demo
    stages = sorted((out / "train").iterdir())
    assert [stage.name for stage in stages] == ["stage1-none", "stage2-shift", "stage3-none"]
    first, second, third = (json.loads((stage / "params.json").read_text())["settings"]
                            for stage in stages)
    assert first["weights"] == str(out / "untrained.caffemodel")
    for before, after, stage in ((first, second, stages[0]), (second, third, stages[1])):
        assert after["weights"] == str(stage / "snapshots" / (
            "mln_iter_%d.caffemodel" % before["iters"]))
    for settings, rate in ((first, 1e-4), (second, 1e-4), (third, 1e-5)):
        assert (settings["model"], settings["crop"], settings["solver"], settings["base_lr"],
                settings["weight_decay"]) == ("mln", 128, "adam", pytest.approx(rate), 0)
    assert second["data_param"]["center_perturb_max"] == 32
    assert third["data_param"]["center_perturb_max"] == 0
    assert first["data_param"]["center_perturb_max"] == 0


def test_a_failing_step_stops_the_demo_naming_the_step_and_its_log(tmp_path):
    # A COCO-format file whose images are not in the folder: nothing can be packed or trained.
    annotation = {"images": [{"id": i, "file_name": "%d.jpg" % i, "height": 100, "width": 100}
                             for i in (1, 2)],
                  "annotations": [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
                                   "num_keypoints": 17, "area": 2000.0,
                                   "bbox": [10, 10, 40, 80],
                                   "keypoints": sum(([30, 20 + 3 * k, 2] for k in range(17)),
                                                    []),
                                   "segmentation": [[10, 10, 50, 10, 50, 90, 10, 90]]}
                                  for i in (1, 2)],
                  "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "ann.json").write_text(json.dumps(annotation))
    (tmp_path / "images").mkdir()
    run = demo("--quick", "--coco", tmp_path / "ann.json", tmp_path / "images",
               "--out", tmp_path / "out")
    assert run.returncode == 1
    failed = re.search(r"demo: step '(\w+)' failed \((.+?)\)\. Its log: (\S+)", run.stderr)
    assert failed, run.stderr[-2000:]
    assert failed.group(1) == "pack" and "no record written" in failed.group(2)
    log = failed.group(3)
    assert (tmp_path / "out" / "logs" / "pack.log").samefile(log)
    assert "image_missing" in run.stderr      # the log's end is shown: why images were left out


def test_a_folder_the_demo_did_not_make_is_never_replaced(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    run = demo("--quick", "--out", tmp_path)
    assert run.returncode == 1
    assert "not empty and was not made by scripts/demo.py" in run.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
