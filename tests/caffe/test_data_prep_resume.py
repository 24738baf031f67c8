"""Interrupted packing (kill -9 in the middle of a transaction, Ctrl-C, a full disk) resumes to
the same database as an uninterrupted run; the map grows; foreign databases are refused."""
import fcntl
import resource
import signal
import subprocess
import sys

import pytest

from data_prep import packer
from data_prep.lmdb_writer import LOCK_FILE
from data_prep.record import LmdbReader, RecordError
from tests.caffe.data_prep_helpers import database_content, run_packer
from tests.conftest import REPO

ANNOTATIONS = "person_keypoints_train2017.json"

# The command line packer (coco_to_lmdb.main) whose run sends itself signal SIG<argv[1]> right
# after image argv[2] (0-based) has entered the open transaction: pack()'s on_image is called
# exactly then. The packer's arguments follow.
SIGNALLING_PACKER = """
import functools, os, signal, sys
from data_prep import coco_to_lmdb
number, index = getattr(signal, "SIG" + sys.argv[1]), int(sys.argv[2])

def signal_at(outcome):
    if outcome.index == index:
        os.kill(os.getpid(), number)

coco_to_lmdb.pack = functools.partial(coco_to_lmdb.pack, on_image=signal_at)
sys.exit(coco_to_lmdb.main(sys.argv[3:]))
"""


def run_signalled_packer(signal_name, index, ann, images, out, *options, timeout=120):
    command = [sys.executable, "-c", SIGNALLING_PACKER, signal_name, str(index), "--ann", str(ann),
               "--images", str(images), "--out", str(out), "--no-progress"]
    return subprocess.run(command + [str(o) for o in options], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


@pytest.fixture(scope="module")
def slice_paths(coco_mini):
    return coco_mini / ANNOTATIONS, coco_mini / "images"


@pytest.fixture(scope="module")
def reference(slice_paths, tmp_path_factory):
    """The content of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "db"
    done = run_packer(*slice_paths, out, "--workers", 2)
    assert done.returncode == 0, done.stderr
    return database_content(out)


def progress_of(out):
    with LmdbReader(out, allow_incomplete=True) as reader:
        assert not reader.metadata["complete"]
        return reader.metadata["progress"]["next_image"], len(reader)


@pytest.mark.parametrize("signal_name, code, done_images", [
    # SIGKILL right after image 40 entered the open transaction: images 32..40 are lost with it
    ("KILL", -signal.SIGKILL, 32),
    # Ctrl-C: the writer finishes the image in hand, commits, and says how to continue
    ("INT", 130, 41),
])
def test_interrupted_run_resumes_to_identical_content(slice_paths, reference, tmp_path,
                                                      signal_name, code, done_images):
    out = tmp_path / "db"
    options = ("--workers", 2, "--commit-every", 16)
    stopped = run_signalled_packer(signal_name, 40, *slice_paths, out, *options)
    assert stopped.returncode == code, stopped.stderr
    if signal_name == "INT":
        assert "rerun the same command" in stopped.stderr.lower()
    next_image, records = progress_of(out)
    assert next_image == done_images and 0 < records < 25
    with pytest.raises(RecordError, match="packing has not finished"):
        LmdbReader(out)
    resumed = run_packer(*slice_paths, out, *options)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert database_content(out) == reference


def test_full_disk_loses_nothing_and_resumes(slice_paths, reference, tmp_path):
    """A file-size limit (RLIMIT_FSIZE, write() then fails with EFBIG) stands in for a full disk:
    the write fails the same way, and no root or small filesystem is needed."""
    out = tmp_path / "db"

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    full = run_packer(*slice_paths, out, "--commit-every", 8, preexec_fn=small_disk)
    assert full.returncode == 1
    assert "writing failed" in full.stderr and "rerun the same command" in full.stderr
    next_image, records = progress_of(out)
    assert 0 < next_image < 80 and 0 < records < 25
    resumed = run_packer(*slice_paths, out, "--commit-every", 8)
    assert resumed.returncode == 0, resumed.stderr
    assert database_content(out) == reference


def test_map_grows_from_a_tiny_start(slice_paths, reference, tmp_path):
    out = tmp_path / "db"
    packer.pack(*slice_paths, out=str(out), workers=0, progress_bar=False,
                initial_map_size=64 << 10, log=lambda text: None)
    assert database_content(out) == reference


def test_finished_database_is_left_alone(slice_paths, reference, tmp_path):
    out = tmp_path / "db"
    assert run_packer(*slice_paths, out, "--workers", 0).returncode == 0
    again = run_packer(*slice_paths, out)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert "records written          25" in again.stdout
    assert database_content(out) == reference


def test_refuses_a_database_made_from_other_input(slice_paths, tmp_path):
    out = tmp_path / "db"
    assert run_packer(*slice_paths, out, "--limit", 10).returncode == 0
    other_limit = run_packer(*slice_paths, out)
    assert other_limit.returncode == 2
    assert "--limit 10 instead of None" in other_limit.stderr
    other_file = tmp_path / "other.json"
    other_file.write_bytes(slice_paths[0].read_bytes() + b"\n")     # other bytes, same JSON
    refused = run_packer(other_file, slice_paths[1], out, "--limit", 10)
    assert refused.returncode == 2
    assert "annotation file" in refused.stderr and "refusing to append" in refused.stderr


def test_refuses_a_second_writer(slice_paths, tmp_path):
    out = tmp_path / "db"
    out.mkdir()
    with open(str(out / LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = run_packer(*slice_paths, out)
    assert busy.returncode == 2 and "another packer is writing" in busy.stderr


def test_refuses_to_write_into_a_folder_with_other_files(slice_paths, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    refused = run_packer(*slice_paths, tmp_path)
    assert refused.returncode == 2 and "non-empty directory" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
