"""A resumed run is the run that was never interrupted: with --iter-size 2 (so that a resume
that forgets iter_size in the data stream's position shows), 0 -> 4 in one go and 0 -> 2 then
--resume -> 4 give the same losses for iterations 2-4 and the same final weights, bit for bit.

Caffe's CPU training is bit-reproducible here (two uninterrupted runs write identical weights;
so do the run and its resumed twin), so the comparison is exact. Tiny settings on 4 synthetic
images (tests/caffe/conftest.py's synthetic_lmdb): crop 64, batch 1, samples built in Caffe's
process (--workers 0); about 40 s for the two tests.
"""
import re

import pytest
from caffe.proto import caffe_pb2

from scripts import plot_log
from tests.caffe.test_train import sessions_of_log, train_sh

TINY = ["--gpu", "cpu", "--batch", 1, "--iter-size", 2, "--crop", 64, "--display", 1,
        "--snapshot-every", 2, "--workers", 0]


def curves_from(text, first_iteration):
    """{curve: [(iteration, value)]} of a log text (plot_log's parser), from first_iteration on."""
    curves = plot_log.parse_caffe_log(text.splitlines())
    return {name: [(i, v) for i, v in zip(series.iterations, series.values)
                   if i >= first_iteration]
            for name, series in curves.items()}


# Blobs are compared as their serialized BlobProto: equal bytes = equal shape and bit-identical
# float32 data (turning 21 M floats of each file into numpy arrays takes seconds).

def stored_blobs(path):
    """{(layer, k): serialized BlobProto} of a .caffemodel: every blob of every layer."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {(layer.name, k): blob.SerializeToString()
            for layer in net.layer for k, blob in enumerate(layer.blobs)}


def solver_history(path):
    """(iteration, {k: serialized BlobProto}) of a .solverstate: the momentum blobs."""
    state = caffe_pb2.SolverState()
    state.ParseFromString(path.read_bytes())
    return state.iter, {k: blob.SerializeToString() for k, blob in enumerate(state.history)}


def assert_same_blobs(got, expected, what):
    assert len(expected) > 0 and sorted(got) == sorted(expected), what
    different = [key for key in expected if got[key] != expected[key]]
    assert not different, "%s: %d of %d blobs differ, e.g. %s" % (
        what, len(different), len(expected), different[:5])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_lmdb):
    run_dir = tmp_path_factory.mktemp("exact") / "once"
    done = train_sh("--model", "mln", "--lmdb", synthetic_lmdb, "--iters", 4, "--run-dir",
                    run_dir, *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_a_resumed_run_with_iter_size_2_equals_the_uninterrupted_one(
        uninterrupted, synthetic_lmdb, tmp_path):
    run_dir = tmp_path / "resumed"
    done = train_sh("--model", "mln", "--lmdb", synthetic_lmdb, "--iters", 2, "--run-dir",
                    run_dir, *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    done = train_sh("--resume", "--run-dir", run_dir, "--iters", 4)
    assert done.returncode == 0, done.stderr[-3000:]
    second = sessions_of_log(run_dir)[1]
    assert "Resuming from snapshots/mln_iter_2.solverstate" in second
    stream = re.search(r"CocoPoseDataLayer: .*first sample \d+", second).group(0)

    once = curves_from((uninterrupted / "caffe.log").read_text(), 2)
    resumed = curves_from(second, 0)
    assert [i for i, _ in once[plot_log.TOTAL]] == [2, 3, 4]   # 4: Caffe's closing forward pass
    assert set(resumed) == set(once) and len(once) == 5        # total + the four losses
    for name in once:
        assert resumed[name] == once[name], "%s; resumed with %s" % (name, stream)

    for name in ("mln_iter_2.caffemodel", "mln_iter_4.caffemodel"):
        assert_same_blobs(stored_blobs(run_dir / "snapshots" / name),
                          stored_blobs(uninterrupted / "snapshots" / name), name)
    iteration, history = solver_history(run_dir / "snapshots" / "mln_iter_4.solverstate")
    once_iteration, once_history = solver_history(
        uninterrupted / "snapshots" / "mln_iter_4.solverstate")
    assert iteration == once_iteration == 4
    assert_same_blobs(history, once_history, "mln_iter_4.solverstate's momentum")
    # the data stream went on after 2 iterations x batch 1 x iter_size 2 samples
    assert stream.endswith("first sample 4")


def test_caffe_cpu_training_is_bit_reproducible(uninterrupted, synthetic_lmdb, tmp_path):
    """What lets the test above compare exactly: the same run twice gives the same weights."""
    again = tmp_path / "again"
    done = train_sh("--model", "mln", "--lmdb", synthetic_lmdb, "--iters", 4, "--run-dir",
                    again, *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    name = "mln_iter_4.caffemodel"
    assert (again / "snapshots" / name).read_bytes() == \
        (uninterrupted / "snapshots" / name).read_bytes()
