"""predict.py end to end through OpenCV's DNN module (this environment's OpenCV) on tiny real nets.

The nets come from tests/tiny_nets.py through caffe-env (the tiny_nets fixture); this file
imports no Caffe, so it runs in both sessions: OpenCV 4.5.1 and the deploy venv's 4.14.
"""
import collections
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conventions.keypoints import PART
from inference import backends, evaluate, oracle, prediction, synthetic
from tests.conftest import REPO
from tests.tiny_nets import encode_maps

PREDICT = str(REPO / "inference" / "predict.py")


def predict(nets, images, out, *extra, net="codec", weights=None):
    command = [sys.executable, PREDICT, "--deploy", str(nets / (net + ".prototxt")),
               "--weights", str(nets / ((weights or net) + ".caffemodel")),
               "--images", str(images), "--out", str(out)] + [str(e) for e in extra]
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def test_opencv_gives_caffes_own_output_on_the_same_files(tiny_nets):
    backend = backends.OpenCVBackend(tiny_nets / "random.prototxt",
                                     tiny_nets / "random.caffemodel")
    expected = np.load(str(tiny_nets / "random_output.npy"))
    output = backend.forward(np.load(str(tiny_nets / "random_input.npy")))
    assert output.shape == expected.shape == (1, 57, 8, 10)
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_output_made_by_a_layer_of_another_name_is_found(tiny_nets, tmp_path):
    # OpenCV names outputs by layer; OpenPose's deploy nets and our baseline make the blob
    # net_output in a layer called concat_stage7.
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text((tiny_nets / "random.prototxt").read_text().replace(
        'name: "net_output"', 'name: "concat_stage7"'))
    assert 'name: "concat_stage7"' in renamed.read_text()
    backend = backends.OpenCVBackend(renamed, tiny_nets / "random.caffemodel")
    output = backend.forward(np.load(str(tiny_nets / "random_input.npy")))
    np.testing.assert_allclose(output, np.load(str(tiny_nets / "random_output.npy")),
                               rtol=1e-4, atol=1e-4)


def test_people_of_known_positions_are_found_end_to_end(tiny_nets, codec_images, tmp_path):
    images, annotation = codec_images
    out = tmp_path / "results.json"
    run = predict(tiny_nets, images, out, "--ann", annotation, "--viz", tmp_path / "viz")
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in results) == [1] + [2] * 2 + [10] * 10
    metrics = evaluate.evaluate(evaluate.load_ground_truth(annotation), results)
    assert metrics["AP"] == pytest.approx(1.0), metrics
    assert sorted(os.listdir(str(tmp_path / "viz"))) == ["1.jpg", "10.jpg", "2.jpg"]
    assert not (tmp_path / "results.json.partial.jsonl").exists()


def test_odd_files_are_skipped_or_converted_with_the_reason(tiny_nets, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    state = np.random.RandomState(0)
    picture = state.randint(0, 256, (120, 160, 3)).astype(np.uint8)
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cv2.imwrite(str(folder / "gray.png"), picture[:, :, 0])
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([picture, picture[:, :, :1]]))
    cv2.imwrite(str(folder / "deep.png"), picture.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "tiny.png"), picture[:5, :7])
    ramp = np.linspace(0, 255, 4000).astype(np.uint8)
    cv2.imwrite(str(folder / "huge.png"), np.dstack([np.tile(ramp, (3000, 1))] * 3))
    cv2.imwrite(str(folder / "plain.jpg"), picture)
    out = tmp_path / "results.json"
    run = predict(tiny_nets, folder, out, net="random")
    assert run.returncode == 0, run.stderr
    assert "skipped broken.jpg: not an image OpenCV can read" in run.stderr
    assert "skipped notes.txt: not an image OpenCV can read" in run.stderr
    assert "skipped tiny.png: smaller than 8 px on a side" in run.stderr
    for note in ("grayscale image converted to BGR: 1", "alpha channel dropped: 1",
                 "16-bit image scaled to 8 bit: 1", "5 images, "):
        assert note in run.stderr
    results = json.loads(out.read_text())
    names = {r["file_name"] for r in results}
    assert names <= {"gray.png", "rgba.png", "deep.png", "huge.png", "plain.jpg"}
    huge = [r for r in results if r["file_name"] == "huge.png"]
    for result in huge:                         # coordinates in the 4000 x 3000 image
        keypoints = np.asarray(result["keypoints"]).reshape(17, 3)
        assert keypoints[:, 0].max() < 4000 and keypoints[:, 1].max() < 3000


def test_non_finite_network_outputs_are_counted_and_zeroed(tiny_nets, codec_images, tmp_path):
    images, annotation = codec_images
    out = tmp_path / "results.json"
    run = predict(tiny_nets, images, out, "--ann", annotation, weights="nan")
    assert run.returncode == 0, run.stderr
    assert "images with non-finite network outputs (set to 0): 3" in run.stderr
    results = json.loads(out.read_text())
    assert len(results) == 13                       # the noses are lost, not the people
    assert all(r["keypoints"][:3] == [0, 0, 0] for r in results)


