"""./scripts/train.sh --resume started from the host, with the database outside the repository:
a resumed run names no --lmdb, so train.sh must make the one recorded in its params.json
reachable inside the sandbox (caffe-env binds only the paths named on its command line)."""
import subprocess
import sys

from tests.conftest import REPO

TRAIN_SH = str(REPO / "scripts" / "train.sh")
TINY = ["--gpu", "cpu", "--batch", "1", "--crop", "64", "--snapshot-every", "2", "--workers", "0"]


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, **kwargs)


def test_resume_finds_the_recorded_database_outside_the_repository(tmp_path):
    data, lmdb, run_dir = tmp_path / "synthetic", tmp_path / "db", tmp_path / "run"
    made = run([sys.executable, REPO / "data_prep" / "make_synthetic.py", "--out", data,
                "--train", 2, "--val", 0, "--seed", 3])
    assert made.returncode == 0, made.stdout
    packed = run([REPO / "scripts" / "caffe-env", "python", REPO / "data_prep" / "coco_to_lmdb.py",
                  "--ann", data / "annotations" / "person_keypoints_train.json",
                  "--images", data / "train", "--out", lmdb])
    assert packed.returncode == 0, packed.stdout
    first = run([TRAIN_SH, "--model", "mln", "--lmdb", lmdb, "--iters", 2, "--run-dir", run_dir]
                + TINY, cwd=str(REPO))
    assert first.returncode == 0, first.stdout[-2000:]
    # naming only the run directory (the current directory, also bound, holds no database)
    resumed = run([TRAIN_SH, "--resume", "--run-dir", run_dir, "--iters", 3], cwd=str(REPO))
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert (run_dir / "snapshots" / "mln_iter_3.caffemodel").is_file()
