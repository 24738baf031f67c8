"""predict.py on bad input: one line naming the file or option, nothing written, no traceback;
and the inputs that used to give wrong results silently (images in subfolders with the same
name, a stray file among COCO-named images, an --ann whose images are elsewhere, a resumed run
with a path written another way).

Runs predict.main in-process (a traceback would fail the test) on tests/tiny_nets.py's nets
through OpenCV, so in both sessions.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from inference import evaluate, predict, prediction
from tests.conftest import REPO
from tests.test_predict import INTERRUPTED_PREDICT
from tests.tiny_nets import write_codec_images


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    """Codec images 1.png (1 person), 2.png (2), 10.png (10) and their ground truth."""
    folder = tmp_path_factory.mktemp("codec") / "images"
    annotation = write_codec_images(folder)
    return folder, annotation, json.loads(annotation.read_text())


def arguments(nets, images, out, *extra, net="codec", weights=None):
    return ["--deploy", str(nets / (net + ".prototxt")),
            "--weights", str(nets / ((weights or net) + ".caffemodel")),
            "--images", str(images), "--out", str(out)] + [str(e) for e in extra]


def refused(capsys, argv, *fragments):
    """predict.main(argv) fails with exactly one error line holding every fragment."""
    code = predict.main(argv)
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("predict: error:")]
    assert code == 1 and len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def succeeded(capsys, argv):
    code = predict.main(argv)
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    return stderr


def written(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------- 1. weights

def test_weights_of_another_net_are_refused_naming_the_layers(tiny_nets, codec, tmp_path,
                                                              capsys):
    images, _, _ = codec
    # random.prototxt's conv1-3 have no weights in codec.caffemodel (Caffe would keep their
    # fillers), its heatmaps and pafs 1x1 kernels on 16 channels where codec's are 8x8 on 3
    refused(capsys, arguments(tiny_nets, images, tmp_path / "r.json", net="random",
                              weights="codec"),
            "weights %s do not fit" % (tiny_nets / "codec.caffemodel"),
            "5 of its 5 layers with parameters", "conv1: no weights of that name",
            "conv2: no weights of that name", "conv3: no weights of that name; and 2 more",
            "pass the caffemodel trained with this prototxt")
    # the same names but other shapes (Caffe aborts, OpenCV fails at the first image)
    refused(capsys, arguments(tiny_nets, images, tmp_path / "r.json", weights="random"),
            "heatmaps: blobs of shape 19x16x1x1 + 19, the prototxt makes 19x3x8x8 + 19")
    assert written(tmp_path) == []


def test_the_caffe_backend_without_pycaffe_is_named(tiny_nets, codec, tmp_path, capsys):
    if importlib.util.find_spec("caffe") is not None:
        pytest.skip("pycaffe is importable here")
    images, _, _ = codec
    refused(capsys, arguments(tiny_nets, images, tmp_path / "r.json", "--backend", "caffe"),
            "--backend caffe needs pycaffe, which this Python cannot import",
            "run through scripts/caffe-env, or use --backend opencv")
    assert written(tmp_path) == []


def test_a_file_that_is_not_a_caffemodel_is_named(tiny_nets, codec, tmp_path, capsys):
    images, annotation, _ = codec
    shutil.copy(str(annotation), str(tmp_path / "json.caffemodel"))
    shutil.copy(str(tiny_nets / "codec.prototxt"), str(tmp_path / "json.prototxt"))
    refused(capsys, arguments(tmp_path, images, tmp_path / "r.json", net="json"),
            "json.caffemodel is not a Caffe weights file")


# ----------------------------------------------------------------------------- 2. subfolders

def subfolder_annotation(codec, folder):
    """1.png as a/x.png (1 person, id 1) and 2.png as b/x.png (2 people, id 2)."""
    images, _, data = codec
    for sub, source in (("a", "1.png"), ("b", "2.png")):
        (folder / sub).mkdir(parents=True)
        shutil.copy(str(images / source), str(folder / sub / "x.png"))
    chosen = [dict(entry, file_name=sub + "/x.png")
              for sub, entry in zip("ab", data["images"][:2])]
    return write_json(folder.parent / "subfolders.json",
                      dict(data, images=chosen, annotations=[
                          a for a in data["annotations"] if a["image_id"] in (1, 2)]))


def test_images_of_the_same_name_in_subfolders_keep_their_own_results(tiny_nets, codec,
                                                                      tmp_path, capsys):
    annotation = subfolder_annotation(codec, tmp_path / "images")
    out = tmp_path / "r.json"
    succeeded(capsys, arguments(tiny_nets, tmp_path / "images", out, "--ann", annotation,
                                "--viz", tmp_path / "viz"))
    results = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in results) == [1, 2, 2]
    metrics = evaluate.evaluate(evaluate.load_ground_truth(annotation), results)
    assert metrics["AP"] == pytest.approx(1.0)
    assert written(tmp_path / "viz") == ["a", "a/x.jpg", "b", "b/x.jpg"]


def test_an_interrupted_run_over_subfolders_resumes_the_right_image(tiny_nets, codec,
                                                                   tmp_path):
    annotation = subfolder_annotation(codec, tmp_path / "images")
    out = tmp_path / "r.json"
    argv = arguments(tiny_nets, tmp_path / "images", out, "--ann", annotation)
    interrupted = subprocess.run([sys.executable, "-c", INTERRUPTED_PREDICT] + argv,
                                 cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True, timeout=120)
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    again = subprocess.run([sys.executable, str(REPO / "inference" / "predict.py")] + argv,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
    assert again.returncode == 0 and "resuming: 1 of 2 images" in again.stderr, again.stderr
    assert sorted(r["image_id"] for r in json.loads(out.read_text())) == [1, 2, 2]


def test_file_names_outside_the_folder_or_given_twice_are_refused(codec, tmp_path, capsys):
    images, _, data = codec
    for name, fragment in (("../1.png", "must be a path inside --images"),
                           ("/etc/1.png", "must be a path inside --images")):
        bad = write_json(tmp_path / "bad.json", dict(data, images=[
            dict(data["images"][0], file_name=name)]))
        refused(capsys, ["--deploy", "d", "--weights", "w", "--images", str(images),
                         "--out", str(tmp_path / "r.json"), "--ann", str(bad)],
                "images[0] (id 1) has file_name %s" % name, fragment)
    twice = write_json(tmp_path / "twice.json", dict(data, images=[
        data["images"][0], dict(data["images"][1], file_name="1.png")]))
    refused(capsys, ["--deploy", "d", "--weights", "w", "--images", str(images),
                     "--out", str(tmp_path / "r.json"), "--ann", str(twice)],
            "images 1 and 2 have the same file_name 1.png")


# ----------------------------------------------------------------------------- 3. folder ids

def test_a_stray_file_does_not_change_the_ids_of_coco_named_images(tiny_nets, codec, tmp_path,
                                                                    capsys):
    images, _, _ = codec
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(str(images / "1.png"), str(folder / "000000000139.png"))
    shutil.copy(str(images / "2.png"), str(folder / "000000000285.png"))
    (folder / "notes.txt").write_text("not a picture")
    out = tmp_path / "r.json"
    stderr = succeeded(capsys, arguments(tiny_nets, folder, out))
    results = json.loads(out.read_text())
    assert sorted((r["image_id"], r["file_name"]) for r in results) == [
        (139, "000000000139.png"), (285, "000000000285.png"), (285, "000000000285.png")]
    assert ("files with no COCO number for a name, or sharing one: 1 of 3 (notes.txt): image "
            "ids -1, which no ground truth has") in stderr


def test_files_without_a_number_or_sharing_one_get_ids_no_ground_truth_has(codec, tmp_path):
    images, _, _ = codec
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("1.png", "001.jpg", "7.png", "cat.png"):
        shutil.copy(str(images / "1.png"), str(folder / name))
    ids = {job.key: job.image_id for job in prediction.folder_jobs(folder)}
    assert ids == {"001.jpg": -1, "1.png": -2, "7.png": 7, "cat.png": -3}


# ----------------------------------------------------------------------------- 4. no images

def test_an_annotation_whose_images_are_elsewhere_is_refused(tiny_nets, codec, tmp_path,
                                                             capsys):
    _, annotation, _ = codec
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, arguments(tiny_nets, empty, tmp_path / "r.json", "--ann", annotation),
            "none of the 3 images of --ann %s is in --images %s" % (annotation, empty),
            "pass the folder that holds them")
    refused(capsys, arguments(tiny_nets, empty, tmp_path / "r.json"),
            "--images %s holds no files" % empty)
    assert written(tmp_path) == ["empty"]


def test_many_missing_images_are_summarised(tiny_nets, codec, tmp_path, capsys):
    images, annotation, data = codec
    absent = [{"id": 100 + i, "file_name": "absent%02d.png" % i, "height": 368, "width": 432}
              for i in range(12)]
    more = write_json(tmp_path / "more.json", dict(data, images=data["images"] + absent))
    stderr = succeeded(capsys, arguments(tiny_nets, images, tmp_path / "r.json", "--ann", more))
    assert "12 of the 15 images of --ann %s are not in --images" % more in stderr
    assert stderr.count(": file missing\n") == 10 + 1        # ten named, then the rest counted
    assert "predict: ... and 2 more: file missing" in stderr
    assert "skipped (file missing): 12" in stderr
    assert len(json.loads((tmp_path / "r.json").read_text())) == 13


def test_a_run_in_which_no_image_could_be_processed_fails_and_writes_nothing(tiny_nets,
                                                                            tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a picture")
    refused(capsys, arguments(tiny_nets, folder, tmp_path / "r.json"),
            "none of the 1 images could be processed", "nothing written to")
    assert written(tmp_path) == ["images", "images/notes.txt"]


# ----------------------------------------------------------------------------- 5. resuming

def interrupt_after_one_image(argv):
    run = subprocess.run([sys.executable, "-c", INTERRUPTED_PREDICT] + argv, cwd=str(REPO),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120)
    assert run.returncode == 130, run.stderr[-2000:]


def test_a_path_written_another_way_resumes_and_other_scales_are_named(tiny_nets, codec,
                                                                       tmp_path, capsys,
                                                                       monkeypatch):
    images, annotation, _ = codec
    out = tmp_path / "r.json"
    interrupt_after_one_image(arguments(tiny_nets, images, out, "--ann", annotation))
    partial = out.parent / (out.name + ".partial.jsonl")
    kept = partial.read_text()
    message = refused(capsys, arguments(tiny_nets, images, out, "--ann", annotation,
                                        "--scales", "0.5"),
                      "holds 1 finished images written with other settings",
                      "--scales: [1.0] there, [0.5] now", "--no-resume")
    assert "--deploy" not in message and partial.read_text() == kept
    # the same prototxt named relative to another folder, the same weights copied elsewhere
    shutil.copy(str(tiny_nets / "codec.caffemodel"), str(tmp_path / "copy.caffemodel"))
    monkeypatch.chdir(str(tiny_nets))
    stderr = succeeded(capsys, ["--deploy", "./codec.prototxt", "--weights",
                                "../%s/copy.caffemodel" % tmp_path.name,
                                "--images", str(images), "--ann", str(annotation),
                                "--out", str(out)])
    assert "resuming: 1 of 3 images already done" in stderr
    assert len(json.loads(out.read_text())) == 13


def resumed(path, settings, keep_finished=False):
    checkpoint = prediction.Checkpoint(path, settings, keep_finished=keep_finished)
    checkpoint.close()
    return checkpoint.done


def test_other_weights_are_named_and_another_backend_can_keep_the_finished_images(tmp_path):
    path = tmp_path / "r.json.partial.jsonl"
    settings = {"weights": {"path": "/a/w.caffemodel", "sha256": "1" * 64},
                "backend": "caffe", "precision": "fp32", "scales": [1.0]}
    finished = {"file": "1.png", "image_id": 1, "results": []}
    path.write_text(json.dumps({"settings": settings}) + "\n" + json.dumps(finished) + "\n")
    other = dict(settings, weights={"path": "/b/w.caffemodel", "sha256": "2" * 64})
    with pytest.raises(prediction.CheckpointError,
                       match=r"--weights: /a/w.caffemodel \(sha256 111111111111...\) there, "
                             r"/b/w.caffemodel \(sha256 222222222222...\) now"):
        resumed(path, other, keep_finished=True)
    moved = dict(settings, weights={"path": "/b/w.caffemodel", "sha256": "1" * 64})
    assert resumed(path, moved) == {"1.png": finished}
    opencv = dict(settings, backend="opencv")
    with pytest.raises(prediction.CheckpointError,
                       match=r'--backend: "caffe" there, "opencv" now\) that do not change the '
                             r"results beyond rounding: pass --keep-finished"):
        resumed(path, opencv)
    assert resumed(path, opencv, keep_finished=True) == {"1.png": finished}
    int8 = dict(settings, backend="openvino", precision="int8")    # quantised: other results
    with pytest.raises(prediction.CheckpointError, match='--precision: "fp32" there, "int8" now'):
        resumed(path, int8, keep_finished=True)


# ----------------------------------------------------------------------------- 6. typos

def test_a_typo_in_the_weights_leaves_nothing_that_blocks_the_corrected_command(
        tiny_nets, codec, tmp_path, capsys):
    images, annotation, _ = codec
    out = tmp_path / "r.json"
    refused(capsys, arguments(tiny_nets, images, out, "--ann", annotation, weights="codex"),
            "weights not found: %s" % (tiny_nets / "codex.caffemodel"))
    assert written(tmp_path) == []
    succeeded(capsys, arguments(tiny_nets, images, out, "--ann", annotation))
    assert written(tmp_path) == ["r.json"]


def test_a_checkpoint_without_finished_images_does_not_block(tiny_nets, codec, tmp_path,
                                                             capsys):
    images, annotation, _ = codec
    out = tmp_path / "r.json"
    (tmp_path / "r.json.partial.jsonl").write_text(json.dumps({"settings": {"other": 1}}) + "\n")
    succeeded(capsys, arguments(tiny_nets, images, out, "--ann", annotation))
    assert written(tmp_path) == ["r.json"]


# ----------------------------------------------------------------------------- one-liners

def bad_annotations(tmp_path, data):
    yield tmp_path / "absent.json", "does not exist"
    text = json.dumps(data)
    for name, content, fragment in (
            ("notjson.json", "{images: []}", "is not JSON (Expecting property name"),
            ("truncated.json", text[:len(text) // 2], "is not JSON ("),
            ("list.json", json.dumps(data["images"]),
             "holds a JSON list, not a COCO annotation object"),
            ("noimages.json", json.dumps({"annotations": []}), 'has no "images" list'),
            ("stringid.json", json.dumps(dict(data, images=[dict(data["images"][0], id="1")])),
             'images[0] has id "1", not an integer')):
        (tmp_path / name).write_text(content)
        yield tmp_path / name, fragment


def test_bad_annotation_files_are_named_in_one_line(codec, tmp_path, capsys):
    images, _, data = codec
    for annotation, fragment in bad_annotations(tmp_path, data):
        refused(capsys, ["--deploy", "d", "--weights", "w", "--images", str(images),
                         "--out", str(tmp_path / "r.json"), "--ann", str(annotation)],
                "--ann %s" % annotation, fragment)
    assert not (tmp_path / "r.json.partial.jsonl").exists()


def test_bad_options_are_named_in_one_line(tiny_nets, codec, tmp_path, capsys):
    images, annotation, _ = codec
    (tmp_path / "picture.jpg").write_text("a file")
    (tmp_path / "folder").mkdir()
    cases = [
        ("--out", [tmp_path / "missing" / "r.json"],
         "the folder %s does not exist: create it" % (tmp_path / "missing")),
        ("--out", [tmp_path / "folder"], "--out %s is a folder: name the results file"
         % (tmp_path / "folder")),
        ("--viz", [tmp_path / "picture.jpg"],
         "--viz %s is a file: name a folder" % (tmp_path / "picture.jpg")),
        ("--scales", ["nan"], "--scales must be positive finite numbers, got nan"),
        ("--scales", ["1", "inf"], "--scales must be positive finite numbers, got inf"),
        ("--images", [tmp_path / "picture.jpg"], "--images %s is not a folder"
         % (tmp_path / "picture.jpg")),
    ]
    for flag, values, fragment in cases:
        argv = arguments(tiny_nets, images, tmp_path / "r.json", "--ann", annotation)
        if flag in argv:                # the last value of an option counts
            argv[argv.index(flag) + 1] = str(values[0])
        else:
            argv += [flag] + [str(value) for value in values]
        refused(capsys, argv, fragment)
    assert written(tmp_path) == ["folder", "picture.jpg"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can create files in: chmod for a user, the immutable flag for root;
    skips where neither holds."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], stderr=subprocess.DEVNULL).returncode == 0
    try:
        (folder / "probe").write_text("")
    except OSError:
        pass
    else:
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)])
    folder.chmod(0o755)


def test_an_out_folder_that_cannot_be_written_is_named(tiny_nets, codec, read_only_folder,
                                                       capsys):
    images, annotation, _ = codec
    refused(capsys, arguments(tiny_nets, images, read_only_folder / "r.json", "--ann",
                              annotation),
            "cannot write %s beside --out" % (read_only_folder / "r.json.partial.jsonl"),
            "name a folder you can write in")


def test_an_out_that_cannot_be_written_at_the_end_keeps_the_finished_images(
        tiny_nets, codec, tmp_path, capsys):
    images, annotation, _ = codec
    out = tmp_path / "r.json"

    def block_out(entry):               # something makes a folder of that name meanwhile
        out.mkdir(exist_ok=True)

    code = predict.main(arguments(tiny_nets, images, out, "--ann", annotation),
                        on_image=block_out)
    stderr = capsys.readouterr().err
    assert code == 1 and "Traceback" not in stderr
    assert "predict: error: cannot write --out %s: Is a directory; the finished images stay in " \
           "%s.partial.jsonl: run the same command again" % (out, out) in stderr
    assert written(tmp_path) == ["r.json", "r.json.partial.jsonl"]     # no r.json.tmp
    out.rmdir()
    stderr = succeeded(capsys, arguments(tiny_nets, images, out, "--ann", annotation))
    assert "resuming: 3 of 3 images already done" in stderr
    assert len(json.loads(out.read_text())) == 13
