"""./scripts/train.sh refuses what cannot train before Caffe starts (one line naming the option,
exit code 1, no Caffe output, nothing written), and a resumed run may be given its database's
new place, checked to be the same database by its metadata."""
import json
import shutil

import pytest

from tests.caffe.data_prep_helpers import run_packer
from tests.caffe.test_train import copy_of_run, sessions_of_log, snapshots, train_sh

TINY = ["--gpu", "cpu", "--batch", 1, "--crop", 64, "--snapshot-every", 1, "--workers", 0]


def assert_refused(done, message, run_dir):
    """One line on stderr, nothing on stdout (no Caffe), and no run directory made."""
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "train: error: %s\n" % message)
    assert not run_dir.exists()


def new_run(lmdb, run_dir, *flags):
    return train_sh("--model", "mln", "--lmdb", lmdb, "--iters", 1, "--run-dir", run_dir,
                    *(TINY + list(flags)))


# ---- the database, before Caffe starts

def test_a_folder_without_a_database_is_refused(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    assert_refused(new_run(folder, tmp_path / "run"),
                   "--lmdb %s: not a packed database (no data.mdb in it): make one with "
                   "data_prep/coco_to_lmdb.py" % folder, tmp_path / "run")
    assert_refused(new_run(tmp_path / "nowhere", tmp_path / "run"),
                   "--lmdb %s: no such folder" % (tmp_path / "nowhere"), tmp_path / "run")


def unfinished_copy(source, target):
    """A copy of a packed database whose packer never got to write 'complete'."""
    import lmdb
    shutil.copytree(str(source), str(target))
    env = lmdb.open(str(target), max_dbs=2, lock=False)
    with env.begin(write=True, db=env.open_db(b"meta", create=False)) as txn:
        assert txn.delete(b"complete")
    env.close()
    return target


def test_an_unfinished_database_is_refused(tmp_path, synthetic_lmdb):
    db = unfinished_copy(synthetic_lmdb, tmp_path / "db")
    done = new_run(db, tmp_path / "run")
    assert_refused(done, done.stderr[len("train: error: "):-1], tmp_path / "run")
    assert done.stderr.startswith("train: error: --lmdb %s: packing has not finished (" % db)
    assert done.stderr.endswith("rerun the packer with the same command to complete it\n")


def test_an_empty_database_is_refused(tmp_path, generated_coco):
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    packed = run_packer(generated_coco / "annotations" / "person_keypoints_train.json",
                        no_images, tmp_path / "db", "--workers", 0)
    assert packed.returncode == 0, packed.stderr
    assert_refused(new_run(tmp_path / "db", tmp_path / "run"),
                   "--lmdb %s: the database holds no record (no image had a main person); "
                   "data_prep/inspect_lmdb.py %s says why each image was left out"
                   % (tmp_path / "db", tmp_path / "db"), tmp_path / "run")


@pytest.mark.parametrize("data_param, message", [
    ('{"flip_probability": 0}', "CocoPoseDataLayer param_str: unknown key 'flip_probability'; "
                                "known keys: batch_size, center_perturb_max, crop_size, "),
    ('{"flip_prob": 2}', "CocoPoseDataLayer param_str: flip_prob must be in [0, 1], got 2.0"),
    ('{"batch_size": 3}', "data-layer parameters batch_size are set by their own options, "
                          "not by the extra JSON"),
])
def test_data_layer_keys_it_would_refuse_are_refused_before_caffe(tmp_path, synthetic_lmdb,
                                                                  data_param, message):
    done = new_run(synthetic_lmdb, tmp_path / "run", "--data-param", data_param)
    assert_refused(done, done.stderr[len("train: error: "):-1], tmp_path / "run")
    assert done.stderr.startswith("train: error: --data-param %s: %s"
                                  % (json.dumps(json.loads(data_param)), message))


@pytest.mark.parametrize("flags, message", [
    (["--base-lr", "-1"], "--base-lr must be 0 or more and finite, got -1.0"),
    (["--crop", "0"], "--crop must be a multiple of 8 and at least 8 (one label cell), got 0"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--seed", "-1"], "--seed must be in 0 .. 4294967295, got -1"),
    (["--workers", "-1"],
     "--workers must be 0 or more (0: samples built in Caffe's process), got -1"),
])
def test_a_value_that_cannot_train_is_one_line(tmp_path, synthetic_lmdb, flags, message):
    assert_refused(new_run(synthetic_lmdb, tmp_path / "run", *flags), message, tmp_path / "run")


# ---- a resumed run whose database moved

@pytest.fixture(scope="module")
def one_iteration(tmp_path_factory, synthetic_lmdb):
    """A run of 1 iteration on a copy of the synthetic database (its own, to move about)."""
    base = tmp_path_factory.mktemp("moved")
    shutil.copytree(str(synthetic_lmdb), str(base / "db"))
    done = new_run(base / "db", base / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return base / "db", base / "run"


def resumable(one_iteration, tmp_path):
    """A copy of the run and of its database, the database recorded at its copy's place."""
    db, run_dir = one_iteration
    shutil.copytree(str(db), str(tmp_path / "db"))
    copy = copy_of_run(run_dir, tmp_path / "run")
    params = json.loads((copy / "params.json").read_text())
    params["settings"]["lmdb"] = str(tmp_path / "db")
    (copy / "params.json").write_text(json.dumps(params))
    return tmp_path / "db", copy


def test_a_moved_database_is_named_not_blamed_on_an_option(one_iteration, tmp_path):
    db, run_dir = resumable(one_iteration, tmp_path)
    db.rename(tmp_path / "elsewhere")
    before = (run_dir / "params.json").read_text()
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "train: error: the run's database %s (params.json) is not there: if it moved, "
               "give its new place with --lmdb\n" % db)
    assert (run_dir / "params.json").read_text() == before            # nothing lost


def test_a_moved_database_given_with_lmdb_resumes(one_iteration, tmp_path):
    db, run_dir = resumable(one_iteration, tmp_path)
    moved = db.rename(tmp_path / "elsewhere") or tmp_path / "elsewhere"
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2, "--lmdb", moved)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("train: the run's database moved from %s to %s (the same metadata); params.json "
            "now names the new place\n" % (db, moved)) in done.stderr
    assert snapshots(run_dir) == [1, 2]
    params = json.loads((run_dir / "params.json").read_text())
    assert params["settings"]["lmdb"] == str(moved)
    assert params["sessions"][-1]["lmdb_moved_from"] == str(db)
    assert "of %s;" % moved in sessions_of_log(run_dir)[1]      # the data layer read it


def test_a_different_database_is_refused(one_iteration, tmp_path, generated_lmdb):
    _, run_dir = resumable(one_iteration, tmp_path)
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2, "--lmdb", generated_lmdb)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == (
        "train: error: --lmdb %s is not the database this run trained on (its metadata differs "
        "from what params.json recorded, in: records, run, summary; 4 records then, 12 now); a "
        "resumed run keeps its data: give that database, or start a new run\n" % generated_lmdb)


def test_a_database_repacked_in_place_is_refused(one_iteration, tmp_path, generated_lmdb):
    db, run_dir = resumable(one_iteration, tmp_path)
    shutil.rmtree(str(db))
    shutil.copytree(str(generated_lmdb), str(db))
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr.startswith("train: error: the run's database %s is not the database "
                                  "this run trained on (" % db)


def test_a_run_without_recorded_metadata_resumes_only_at_its_recorded_place(one_iteration,
                                                                            tmp_path):
    db, run_dir = resumable(one_iteration, tmp_path)
    params = json.loads((run_dir / "params.json").read_text())
    del params["database"]                   # as train.sh wrote it before recording one
    (run_dir / "params.json").write_text(json.dumps(params))
    copy = shutil.copytree(str(db), str(tmp_path / "copy"))
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2, "--lmdb", copy)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "train: error: --lmdb %s: cannot tell whether it is the run's database %s: "
               "params.json predates recording a database's metadata; resume with the database "
               "at %s\n" % (copy, db, db))
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "params.json").read_text())["database"]["records"] == 4
