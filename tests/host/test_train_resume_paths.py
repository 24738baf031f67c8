"""Paths inside scripts/caffe-env's sandbox, seen from the host, with the database outside the
repository (caffe-env binds only the paths named on its command line; /tmp is private):
./scripts/train.sh --resume, which names no --lmdb, reaches the one recorded in its params.json;
a database that moved is given with --lmdb; a path hidden in a `python -c` string is not
reachable, and the reader's message says so."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

TRAIN_SH = str(REPO / "scripts" / "train.sh")
CAFFE_ENV = str(REPO / "scripts" / "caffe-env")
TINY = ["--gpu", "cpu", "--batch", "1", "--crop", "64", "--snapshot-every", "2", "--workers", "0"]


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, **kwargs)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """2 synthetic images packed into a database under the host's /tmp."""
    base = tmp_path_factory.mktemp("outside")
    data, lmdb = base / "synthetic", base / "db"
    made = run([sys.executable, REPO / "data_prep" / "make_synthetic.py", "--out", data,
                "--train", 2, "--val", 0, "--seed", 3])
    assert made.returncode == 0, made.stdout
    packed = run([CAFFE_ENV, "python", REPO / "data_prep" / "coco_to_lmdb.py",
                  "--ann", data / "annotations" / "person_keypoints_train.json",
                  "--images", data / "train", "--out", lmdb])
    assert packed.returncode == 0, packed.stdout
    return lmdb


def test_resume_finds_the_recorded_database_outside_the_repository(packed, tmp_path):
    run_dir = tmp_path / "run"
    first = run([TRAIN_SH, "--model", "mln", "--lmdb", packed, "--iters", 2, "--run-dir", run_dir]
                + TINY, cwd=str(REPO))
    assert first.returncode == 0, first.stdout[-2000:]
    # naming only the run directory (the current directory, also bound, holds no database)
    resumed = run([TRAIN_SH, "--resume", "--run-dir", run_dir, "--iters", 3], cwd=str(REPO))
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert (run_dir / "snapshots" / "mln_iter_3.caffemodel").is_file()


def test_a_moved_database_is_given_its_new_place(packed, tmp_path):
    db, run_dir, moved = tmp_path / "db", tmp_path / "run", tmp_path / "moved" / "db"
    shutil.copytree(str(packed), str(db))
    first = run([TRAIN_SH, "--model", "mln", "--lmdb", db, "--iters", 2, "--run-dir", run_dir]
                + TINY, cwd=str(REPO))
    assert first.returncode == 0, first.stdout[-2000:]
    moved.parent.mkdir()
    db.rename(moved)
    lost = run([TRAIN_SH, "--resume", "--run-dir", run_dir, "--iters", 3], cwd=str(REPO))
    assert lost.returncode == 1
    assert lost.stdout.splitlines()[-1] == (
        "train: error: the run's database %s (params.json) is not there: if it moved, give its "
        "new place with --lmdb" % db)
    resumed = run([TRAIN_SH, "--resume", "--run-dir", run_dir, "--iters", 3, "--lmdb", moved],
                  cwd=str(REPO))
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert (run_dir / "snapshots" / "mln_iter_3.caffemodel").is_file()


def test_a_path_inside_python_c_is_out_of_reach_and_the_message_says_so(packed):
    code = ("from data_prep.record import LmdbReader, RecordError\n"
            "try:\n    print(len(LmdbReader(%r)), 'records')\n"
            "except RecordError as error:\n    print(error)" % str(packed))
    hidden = run([CAFFE_ENV, "python", "-c", code], cwd=str(REPO))
    assert hidden.returncode == 0, hidden.stdout
    assert hidden.stdout == (
        "%s: not a packed database (no such folder here): inside scripts/caffe-env /tmp is "
        "private and only the paths named on its command line, the current folder and "
        "MLN_CAFFE_BIND are reachable, not a path inside a `python -c` string or a file; name "
        "it as an argument or add it to MLN_CAFFE_BIND\n" % packed)
    # what the message advises works
    bound = run([CAFFE_ENV, "python", "-c", code], cwd=str(REPO),
                env=dict(os.environ, MLN_CAFFE_BIND=str(packed)))
    assert bound.stdout == "2 records\n"