# predict.py's command line (inference.predict.main) whose run sends itself SIGINT, as Ctrl-C
# does, right after its first image is saved: main()'s on_image is called exactly then.
INTERRUPTED_PREDICT = """
import os, signal, sys
from inference import predict

def interrupt(entry):
    os.kill(os.getpid(), signal.SIGINT)

sys.exit(predict.main(sys.argv[1:], on_image=interrupt))
"""


def test_an_interrupted_run_goes_on_where_it_stopped(tiny_nets, codec_images, tmp_path):
    images, annotation = codec_images
    out = tmp_path / "results.json"
    partial = tmp_path / "results.json.partial.jsonl"
    arguments = ["--deploy", str(tiny_nets / "codec.prototxt"),
                 "--weights", str(tiny_nets / "codec.caffemodel"), "--images", str(images),
                 "--ann", str(annotation), "--out", str(out)]
    interrupted = subprocess.run([sys.executable, "-c", INTERRUPTED_PREDICT] + arguments,
                                 cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=120)
    # a run that ignored Ctrl-C would finish all 3 images and exit 0
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    assert "interrupted after 1 of 3 images; run the same command again" in interrupted.stderr
    assert not out.exists() and len(partial.read_text().splitlines()) == 2  # settings, 1 image
    command = [sys.executable, PREDICT] + arguments
    again = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
    assert again.returncode == 0, again.stderr
    assert "resuming: 1 of 3 images already done" in again.stderr
    assert len(json.loads(out.read_text())) == 13 and not partial.exists()
    finished = {"file": "1.png", "image_id": 1, "results": []}
    partial.write_text(json.dumps({"settings": {"other": 1}}) + "\n" + json.dumps(finished) + "\n")
    refused = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    assert refused.returncode != 0 and "other settings" in refused.stderr


def test_missing_net_files_are_named(tiny_nets, codec_images, tmp_path):
    images, _ = codec_images
    run = predict(tiny_nets, images, tmp_path / "out.json", weights="absent")
    assert run.returncode == 1 and "weights not found" in run.stderr
    assert "absent.caffemodel" in run.stderr


def test_annotation_images_missing_or_of_another_size_are_skipped(tiny_nets, codec_images,
                                                                  tmp_path):
    images, annotation = codec_images
    data = json.loads(annotation.read_text())
    data["images"][0]["height"] += 1                   # 1.png is not this size
    data["images"].append({"id": 99, "file_name": "absent.png", "height": 368, "width": 432})
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    out = tmp_path / "results.json"
    run = predict(tiny_nets, images, out, "--ann", changed)
    assert run.returncode == 0, run.stderr
    assert "skipped 1.png: size differs from the annotation" in run.stderr
    assert "skipped absent.png: file missing" in run.stderr
    assert sorted({r["image_id"] for r in json.loads(out.read_text())}) == [2, 10]


class RenderedNet(object):
    """A stand-in backend whose net_output is the training labels of known people."""

    def __init__(self, parts, image_size):
        (self.maps, _), = oracle.rendered_outputs(parts, image_size)

    def forward(self, blob):
        return self.maps[None]


def people_with_a_neckless_one(size=(368, 432)):
    # Without its neck the second person's limb tree has no root: it falls apart, and the
    # grouping drops the pieces under 4 parts (the two legs) and counts them.
    parts = synthetic.standing_people(2, size)
    parts[1, PART["neck"]] = 0
    return parts


def test_the_grouping_counts_reach_the_callers_stats(tmp_path):
    size = (368, 432)
    path = tmp_path / "1.png"
    cv2.imwrite(str(path), np.zeros(size + (3,), np.uint8))
    stats = collections.Counter()
    entry = prediction.process_job(prediction.Job(path, 1, None),
                                   RenderedNet(people_with_a_neckless_one(size), size),
                                   stats=stats)
    assert len(entry["results"]) >= 1 and entry["results"][0]["file_name"] == "1.png"
    assert stats["dropped_few_parts"] == 2, stats


def test_the_summary_gives_the_grouping_counts(tiny_nets, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (net_maps, _), = oracle.rendered_outputs(people_with_a_neckless_one(), (368, 432))
    cv2.imwrite(str(folder / "1.png"), encode_maps(net_maps))
    run = predict(tiny_nets, folder, tmp_path / "results.json")
    assert run.returncode == 0, run.stderr
    assert "predict: dropped_few_parts: 2" in run.stderr, run.stderr


def test_a_checkpoint_of_other_settings_raises_for_the_caller_to_report(tmp_path):
    path = tmp_path / "results.json.partial.jsonl"
    finished = {"file": "1.png", "image_id": 1, "results": []}
    path.write_text(json.dumps({"settings": {"other": 1}}) + "\n" + json.dumps(finished) + "\n")
    with pytest.raises(prediction.CheckpointError, match="other settings"):
        prediction.Checkpoint(path, {"scales": [1.0]}, resume=True)
