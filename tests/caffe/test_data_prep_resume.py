"""Interrupted packing (kill -9 in the middle of a transaction, Ctrl-C, a full disk) resumes to
the same database as an uninterrupted run; the map grows; foreign databases are refused."""
import fcntl
import resource
import signal

import pytest

from data_prep import coco_to_lmdb
from data_prep.record import LmdbReader, RecordError
from tests.caffe.data_prep_helpers import database_content, run_packer

ANNOTATIONS = "person_keypoints_train2017.json"


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
    stopped = run_packer(*slice_paths, out, *options,
                         env_extra={coco_to_lmdb.TEST_SIGNAL_VARIABLE: "%s@40" % signal_name})
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
    coco_to_lmdb.pack(*slice_paths, out=str(out), workers=0, progress_bar=False,
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
    with open(str(out / coco_to_lmdb.LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = run_packer(*slice_paths, out)
    assert busy.returncode == 2 and "another packer is writing" in busy.stderr


def test_refuses_to_write_into_a_folder_with_other_files(slice_paths, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    refused = run_packer(*slice_paths, tmp_path)
    assert refused.returncode == 2 and "non-empty directory" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
