"""scripts/evaluate.sh (inference/protocols.py): named protocols give what predict.py and
evaluate.py give by hand with the same settings, on a subset when asked, without predicting
twice, and refuse options that would make a row lie about its protocol.

The net is tests/tiny_nets.py's codec net: a perfect network for images that carry their own
maps, read back exactly at scale 1 only (any resize garbles the code), so a protocol that runs
other scales than it says cannot score what predict.py scores by hand.
"""
import json
import subprocess
import sys

import pytest

from inference import evaluate, protocols
from tests.conftest import REPO

EVALUATE_SH = str(REPO / "scripts" / "evaluate.sh")
PREDICT = str(REPO / "inference" / "predict.py")


def evaluate_sh(nets, images, annotation, out, *extra):
    command = [EVALUATE_SH, "--deploy", str(nets / "codec.prototxt"),
               "--weights", str(nets / "codec.caffemodel"), "--images", str(images),
               "--ann", str(annotation), "--out", str(out)] + [str(e) for e in extra]
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def test_single_is_predict_and_evaluate_by_hand(tiny_nets, codec_images, tmp_path):
    images, annotation = codec_images
    by_hand = tmp_path / "by_hand.json"
    run = subprocess.run([sys.executable, PREDICT, "--deploy", str(tiny_nets / "codec.prototxt"),
                          "--weights", str(tiny_nets / "codec.caffemodel"), "--images",
                          str(images), "--ann", str(annotation), "--out", str(by_hand),
                          "--scales", "1.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    assert run.returncode == 0, run.stderr
    expected = evaluate.evaluate(evaluate.load_ground_truth(str(annotation)),
                                 json.loads(by_hand.read_text()))
    assert expected["AP"] > 0.9           # the codec net finds the people: a meaningful AP

    run = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out", "--protocol", "single")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    row = json.loads((tmp_path / "out" / "metrics.json").read_text())["single"]
    assert json.loads((tmp_path / "out" / "single" / "results.json").read_text()) == \
        json.loads(by_hand.read_text())
    for name in evaluate.METRICS:
        assert row[name] == expected[name], name
    assert (row["images"], row["scales"], row["flip"], row["backend"]) == (3, [1.0], False,
                                                                          "opencv")
    assert row["seconds"] > 0
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "| single | 3 | 1 | no | opencv | %.3f |" % expected["AP"] in table


def test_a_subset_is_evaluated_on_its_images_only_and_says_so(tiny_nets, codec_images,
                                                               tmp_path):
    images, annotation = codec_images
    ids = tmp_path / "ids.txt"
    ids.write_text("# two of the three images\n2\n\n10\n")
    run = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out", "--image-ids", ids)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "single" / "results.json").read_text())
    assert sorted({r["image_id"] for r in results}) == [2, 10]
    row = json.loads((tmp_path / "out" / "metrics.json").read_text())["single"]
    assert row["images"] == 2 and row["AP"] > 0.9
    assert "| single | subset of 2 images |" in (tmp_path / "out" / "metrics.md").read_text()


def test_a_finished_protocol_is_not_predicted_again(tiny_nets, codec_images, tmp_path):
    images, annotation = codec_images
    first = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out")
    assert first.returncode == 0, first.stderr[-2000:]
    results = tmp_path / "out" / "single" / "results.json"
    results.write_text(json.dumps(json.loads(results.read_text())[:1]))   # mark the file
    second = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "predicted before" in second.stdout
    assert len(json.loads(results.read_text())) == 1
    # other settings: predicted again
    third = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out", "--smooth-sigma", 0)
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(json.loads(results.read_text())) == 13


@pytest.mark.parametrize("extra, message", [
    (["--scales", "0.5"], "--scales is set by the protocol"),
    (["--flip"], "--flip is set by the protocol"),
    (["--image-ids", "MISSING"], "cannot read --image-ids"),
    (["--base-scale", "0"], "--base-scale must be a positive number"),
])
def test_options_that_would_mislabel_a_row_are_refused(tiny_nets, codec_images, tmp_path, extra,
                                                        message):
    images, annotation = codec_images
    run = evaluate_sh(tiny_nets, images, annotation, tmp_path / "out",
                      *[str(tmp_path / e) if e == "MISSING" else e for e in extra])
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr


def test_image_ids_of_another_split_are_refused(tmp_path, codec_images):
    _, annotation = codec_images
    with pytest.raises(protocols.ProtocolError, match="1 of the --image-ids are not images of"):
        protocols.subset_annotations(str(annotation), [2, 999], str(tmp_path / "subset.json"))


def test_the_protocols_are_openposes():
    assert protocols.protocol_scales("openpose4", 1.0) == [0.5, 1.0, 1.5, 2.0]
    assert protocols.PROTOCOLS["openpose4-flip"] == ((0.5, 1.0, 1.5, 2.0), True)
    assert protocols.protocol_scales("single", 128 / 368.0) == [round(128 / 368.0, 6)]


def test_a_row_names_the_precision_it_ran_at():
    args, _ = protocols.parse_arguments(["--deploy", "D", "--weights", "W", "--ann", "A",
                                         "--images", "I", "--out", "O", "--backend", "openvino",
                                         "--precision", "int8"])
    assert protocols.backend_label(args) == "openvino int8"
    args.annotations = "A"
    assert "--precision" in protocols.predict_arguments(args, "single", "R", [])
